"""A 32-beam spinning LiDAR (Velodyne HDL-32E, as on nuScenes' LIDAR_TOP) by ray casting.

32 beams from -30.67 to +10.67 degrees elevation, ``AZIMUTH_STEPS`` firings per turn (0.33 degree,
the HDL-32E at 20 Hz), returns between ``MIN_RANGE`` and ``MAX_RANGE``, 1 cm range noise and a
few per cent random dropouts. Intensity (0-255, like nuScenes) is the surface's reflectivity
times a Lambertian incidence factor, with noise. The whole sweep is cast from one pose (no
rolling-shutter motion); the world is static.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.datasets.synthetic import render

ELEVATIONS_DEG = np.linspace(-30.67, 10.67, 32)
AZIMUTH_STEPS = 1084
MIN_RANGE, MAX_RANGE = 0.9, 70.0
RANGE_NOISE = 0.01
DROPOUT = 0.03


@dataclass
class Sweep:
    """One sweep's returns in the sensor frame."""

    points: np.ndarray  # f32[N, 3]
    intensity: np.ndarray  # f32[N], 0-255
    ring: np.ndarray  # f32[N], beam index 0-31 (bottom to top)
    face: np.ndarray  # i64[N], hit triangle (original mesh order)


def beam_directions(azimuth_steps: int = AZIMUTH_STEPS) -> tuple[np.ndarray, np.ndarray]:
    """Unit ray directions f64[R, 3] in the sensor frame and the ring of each ray, i32[R]."""
    az = 2 * np.pi * np.arange(azimuth_steps) / azimuth_steps
    el = np.radians(ELEVATIONS_DEG)
    a, e = np.meshgrid(az, el, indexing="ij")
    dirs = np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], axis=-1).reshape(-1, 3)
    ring = np.broadcast_to(np.arange(len(el), dtype=np.int32), a.shape).reshape(-1)
    return dirs, ring


def cast_sweep(mesh: render.RenderMesh, global_from_sensor: np.ndarray, reflectivity: np.ndarray,
               rng: np.random.Generator, azimuth_steps: int = AZIMUTH_STEPS) -> Sweep:
    """Ray-cast one sweep of the sensor at ``global_from_sensor`` (4x4) against ``mesh``.

    ``reflectivity`` f64[F] is the 0-255 intensity of a head-on return from each face (original
    face order).
    """
    dirs, ring = beam_directions(azimuth_steps)
    rotation = global_from_sensor[:3, :3]
    t, k, _, _ = render.cast_rays(np.ascontiguousarray(global_from_sensor[:3, 3], np.float64),
                                  np.ascontiguousarray(dirs @ rotation.T), mesh.node_lo, mesh.node_hi,
                                  mesh.left, mesh.start, mesh.count, mesh.v0, mesh.e1, mesh.e2)
    keep = (k >= 0) & (t > MIN_RANGE) & (t < MAX_RANGE) & (rng.random(len(t)) > DROPOUT)
    t, k, dirs, ring = t[keep], k[keep], dirs[keep], ring[keep]
    face = mesh.order[k]
    incidence = np.abs(np.einsum("rc,rc->r", mesh.normals[k], dirs @ rotation.T))
    intensity = reflectivity[face] * (0.3 + 0.7 * incidence) * np.exp(rng.normal(0.0, 0.15, len(t)))
    ranges = t + rng.normal(0.0, RANGE_NOISE, len(t))
    return Sweep((dirs * ranges[:, None]).astype(np.float32),
                 np.clip(intensity, 0.0, 255.0).astype(np.float32), ring.astype(np.float32), face)
