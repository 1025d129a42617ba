"""MaskCLIP-3D evaluation: pseudo labels voted onto points, scored by confusion matrix and IoU."""
from __future__ import annotations

import numpy as np


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


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int,
                     ignore: int = -1) -> np.ndarray:
    """i64[C,C] counts, rows ground truth, columns prediction; entries where either is `ignore` are dropped."""
    pred = np.asarray(pred).astype(np.int64).ravel()
    gt = np.asarray(gt).astype(np.int64).ravel()
    if pred.shape != gt.shape:
        raise ValueError(f"{pred.shape[0]} predictions for {gt.shape[0]} ground-truth labels")
    keep = (gt != ignore) & (pred != ignore)
    pred, gt = pred[keep], gt[keep]
    if pred.size and (min(pred.min(), gt.min()) < 0 or max(pred.max(), gt.max()) >= num_classes):
        raise ValueError(f"labels must be in 0..{num_classes - 1} or {ignore}")
    return np.bincount(gt * num_classes + pred, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def iou_from_confusion(cm: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-class IoU f64[C] and mIoU; a class absent from both ground truth and prediction is NaN
    and left out of the mean (a class predicted but never present counts, with IoU 0)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    iou = np.full(tp.shape, np.nan)
    np.divide(tp, union, out=iou, where=union > 0)
    present = union > 0
    miou = float(iou[present].mean()) if present.any() else float("nan")
    return iou, miou
