"""What hangs off the training loop (trainer/loop.py): progress, evaluation, logging and
checkpoints, each a hook called before/after the run, each epoch and each step, in list order."""
from __future__ import annotations

import math

from rich.console import Console

from trainer import checkpoint, distributed, provenance
from trainer.config import save_config
from trainer.evaluation import evaluate_loader, iou_record
from trainer.run import Run, checkpoint_state
from trainer.runlog import RunLog


class Hook:
    """A hook that does nothing; a subclass overrides the moments it acts at."""

    def before_train(self, run: Run) -> None:
        """Before the first epoch this call trains."""

    def before_epoch(self, run: Run) -> None:
        """Before an epoch's first step."""

    def after_step(self, run: Run) -> None:
        """After a step that updated the models (`run.values`, `run.loss`)."""

    def after_epoch(self, run: Run) -> None:
        """After an epoch's last step (`run.record` holds its record)."""

    def after_train(self, run: Run) -> None:
        """After the last epoch, or when the loop stops on an error."""


class ProgressHook(Hook):
    """The epoch's progress bar with its running loss."""

    def before_epoch(self, run: Run) -> None:
        self.task = run.log.progress.add_task(f"epoch {run.epoch}/{run.cfg.epochs}",
                                              total=len(run.loader), loss=math.nan)

    def after_step(self, run: Run) -> None:
        run.log.progress.update(self.task, advance=1, loss=run.loss)

    def after_epoch(self, run: Run) -> None:
        run.log.progress.remove_task(self.task)


class EvalHook(Hook):
    """Validation mIoU every `eval_every` epochs and at the last, into the epoch record; tracks
    the best."""

    def after_epoch(self, run: Run) -> None:
        cfg = run.cfg
        run.improved = False
        if run.val is None or not (run.epoch % cfg.eval_every == 0 or run.epoch == cfg.epochs):
            return
        confusions = {name: distributed.all_sum_array(run.ctx, cm)
                      for name, cm in evaluate_loader(run.models, run.val, run.ctx.device, run.log).items()}
        run.record.update(iou_record(confusions, run.models.class_names, run.groups))
        run.improved = run.record["miou"] > run.best
        run.best = max(run.best, run.record["miou"])


class LogHook(Hook):
    """Step and epoch records to metrics.jsonl and TensorBoard (the figures' curves read the
    epoch records); owns the run log, whose records after the resumed epoch are dropped."""

    def __init__(self, console: Console | None = None):
        self.console = console

    def before_train(self, run: Run) -> None:
        run.log = RunLog(run.cfg.run_dir if run.ctx.is_main else None, run.cfg.progress, self.console,
                         keep_epochs=run.start - 1).__enter__()

    def after_step(self, run: Run) -> None:
        run.log.write({"kind": "train", "epoch": run.epoch, "step": run.step, "loss": run.loss,
                       **run.values, "lr_3d": run.optimizers.sgd.param_groups[0]["lr"]}, run.step)

    def after_epoch(self, run: Run) -> None:
        run.log.write(run.record, run.step)

    def after_train(self, run: Run) -> None:
        if run.log is not None:
            run.log.__exit__(None, None, None)


class CheckpointHook(Hook):
    """The run's config and provenance at the start; `last.pt` after every epoch and `best.pt`
    after an improving evaluation, atomically (rank 0 only)."""

    def before_train(self, run: Run) -> None:
        if run.ctx.is_main:
            save_config(run.cfg, run.cfg.run_dir / "config.yaml")
            provenance.write(run.cfg.run_dir, run.prov)

    def after_epoch(self, run: Run) -> None:
        if not run.ctx.is_main:
            return
        state = checkpoint_state(run)
        checkpoint.save_atomic(state, run.cfg.run_dir / "last.pt")
        if run.improved:
            checkpoint.save_atomic(state, run.cfg.run_dir / "best.pt")


def default_hooks(console: Console | None = None) -> list[Hook]:
    """The trainer's hooks, in the order they act: progress, evaluation, logging, checkpoints."""
    return [ProgressHook(), EvalHook(), LogHook(console), CheckpointHook()]
