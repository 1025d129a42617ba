"""Per-point input channels of the 3D model as a table: each `scenes` array's width and scaling.

A dataset names its channels in stages.yaml (`channels: [colors, intensity]`, arrays of its
record); the voxel features are those channels side by side, in the declared order.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.stages import load_graph, stages_path


def centred_color(colors: np.ndarray) -> np.ndarray:
    """u8[N, 3] RGB -> f32[N, 3] in [-0.5, 0.5]."""
    return colors.astype(np.float32) / 255.0 - 0.5


def unit_intensity(intensity: np.ndarray) -> np.ndarray:
    """[N] LiDAR intensity in 0..255 -> f32[N, 1] in [0, 1]."""
    return intensity.astype(np.float32)[:, None] / 255.0


@dataclass(frozen=True)
class Channel:
    """One input channel: its width and its scaling."""

    width: int
    scale: Callable[[np.ndarray], np.ndarray]


CHANNELS: dict[str, Channel] = {  # by the name of the `scenes` array it reads
    "colors": Channel(3, centred_color),
    "intensity": Channel(1, unit_intensity),
}


@functools.cache
def _declared(path: Path, dataset: str) -> tuple[str, ...]:
    """The channels `dataset` declares in the stages file at `path` (read once per process)."""
    return load_graph(path).dataset(dataset).channels


def dataset_channels(dataset: str) -> tuple[str, ...]:
    """The channels `dataset` declares in the stages file the pipeline uses (() if none)."""
    return _declared(stages_path(), dataset)


def input_width(channels: Sequence[str]) -> int:
    """Features per voxel: the channels' widths summed."""
    return sum(CHANNELS[c].width for c in channels)


def point_features(arrays: Mapping[str, np.ndarray], channels: Sequence[str]) -> np.ndarray:
    """f32[N, F]: every channel of every point, scaled, side by side in the given order."""
    return np.concatenate([CHANNELS[c].scale(arrays[c]) for c in channels], axis=1)
