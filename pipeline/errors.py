"""Errors that carry what a user needs to fix their input: the scene, the file, the reason."""
from __future__ import annotations

from pathlib import Path


class PipelineError(Exception):
    """A problem with configuration or input that is reported as one clear line."""


class SceneError(PipelineError):
    """A per-scene input problem: the runner records it, skips the scene and goes on."""

    def __init__(self, reason: str, path: str | Path | None = None, scene: str | None = None):
        self.reason = reason
        self.path = str(path) if path is not None else None
        self.scene = scene
        super().__init__(self.line())

    def line(self) -> str:
        """The one-line report: `scene X: file Y: reason`."""
        parts = []
        if self.scene:
            parts.append(f"scene {self.scene}")
        if self.path:
            parts.append(f"file {self.path}")
        parts.append(self.reason)
        return ": ".join(parts)

    def __reduce__(self):  # picklable across Dask workers
        return (SceneError, (self.reason, self.path, self.scene))
