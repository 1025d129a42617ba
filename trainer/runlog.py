"""Run logging: metrics as JSON lines, TensorBoard scalars and a Rich progress bar with it/s."""
from __future__ import annotations

import json
import math
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


class RunLog:
    """Appends metrics to `<run>/metrics.jsonl` and TensorBoard; owns the progress bar."""

    def __init__(self, run_dir: Path, progress: bool, console: Console | None = None):
        from torch.utils.tensorboard import SummaryWriter  # heavy; only when a run starts

        run_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = (run_dir / "metrics.jsonl").open("a")
        self.tb = SummaryWriter(str(run_dir / "tensorboard"))
        self.console = console or Console()
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"), RateColumn(), TimeRemainingColumn(),
            console=self.console, disable=not progress)

    def __enter__(self) -> RunLog:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()
        self.jsonl.close()
        self.tb.close()

    def write(self, record: dict[str, Any], step: int) -> None:
        """One JSON line; its finite numeric values also go to TensorBoard under `kind/key`."""
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                if key not in ("epoch", "step"):
                    self.tb.add_scalar(f"{record.get('kind', 'run')}/{key}", value, step)
