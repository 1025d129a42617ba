#!/usr/bin/env bash
# The main job on the embedded synthetic dataset: generate, preprocess (and, once present, train and evaluate).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pipeline.cli run --dataset synthetic-scannet --workers 2 "$@"
