"""Run logging: metrics as JSON lines, TensorBoard scalars and a Rich progress bar with it/s."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Steps per second of the current task."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f} it/s" if speed else "-- it/s", style="progress.data.speed")


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics file, in order, without the last line if a kill cut it short."""
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:  # the line a kill cut short
            continue
    return records


def epoch_records(run_dir: Path) -> dict[int, dict[str, Any]]:
    """The end-of-epoch records of `<run_dir>/metrics.jsonl` by epoch (a re-run epoch: its last)."""
    return {int(r["epoch"]): r for r in read_records(Path(run_dir) / "metrics.jsonl") if r.get("kind") == "epoch"}


def keep_records(path: Path, epochs: int) -> int:
    """Drop the records of epochs after `epochs` from a metrics file (a run killed mid-epoch, or
    before its first checkpoint, left them); returns the last step kept (0 if none)."""
    if not path.is_file():
        return 0
    kept = [r for r in read_records(path) if r.get("epoch", 0) <= epochs]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
    os.replace(tmp, path)
    return max((int(r.get("step", 0)) for r in kept), default=0)


class RunLog:
    """Appends metrics to `<run>/metrics.jsonl` and TensorBoard; owns the progress bar. Records of
    epochs after `keep_epochs` (the resumed checkpoint's epoch) are dropped first.

    Without a run folder (processes other than rank 0 of a distributed run) it writes nothing
    and shows no progress.
    """

    def __init__(self, run_dir: Path | None, progress: bool, console: Console | None = None,
                 keep_epochs: int = 0):
        self.jsonl, self.tb = None, None
        if run_dir is not None:
            from torch.utils.tensorboard import SummaryWriter  # heavy; only when a run writes

            run_dir.mkdir(parents=True, exist_ok=True)
            last_step = keep_records(run_dir / "metrics.jsonl", keep_epochs)
            self.jsonl = (run_dir / "metrics.jsonl").open("a")
            self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=last_step + 1)
        self.console = console or Console()
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"), RateColumn(), TimeRemainingColumn(),
            console=self.console, disable=not progress or run_dir is None)

    def __enter__(self) -> RunLog:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()
        if self.jsonl is not None:
            self.jsonl.close()
            self.tb.close()

    def write(self, record: dict[str, Any], step: int) -> None:
        """One JSON line; its finite numeric values also go to TensorBoard under `kind/key`."""
        if self.jsonl is None:
            return
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                if key not in ("epoch", "step"):
                    self.tb.add_scalar(f"{record.get('kind', 'run')}/{key}", value, step)
