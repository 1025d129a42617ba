"""Training and evaluation: the three-phase schedule, optimisers, checkpoints, resume, logging.

One step (Sec. 3.4): the 3D model's features f_m give Eq. 1 on every pair; in the correlation
phase the sampled voxels' features go through the intra-scene transformer (Eq. 3-4) and/or the
inter-scene transformer (Eq. 7, fed the intra output when both are on), each with its own
Eq. 4 loss; in the feedback phase Eq. 8 pulls f_m of the sampled voxels towards the last
transformer's output. The terms are the rows of the loss table (trainer/terms.py) that the
schedule turns on; the step loss is the mean of the active terms. SGD (3D model + head) and
AdamW (transformers), both with cosine decay over all steps of the run. Under `torchrun` the
processes share each step's batch (trainer/distributed.py).
"""
from __future__ import annotations

import math
import random
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from pipeline.labelsets import class_groups, text_class_set
from pipeline.metrics import confusion_matrix, iou_per_class, mean_iou, miou_by_group
from trainer import checkpoint, distributed, provenance
from trainer.config import ConfigError, TrainConfig, from_dict, save_config
from trainer.data import Batch, SceneDataset, make_loader, read_text, resolve_scenes
from trainer.losses import class_weights, logit_adjustment
from trainer.me_compat import ME
from trainer.models import Correlation, PointEncoder, input_channels, signature
from trainer.runlog import RunLog
from trainer.schedule import ActiveTerms, active_terms
from trainer.terms import TermInputs, element_count, term_named, term_names, term_weights


def pick_device(name: str) -> torch.device:
    """auto|cpu|cuda -> device; CUDA needs both torch and MinkowskiEngine built with it."""
    usable = torch.cuda.is_available() and ME.is_cuda_available()
    if name == "auto":
        if torch.cuda.is_available() and not usable:
            warnings.warn("torch sees a CUDA device but MinkowskiEngine is a CPU-only build: running "
                          "on the CPU (make setup-gpu builds it with CUDA)", stacklevel=2)
        return torch.device("cuda" if usable else "cpu")
    if name == "cuda" and not usable:
        raise ConfigError("device: cuda requested but torch or MinkowskiEngine has no CUDA support")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (model initialisation)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Models:
    """The 3D model, the transformers and the fixed text embeddings, on one device."""

    encoder: PointEncoder
    correlation: Correlation
    text: torch.Tensor          # f32[C, D], fixed
    class_names: list[str]
    signature: dict[str, Any]

    def train(self, mode: bool = True) -> None:
        """Train/eval mode of every module."""
        self.encoder.train(mode)
        self.correlation.train(mode)


def build_models(cfg: TrainConfig, device: torch.device, text: np.ndarray | None = None,
                 class_names: list[str] | None = None) -> Models:
    """Models seeded by cfg.seed; text embeddings from the store unless given."""
    if text is None:
        text, class_names = read_text(cfg.store_root, cfg.classes)
    seed_everything(cfg.seed)
    dim = text.shape[1]
    encoder = PointEncoder(input_channels(cfg), dim, cfg.backbone).to(device)
    correlation = Correlation(cfg, dim).to(device)
    return Models(encoder, correlation, torch.from_numpy(np.asarray(text, np.float32)).to(device),
                  list(class_names), signature(cfg, dim, len(text)))


def compute_losses(models: Models, batch: Batch, terms: ActiveTerms, temperature: float,
                   class_weights: torch.Tensor | None = None,
                   logit_offset: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The active loss terms of one batch, in table order (a term without elements, e.g. no
    pairs, is left out); the 3D model runs on every batch. `class_weights`: see class_balance;
    `logit_offset`: see logit_adjustment."""
    inputs = TermInputs(models.text, models.encoder(batch.coords, batch.feats), batch,
                        models.correlation, temperature, class_weights, logit_offset)
    return {term.name: term.loss(inputs) for term in terms.terms if element_count(batch, term)}


def element_counts(batch: Batch | None, losses: dict[str, torch.Tensor]) -> dict[str, int]:
    """Elements each computed term averages over (its row's `elements`: pairs, sampled voxels)."""
    return {name: element_count(batch, term_named(name)) for name in losses}


def step_loss(ctx: distributed.Context, losses: dict[str, torch.Tensor], counts: dict[str, int],
              weights: dict[str, float] | None = None) -> tuple[torch.Tensor | None, dict[str, float]]:
    """This process's part of the step loss, and the step's term values over all processes.

    The step loss is the mean of the terms computed anywhere in the global batch, each term the
    mean over all its elements (times its weight in `weights`, 1 where absent); a process
    weights its terms by its share of their elements, so the parts sum to the loss of one process
    over the whole batch. The part is None where this process computed no term; the values
    (unweighted) are empty where no process did (the step is skipped).
    """
    names = term_names()
    local = [float(counts.get(n, 0)) for n in names]
    local += [losses[n].item() * counts[n] if n in losses else 0.0 for n in names]
    reduced = distributed.all_sum(ctx, torch.tensor(local, dtype=torch.float64, device=ctx.device)).tolist()
    totals, sums = dict(zip(names, reduced[:len(names)], strict=True)), reduced[len(names):]
    values = {n: s / totals[n] for n, s in zip(names, sums, strict=True) if totals[n] > 0}
    weight = weights or {}
    parts = [losses[n] * (counts[n] / totals[n]) * weight.get(n, 1.0) for n in losses]
    return (torch.stack(parts).sum() / len(values) if parts else None), values


@dataclass
class Optimizers:
    """SGD for the 3D model, AdamW for the transformers (None if both are off), cosine decay."""

    sgd: torch.optim.SGD
    adamw: torch.optim.AdamW | None
    schedulers: list[torch.optim.lr_scheduler.LRScheduler]

    def zero_grad(self) -> None:
        """Clear gradients of every parameter."""
        for opt in self.all():
            opt.zero_grad(set_to_none=True)

    def step(self) -> None:
        """One optimiser step and one scheduler step each (AdamW skips params without grads)."""
        for opt in self.all():
            opt.step()
        for sched in self.schedulers:
            sched.step()

    def all(self) -> list[torch.optim.Optimizer]:
        """The optimisers in use."""
        return [self.sgd] + ([self.adamw] if self.adamw is not None else [])

    def state_dict(self) -> dict[str, Any]:
        """Optimiser and scheduler states."""
        return {"optimizers": [o.state_dict() for o in self.all()],
                "schedulers": [s.state_dict() for s in self.schedulers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` saved."""
        for opt, saved in zip(self.all(), state["optimizers"], strict=True):
            opt.load_state_dict(saved)
        for sched, saved in zip(self.schedulers, state["schedulers"], strict=True):
            sched.load_state_dict(saved)


def build_optimizers(cfg: TrainConfig, models: Models, total_steps: int) -> Optimizers:
    """SGD lr_3d (momentum, wd) and AdamW lr_transformer, cosine-decayed to 0 over the run."""
    sgd = torch.optim.SGD(models.encoder.parameters(), lr=cfg.lr_3d, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    params = list(models.correlation.parameters())
    adamw = torch.optim.AdamW(params, lr=cfg.lr_transformer,
                              weight_decay=cfg.weight_decay_transformer) if params else None
    steps = max(1, total_steps)
    schedulers = [torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
                  for opt in [sgd] + ([adamw] if adamw is not None else [])]
    return Optimizers(sgd, adamw, schedulers)


@torch.no_grad()
def predict_points(models: Models, batch: Batch) -> torch.Tensor:
    """i64[N] predicted class per point: argmax <f, T> of its voxel (Eq. 1 logits)."""
    feats = models.encoder(batch.coords, batch.feats)
    return (feats @ models.text.t()).argmax(1)[batch.inverse]


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
    class_set = text_class_set(cfg.store_root, cfg.classes)
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


def _checkpoint_state(cfg: TrainConfig, models: Models, optimizers: Optimizers, epoch: int,
                      step: int, best: float, prov: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": checkpoint.FORMAT, "signature": models.signature, "config": cfg.to_dict(),
        "provenance": prov,
        "class_names": models.class_names, "text": models.text.cpu(),
        "epoch": epoch, "step": step, "best_miou": best,
        "encoder": models.encoder.state_dict(), "correlation": models.correlation.state_dict(),
        "optim": optimizers.state_dict(), "rng": checkpoint.rng_state(),
    }


def load_encoder(models: Models, path: Path) -> dict[str, Any]:
    """Load a checkpoint's 3D model into `models` after checking its part of the signature."""
    state = checkpoint.load(path)
    keys = ("backbone", "in_channels", "embed_dim")  # the class list may differ (open vocabulary)
    checkpoint.check_signature(path, {k: state["signature"].get(k) for k in keys},
                               {k: models.signature[k] for k in keys})
    models.encoder.load_state_dict(state["encoder"])
    return state


def fit(cfg: TrainConfig, resume: bool = False, until_epoch: int | None = None,
        console: Console | None = None, origin: Mapping[str, Any] | None = None,
        allow_code_change: bool = False) -> dict[str, Any]:
    """Train as configured; returns a summary (run dir, last epoch, best and last mIoU).

    `until_epoch` stops after that epoch (a time-limited job); `--resume` continues it, after
    checking that the stores, the scenes and (unless `allow_code_change`) the code are the
    ones it was trained by (trainer/provenance.py). `origin`: the preset or file and the --set
    overrides the config came from, for the run's provenance record.
    """
    run_dir = cfg.run_dir
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    if last_path.exists() and not resume:
        raise checkpoint.CheckpointError(
            f"{run_dir} already holds a run: pass --resume to continue it or choose another name")
    ctx = distributed.setup(pick_device(cfg.device))
    device = ctx.device
    models = build_models(cfg, device)
    distributed.broadcast_state(ctx, (models.encoder, models.correlation))
    params = [*models.encoder.parameters(), *models.correlation.parameters()]
    num_classes = len(models.class_names)
    scene_stage = "scenes" if cfg.label_stage == "gt" else cfg.label_stage
    train_scenes = resolve_scenes(cfg.train_split, cfg.store_root, scene_stage, "train_split")
    train_set = SceneDataset(cfg, train_scenes, num_classes, train=True)
    loader, sampler = make_loader(cfg, train_set, shuffle=True, loop=cfg.loop, rank=ctx.rank,
                                  world=ctx.world)
    val, val_scenes = None, []
    if cfg.eval_every:
        val_scenes = resolve_scenes(cfg.val_split, cfg.store_root, "scenes", "val_split")
        val = eval_loader(cfg, ctx.shard(val_scenes), num_classes)
    prov = provenance.record(cfg, train_scenes, val_scenes, origin)
    groups = store_class_groups(cfg)
    weights = offset = None
    if cfg.class_balance > 0 or cfg.logit_adjustment > 0:
        counts = torch.from_numpy(train_set.label_counts())
        if cfg.class_balance > 0:
            weights = class_weights(counts, cfg.class_balance).to(device)
        if cfg.logit_adjustment > 0:
            offset = logit_adjustment(counts, cfg.logit_adjustment).to(device)
    weights_by_term = term_weights(cfg)
    optimizers = build_optimizers(cfg, models, cfg.epochs * len(loader))
    start, step, best = 1, 0, -math.inf
    if resume:
        state = checkpoint.load(last_path)
        checkpoint.check_signature(last_path, state["signature"], models.signature)
        checkpoint.check_resumable(last_path, from_dict(state["config"]).to_dict(), cfg.to_dict())
        if problem := provenance.resume_problem(state.get("provenance"), prov, allow_code_change):
            raise checkpoint.CheckpointError(f"cannot resume {last_path}: {problem}")
        prov = provenance.resumed(state.get("provenance"), prov, state["epoch"], allow_code_change)
        models.encoder.load_state_dict(state["encoder"])
        models.correlation.load_state_dict(state["correlation"])
        optimizers.load_state_dict(state["optim"])
        checkpoint.set_rng_state(state["rng"])
        start, step, best = state["epoch"] + 1, state["step"], state["best_miou"]
    if ctx.is_main:
        save_config(cfg, run_dir / "config.yaml")
        provenance.write(run_dir, prov)
    summary: dict[str, Any] = {"run_dir": str(run_dir), "epoch": start - 1, "best_miou": best}
    with RunLog(run_dir if ctx.is_main else None, cfg.progress, console, keep_epochs=start - 1) as log:
        for epoch in range(start, cfg.epochs + 1):
            terms = active_terms(cfg, epoch)
            sampler.epoch = epoch
            models.train(True)
            task = log.progress.add_task(f"epoch {epoch}/{cfg.epochs}", total=len(loader), loss=math.nan)
            epoch_start, total, steps = time.perf_counter(), 0.0, 0
            for batch in loader:
                losses = ({} if batch is None else
                          compute_losses(models, batch.to(device), terms, cfg.feedback_temperature, weights,
                                         offset))
                part, values = step_loss(ctx, losses, element_counts(batch, losses), weights_by_term)
                if values:  # else no process has a loss term in this batch: nothing to learn
                    optimizers.zero_grad()
                    if part is not None:
                        part.backward()
                    distributed.sum_gradients(ctx, params)
                    optimizers.step()
                distributed.average_buffers(ctx, (models.encoder,), ran=batch is not None)
                if not values:
                    continue
                step, steps = step + 1, steps + 1
                loss = sum(values.values()) / len(values)
                total += loss
                record = {"kind": "train", "epoch": epoch, "step": step, "loss": loss, **values,
                          "lr_3d": optimizers.sgd.param_groups[0]["lr"]}
                log.write(record, step)
                log.progress.update(task, advance=1, loss=record["loss"])
            log.progress.remove_task(task)
            record = {"kind": "epoch", "epoch": epoch, "step": step, "terms": terms.names(),
                      "train_loss": total / max(1, steps),
                      "seconds": time.perf_counter() - epoch_start}
            evaluate_now = val is not None and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs)
            if evaluate_now:
                confusions = {name: distributed.all_sum_array(ctx, cm)
                              for name, cm in evaluate_loader(models, val, device, log).items()}
                record.update(iou_record(confusions, models.class_names, groups))
                is_best = record["miou"] > best
                best = max(best, record["miou"])
            log.write(record, step)
            if ctx.is_main:
                state = _checkpoint_state(cfg, models, optimizers, epoch, step, best, prov)
                checkpoint.save_atomic(state, last_path)
                if evaluate_now and is_best:
                    checkpoint.save_atomic(state, best_path)
            summary.update(epoch=epoch, best_miou=best, last=record)
            if until_epoch is not None and epoch >= until_epoch:
                break
    return summary


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
