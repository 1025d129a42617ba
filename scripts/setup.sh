#!/usr/bin/env bash
# Creates .venv (Python 3.11; PYTHON=3.12 for Python 3.12) and installs the pinned stack,
# MinkowskiEngine built CPU-only when no CUDA device is present. uv installs the Python packages
# from its cache by hard links, and the built MinkowskiEngine wheel is cached (pip's wheel cache on
# 3.11, ~/.cache/hicl on 3.12), so a second setup on the same machine (also from a fresh clone)
# takes seconds, not minutes.
#
# PYTHON: a version (3.11, 3.12: python3.X on PATH, else the newest pyenv 3.X.*), a command
# (python3.12) or a path (/usr/bin/python3.12); default 3.11. An existing .venv is kept and must
# be of the version asked for.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
SUPPORTED=(3.11 3.12)

die() { echo "[setup] error: $*" >&2; exit 1; }
py_version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }
supported() { [[ " ${SUPPORTED[*]} " == *" $1 "* ]]; }
unsupported() { die "Python $1 is not supported (supported: ${SUPPORTED[*]})"; }

# An interpreter of version $1 that runs and can create a venv (a pyenv shim of a version that is
# not selected exists on PATH but does not run).
find_python() {
  local v=$1 c root
  local candidates=()
  c=$(command -v "python$v" 2>/dev/null) && candidates+=("$c")
  if command -v pyenv >/dev/null 2>&1 && root=$(pyenv root 2>/dev/null); then
    while IFS= read -r c; do candidates+=("$c/bin/python$v"); done \
      < <(ls -d "$root/versions/$v".[0-9]* 2>/dev/null | grep -E "/$v\.[0-9]+$" | sort -V -r)
  fi
  for c in "${candidates[@]}"; do
    if [ -x "$c" ] && [ "$(py_version "$c")" = "$v" ] && "$c" -c 'import ensurepip, venv' 2>/dev/null; then
      echo "$c"; return 0
    fi
  done
  return 1
}

REQ=${PYTHON:-}
case "$REQ" in python[0-9]*.[0-9]*) REQ=${REQ#python} ;; esac  # python3.12 is looked for like 3.12

if [ -x "$VENV/bin/python" ]; then
  PYVER=$(py_version "$VENV/bin/python") || die "$VENV/bin/python does not run: remove $VENV and run setup again"
  supported "$PYVER" || unsupported "$PYVER"
  if [ -n "$REQ" ]; then
    case "$REQ" in
      [0-9]*) want=$REQ ;;
      *) c=$(command -v "$PYTHON" 2>/dev/null) && want=$(py_version "$c") || die "no Python at '$PYTHON'" ;;
    esac
    [ "$want" = "$PYVER" ] || die "$VENV is Python $PYVER, not $want: remove it (rm -rf $VENV) to set up with $want"
  fi
else
  case "${REQ:=3.11}" in
    [0-9]*.[0-9]*.*|[0-9]|[0-9][0-9]) die "PYTHON=$PYTHON: give a version as major.minor (${SUPPORTED[*]}), a command or a path" ;;
    [0-9]*)
      PYVER=$REQ
      supported "$PYVER" || unsupported "$PYVER"
      PY=$(find_python "$PYVER") || die "no Python $PYVER found (python$PYVER on PATH or pyenv): install it or set PYTHON=/path/to/python$PYVER"
      ;;
    *)
      PY=$(command -v "$PYTHON" 2>/dev/null) && PYVER=$(py_version "$PY") || die "no Python at '$PYTHON'"
      supported "$PYVER" || unsupported "$PYVER"
      ;;
  esac
  echo "[setup] creating $VENV with Python $PYVER ($PY)"
  "$PY" -m venv "$VENV"
fi

# MinkowskiEngine links BLAS; open3d (TSDF fusion and ray casting of the synthetic scans) needs libusb;
# the viewer's browser test drives Debian's chromium through Playwright (no browser download).
# `patch` applies patches/minkowskiengine (all of them to the sdist on 3.12, the Python-only one to the
# installed package on 3.11).
APT_PKGS=(libopenblas-dev libusb-1.0-0 chromium patch)
missing=()
for pkg in "${APT_PKGS[@]}"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing ${missing[*]} with apt-get"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PIP="$VENV/bin/python -m pip"
$PIP install -q uv
UV="$VENV/bin/uv pip install -q --python $VENV/bin/python"
$UV torch==2.14.1 torchvision==0.29.1 "numpy>=1.26,<2"

if ! $VENV/bin/python - <<'PY' >/dev/null 2>&1
import collections, collections.abc
for n in ("Sequence", "Mapping", "Iterable", "MutableMapping"):
    setattr(collections, n, getattr(collections.abc, n))
import MinkowskiEngine
PY
then
  if [ "$PYVER" = 3.11 ]; then
    # Build tools MinkowskiEngine 0.5.4 needs: its setup.py imports numpy.distutils (numpy<2),
    # which needs distutils.msvccompiler, gone from setuptools 70 on (torch pulls a newer one).
    $UV "setuptools<70" wheel ninja
    echo "[setup] building MinkowskiEngine 0.5.4 (CPU-only unless a CUDA device is present; cached afterwards)"
    MAX_JOBS=${MAX_JOBS:-$(nproc)} $PIP install --no-build-isolation MinkowskiEngine==0.5.4
  else
    # numpy 1.26 has no numpy.distutils on Python 3.12, so the PyPI sdist's setup.py cannot run:
    # build it with the project's patches (scripts/setup_gpu.sh), which cache the wheel in ~/.cache/hicl.
    $UV "setuptools>=70.1" wheel ninja
    if $VENV/bin/python -c "import torch; raise SystemExit(not torch.cuda.is_available())" 2>/dev/null; then
      ME_ARGS=()
    else
      ME_ARGS=(--cpu)
    fi
    echo "[setup] building MinkowskiEngine 0.5.4 from the patched sdist (CPU-only unless a CUDA device is present; cached afterwards)"
    PYTHON=$VENV/bin/python MAX_JOBS=${MAX_JOBS:-$(nproc)} bash scripts/setup_gpu.sh "${ME_ARGS[@]}"
  fi
fi

# The PyPI build on 3.11 is unpatched: its Python files get the patch that stops instantiating
# autograd Functions (deprecated by PyTorch, to become an error); applied once, skipped after.
ME_PY_PATCH=patches/minkowskiengine/0011-autograd-function-static.patch
SITE=$($VENV/bin/python -c "import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec('MinkowskiEngine').origin).parent.parent)")
if patch -p1 --dry-run --forward --batch --quiet -d "$SITE" <"$ME_PY_PATCH" >/dev/null 2>&1; then
  patch -p1 --forward --batch --quiet -d "$SITE" <"$ME_PY_PATCH" >/dev/null
  echo "[setup] applied $(basename "$ME_PY_PATCH") to the installed MinkowskiEngine"
elif ! patch -p1 --dry-run --reverse --batch --quiet -d "$SITE" <"$ME_PY_PATCH" >/dev/null 2>&1; then
  die "$ME_PY_PATCH does not apply to the installed MinkowskiEngine in $SITE"
fi

$UV -e ".[dev]"
$UV "setuptools>=70"
echo "[setup] done: $($VENV/bin/python -c 'import sys, torch, numpy; print("python %d.%d.%d" % sys.version_info[:3], "torch", torch.__version__, "numpy", numpy.__version__)')"
