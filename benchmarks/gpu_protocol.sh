#!/usr/bin/env bash
# Table 2 rows I, II and V on one CUDA GPU, in one command: builds MinkowskiEngine 0.5.4 from a
# local sdist with the project's patches (scripts/setup_gpu.sh; cached after the first build),
# then trains the three rows at once on the GPU at 0.05 m voxels, batch 8, 84 epochs of the 96
# training rooms (12 steps an epoch: 1,008 steps a run), seed 0, and writes
# benchmarks/results/table2-gpu.json and its Fig. 6 beside it. Budget: 9 minutes in all on an H200.
#
# usage: ME_SDIST=/path/MinkowskiEngine-0.5.4.tar.gz benchmarks/gpu_protocol.sh
# needs: .venv from `make setup` with a CUDA build of torch, nvcc, and the benchmark world's
#   stores (data/stores/world-s0-96+32-n1, made once by `make bench-labels` or `make bench-quality`;
#   without them bench_quality.py generates and preprocesses the world first, which takes longer
#   than the budget).
# environment (for a smoke run on a CPU machine): DEVICE (cuda), EPOCHS (84), SEEDS (0),
#   OUT (benchmarks/results/table2-gpu.json), ARGS (more bench_quality.py flags, e.g. --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
DEVICE=${DEVICE:-cuda}
START=$(date +%s)

die() { echo "error: $*" >&2; exit 1; }
[ -x "$PY" ] || die "$PY not found: run 'make setup' first"
if [ "$DEVICE" = cuda ]; then
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || die "no CUDA device visible to $PY (torch $("$PY" -c 'import torch; print(torch.__version__)'))"
  PYTHON=$PY bash scripts/setup_gpu.sh
fi
BUILT=$(( $(date +%s) - START ))

# shellcheck disable=SC2086
"$PY" benchmarks/bench_quality.py --rows I,II,V --seeds "${SEEDS:-0}" --voxel-size 0.05 --batch-size 8 \
  --device "$DEVICE" --epochs "${EPOCHS:-84}" --jobs 3 --out "${OUT:-benchmarks/results/table2-gpu.json}" ${ARGS:-}
echo "gpu protocol: MinkowskiEngine ready after ${BUILT} s, all done after $(( $(date +%s) - START )) s"
