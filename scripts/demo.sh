#!/usr/bin/env bash
# make demo: synthetic ScanNet rooms -> preprocessing with the simulated VLM -> MaskCLIP-3D score,
# CLIP2Scene-style baseline (Table 2 row I), full method (row V) and hicl-plus trained on a short
# CPU schedule -> one comparison table -> the paper's Fig. 3, 4, 6 and 7 as PNG files in the run
# folder. Reruns reuse the generated rooms and every cached stage.
set -euo pipefail
# One thread a process (the pipeline still runs two worker processes): float sums then come out in
# one order, so a rerun, or another clone on the same kind of CPU, prints the same numbers.
export OMP_NUM_THREADS=1
cd "$(dirname "$0")/.."
BIN=.venv/bin
RAW=data/raw/demo
STORES=data/stores/demo
RUNS=data/runs/demo
# The synthetic-scannet preset's short CPU schedule (0.1 m voxels, batch 4, 10 epochs x 2 passes,
# phase boundaries scaled from the paper's 120 epochs), pointed at the demo's rooms and stores;
# validated after every epoch for Fig. 6 (4 rooms, a few seconds each).
COMMON=(--set runs_root="$RUNS" --set store_root="$STORES"
        --set train_split="$RAW/scannetv2_train.txt" --set val_split="$RAW/scannetv2_val.txt"
        --set eval_every=1)

start=$(date +%s)
# features (MaskCLIP) is not upstream of the simulated pseudo-labels: run what the trainer reads.
$BIN/hicl-pipeline run --dataset synthetic-scannet --data-root "$RAW" --store-root "$STORES" \
  --generate 16 --stages text,refine --workers 2
rm -rf "$RUNS"
mkdir -p "$RUNS"
$BIN/hicl-pipeline eval --dataset synthetic-scannet --data-root "$RAW" --store-root "$STORES" \
  --stage pseudo --split val --output "$RUNS/maskclip3d.json"
# Each column is the schedule composed with a method base (trainer/presets/base/method/).
$BIN/hicl-train fit --config synthetic-scannet,base/method/baseline "${COMMON[@]}" --set name=baseline
$BIN/hicl-train eval --checkpoint "$RUNS/baseline/last.pt" --output "$RUNS/baseline.json"
$BIN/hicl-train fit --config synthetic-scannet "${COMMON[@]}" --set name=full
$BIN/hicl-train eval --checkpoint "$RUNS/full/last.pt" --output "$RUNS/full.json"
# hicl-plus (beyond the paper): the full method with its method base.
$BIN/hicl-train fit --config synthetic-scannet,base/method/hicl-plus "${COMMON[@]}" --set name=plus
$BIN/hicl-train eval --checkpoint "$RUNS/plus/last.pt" --output "$RUNS/plus.json"
$BIN/python scripts/demo_table.py "$RUNS" --json benchmarks/results/demo.json --started "$start"
# Fig. 3 (refinement), Fig. 4 (predictions), Fig. 6 (mIoU per epoch), Fig. 7 (t-SNE of features)
figures=$($BIN/hicl-train figures --baseline "$RUNS/baseline/last.pt" --full "$RUNS/full/last.pt" --out "$RUNS" \
  --reference "$RUNS/maskclip3d.json")
echo "demo finished in $(( $(date +%s) - start )) s; run folders, metrics and checkpoints in $RUNS"
echo "$figures"
echo "to look at the validation rooms in a browser (layers, per-class IoU, frames, text queries):"
echo "  $BIN/hicl-train view --checkpoint $RUNS/full/best.pt"
