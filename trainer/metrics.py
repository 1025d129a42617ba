"""Confusion matrix, per-class IoU and mIoU at full point resolution.

Ground-truth label -1 (and any label outside 0..C-1) is ignored. A class that appears neither
in the ground truth nor in the predictions has an undefined IoU (0/0): it is reported as NaN
and left out of the mean, so evaluating a subset of scenes does not count absent classes as 0.
"""
from __future__ import annotations

import numpy as np


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
    """i64[C, C] counts with rows = ground truth, columns = prediction."""
    pred = np.asarray(pred, dtype=np.int64)
    gt = np.asarray(gt, dtype=np.int64)
    valid = (gt >= 0) & (gt < num_classes)
    index = gt[valid] * num_classes + pred[valid]
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """f64[C]: TP / (TP + FP + FN), NaN where the class is absent from gt and predictions."""
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def mean_iou(confusion: np.ndarray) -> float:
    """Mean IoU over classes present in gt or predictions (NaN if none is)."""
    iou = iou_per_class(confusion)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
