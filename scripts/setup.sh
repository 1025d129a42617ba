#!/usr/bin/env bash
# Creates .venv (Python 3.11) and installs the pinned stack, MinkowskiEngine built CPU-only
# when no CUDA device is present. uv installs the Python packages from its cache by hard links
# and pip's wheel cache keeps the built MinkowskiEngine wheel, so a second setup on the same
# machine (also from a fresh clone) takes seconds, not minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
VENV=.venv

# MinkowskiEngine links BLAS; open3d (TSDF fusion and ray casting of the synthetic scans) needs libusb.
APT_PKGS=(libopenblas-dev libusb-1.0-0)
missing=()
for pkg in "${APT_PKGS[@]}"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing ${missing[*]} with apt-get"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
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
  # Build tools MinkowskiEngine 0.5.4 needs: its setup.py imports numpy.distutils (numpy<2),
  # which needs distutils.msvccompiler, gone from setuptools 70 on (torch pulls a newer one).
  $UV "setuptools<70" wheel ninja
  echo "[setup] building MinkowskiEngine 0.5.4 (CPU-only unless a CUDA device is present; cached afterwards)"
  MAX_JOBS=${MAX_JOBS:-$(nproc)} $PIP install --no-build-isolation MinkowskiEngine==0.5.4
fi

$UV -e ".[dev]"
$UV "setuptools>=70"
echo "[setup] done: $($VENV/bin/python -c 'import torch, numpy; print("torch", torch.__version__, "numpy", numpy.__version__)')"
