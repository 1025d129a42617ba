"""Training augmentations as a list of transforms, named by the config's `augment` key: each draws
one linear map of the points from the item's generator, and the chain applies their product once."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial, reduce
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from trainer.config import TrainConfig

Transform = Callable[[np.random.Generator], np.ndarray]  # rng -> f64[3, 3], applied as points @ m.T


def rotate_z(rng: np.random.Generator) -> np.ndarray:
    """A random rotation about z."""
    theta = rng.uniform(0.0, 2.0 * np.pi)
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def flip_xy(rng: np.random.Generator) -> np.ndarray:
    """Random x and y flips (z kept: the floor stays down)."""
    flips = np.where(rng.random(3) < 0.5, -1.0, 1.0)
    flips[2] = 1.0
    return np.diag(flips)


def scale(scale_range: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """A uniform scaling drawn from `scale_range`."""
    return np.eye(3) * rng.uniform(scale_range[0], scale_range[1])


# name in `augment` -> the transform it makes from the config
TRANSFORMS: dict[str, Callable[[TrainConfig], Transform]] = {
    "rotate_z": lambda cfg: rotate_z,
    "flip_xy": lambda cfg: flip_xy,
    "scale": lambda cfg: partial(scale, cfg.scale_range),
}
DEFAULT_CHAIN = ("rotate_z", "flip_xy", "scale")  # what `augment: true` names


def chain_names(augment: Sequence[str] | bool) -> list[str]:
    """The transform names an `augment` value names (true: DEFAULT_CHAIN, false: none)."""
    if isinstance(augment, bool):
        return list(DEFAULT_CHAIN) if augment else []
    return list(augment)


def augmentations(cfg: TrainConfig) -> list[Transform]:
    """The configured chain, in the order `augment` lists it (the order draws from the generator)."""
    return [TRANSFORMS[name](cfg) for name in chain_names(cfg.augment)]


def apply(points: np.ndarray, transforms: Sequence[Transform], rng: np.random.Generator) -> np.ndarray:
    """`points` through the chain, its maps drawn in list order (none: unchanged)."""
    if not transforms:
        return points
    matrix = reduce(lambda m, t: m @ t(rng), transforms, np.eye(3))
    return (points @ matrix.T).astype(np.float32)
