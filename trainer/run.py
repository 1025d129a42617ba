"""The state of one training run: built from the config (models, data, loss context, optimisers,
provenance) and, with --resume, restored from its last checkpoint; the loop and its hooks read
and advance it."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import DataLoader

from trainer import checkpoint, distributed, provenance
from trainer.config import TrainConfig, from_dict
from trainer.data import (
    EpochBatchSampler,
    SceneDataset,
    make_loader,
    resolve_scenes,
    training_scenes,
)
from trainer.evaluation import eval_loader, store_class_groups
from trainer.modelset import Models, build_models, pick_device
from trainer.optim import Optimizers, build_optimizers
from trainer.runlog import RunLog
from trainer.schedule import ActiveTerms
from trainer.terms import LossContext, loss_context, term_weights


@dataclass
class Run:
    """What the loop and its hooks share: the built parts, the counters and the current records."""

    cfg: TrainConfig
    ctx: distributed.Context
    models: Models
    optimizers: Optimizers
    loader: DataLoader
    sampler: EpochBatchSampler
    val: DataLoader | None                 # evaluation loader; None: no evaluation
    groups: dict[str, list[int]]           # label ids per class group (mIoU per group)
    losses: LossContext                    # run-level quantities every loss term reads
    weights: dict[str, float]              # term weights in the step loss
    prov: dict[str, Any]                   # the run's provenance record
    start: int = 1                         # first epoch this call trains
    step: int = 0                          # optimiser steps so far
    best: float = -math.inf                # best validation mIoU so far
    epoch: int = 0
    terms: ActiveTerms | None = None       # the current epoch's loss terms
    values: dict[str, float] = field(default_factory=dict)  # the last step's term values
    loss: float = math.nan                 # the last step's loss (mean of `values`)
    record: dict[str, Any] = field(default_factory=dict)    # the current epoch's record
    improved: bool = False                 # the current epoch's evaluation beat `best`
    log: RunLog | None = None              # open while the loop runs (trainer/hooks.py)


def build_run(cfg: TrainConfig, resume: bool, origin: Mapping[str, Any] | None,
              allow_code_change: bool) -> Run:
    """A run from the config, seeded by it; with `resume`, its last checkpoint restored."""
    last_path = cfg.run_dir / "last.pt"
    if last_path.exists() and not resume:
        raise checkpoint.CheckpointError(
            f"{cfg.run_dir} already holds a run: pass --resume to continue it or choose another name")
    ctx = distributed.setup(pick_device(cfg.device))
    models = build_models(cfg, ctx.device)
    distributed.broadcast_state(ctx, (models.encoder, models.correlation))
    num_classes = len(models.class_names)
    train_scenes = training_scenes(cfg)
    train_set = SceneDataset(cfg, train_scenes, num_classes, train=True)
    loader, sampler = make_loader(cfg, train_set, shuffle=True, loop=cfg.loop, rank=ctx.rank,
                                  world=ctx.world)
    val, val_scenes = None, []
    if cfg.eval_every:
        val_scenes = resolve_scenes(cfg.val_split, cfg.store_root, "scenes", "val_split")
        val = eval_loader(cfg, ctx.shard(val_scenes), num_classes)
    prov = provenance.record(cfg, train_scenes, val_scenes, origin)
    groups = store_class_groups(cfg)
    losses = loss_context(cfg, train_set.label_counts, ctx.device)
    optimizers = build_optimizers(cfg, models, cfg.epochs * len(loader))
    run = Run(cfg, ctx, models, optimizers, loader, sampler, val, groups, losses, term_weights(cfg), prov)
    if resume:
        restore(run, allow_code_change)
    return run


def restore(run: Run, allow_code_change: bool) -> None:
    """Continue `run` from its last checkpoint, after checking the model, the config and the
    provenance (stores, scenes and, unless `allow_code_change`, the code) match it."""
    path = run.cfg.run_dir / "last.pt"
    state = checkpoint.load(path)
    checkpoint.check_signature(path, state["signature"], run.models.signature)
    checkpoint.check_resumable(path, from_dict(state["config"]).to_dict(), run.cfg.to_dict())
    if problem := provenance.resume_problem(state.get("provenance"), run.prov, allow_code_change):
        raise checkpoint.CheckpointError(f"cannot resume {path}: {problem}")
    run.prov = provenance.resumed(state.get("provenance"), run.prov, state["epoch"], allow_code_change)
    run.models.encoder.load_state_dict(state["encoder"])
    run.models.correlation.load_state_dict(state["correlation"])
    run.optimizers.load_state_dict(state["optim"])
    checkpoint.set_rng_state(state["rng"])
    run.start, run.step, run.best = state["epoch"] + 1, state["step"], state["best_miou"]


def checkpoint_state(run: Run) -> dict[str, Any]:
    """The checkpoint of `run` after its current epoch (checkpoint.FORMAT's keys)."""
    models = run.models
    return {
        "format": checkpoint.FORMAT, "signature": models.signature, "config": run.cfg.to_dict(),
        "provenance": run.prov,
        "class_names": models.class_names, "text": models.text.cpu(),
        "epoch": run.epoch, "step": run.step, "best_miou": run.best,
        "encoder": models.encoder.state_dict(), "correlation": models.correlation.state_dict(),
        "optim": run.optimizers.state_dict(), "rng": checkpoint.rng_state(),
    }
