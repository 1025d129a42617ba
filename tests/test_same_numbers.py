"""The trainer gives the numbers it gave before its split into loop, hooks and loss context: the
same seeds give bit-identical step losses and validation mIoU over a two-epoch run (one epoch of
Eq. 1, one of the full method), with the paper's losses and with every CE modifier on, and the
checkpoint keeps FORMAT 1's keys, so checkpoints saved before the split load."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from trainer import checkpoint
from trainer.config import TrainConfig, from_dict
from trainer.engine import evaluate, fit

# Recorded with the trainer before the split (commit 009e769), OMP_NUM_THREADS=1, on the CPU.
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


def tiny_config(root: Path, scenes: list[str], runs: Path, name: str, **extra) -> TrainConfig:
    """Two epochs on two rooms, one scene a step, evaluation after each epoch."""
    return from_dict({"store_root": str(root), "runs_root": str(runs), "name": name, "dataset": "scannet",
                      "train_split": scenes, "val_split": scenes, "voxel_size": 0.2, "epochs": 2,
                      "phase_epochs": [2, 2], "samples_per_scene": 32, "transformer_depth": 1,
                      "num_workers": 0, "device": "cpu", "progress": False, "batch_size": 1,
                      "eval_every": 1, **extra})


def logged(cfg: TrainConfig) -> dict[str, list[float]]:
    """The run's step losses and per-epoch mIoU, as its metrics file holds them."""
    records = [json.loads(line) for line in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
    return {"losses": [r["loss"] for r in records if r["kind"] == "train"],
            "miou": [r["miou"] for r in records if r["kind"] == "epoch"]}


@pytest.mark.parametrize("name", list(RECORDED))
def test_two_epochs_give_the_recorded_losses_and_miou_bit_for_bit(beyond_store, tmp_path, name):
    root, scenes = beyond_store
    torch.set_num_threads(1)
    cfg = tiny_config(root, scenes, tmp_path, name, **(MODIFIERS if name == "modifiers" else {}))
    fit(cfg)
    assert logged(cfg) == RECORDED[name]
    state = checkpoint.load(cfg.run_dir / "last.pt")
    assert set(state) == FORMAT_1_KEYS and state["format"] == 1
    assert evaluate(cfg, cfg.run_dir / "best.pt")["miou"] == max(RECORDED[name]["miou"])
