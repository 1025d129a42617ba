"""MaskCLIP-3D evaluation (the MaskCLIP row of the paper's Table 1): pair labels voted onto points.

Every point takes the majority label of its pairs (pseudo-labels, or refined ones) and is scored
against ground truth at full point resolution; points seen in no frame count as unlabelled
predictions (-1), i.e. as misses of their ground-truth class. Ground truth is in the class set the
text stage embedded (`pipeline.labelsets`), so ScanNet200 is scored from the same scenes store.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline import store
from pipeline.labelsets import class_groups, read_eval_labels, text_class_set
from pipeline.metrics import confusion_matrix, iou_per_class, mean_iou, miou_by_group, unlabelled


def point_majority(labels_per_pair: np.ndarray, point_idx: np.ndarray, num_points: int,
                   num_classes: int) -> np.ndarray:
    """Most frequent pair label per point, i16[N]; -1 for unpaired points, ties to the lowest class."""
    labels = np.asarray(labels_per_pair).astype(np.int64)
    points = np.asarray(point_idx).astype(np.int64)
    if labels.shape != points.shape:
        raise ValueError(f"{labels.shape[0]} labels for {points.shape[0]} point indices")
    if labels.size and (labels.max() >= num_classes or points.max() >= num_points):
        raise ValueError("a label or point index is out of range")
    votes = np.bincount(points * num_classes + labels, minlength=num_points * num_classes)
    votes = votes.reshape(num_points, num_classes)
    winner = votes.argmax(axis=1).astype(np.int16)  # argmax returns the first (lowest) maximum
    winner[votes.sum(axis=1) == 0] = -1
    return winner


def voted_point_labels(store_root: str, stage: str, scene: str, num_points: int, num_classes: int
                       ) -> np.ndarray:
    """i16[N]: each point's majority pair label of `stage` (pseudo, refine or vote), -1 if unpaired."""
    point = store.read_arrays(store_root, "pairs", scene, ["point"])["point"].astype(np.int64)
    label = store.read_arrays(store_root, stage, scene, ["label"])["label"].astype(np.int64)
    return point_majority(label, point, num_points, num_classes)


def score_scenes(store_root: str, stage: str, scenes: Sequence[str], num_classes: int,
                 text_stage: str = "text") -> dict[str, Any]:
    """Point-level confusion of the majority vote of `stage`'s pair labels, the ground-truth
    points left without a label per class, and the pair-level confusion; ground truth in the
    class set of `text_stage`."""
    points_cm = np.zeros((num_classes, num_classes), np.int64)
    missed = np.zeros(num_classes, np.int64)
    pairs_cm = np.zeros((num_classes, num_classes), np.int64)
    class_set = text_class_set(store_root, text_stage)
    for scene in scenes:
        gt = read_eval_labels(store_root, scene, class_set).astype(np.int64)
        point = store.read_arrays(store_root, "pairs", scene, ["point"])["point"].astype(np.int64)
        label = store.read_arrays(store_root, stage, scene, ["label"])["label"].astype(np.int64)
        voted = point_majority(label, point, len(gt), num_classes)
        points_cm += confusion_matrix(voted, gt, num_classes)
        missed += unlabelled(voted, gt, num_classes)
        pairs_cm += confusion_matrix(label, gt[point], num_classes)
    return {"points": points_cm, "missed": missed, "pairs": pairs_cm}


def summary(scores: dict[str, Any], class_names: Sequence[str], class_set: str | None) -> dict[str, Any]:
    """mIoU (and ``miou_head``/``_common``/``_tail`` for a class set with such a split), per-class
    IoU (None where undefined) and pair accuracy, overall and per class, of `score_scenes`' result."""
    iou = iou_per_class(scores["points"], scores["missed"])
    pairs = scores["pairs"]
    totals = pairs.sum(1)
    accuracy = np.diag(pairs) / np.maximum(totals, 1)
    return {
        "class_set": class_set,
        "miou": mean_iou(scores["points"], scores["missed"]),
        **miou_by_group(iou, class_groups(class_set) if class_set else {}),
        "iou": {n: None if np.isnan(v) else float(v) for n, v in zip(class_names, iou, strict=True)},
        "pair_accuracy": float(np.trace(pairs) / max(pairs.sum(), 1)),
        "pair_accuracy_per_class": {n: float(a) for n, a, t in zip(class_names, accuracy, totals, strict=True)
                                    if t},
    }
