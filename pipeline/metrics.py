"""Confusion matrix, per-class IoU and mIoU at full point resolution.

Ground-truth label -1 (and any label outside 0..C-1) is ignored. A prediction of -1 (a point
that got no label, e.g. one seen in no frame) is a miss: it is counted per ground-truth class in
`unlabelled` and enters the IoU as a false negative. A class that appears neither in the ground
truth nor in the predictions has an undefined IoU (0/0): it is reported as NaN and left out of
the mean, so evaluating a subset of scenes does not count absent classes as 0. Long-tail class
sets also report the mean over each group of classes (ScanNet200's head, common and tail).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
    """i64[C, C] counts with rows = ground truth, columns = prediction (pred -1 left out)."""
    pred = np.asarray(pred, dtype=np.int64)
    gt = np.asarray(gt, dtype=np.int64)
    if pred.shape != gt.shape:
        raise ValueError(f"{pred.size} predictions for {gt.size} ground-truth labels")
    if pred.size and (pred.min() < -1 or pred.max() >= num_classes):
        raise ValueError(f"predictions must be in -1..{num_classes - 1}")
    valid = (gt >= 0) & (gt < num_classes) & (pred >= 0)
    index = gt[valid] * num_classes + pred[valid]
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def unlabelled(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
    """i64[C]: points of each ground-truth class whose prediction is -1 (no label)."""
    gt = np.asarray(gt, dtype=np.int64)
    missed = (np.asarray(pred) < 0) & (gt >= 0) & (gt < num_classes)
    return np.bincount(gt[missed], minlength=num_classes)


def iou_per_class(confusion: np.ndarray, missed: np.ndarray | None = None) -> np.ndarray:
    """f64[C]: TP / (TP + FP + FN), NaN where the class is absent from gt and predictions.

    `missed` (from `unlabelled`) adds ground-truth points that got no prediction to FN.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - tp
    if missed is not None:
        union = union + np.asarray(missed, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(confusion: np.ndarray, missed: np.ndarray | None = None) -> float:
    """Mean IoU over classes present in gt or predictions (NaN if none is)."""
    iou = iou_per_class(confusion, missed)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def miou_by_group(iou: np.ndarray, groups: Mapping[str, Sequence[int]]) -> dict[str, float]:
    """``miou_<group>``: mean of the defined IoUs (from `iou_per_class`) of each group's class ids,
    NaN for a group none of whose classes is present."""
    iou = np.asarray(iou, dtype=np.float64)
    out = {}
    for name, ids in groups.items():
        part = iou[np.asarray(ids, dtype=np.int64)]
        out[f"miou_{name}"] = float(np.nanmean(part)) if np.isfinite(part).any() else float("nan")
    return out
