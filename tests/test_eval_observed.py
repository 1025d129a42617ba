"""Evaluation restricted to observed points: the points with at least one pair in the `pairs` store.

A procedural room whose pairs cover only its first half of points: the observed confusion must
count exactly those points, the full one all of them; without a pairs store the observed metrics
are left out instead of being computed over nothing. A one-epoch fit logs both to metrics.jsonl,
and `evaluate` (the `eval` command) returns both.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from pipeline import contract, store
from pipeline.metrics import confusion_matrix
from trainer.config import load_config
from trainer.engine import (
    build_models,
    eval_loader,
    evaluate,
    evaluate_loader,
    fit,
    iou_record,
    predict_points,
)
from trainer.synthetic import FINGERPRINT, write_synthetic_store

EMBED_DIM = 16


@pytest.fixture
def half_paired(tmp_path):
    """One room whose pairs name only the first half of its points; its config and scene."""
    root = tmp_path / "store"
    (scene,) = write_synthetic_store(root, num_scenes=1, seed=4, embed_dim=EMBED_DIM, density=120.0,
                                     size=(2.0, 2.0, 1.5))
    n = len(store.read_arrays(str(root), "scenes", scene, ["labels"])["labels"])
    half = n // 2
    store.write_scene(str(root), "pairs", scene, {
        "point": np.repeat(np.arange(half, dtype=np.int32), 2), "pixel": np.zeros((2 * half, 2), np.int16),
        "frame_offsets": np.array([0, half, 2 * half], np.int64)}, FINGERPRINT, declared=contract.declared("pairs"))
    label = np.repeat(store.read_arrays(str(root), "pseudo", scene, ["label"])["label"][:half], 2)
    store.write_scene(str(root), "pseudo", scene, {"label": label, "confidence": np.ones(len(label), np.float16)},
                      FINGERPRINT, declared=contract.declared("pseudo"))
    store.write_scene(str(root), "refine", scene, {"label": label}, FINGERPRINT, declared=contract.declared("refine"))
    cfg = load_config(None, [f"store_root={root}", f"runs_root={tmp_path / 'runs'}", "name=obs",
                             "voxel_size=0.15", "num_workers=0", "device=cpu", "progress=false",
                             "train_split=all", "val_split=all", "batch_size=1", "epochs=1",
                             "intra_scene=false", "inter_scene=false", "feedback=false"])
    return {"root": root, "cfg": cfg, "scene": scene, "points": n, "half": half}


def test_observed_confusion_counts_exactly_the_paired_points(half_paired):
    cfg = half_paired["cfg"]
    models = build_models(cfg, torch.device("cpu"))
    num_classes = len(models.class_names)
    confusions = evaluate_loader(models, eval_loader(cfg, [half_paired["scene"]], num_classes), torch.device("cpu"))
    (batch,) = list(eval_loader(cfg, [half_paired["scene"]], num_classes))
    pred = predict_points(models, batch).numpy()
    gt = batch.point_labels.numpy()
    half = half_paired["half"]
    assert confusions["unmarked"].tolist() == [0]
    assert confusions["points"].sum() == half_paired["points"]
    np.testing.assert_array_equal(confusions["observed"], confusion_matrix(pred[:half], gt[:half], num_classes))
    record = iou_record(confusions, models.class_names)
    assert list(record) == ["miou", "iou", "miou_observed", "iou_observed"]
    assert set(record["iou_observed"]) == set(models.class_names)


def test_without_pairs_the_observed_metrics_are_left_out(half_paired):
    cfg = half_paired["cfg"]
    shutil.rmtree(half_paired["root"] / "pairs.zarr")
    models = build_models(cfg, torch.device("cpu"))
    confusions = evaluate_loader(models, eval_loader(cfg, [half_paired["scene"]], len(models.class_names)),
                                 torch.device("cpu"))
    assert confusions["unmarked"].tolist() == [1]
    assert confusions["points"].sum() == half_paired["points"]
    assert list(iou_record(confusions, models.class_names)) == ["miou", "iou"]


def test_fit_and_eval_report_observed_miou_next_to_miou(half_paired):
    cfg = half_paired["cfg"]
    summary = fit(cfg)
    (epoch,) = [json.loads(line) for line in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()
                if json.loads(line)["kind"] == "epoch"]
    keys = list(epoch)
    assert keys.index("miou_observed") == keys.index("iou") + 1 and "iou_observed" in epoch
    assert summary["last"]["miou_observed"] == epoch["miou_observed"]
    result = evaluate(cfg, cfg.run_dir / "best.pt")
    assert result["miou_observed"] == pytest.approx(epoch["miou_observed"], abs=1e-6)
    assert np.sum(result["confusion_observed"]) == half_paired["half"]
