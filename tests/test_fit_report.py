"""benchmarks/fit_report.py: a run scored on its training rooms against ground truth and its labels."""
from __future__ import annotations

import json

import numpy as np
import pytest
from benchmark_module import load_benchmark

from trainer.config import from_dict
from trainer.engine import fit
from trainer.synthetic import CLASS_NAMES, write_synthetic_store


def test_pair_confusion_puts_each_pairs_label_against_the_prediction_at_its_point():
    report = load_benchmark("fit_report")
    pred, gt = np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2])
    out = report.student_confusions(pred, gt, np.array([2, 2, 0]), np.array([1, 2, 0]), 3)
    assert out["points"].trace() == 3 and out["points"][2, 1] == 1
    assert out["pairs"].tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 0]]  # rows: the pair labels


def test_with_labels_equal_to_ground_truth_the_student_scores_the_same_against_both(tmp_path):
    """Pairs cover every point once and pseudo == ground truth: the student's score against its
    labels equals its score against ground truth, and the labels score 100."""
    report = load_benchmark("fit_report")
    scenes = write_synthetic_store(tmp_path / "store", num_scenes=2, seed=5, embed_dim=16, density=60.0,
                                   size=(2.0, 2.0, 1.5))
    cfg = from_dict({"name": "r", "runs_root": str(tmp_path / "runs"), "store_root": str(tmp_path / "store"),
                     "train_split": scenes, "val_split": scenes, "voxel_size": 0.2, "epochs": 1,
                     "batch_size": 2, "intra_set": False, "intra_scene": False, "inter_scene": False,
                     "feedback": False, "num_workers": 0, "device": "cpu", "progress": False})
    fit(cfg)
    classes = list(CLASS_NAMES)
    scored = report.score_run(tmp_path / "runs" / "r", classes)
    present = [c for c, share in scored["shares"]["ground_truth"].items() if share > 0]
    scored_present = report.score_run(tmp_path / "runs" / "r", present)
    assert scored_present["labels_vs_gt"] == pytest.approx(100.0)
    assert scored["student_vs_labels"] == pytest.approx(scored["student_vs_gt"], abs=1e-6)
    assert scored["shares"]["labels"] == scored["shares"]["ground_truth"]
    assert sum(scored["shares"]["predictions"].values()) == pytest.approx(100.0, abs=0.1)
    assert scored["label_stage"] == "pseudo" and scored["train_rooms"] == 2
    assert scored["provenance"]["code"]["commit"] is not None
    best = report.score_run(tmp_path / "runs" / "r", classes, "best.pt")  # the one evaluation's checkpoint
    assert best["epoch"] == scored["epoch"] == 1 and best["student_vs_gt"] == scored["student_vs_gt"]
    metrics = [json.loads(line) for line in (tmp_path / "runs" / "r" / "metrics.jsonl").read_text().splitlines()]
    val = next(100 * r["miou"] for r in metrics if r.get("kind") == "epoch" and "miou" in r)
    assert best["val_miou_at_epoch"] == pytest.approx(val, abs=0.005)
