"""Normal estimation kernels: ScanNet-style mesh vertex normals and closed-form PCA normals."""
from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True)
def _blend(out: np.ndarray, i: int, cx: np.float32, cy: np.float32, cz: np.float32,
           t: np.float32) -> None:
    """out[i] <- t * c + (1 - t) * out[i], the float32 lerp of a running mean."""
    s = np.float32(1.0) - t
    out[i, 0] = t * cx + s * out[i, 0]
    out[i, 1] = t * cy + s * out[i, 1]
    out[i, 2] = t * cz + s * out[i, 2]


@numba.njit(cache=True, error_model="numpy")
def running_mean_vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Vertex normals as the running mean of unit face normals, in float32, face by face.

    This is the blend used by ScanNet's mesh segmentator: every face normal enters with equal
    weight and the mean is not re-normalised, so vertices on curved or creased surfaces get
    normals shorter than one.
    Zero-area faces are skipped. Float32 arithmetic in the same order keeps edge weights, and so
    the segmentation, in step with the reference tool. Vertices on no face keep a zero normal.
    """
    one = np.float32(1.0)
    out = np.zeros((vertices.shape[0], 3), dtype=np.float32)
    counts = np.zeros(vertices.shape[0], dtype=np.int64)
    for f in range(faces.shape[0]):
        i1, i2, i3 = faces[f, 0], faces[f, 1], faces[f, 2]
        ux = vertices[i2, 0] - vertices[i1, 0]
        uy = vertices[i2, 1] - vertices[i1, 1]
        uz = vertices[i2, 2] - vertices[i1, 2]
        vx = vertices[i3, 0] - vertices[i1, 0]
        vy = vertices[i3, 1] - vertices[i1, 1]
        vz = vertices[i3, 2] - vertices[i1, 2]
        cx = uy * vz - uz * vy
        cy = uz * vx - ux * vz
        cz = ux * vy - uy * vx
        n = np.sqrt(cx * cx + cy * cy + cz * cz)
        if not n > 0:
            continue  # zero-area face: no direction (the reference would spread NaN here)
        cx /= n
        cy /= n
        cz /= n
        # all three weights come from the counts before this face, as in the reference
        t1 = one / (np.float32(counts[i1]) + one)
        t2 = one / (np.float32(counts[i2]) + one)
        t3 = one / (np.float32(counts[i3]) + one)
        _blend(out, i1, cx, cy, cz, t1)
        _blend(out, i2, cx, cy, cz, t2)
        _blend(out, i3, cx, cy, cz, t3)
        counts[i1] += 1
        counts[i2] += 1
        counts[i3] += 1
    return out


@numba.njit(cache=True)
def smallest_eigenvector(a00: float, a01: float, a02: float, a11: float, a12: float,
                         a22: float) -> tuple[float, float, float]:
    """Unit eigenvector of the smallest eigenvalue of a symmetric 3x3 matrix (closed form).

    Used for PCA normals, where calling LAPACK per voxel would dominate the run time. Returns
    (0, 0, 0) when that eigenvalue is not simple (isotropic or line-like neighbourhoods), where
    a normal is undefined.
    """
    scale = max(abs(a00), abs(a01), abs(a02), abs(a11), abs(a12), abs(a22))
    if scale == 0.0:
        return 0.0, 0.0, 0.0
    a00 /= scale
    a01 /= scale
    a02 /= scale
    a11 /= scale
    a12 /= scale
    a22 /= scale
    q = (a00 + a11 + a22) / 3.0
    p1 = a01 * a01 + a02 * a02 + a12 * a12
    p2 = (a00 - q) ** 2 + (a11 - q) ** 2 + (a22 - q) ** 2 + 2.0 * p1
    if p2 < 1e-20:
        return 0.0, 0.0, 0.0
    p = math.sqrt(p2 / 6.0)
    b00, b11, b22 = (a00 - q) / p, (a11 - q) / p, (a22 - q) / p
    b01, b02, b12 = a01 / p, a02 / p, a12 / p
    r = 0.5 * (b00 * (b11 * b22 - b12 * b12) - b01 * (b01 * b22 - b12 * b02)
               + b02 * (b01 * b12 - b11 * b02))
    r = min(1.0, max(-1.0, r))
    lam = q + 2.0 * p * math.cos(math.acos(r) / 3.0 + 2.0 * math.pi / 3.0)
    # rows of (A - lam I); the eigenvector is orthogonal to all of them
    r0 = (a00 - lam, a01, a02)
    r1 = (a01, a11 - lam, a12)
    r2 = (a02, a12, a22 - lam)
    best = 0.0
    ex, ey, ez = 0.0, 0.0, 0.0
    for u, v in ((r0, r1), (r0, r2), (r1, r2)):
        cx = u[1] * v[2] - u[2] * v[1]
        cy = u[2] * v[0] - u[0] * v[2]
        cz = u[0] * v[1] - u[1] * v[0]
        d = cx * cx + cy * cy + cz * cz
        if d > best:
            best, ex, ey, ez = d, cx, cy, cz
    if best < 1e-12 * p * p * p * p:
        return 0.0, 0.0, 0.0
    n = math.sqrt(best)
    return ex / n, ey / n, ez / n
