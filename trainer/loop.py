"""The training loop of Sec. 3.4: per epoch the schedule's loss terms, per batch one step; saving,
evaluating, logging and progress hang off it as hooks (trainer/hooks.py)."""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console

from trainer.config import TrainConfig
from trainer.hooks import Hook, default_hooks
from trainer.run import Run, build_run
from trainer.schedule import active_terms
from trainer.step import train_step


def call(hooks: Sequence[Hook], moment: str, run: Run) -> None:
    """Every hook's `moment` method, in list order."""
    for hook in hooks:
        getattr(hook, moment)(run)


def fit(cfg: TrainConfig, resume: bool = False, until_epoch: int | None = None,
        console: Console | None = None, origin: Mapping[str, Any] | None = None,
        allow_code_change: bool = False, hooks: Sequence[Hook] | None = None) -> dict[str, Any]:
    """Train as configured; returns a summary (run dir, last epoch, best and last mIoU).

    `until_epoch` stops after that epoch (a time-limited job); `--resume` continues it, after
    checking that the stores, the scenes and (unless `allow_code_change`) the code are the
    ones it was trained by (trainer/provenance.py). `origin`: the preset or file and the --set
    overrides the config came from, for the run's provenance record. `hooks`: the default ones
    (progress, evaluation, logging, checkpoints) unless given.
    """
    run = build_run(cfg, resume, origin, allow_code_change)
    hooks = default_hooks(console) if hooks is None else hooks
    summary: dict[str, Any] = {"run_dir": str(cfg.run_dir), "epoch": run.start - 1, "best_miou": run.best}
    try:
        call(hooks, "before_train", run)
        for epoch in range(run.start, cfg.epochs + 1):
            run.epoch, run.terms = epoch, active_terms(cfg, epoch)
            run.sampler.epoch = epoch
            run.models.train(True)
            call(hooks, "before_epoch", run)
            started, total, steps = time.perf_counter(), 0.0, 0
            for batch in run.loader:
                run.values = train_step(run.ctx, run.models, run.optimizers, batch, run.terms, run.losses,
                                        run.weights)
                if not run.values:  # no process had a loss term in this batch: nothing was learnt
                    continue
                run.step, steps = run.step + 1, steps + 1
                run.loss = sum(run.values.values()) / len(run.values)
                total += run.loss
                call(hooks, "after_step", run)
            run.record = {"kind": "epoch", "epoch": epoch, "step": run.step, "terms": run.terms.names(),
                          "train_loss": total / max(1, steps), "seconds": time.perf_counter() - started}
            call(hooks, "after_epoch", run)
            summary.update(epoch=epoch, best_miou=run.best, last=run.record)
            if until_epoch is not None and epoch >= until_epoch:
                break
    finally:
        call(hooks, "after_train", run)
    return summary
