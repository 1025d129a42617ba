"""Point-to-pixel projection with depth and z-buffer visibility tests (paper Sec. 3.1 pairs).

Pixel convention (binding, see DESIGN.md): with (x, y, z) the point in camera coordinates,
u, v = K @ (x/z, y/z, 1). A point is kept when z > min_depth, border < u < W - border and
border < v < H - border (strict, on the continuous coordinates); then
col = min(round(u), W - 1) and row = min(round(v), H - 1). Rounding is half up,
round(x) = floor(x + 0.5), so 2.5 -> 3 (not NumPy's half-to-even). With border=1 and
min_depth=1.0 the kept set is nuscenes-devkit's `map_pointcloud_to_image` rule.
"""
from __future__ import annotations

import math

import numba
import numpy as np

DISABLED = -1.0  # a tolerance that no |difference| can be below: the test is switched off


@numba.njit(cache=True)
def _within(diff: float, z: float, abs_tol: float, rel_tol: float) -> bool:
    """True when |diff| < abs_tol or |diff| < rel_tol * z (a disabled tolerance is negative)."""
    a = abs(diff)
    return a < abs_tol or a < rel_tol * z


@numba.njit(cache=True)
def _camera_uvz(points, m, intr, i):
    """Camera depth z and continuous pixel (u, v) of point i, evaluated in one fixed order."""
    px = np.float64(points[i, 0])
    py = np.float64(points[i, 1])
    pz = np.float64(points[i, 2])
    z = m[2, 0] * px + m[2, 1] * py + m[2, 2] * pz + m[2, 3]
    xn = (m[0, 0] * px + m[0, 1] * py + m[0, 2] * pz + m[0, 3]) / z
    yn = (m[1, 0] * px + m[1, 1] * py + m[1, 2] * pz + m[1, 3]) / z
    u = intr[0, 0] * xn + intr[0, 1] * yn + intr[0, 2]
    v = intr[1, 0] * xn + intr[1, 1] * yn + intr[1, 2]
    return z, u, v


@numba.njit(cache=True, error_model="numpy")
def project_kernel(points, world_to_camera, intrinsics, height, width, min_depth, border,
                   depth, use_depth, abs_tol, rel_tol):
    """Project f32[N,3] points; return kept (point, row, col, z) under the pixel convention.

    Two branch-free passes (a write cursor that advances only for kept points). The first
    tests every point against the frustum without a division (u*z and v*z against the bounds
    times z, with a margin far above rounding); the second applies the exact test of the pixel
    convention, rounding and the depth test to those candidates. Whether a point is inside is
    random in point order, so branches there would mostly mispredict.
    """
    n = points.shape[0]
    u_hi = width - border
    v_hi = height - border
    candidates = np.empty(n, np.int32)
    c = 0
    m, k = world_to_camera, intrinsics
    for i in range(n):
        px = np.float64(points[i, 0])
        py = np.float64(points[i, 1])
        pz = np.float64(points[i, 2])
        z = m[2, 0] * px + m[2, 1] * py + m[2, 2] * pz + m[2, 3]
        xc = m[0, 0] * px + m[0, 1] * py + m[0, 2] * pz + m[0, 3]
        yc = m[1, 0] * px + m[1, 1] * py + m[1, 2] * pz + m[1, 3]
        uz = k[0, 0] * xc + k[0, 1] * yc + k[0, 2] * z
        vz = k[1, 0] * xc + k[1, 1] * yc + k[1, 2] * z
        slack = 1e-6 * abs(z) * (width + height)
        candidates[c] = i
        c += ((z > min_depth) & (uz > border * z - slack) & (uz < u_hi * z + slack)
              & (vz > border * z - slack) & (vz < v_hi * z + slack))
    idx = np.empty(c, np.int32)
    rows = np.empty(c, np.int32)
    cols = np.empty(c, np.int32)
    zs = np.empty(c, np.float32)
    count = 0
    for j in range(c):
        i = candidates[j]
        z, u, v = _camera_uvz(points, world_to_camera, intrinsics, i)
        keep = (border < u) & (u < u_hi) & (border < v) & (v < v_hi)
        col = min(max(int(math.floor(u + 0.5)), 0), width - 1)
        row = min(max(int(math.floor(v + 0.5)), 0), height - 1)
        if use_depth:
            d = np.float64(depth[row, col])
            keep &= (d > 0.0) & _within(d - z, z, abs_tol, rel_tol)
        idx[count] = i
        rows[count] = row
        cols[count] = col
        zs[count] = z
        count += keep
    return idx[:count].copy(), rows[:count].copy(), cols[:count].copy(), zs[:count].copy()


@numba.njit(cache=True)
def zbuffer_kernel(rows, cols, zs, height, width, abs_tol, rel_tol):
    """Keep-mask of projected points whose z is within tolerance of the nearest z in its pixel."""
    nearest = np.full((height, width), np.inf, np.float32)
    for j in range(rows.shape[0]):
        if zs[j] < nearest[rows[j], cols[j]]:
            nearest[rows[j], cols[j]] = zs[j]
    keep = np.empty(rows.shape[0], np.bool_)
    for j in range(rows.shape[0]):
        z = np.float64(zs[j])
        keep[j] = _within(z - np.float64(nearest[rows[j], cols[j]]), z, abs_tol, rel_tol)
    return keep


def tolerances(abs_tol: float | None, rel_tol: float | None) -> tuple[float, float]:
    """Kernel tolerances from optional ones: None disables a test; at least one must be given."""
    if abs_tol is None and rel_tol is None:
        raise ValueError("a visibility test needs depth_abs_tol or depth_rel_tol")
    return (DISABLED if abs_tol is None else float(abs_tol),
            DISABLED if rel_tol is None else float(rel_tol))


def check_camera(world_to_camera: np.ndarray, intrinsics: np.ndarray) -> None:
    """Reject matrices of the wrong shape or intrinsics whose last row is not (0, 0, 1)."""
    if world_to_camera.shape != (4, 4) or intrinsics.shape != (3, 3):
        raise ValueError(f"expected 4x4 and 3x3 matrices, got {world_to_camera.shape} "
                         f"and {intrinsics.shape}")
    if not np.allclose(intrinsics[2], (0.0, 0.0, 1.0)):
        raise ValueError(f"intrinsics last row must be (0, 0, 1), got {intrinsics[2]}")


def project_with_depth(points: np.ndarray, world_to_camera: np.ndarray, intrinsics: np.ndarray,
                       image_hw: tuple[int, int], *, min_depth: float = 0.0, border: int = 0,
                       depth: np.ndarray | None = None, depth_abs_tol: float | None = 0.05,
                       depth_rel_tol: float | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`project_points` that also returns each kept point's camera depth z (f32), for z-buffers."""
    world_to_camera = np.ascontiguousarray(world_to_camera, dtype=np.float64)
    intrinsics = np.ascontiguousarray(intrinsics, dtype=np.float64)
    check_camera(world_to_camera, intrinsics)
    height, width = int(image_hw[0]), int(image_hw[1])
    use_depth = depth is not None
    if use_depth:
        abs_tol, rel_tol = tolerances(depth_abs_tol, depth_rel_tol)
        if depth.shape != (height, width):
            raise ValueError(f"depth shape {depth.shape} differs from image_hw {(height, width)}")
    else:
        abs_tol, rel_tol = DISABLED, DISABLED
        depth = np.zeros((1, 1), np.float32)
    return project_kernel(np.ascontiguousarray(points, dtype=np.float32), world_to_camera,
                          intrinsics, height, width, float(min_depth), float(border),
                          np.ascontiguousarray(depth, dtype=np.float32), use_depth,
                          abs_tol, rel_tol)


def project_points(points: np.ndarray, world_to_camera: np.ndarray, intrinsics: np.ndarray,
                   image_hw: tuple[int, int], *, min_depth: float = 0.0, border: int = 0,
                   depth: np.ndarray | None = None, depth_abs_tol: float | None = 0.05,
                   depth_rel_tol: float | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Visible points of one camera as (point i32[M], row i32[M], col i32[M]), in point order.

    With a depth image (metres, 0 = invalid) a point is visible when depth(row, col) > 0 and
    |depth - z| < depth_abs_tol or |depth - z| < depth_rel_tol * z: when both tolerances are
    given either one passing is enough; None switches a tolerance off.
    """
    idx, rows, cols, _ = project_with_depth(
        points, world_to_camera, intrinsics, image_hw, min_depth=min_depth, border=border,
        depth=depth, depth_abs_tol=depth_abs_tol, depth_rel_tol=depth_rel_tol)
    return idx, rows, cols


def zbuffer_visible(rows: np.ndarray, cols: np.ndarray, zs: np.ndarray,
                    image_hw: tuple[int, int], abs_tol: float | None = 0.05,
                    rel_tol: float | None = None) -> np.ndarray:
    """Bool mask of projected points not hidden by a nearer point in their pixel (for LiDAR)."""
    a, r = tolerances(abs_tol, rel_tol)
    return zbuffer_kernel(rows, cols, zs, int(image_hw[0]), int(image_hw[1]), a, r)
