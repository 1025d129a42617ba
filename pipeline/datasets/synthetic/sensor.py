"""A structured-light depth camera like ScanNet's (Structure sensor / Kinect v1), and pose error.

Measured depth is the true camera z with the Kinect axial noise model of Nguyen et al. (3DIMPVT
2012), sigma(z) = 1.2 mm + 1.9 mm * (z - 0.4 m)^2, quantised to millimetres; nothing is returned
below 0.4 m or beyond 4 m; returns drop out at grazing incidence (none below 70 degrees, all
beyond 85) and, with some chance, at depth discontinuities (the projector's shadow). The pose
written for a frame carries a small rigid error against the pose it was rendered from, as a
reconstruction's camera track does.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation


@dataclass(frozen=True)
class DepthModel:
    """Parameters of the simulated depth sensor (defaults: a Kinect-v1-class structured-light camera)."""

    min_depth: float = 0.4
    max_depth: float = 4.0
    sigma_base: float = 0.0012  # metres
    sigma_quadratic: float = 0.0019  # metres per (metre - 0.4)^2
    grazing_start_deg: float = 70.0
    grazing_end_deg: float = 85.0
    edge_jump: float = 0.06  # relative depth jump to a 4-neighbour that makes a depth edge
    edge_dropout: float = 0.6
    random_dropout: float = 0.002


def axial_sigma(z: np.ndarray, model: DepthModel = DepthModel()) -> np.ndarray:
    """Standard deviation of the measured depth at true depth z (metres)."""
    return model.sigma_base + model.sigma_quadratic * (np.asarray(z) - 0.4) ** 2


def depth_edges(z: np.ndarray, jump: float) -> np.ndarray:
    """Pixels of z f64[H,W] (0 = no surface) with a 4-neighbour more than ``jump * z`` away."""
    edge = np.zeros(z.shape, bool)
    for axis in (0, 1):
        a = np.take(z, np.arange(z.shape[axis] - 1), axis=axis)
        b = np.take(z, np.arange(1, z.shape[axis]), axis=axis)
        step = np.abs(a - b) > jump * np.minimum(a, b)
        pad = [(0, 0), (0, 0)]
        pad[axis] = (0, 1)
        edge |= np.pad(step, pad)
        pad[axis] = (1, 0)
        edge |= np.pad(step, pad)
    return edge


def measure_depth(z: np.ndarray, cos_incidence: np.ndarray, rng: np.random.Generator,
                  model: DepthModel = DepthModel()) -> np.ndarray:
    """Measured depth u16[H,W] in millimetres (0 = no return) of true depth z f64[H,W] (0 = no hit)
    and |cos| of the angle between each pixel's ray and the surface normal."""
    valid = (z >= model.min_depth) & (z <= model.max_depth)
    angle = np.degrees(np.arccos(np.clip(np.abs(cos_incidence), 0.0, 1.0)))
    p_grazing = np.clip((angle - model.grazing_start_deg) / (model.grazing_end_deg - model.grazing_start_deg), 0.0, 1.0)
    drop = rng.random(z.shape) < p_grazing
    drop |= depth_edges(z, model.edge_jump) & (rng.random(z.shape) < model.edge_dropout)
    drop |= rng.random(z.shape) < model.random_dropout
    noisy = z + rng.standard_normal(z.shape) * axial_sigma(z, model)
    mm = np.round(noisy * 1000.0)
    keep = valid & ~drop & (mm > 0)
    return np.where(keep, np.clip(mm, 0, 65535), 0).astype(np.uint16)


def perturb_pose(camera_to_world: np.ndarray, rng: np.random.Generator, translation_sigma: float = 0.005,
                 rotation_sigma_deg: float = 0.25) -> np.ndarray:
    """The pose written for a frame: the true camera-to-world 4x4 times a small random rigid error."""
    error = np.eye(4)
    error[:3, :3] = Rotation.from_rotvec(np.radians(rng.normal(0.0, rotation_sigma_deg, 3))).as_matrix()
    error[:3, 3] = rng.normal(0.0, translation_sigma, 3)
    return camera_to_world @ error
