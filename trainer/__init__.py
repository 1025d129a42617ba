"""Lean trainer for label-free 3D segmentation; `app` is the Typer CLI (`typer trainer run`)."""
from trainer.cli import app

__all__ = ["app"]
