#!/usr/bin/env bash
# Builds MinkowskiEngine 0.5.4 (the last release) from its sdist with the project's patches
# (patches/minkowskiengine/NNNN-*.patch, applied in order), so that it compiles against current
# CUDA (13.x, CCCL 3), PyTorch 2.x and Python 3.10+, then installs the wheel into .venv.
# With a CUDA build of torch and a CUDA toolkit (nvcc) it compiles the CUDA kernels for
# TORCH_CUDA_ARCH_LIST; without either it builds CPU-only, like scripts/setup.sh.
#
# usage: scripts/setup_gpu.sh [--build-only] [--wheel-dir DIR] [--cpu]
#   --build-only     build the wheel, check that it imports, install nothing (also BUILD_ONLY=1)
#   --wheel-dir DIR  where the wheel goes (default $ME_BUILD_DIR/dist)
#   --cpu            CPU-only build even where CUDA is there (also FORCE_CPU=1)
# environment:
#   PYTHON                interpreter whose torch the wheel is built against (default .venv/bin/python)
#   TORCH_CUDA_ARCH_LIST  compute capabilities, e.g. "9.0" or "8.0;8.6;9.0+PTX" (default: those of
#                         the local GPUs from nvidia-smi or torch, else 8.0;8.6;9.0+PTX)
#   MAX_JOBS              parallel compile jobs (default: nproc; one CUDA job takes up to ~4.5 GB)
#   CUDA_HOME             toolkit root (default: CUDA_PATH, /usr/local/cuda, else the nvcc on PATH)
#   ME_SDIST              a local MinkowskiEngine-0.5.4.tar.gz (for machines without network)
#   ME_CACHE              where the downloaded sdist and the built wheels are kept, one wheel per
#                         sdist + patches + python + torch + CUDA/arch (default ~/.cache/hicl)
#   ME_REBUILD=1          build even when the cache holds a wheel for this configuration
#   ME_BUILD_DIR          build folder (default build/minkowskiengine, git-ignored)
#   ME_BLAS               openblas|mkl|atlas|blas (default: the first one found)
#   PIP_INDEX_URL         package index the sdist is looked up in (default https://pypi.org/simple)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ME_VERSION=0.5.4
ME_SHA256=b1879c00d0b0b1d30ba622cce239886a7e3c78ee9da1064cdfe2f64c2ab15f94
SDIST_NAME=MinkowskiEngine-$ME_VERSION.tar.gz
# Ampere (A100, RTX 30xx), Hopper (H100/H200) and PTX for newer GPUs to JIT; CUDA 13 builds
# nothing older than 7.5.
DEFAULT_ARCHS="8.0;8.6;9.0+PTX"

PY=${PYTHON:-.venv/bin/python}
BUILD_ONLY=${BUILD_ONLY:-0}
FORCE_CPU=${FORCE_CPU:-0}
BUILD=${ME_BUILD_DIR:-build/minkowskiengine}
WHEEL_DIR=""

die() { echo "[setup-gpu] error: $*" >&2; exit 1; }
log() { echo "[setup-gpu] $*"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --build-only) BUILD_ONLY=1 ;;
    --wheel-dir) [ $# -ge 2 ] || die "--wheel-dir needs a folder"; WHEEL_DIR=$2; shift ;;
    --wheel-dir=*) WHEEL_DIR=${1#*=} ;;
    --cpu) FORCE_CPU=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done

case "$PY" in
  */*) [ -x "$PY" ] && PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY") ;;  # the build runs elsewhere
  *) PY=$(command -v "$PY" || true) ;;
esac
[ -n "$PY" ] && [ -x "$PY" ] || die "no Python at '${PYTHON:-.venv/bin/python}': run 'make setup' first or set PYTHON"
"$PY" -c "import torch" 2>/dev/null || die "'$PY' has no torch: run 'make setup' first or set PYTHON"
command -v patch >/dev/null || die "the 'patch' tool is missing (apt-get install patch)"
mkdir -p "$BUILD"
BUILD=$(cd "$BUILD" && pwd)
WHEEL_DIR=${WHEEL_DIR:-$BUILD/dist}
mkdir -p "$WHEEL_DIR"
WHEEL_DIR=$(cd "$WHEEL_DIR" && pwd)
PY_BIN=$("$PY" -c "import os, sys; print(os.path.dirname(sys.executable))")
export PATH="$PY_BIN:$PATH"  # ninja installed into the venv, if any

read -r TORCH_VERSION TORCH_CUDA PY_VERSION < <("$PY" -c \
  "import sys, torch; print(torch.__version__, torch.version.cuda or 'none', '%d.%d' % sys.version_info[:2])")
log "python $PY_VERSION ($PY), torch $TORCH_VERSION (CUDA $TORCH_CUDA)"

# --- the sdist: local file, cache, or the package index (checked against the release's hash)
CACHE=${ME_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hicl}
if [ -n "${ME_SDIST:-}" ]; then
  [ -f "$ME_SDIST" ] || die "ME_SDIST=$ME_SDIST is not a file"
  SDIST=$ME_SDIST
else
  SDIST=$CACHE/$SDIST_NAME
  if [ ! -f "$SDIST" ]; then
    mkdir -p "$CACHE"
    INDEX=${PIP_INDEX_URL:-https://pypi.org/simple}
    log "downloading $SDIST_NAME from $INDEX (kept in $CACHE)"
    "$PY" - "$INDEX" "$SDIST_NAME" "$SDIST.part" <<'PY' || { rm -f "$SDIST.part"; die "could not download $SDIST_NAME; without network set ME_SDIST=/path/to/$SDIST_NAME"; }
import re, sys, urllib.parse, urllib.request
index, name, dest = sys.argv[1:]
page_url = index.rstrip("/") + "/minkowskiengine/"
try:
    with urllib.request.urlopen(page_url, timeout=60) as r:
        page = r.read().decode()
    links = [h.split("#")[0] for h in re.findall(r'href="([^"]+)"', page)]
    links = [h for h in links if h == name or h.endswith("/" + name)]
    if not links:
        sys.exit(f"{name} is not listed at {page_url}")
    with urllib.request.urlopen(urllib.parse.urljoin(page_url, links[0]), timeout=300) as r, open(dest, "wb") as f:
        f.write(r.read())
except OSError as exc:  # URLError, timeouts, disk errors
    sys.exit(f"{page_url}: {exc}")
PY
    mv "$SDIST.part" "$SDIST"
  fi
fi
echo "$ME_SHA256  $SDIST" | sha256sum -c --quiet - >/dev/null 2>&1 \
  || die "$SDIST is not the MinkowskiEngine $ME_VERSION release (sha256 differs from $ME_SHA256)"

# --- CUDA or CPU-only
MODE=cuda
if [ -z "${CUDA_HOME:-}" ]; then  # CUDA_PATH, /usr/local/cuda, else where the nvcc on PATH lives
  for c in "${CUDA_PATH:-}" /usr/local/cuda; do
    if [ -n "$c" ] && [ -x "$c/bin/nvcc" ]; then CUDA_HOME=$c; break; fi
  done
  if [ -z "${CUDA_HOME:-}" ] && command -v nvcc >/dev/null; then  # nvcc may be a wrapper script
    CUDA_HOME=$(cd /tmp && nvcc --dryrun -c -x cu /dev/null 2>&1 | sed -n 's/^#\$ TOP=\(.*\)\/bin\/\.\.$/\1/p' | head -1)
  fi
fi
CUDA_HOME=${CUDA_HOME:-}
if [ "$FORCE_CPU" = 1 ]; then
  MODE=cpu
elif [ "$TORCH_CUDA" = none ]; then
  log "torch $TORCH_VERSION is a CPU build: building MinkowskiEngine CPU-only"
  MODE=cpu
elif [ -z "$CUDA_HOME" ] || [ ! -x "$CUDA_HOME/bin/nvcc" ]; then
  log "no CUDA toolkit (nvcc) found${CUDA_HOME:+ at $CUDA_HOME}: building CPU-only (set CUDA_HOME to build the CUDA kernels)"
  MODE=cpu
fi

if [ "$MODE" = cuda ]; then
  NVCC_VERSION=$("$CUDA_HOME/bin/nvcc" --version | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p')
  [ "${NVCC_VERSION%%.*}" = "${TORCH_CUDA%%.*}" ] \
    || die "nvcc $NVCC_VERSION ($CUDA_HOME) and torch's CUDA $TORCH_CUDA differ in major version; point CUDA_HOME at a CUDA ${TORCH_CUDA%%.*}.x toolkit"
  if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
    ARCHS=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | sort -u | paste -sd';' || true)
    [ -n "$ARCHS" ] || ARCHS=$("$PY" -c "import torch
n = torch.cuda.device_count() if torch.cuda.is_available() else 0
print(';'.join(sorted({'%d.%d' % torch.cuda.get_device_capability(i) for i in range(n)})))" 2>/dev/null || true)
    TORCH_CUDA_ARCH_LIST=${ARCHS:-$DEFAULT_ARCHS}
  fi
  export TORCH_CUDA_ARCH_LIST CUDA_HOME

  # A toolkit without the math libraries' headers (cuBLAS, cuSPARSE, cuRAND, cuSOLVER), which
  # torch's CUDA headers include: take them, and link-time names of their libraries, from the
  # pip nvidia-* packages that torch itself runs on.
  EXTRA=$BUILD/cuda-extra
  rm -rf "$EXTRA" && mkdir -p "$EXTRA/include" "$EXTRA/lib"
  "$PY" - "$CUDA_HOME" "$EXTRA" <<'PY'
import glob, importlib.util, os, re, sys
cuda_home, extra = sys.argv[1:]
spec = importlib.util.find_spec("nvidia")
roots = list(spec.submodule_search_locations) if spec and spec.submodule_search_locations else []
toolkit_libs = {os.path.basename(p) for d in ("lib64", "lib", "targets/x86_64-linux/lib")
                for p in glob.glob(os.path.join(cuda_home, d, "*"))}
for root in roots:
    for inc in sorted(glob.glob(os.path.join(root, "*", "include"))):
        for path in sorted(glob.glob(os.path.join(inc, "*"))):
            name = os.path.basename(path)
            dest = os.path.join(extra, "include", name)
            if not os.path.exists(os.path.join(cuda_home, "include", name)) and not os.path.lexists(dest):
                os.symlink(path, dest)
    for lib in sorted(glob.glob(os.path.join(root, "*", "lib"))):
        for path in sorted(glob.glob(os.path.join(lib, "lib*.so.*"))):
            name = re.sub(r"\.so\..*$", ".so", os.path.basename(path))
            dest = os.path.join(extra, "lib", name)
            if name not in toolkit_libs and not os.path.lexists(dest):
                os.symlink(path, dest)
PY
  for h in cublas_v2.h cusparse.h curand.h cusolverDn.h; do
    [ -e "$CUDA_HOME/include/$h" ] || [ -e "$EXTRA/include/$h" ] \
      || die "$h is neither in $CUDA_HOME/include nor in a pip nvidia-* package of $PY; install the toolkit's math libraries or the nvidia-cublas/cusparse/curand/cusolver wheels"
  done
  if [ -n "$(ls -A "$EXTRA/include")" ]; then
    log "headers the toolkit lacks come from the pip nvidia-* packages ($(ls "$EXTRA/include" | grep -E '^(cublas|cusparse|curand|cusolver)' | sed 's/[_.].*//' | sort -u | paste -sd' '))"
  fi
  export CPATH="$EXTRA/include${CPATH:+:$CPATH}"
  export LIBRARY_PATH="$EXTRA/lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
  log "CUDA build: nvcc $NVCC_VERSION ($CUDA_HOME), TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST"
  MODE_FLAG=--force_cuda
else
  MODE_FLAG=--cpu_only
  log "CPU-only build"
fi

shopt -s nullglob
PATCHES=("$ROOT"/patches/minkowskiengine/[0-9][0-9][0-9][0-9]-*.patch)
[ ${#PATCHES[@]} -gt 0 ] || die "no patches in $ROOT/patches/minkowskiengine"
KEY=$( { echo "$ME_SHA256 $PY_VERSION $TORCH_VERSION $MODE ${NVCC_VERSION:-} ${TORCH_CUDA_ARCH_LIST:-} ${ME_BLAS:-}"
         cat "${PATCHES[@]}"; } | sha256sum | cut -c1-16)
CACHED=$CACHE/wheels/$KEY
rm -f "$WHEEL_DIR"/[Mm]inkowski[Ee]ngine-*.whl
CACHED_WHEELS=("$CACHED"/[Mm]inkowski[Ee]ngine-*.whl)
if [ "${ME_REBUILD:-0}" != 1 ] && [ ${#CACHED_WHEELS[@]} -eq 1 ]; then
  cp "${CACHED_WHEELS[0]}" "$WHEEL_DIR"/
  log "using the wheel built before for this configuration ($CACHED; ME_REBUILD=1 builds anew)"
else
  # --- unpack and patch
  SRC=$BUILD/src
  rm -rf "$SRC" && mkdir -p "$SRC"
  tar -xzf "$SDIST" --no-same-owner --strip-components=1 -C "$SRC"
  for p in "${PATCHES[@]}"; do
    patch -p1 --batch --forward --quiet -d "$SRC" <"$p" >/dev/null \
      || die "patch $(basename "$p") does not apply to MinkowskiEngine $ME_VERSION"
  done
  log "applied ${#PATCHES[@]} patches"

  # --- build the wheel
  "$PY" -c "import setuptools.command.bdist_wheel" 2>/dev/null || "$PY" -c "import wheel" 2>/dev/null \
    || die "'$PY' can build no wheels: install 'wheel' (or setuptools>=70.1) into it"
  "$PY" -c "from torch.utils.cpp_extension import is_ninja_available as n; raise SystemExit(not n())" 2>/dev/null \
    || log "warning: ninja not found, compiling one file at a time (pip install ninja)"
  export MAX_JOBS=${MAX_JOBS:-$(nproc)}
  log "building (MAX_JOBS=$MAX_JOBS; log in $BUILD/build.log)"
  start=$(date +%s)
  if ! (cd "$SRC" && "$PY" setup.py bdist_wheel --dist-dir "$WHEEL_DIR" $MODE_FLAG ${ME_BLAS:+--blas=$ME_BLAS}) >"$BUILD/build.log" 2>&1; then
    grep -E "error|Error|FAILED" "$BUILD/build.log" | head -40 >&2 || tail -n 20 "$BUILD/build.log" >&2
    die "MinkowskiEngine build failed; full log: $BUILD/build.log"
  fi
  log "built in $(( $(date +%s) - start )) s"
fi
WHEELS=("$WHEEL_DIR"/[Mm]inkowski[Ee]ngine-*.whl)  # setuptools>=75 lower-cases the name
[ ${#WHEELS[@]} -eq 1 ] || die "expected one wheel in $WHEEL_DIR, found ${#WHEELS[@]}"
WHEEL=${WHEELS[0]}
if [ ${#CACHED_WHEELS[@]} -ne 1 ] || [ "${ME_REBUILD:-0}" = 1 ]; then
  rm -rf "$CACHED" && mkdir -p "$CACHED" && cp "$WHEEL" "$CACHED"/
fi
log "wheel: $WHEEL"

# --- check it imports (from a scratch folder when building only), then install
check_import() {  # $1: extra sys.path entry or ""
  PYTHONPATH="$1${PYTHONPATH:+:$PYTHONPATH}" "$PY" - "$MODE" <<'PY'
import sys, warnings
warnings.filterwarnings("ignore", message=".*compiled with CPU_ONLY.*")
import MinkowskiEngine as ME
import MinkowskiEngineBackend._C as C
cuda = ME.is_cuda_available()
print(f"[setup-gpu] MinkowskiEngine {ME.__version__} from {ME.__file__}: "
      f"{'CUDA ' + str(C.cuda_version()) if cuda else 'CPU-only'}")
if cuda != (sys.argv[1] == "cuda"):
    sys.exit(f"[setup-gpu] error: expected a {sys.argv[1]} build")
PY
}
if [ "$BUILD_ONLY" = 1 ]; then
  SCRATCH=$(mktemp -d)
  trap 'rm -rf "$SCRATCH"' EXIT
  "$PY" -m zipfile -e "$WHEEL" "$SCRATCH"
  check_import "$SCRATCH" || die "the built wheel does not import"
  log "build only: $WHEEL (not installed)"
else
  "$PY" -m pip install -q --no-deps --force-reinstall "$WHEEL"
  check_import "" || die "the installed MinkowskiEngine does not import"
  log "installed into $("$PY" -c 'import sys; print(sys.prefix)')"
fi
