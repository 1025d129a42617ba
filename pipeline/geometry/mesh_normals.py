"""Area-weighted vertex normals of a triangle mesh."""
from __future__ import annotations

import numpy as np


def area_weighted_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit vertex normals: the sum of adjacent face normals weighted by face area.

    The cross product of two edges is the face normal scaled by twice the area, so summing raw
    cross products weights by area. Vertices on no face get a zero normal.
    """
    v = vertices.astype(np.float64)
    tri = v[faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    acc = np.zeros_like(v)
    for corner in range(3):
        acc += np.stack(
            [np.bincount(faces[:, corner], weights=cross[:, a], minlength=len(v)) for a in range(3)], axis=1
        )
    norm = np.linalg.norm(acc, axis=1, keepdims=True)
    return np.divide(acc, norm, out=np.zeros_like(acc), where=norm > 0).astype(np.float32)
