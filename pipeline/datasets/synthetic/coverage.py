"""How completely a synthetic scan saw its room, and whether its mesh holds only measured surface.

``observed``: which mesh vertices some kept frame measured, by the pairs stage's own rule (the
vertex projects into the frame and the frame's depth there is within a tolerance of its z).
``depth_distance``: each vertex's distance to the nearest back-projected depth measurement of any
fused frame; a fused mesh has no vertex far from every measurement (no hidden surface).
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from pipeline.geometry.projection import point_columns, project_scene


def observed(points: np.ndarray, camera_to_world: np.ndarray, intrinsics: np.ndarray, depth_mm: np.ndarray,
             tol: float = 0.05) -> np.ndarray:
    """bool[N]: the vertex is seen, within ``tol`` metres of the measured depth, by some frame."""
    h, w = depth_mm.shape[1:]
    k = np.broadcast_to(intrinsics, (len(camera_to_world), 3, 3))
    point, _, _, _ = project_scene(point_columns(points), np.linalg.inv(camera_to_world), np.ascontiguousarray(k),
                                   (h, w), depth=depth_mm.astype(np.float32) / 1000.0, depth_abs_tol=tol)
    seen = np.zeros(len(points), bool)
    seen[point] = True
    return seen


def depth_cloud(camera_to_world: np.ndarray, intrinsics: np.ndarray, depth_mm: np.ndarray, stride: int = 1) -> np.ndarray:
    """World points f64[M,3] of every measured depth pixel (every ``stride``-th row and column)."""
    h, w = depth_mm.shape[1:]
    rows, cols = np.mgrid[0:h:stride, 0:w:stride]
    out = []
    for pose, depth in zip(camera_to_world, depth_mm, strict=True):
        z = depth[rows, cols].astype(np.float64) / 1000.0
        ok = z > 0
        cam = np.stack([(cols[ok] - intrinsics[0, 2]) / intrinsics[0, 0] * z[ok],
                        (rows[ok] - intrinsics[1, 2]) / intrinsics[1, 1] * z[ok], z[ok]], axis=1)
        out.append(cam @ pose[:3, :3].T + pose[:3, 3])
    return np.concatenate(out)


def depth_distance(points: np.ndarray, camera_to_world: np.ndarray, intrinsics: np.ndarray,
                   depth_mm: np.ndarray) -> np.ndarray:
    """f64[N]: distance of each vertex to the nearest depth measurement of any frame."""
    return cKDTree(depth_cloud(camera_to_world, intrinsics, depth_mm)).query(points, workers=-1)[0]
