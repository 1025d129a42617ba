"""The trainer's entry points under one import path: models, optimisers, the step, evaluation and
`fit` (each defined in the module of its job)."""
from __future__ import annotations

from trainer.evaluation import (
    eval_loader,
    evaluate,
    evaluate_loader,
    iou_record,
    predict_points,
    store_class_groups,
)
from trainer.loop import fit
from trainer.modelset import Models, build_models, load_encoder, pick_device, seed_everything
from trainer.optim import Optimizers, build_optimizers
from trainer.step import compute_losses, element_counts, step_loss, train_step

__all__ = ["Models", "Optimizers", "build_models", "build_optimizers", "compute_losses", "element_counts",
           "eval_loader", "evaluate", "evaluate_loader", "fit", "iou_record", "load_encoder", "pick_device",
           "predict_points", "seed_everything", "step_loss", "store_class_groups", "train_step"]
