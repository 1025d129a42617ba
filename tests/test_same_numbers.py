"""The trainer gives the numbers it gave before its split into loop, hooks and loss context: the
same seeds give bit-identical step losses and validation mIoU over a two-epoch run (one epoch of
Eq. 1, one of the full method), with the paper's losses and with every CE modifier on, and the
checkpoint keeps FORMAT 1's keys, so checkpoints saved before the split load.

Bit for bit needs what the record had: a process started with OMP_NUM_THREADS=1 (OpenMP loops
sum in thread order, and limiting threads after the start does not reach every thread: measured,
two in-process runs under threadpoolctl's limits differ from the third step), and one CPU kind
(its features pick the kernels). So the run is a fresh process, and on another CPU kind only the
first step's loss, a forward of the same weights on the same batch, is held to the record (1e-5).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainer import checkpoint
from trainer.config import TrainConfig, from_dict
from trainer.me_compat import cpu_flags

# Recorded with the trainer before the split (commit 009e769), OMP_NUM_THREADS=1, on CPU kind RECORDED_ON.
RECORDED_ON = "6-207-86d9ce9c-torch2.14.1+cu130"
RECORDED = {
    "paper": {"losses": [1.7110295295715332, 1.349643349647522, 1.0932327210903168, 0.7726226188242435],
              "miou": [0.0508133368861244, 0.06074610048518385]},
    "modifiers": {"losses": [1.6690782308578491, 1.4991289377212524, 1.2295569479465485, 1.1466891188174486],
                  "miou": [0.06355301780931652, 0.05214467262368252]},
}
MODIFIERS = {"class_balance": 0.25, "logit_adjustment": 0.5, "soft_targets": True, "label_source": "pseudo",
             "cross_modal_weight": 2.0}
FORMAT_1_KEYS = {"format", "signature", "config", "provenance", "class_names", "text", "epoch", "step",
                 "best_miou", "encoder", "correlation", "optim", "rng"}


RUN = """
import json, sys
from trainer.config import from_dict
from trainer.engine import evaluate, fit
cfg = from_dict(json.loads(sys.argv[1]))
fit(cfg)
print(json.dumps(evaluate(cfg, cfg.run_dir / "best.pt")["miou"]))
"""


def tiny_config(root: Path, scenes: list[str], runs: Path, name: str, **extra) -> dict:
    """Two epochs on two rooms, one scene a step, evaluation after each epoch."""
    return {"store_root": str(root), "runs_root": str(runs), "name": name, "dataset": "scannet",
            "train_split": scenes, "val_split": scenes, "voxel_size": 0.2, "epochs": 2,
            "phase_epochs": [2, 2], "samples_per_scene": 32, "transformer_depth": 1,
            "num_workers": 0, "device": "cpu", "progress": False, "batch_size": 1,
            "eval_every": 1, **extra}


def fit_and_evaluate(values: dict) -> tuple[TrainConfig, float]:
    """Train `values` in a fresh one-thread process; the config and its best checkpoint's mIoU."""
    done = subprocess.run([sys.executable, "-c", RUN, json.dumps(values)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return from_dict(values), json.loads(done.stdout.splitlines()[-1])


def cpu_kind(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """CPU family and model, a digest of the feature flags, and torch's version: what picks kernels."""
    fields = dict(line.split(":", 1) for line in cpuinfo.read_text().splitlines()[:30] if ":" in line)
    flags = hashlib.sha256(" ".join(sorted(cpu_flags(cpuinfo))).encode()).hexdigest()[:8]
    family, model = (fields.get(key, "?").strip() for key in ("cpu family\t", "model\t\t"))
    return f"{family}-{model}-{flags}-torch{torch.__version__}"


def logged(cfg: TrainConfig) -> dict[str, list[float]]:
    """The run's step losses and per-epoch mIoU, as its metrics file holds them."""
    records = [json.loads(line) for line in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
    return {"losses": [r["loss"] for r in records if r["kind"] == "train"],
            "miou": [r["miou"] for r in records if r["kind"] == "epoch"]}


@pytest.mark.parametrize("name", list(RECORDED))
def test_two_epochs_give_the_recorded_losses_and_miou_bit_for_bit(beyond_store, tmp_path, name):
    root, scenes = beyond_store
    cfg, best_miou = fit_and_evaluate(tiny_config(root, scenes, tmp_path, name,
                                                  **(MODIFIERS if name == "modifiers" else {})))
    numbers = logged(cfg)
    if cpu_kind() == RECORDED_ON:
        assert numbers == RECORDED[name]
    else:
        assert numbers["losses"][0] == pytest.approx(RECORDED[name]["losses"][0], rel=1e-5)
        assert len(numbers["losses"]) == 4 and len(numbers["miou"]) == 2
    state = checkpoint.load(cfg.run_dir / "last.pt")
    assert set(state) == FORMAT_1_KEYS and state["format"] == 1
    assert best_miou == max(numbers["miou"])
