"""Evaluation: per-point predictions (Eq. 1 logits), confusion matrices over a loader and mIoU,
per class, per group and over the points some frame saw."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from pipeline.labelsets import class_groups, text_class_set
from pipeline.metrics import confusion_matrix, iou_per_class, mean_iou, miou_by_group
from trainer.config import TrainConfig
from trainer.data import Batch, SceneDataset, make_loader, resolve_scenes
from trainer.modelset import Models, build_models, load_encoder, pick_device
from trainer.runlog import RunLog


def point_classes(features: torch.Tensor, text: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """i64[N] predicted class per point: argmax <f, T> of its voxel's feature (Eq. 1 logits)."""
    return (features @ text.t()).argmax(1)[inverse]


@torch.no_grad()
def predict_points(models: Models, batch: Batch) -> torch.Tensor:
    """i64[N] predicted class per point of a batch by the 3D model (`point_classes`)."""
    return point_classes(models.encoder(batch.coords, batch.feats), models.text, batch.inverse)


def evaluate_loader(models: Models, loader, device: torch.device,
                    progress: RunLog | None = None) -> dict[str, np.ndarray]:
    """Confusion matrices over every scene of an evaluation loader, at point resolution: `points`
    (all points), `observed` (points with at least one pair) and `unmarked` (i64[1], scenes whose
    pairs are unknown: `observed` is incomplete unless it is 0). Same keys in every process."""
    models.train(False)
    num_classes = len(models.class_names)
    confusion = {name: np.zeros((num_classes, num_classes), dtype=np.int64) for name in ("points", "observed")}
    confusion["unmarked"] = np.zeros(1, dtype=np.int64)
    task = progress.progress.add_task("eval", total=len(loader), loss=math.nan) if progress else None
    for batch in loader:
        batch = batch.to(device)
        pred = predict_points(models, batch).cpu().numpy()
        gt = batch.point_labels.cpu().numpy()
        confusion["points"] += confusion_matrix(pred, gt, num_classes)
        if batch.observed is None:
            confusion["unmarked"] += len(batch.scenes)
        else:
            seen = batch.observed.cpu().numpy()
            confusion["observed"] += confusion_matrix(pred[seen], gt[seen], num_classes)
        if progress:
            progress.progress.advance(task)
    if progress:
        progress.progress.remove_task(task)
    return confusion


def eval_loader(cfg: TrainConfig, scenes: list[str], num_classes: int):
    """DataLoader over evaluation scenes (no augmentation, one pass, fixed order)."""
    loader, _ = make_loader(cfg, SceneDataset(cfg, scenes, num_classes, train=False), shuffle=False)
    return loader


def store_class_groups(cfg: TrainConfig) -> dict[str, list[int]]:
    """Label ids per split of the store's class set (ScanNet200's head, common, tail; else none)."""
    class_set = text_class_set(cfg.store_root, cfg.text_stage)
    return class_groups(class_set) if class_set else {}


def iou_record(confusions: dict[str, np.ndarray], class_names: list[str],
               groups: dict[str, list[int]] | None = None) -> dict[str, Any]:
    """mIoU and per-class IoU (None where undefined) for logging: `miou`/`iou` over all points and,
    when every scene marked them, `miou_observed`/`iou_observed` over the points with a pair; with
    `groups`, `miou_<group>` over all points (None for a group without a present class)."""
    parts = {"": confusions["points"]}
    if not confusions["unmarked"].any():
        parts["_observed"] = confusions["observed"]
    record: dict[str, Any] = {}
    for suffix, confusion in parts.items():
        iou = iou_per_class(confusion)
        record[f"miou{suffix}"] = mean_iou(confusion)
        record[f"iou{suffix}"] = {n: (None if np.isnan(v) else float(v)) for n, v in zip(class_names, iou, strict=True)}
    for key, value in miou_by_group(iou_per_class(confusions["points"]), groups or {}).items():
        record[key] = None if np.isnan(value) else value
    return record


def evaluate(cfg: TrainConfig, checkpoint_path: Path, console: Console | None = None) -> dict[str, Any]:
    """mIoU and per-class IoU of a checkpoint's 3D model on cfg.val_split (store class set), also
    over the points with at least one pair when the store has the pairs."""
    device = pick_device(cfg.device)
    models = build_models(cfg, device)
    load_encoder(models, checkpoint_path)
    scenes = resolve_scenes(cfg.val_split, cfg.store_root, "scenes", "val_split")
    confusions = evaluate_loader(models, eval_loader(cfg, scenes, len(models.class_names)), device)
    return {"checkpoint": str(checkpoint_path), "scenes": len(scenes),
            **iou_record(confusions, models.class_names, store_class_groups(cfg)),
            "confusion": confusions["points"].tolist(),
            **({} if confusions["unmarked"].any() else {"confusion_observed": confusions["observed"].tolist()})}
