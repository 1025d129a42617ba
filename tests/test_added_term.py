"""A loss term and a hook are added from this file alone: a label-smoothed Eq. 1 row joins the
loss table and a hook records every step's terms, and a two-epoch run trains with both; no
trainer module is edited."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from trainer import terms
from trainer.config import from_dict
from trainer.engine import fit
from trainer.hooks import Hook, default_hooks
from trainer.losses import adjusted, class_logits
from trainer.run import Run
from trainer.terms import TERMS, LossTerm, TermInputs

SMOOTHING = 0.1


def smoothed_cross_modal_term(x: TermInputs) -> torch.Tensor:  # Eq. 1, label-smoothed
    """Eq. 1 over every pair with label smoothing, on the run's logit offsets."""
    logits = adjusted(class_logits(x.features, x.text), x.run.logit_offset)
    return F.cross_entropy(logits[x.batch.pair_voxel], x.batch.pair_label, label_smoothing=SMOOTHING)


SMOOTHED = LossTerm("smoothed_cross_modal", "Eq. 1", 1, "pair_voxel", None, smoothed_cross_modal_term,
                    reads=("pair_voxel", "pair_label"), config=("logit_adjustment",))


class StepTerms(Hook):
    """Each step's term values and loss, as the loop hands them to its hooks."""

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []

    def after_step(self, run: Run) -> None:
        self.steps.append({**run.values, "loss": run.loss})


def test_a_term_and_a_hook_from_this_file_train_two_epochs(beyond_store, tmp_path, monkeypatch):
    from test_same_numbers import tiny_config

    root, scenes = beyond_store
    monkeypatch.setattr(terms, "TERMS", (*TERMS[:1], SMOOTHED, *TERMS[1:]))
    cfg = from_dict(tiny_config(root, scenes, tmp_path, "smoothed", logit_adjustment=0.5))
    recorder = StepTerms()
    summary = fit(cfg, hooks=[*default_hooks(), recorder])
    assert summary["epoch"] == 2 and 0.0 <= summary["best_miou"] <= 1.0
    records = [json.loads(line) for line in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["terms"] for r in epochs] == [
        ["cross_modal", "smoothed_cross_modal"],
        ["cross_modal", "smoothed_cross_modal", "intra_scene", "inter_scene", "feedback"]]
    train = [r for r in records if r["kind"] == "train"]
    assert len(recorder.steps) == len(train) == 4
    for step, record in zip(recorder.steps, train, strict=True):
        assert step == {k: record[k] for k in step}  # the hook saw what the log wrote
        smoothed, plain = step["smoothed_cross_modal"], step["cross_modal"]
        assert math.isfinite(smoothed) and smoothed != plain  # its own term, on the same pairs
        terms_only = {k: v for k, v in step.items() if k != "loss"}
        assert step["loss"] == pytest.approx(sum(terms_only.values()) / len(terms_only))
