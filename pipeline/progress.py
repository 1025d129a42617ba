"""Rich progress bars per stage (scenes done/total, scenes/s) and the final run table."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text


class RateColumn(ProgressColumn):
    """Scenes per second of the current stage."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f} scenes/s" if speed else "- scenes/s", style="progress.data.speed")


class ProgressView:
    """One bar per stage; failures are printed as they happen."""

    def __init__(self, console: Console):
        self.console = console
        self._failed: dict[Any, int] = {}
        self.progress = Progress(
            TextColumn("[bold]{task.description:<9}"), BarColumn(), MofNCompleteColumn(),
            RateColumn(), TimeElapsedColumn(), TextColumn("{task.fields[failed]}"), console=console,
        )

    def __enter__(self) -> ProgressView:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start(self, stage: str, total: int, skipped: int) -> Any:
        task = self.progress.add_task(stage, total=max(total, 1), failed="")
        self.progress.reset(task, total=max(total, 1), completed=skipped, failed="")
        self._failed[task] = 0
        return task

    def advance(self, task: Any, failure: str | None) -> None:
        if failure:
            self.console.print(f"[red]failed[/red] {escape(failure)}", highlight=False, soft_wrap=True)
            self._failed[task] += 1
            self.progress.update(task, failed=f"[red]{self._failed[task]} failed")
        self.progress.advance(task)

    def finish(self, task: Any) -> None:
        self.progress.stop_task(task)


def report_table(reports: Iterable[Any]) -> Table:
    """Done / skipped / failed / blocked / seconds per stage."""
    table = Table(title="pipeline run")
    for col in ("stage", "done", "skipped", "failed", "blocked", "seconds"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for r in reports:
        table.add_row(r.name, str(r.done), str(r.skipped),
                      f"[red]{len(r.failed)}[/red]" if r.failed else "0", str(r.blocked), f"{r.seconds:.1f}")
    return table
