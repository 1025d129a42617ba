"""Normal estimation kernels: ScanNet-style mesh vertex normals and PCA normals of voxel
neighbourhoods (with a closed-form 3x3 eigenvector), plus row normalisation."""
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


@numba.njit(cache=True, error_model="numpy")
def normalise_rows(v: np.ndarray) -> np.ndarray:
    """Unit rows; zero rows stay zero."""
    out = np.zeros_like(v)
    for i in range(v.shape[0]):
        n = math.sqrt(v[i, 0] ** 2 + v[i, 1] ** 2 + v[i, 2] ** 2)
        if n > 0:
            for a in range(3):
                out[i, a] = v[i, a] / n
    return out


@numba.njit(cache=True, error_model="numpy")
def pca_normals(inv: np.ndarray, rel: np.ndarray, indptr: np.ndarray, nbrs: np.ndarray,
                xyz: np.ndarray, viewpoint: np.ndarray) -> np.ndarray:
    """Normal per voxel by PCA of the points in it and its 26 neighbours, facing `viewpoint`.

    Point moments are summed per voxel once, so each neighbourhood costs 27 additions, not a
    pass over its points. Neighbourhoods too small or line-like get a zero normal.
    """
    nv = xyz.shape[0]
    mom = np.zeros((nv, 10))  # count, x, y, z, xx, xy, xz, yy, yz, zz
    for i in range(inv.shape[0]):
        v = inv[i]
        x, y, z = rel[i, 0], rel[i, 1], rel[i, 2]
        mom[v, 0] += 1.0
        mom[v, 1] += x
        mom[v, 2] += y
        mom[v, 3] += z
        mom[v, 4] += x * x
        mom[v, 5] += x * y
        mom[v, 6] += x * z
        mom[v, 7] += y * y
        mom[v, 8] += y * z
        mom[v, 9] += z * z
    out = np.zeros((nv, 3))
    acc = np.empty(10)
    for v in range(nv):
        for a in range(10):
            acc[a] = mom[v, a]
        for k in range(indptr[v], indptr[v + 1]):
            for a in range(10):
                acc[a] += mom[nbrs[k], a]
        n = acc[0]
        if n < 3:
            continue
        mx, my, mz = acc[1] / n, acc[2] / n, acc[3] / n
        nx, ny, nz = smallest_eigenvector(acc[4] / n - mx * mx, acc[5] / n - mx * my,
                                          acc[6] / n - mx * mz, acc[7] / n - my * my,
                                          acc[8] / n - my * mz, acc[9] / n - mz * mz)
        if (nx * (viewpoint[0] - xyz[v, 0]) + ny * (viewpoint[1] - xyz[v, 1])
                + nz * (viewpoint[2] - xyz[v, 2])) < 0:
            nx, ny, nz = -nx, -ny, -nz
        out[v, 0], out[v, 1], out[v, 2] = nx, ny, nz
    return out
