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


@numba.njit(cache=True, error_model="numpy")
def frustum_mask(xs, ys, zs, m, k, height, width, min_depth, border, mask):
    """Pass 1, over all points: in front of the camera and inside the image, without a division.

    Tests u*z and v*z against the bounds times z, with a margin far above rounding, so it keeps
    a superset of the exact test's points. Branch-free over column arrays, so LLVM vectorises it.
    """
    u_hi = width - border
    v_hi = height - border
    margin = 1e-6 * (width + height)
    for i in range(xs.shape[0]):
        px = np.float64(xs[i])
        py = np.float64(ys[i])
        pz = np.float64(zs[i])
        z = m[2, 0] * px + m[2, 1] * py + m[2, 2] * pz + m[2, 3]
        xc = m[0, 0] * px + m[0, 1] * py + m[0, 2] * pz + m[0, 3]
        yc = m[1, 0] * px + m[1, 1] * py + m[1, 2] * pz + m[1, 3]
        uz = k[0, 0] * xc + k[0, 1] * yc + k[0, 2] * z
        vz = k[1, 0] * xc + k[1, 1] * yc + k[1, 2] * z
        slack = margin * abs(z)
        mask[i] = ((z > min_depth) & (uz > border * z - slack) & (uz < u_hi * z + slack)
                   & (vz > border * z - slack) & (vz < v_hi * z + slack))


@numba.njit(cache=True)
def gather_candidates(xs, ys, zs, mask):
    """Indices and coordinate columns of the masked points (a branch-free write cursor)."""
    n = xs.shape[0]
    idx = np.empty(n, np.int32)
    cx = np.empty(n, np.float32)
    cy = np.empty(n, np.float32)
    cz = np.empty(n, np.float32)
    c = 0
    for i in range(n):
        idx[c] = i
        cx[c] = xs[i]
        cy[c] = ys[i]
        cz[c] = zs[i]
        c += mask[i]
    return idx[:c], cx[:c], cy[:c], cz[:c]


@numba.njit(cache=True, error_model="numpy")
def exact_pixels(xs, ys, zs, m, k, height, width, border):
    """Pass 2, over the candidates: the pixel convention's exact bounds test, rounded pixel, z.

    u, v = K @ (x/z, y/z, 1) in this fixed order of operations; round half up and clamp.
    Branch-free over column arrays, so LLVM vectorises it (divisions included).
    """
    n = xs.shape[0]
    inside = np.empty(n, np.bool_)
    rows = np.empty(n, np.int32)
    cols = np.empty(n, np.int32)
    zd = np.empty(n, np.float64)
    u_hi = width - border
    v_hi = height - border
    for j in range(n):
        px = np.float64(xs[j])
        py = np.float64(ys[j])
        pz = np.float64(zs[j])
        z = m[2, 0] * px + m[2, 1] * py + m[2, 2] * pz + m[2, 3]
        xn = (m[0, 0] * px + m[0, 1] * py + m[0, 2] * pz + m[0, 3]) / z
        yn = (m[1, 0] * px + m[1, 1] * py + m[1, 2] * pz + m[1, 3]) / z
        u = k[0, 0] * xn + k[0, 1] * yn + k[0, 2]
        v = k[1, 0] * xn + k[1, 1] * yn + k[1, 2]
        inside[j] = (border < u) & (u < u_hi) & (border < v) & (v < v_hi)
        cols[j] = np.int32(min(max(math.floor(u + 0.5), 0.0), width - 1.0))
        rows[j] = np.int32(min(max(math.floor(v + 0.5), 0.0), height - 1.0))
        zd[j] = z
    return inside, rows, cols, zd


@numba.njit(cache=True)
def append_visible(idx, inside, rows, cols, zd, depth, use_depth, abs_tol, rel_tol,
                   out_point, out_pixel, out_z, start):
    """Pass 3: the depth test (when a depth image is given), appending the kept candidates to
    the output buffers from `start` on (they must have room for all candidates); returns the end.
    """
    count = start
    for j in range(idx.shape[0]):
        r = rows[j]
        c = cols[j]
        z = zd[j]
        keep = inside[j]
        if use_depth:
            d = np.float64(depth[r, c])
            a = abs(d - z)
            keep &= (d > 0.0) & ((a < abs_tol) | (a < rel_tol * z))
        out_point[count] = idx[j]
        out_pixel[count, 0] = r
        out_pixel[count, 1] = c
        out_z[count] = z
        count += keep
    return count


@numba.njit(cache=True)
def frame_candidates(xyz, world_to_camera, intrinsics, height, width, min_depth, border, mask):
    """Passes 1 and 2 for one camera: candidate indices, exact inside flags, pixels and z."""
    frustum_mask(xyz[0], xyz[1], xyz[2], world_to_camera, intrinsics, height, width,
                 min_depth, border, mask)
    idx, cx, cy, cz = gather_candidates(xyz[0], xyz[1], xyz[2], mask)
    inside, rows, cols, zd = exact_pixels(cx, cy, cz, world_to_camera, intrinsics, height,
                                          width, border)
    return idx, inside, rows, cols, zd


@numba.njit(cache=True)
def project_kernel(xyz, world_to_camera, intrinsics, height, width, min_depth, border,
                   depth, use_depth, abs_tol, rel_tol):
    """Project f32[3,N] point columns; return kept (point, row, col, z) under the pixel convention.

    Three branch-free passes: a division-free frustum test of every point, the exact test and
    rounding of the candidates, then the depth test. Whether a point is kept is random in point
    order, so branches would mostly mispredict; column arrays let the first two passes vectorise.
    """
    mask = np.empty(xyz.shape[1], np.bool_)
    idx, inside, rows, cols, zd = frame_candidates(xyz, world_to_camera, intrinsics, height,
                                                   width, min_depth, border, mask)
    point = np.empty(idx.shape[0], np.int32)
    pixel = np.empty((idx.shape[0], 2), np.int32)
    z = np.empty(idx.shape[0], np.float32)
    count = append_visible(idx, inside, rows, cols, zd, depth, use_depth, abs_tol, rel_tol,
                           point, pixel, z, 0)
    return point[:count].copy(), pixel[:count, 0].copy(), pixel[:count, 1].copy(), z[:count].copy()


@numba.njit(cache=True)
def project_scene_kernel(xyz, world_to_camera, intrinsics, height, width, min_depth, border,
                         depth, use_depth, abs_tol, rel_tol):
    """`project_kernel` for every frame of a scene, concatenated once into ragged outputs:
    point i32[P], pixel i16[P,2] (row, col), z f32[P] and frame offsets i64[F+1].

    Each frame's result is a small array (its memory is reused frame to frame); the outputs
    are allocated once, at their final size.
    """
    frames = world_to_camera.shape[0]
    mask = np.empty(xyz.shape[1], np.bool_)
    offsets = np.zeros(frames + 1, np.int64)
    parts = []
    for f in range(frames):
        idx, inside, rows, cols, zd = frame_candidates(
            xyz, world_to_camera[f], intrinsics[f], height, width, min_depth, border, mask)
        point = np.empty(idx.shape[0], np.int32)
        pixel = np.empty((idx.shape[0], 2), np.int16)
        z = np.empty(idx.shape[0], np.float32)
        count = append_visible(idx, inside, rows, cols, zd, depth[f] if use_depth else depth[0],
                               use_depth, abs_tol, rel_tol, point, pixel, z, 0)
        parts.append((point[:count].copy(), pixel[:count].copy(), z[:count].copy()))
        offsets[f + 1] = offsets[f] + count
    total = offsets[frames]
    point = np.empty(total, np.int32)
    pixel = np.empty((total, 2), np.int16)
    z = np.empty(total, np.float32)
    for f in range(frames):
        lo, hi = offsets[f], offsets[f + 1]
        point[lo:hi] = parts[f][0]
        pixel[lo:hi] = parts[f][1]
        z[lo:hi] = parts[f][2]
    return point, pixel, z, offsets


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


def depth_test(depth: np.ndarray | None, shape: tuple[int, ...], what: str, abs_tol: float | None,
               rel_tol: float | None) -> tuple[np.ndarray, bool, float, float]:
    """The kernels' depth arguments (f32 depth, whether to test, abs and rel tolerance); without
    a depth image a dummy array of the same rank and both tests disabled."""
    if depth is None:
        return np.zeros((1,) * len(shape), np.float32), False, DISABLED, DISABLED
    if depth.shape != shape:
        raise ValueError(f"depth shape {depth.shape} differs from {what} {shape}")
    return (np.ascontiguousarray(depth, dtype=np.float32), True, *tolerances(abs_tol, rel_tol))


def check_camera(world_to_camera: np.ndarray, intrinsics: np.ndarray) -> None:
    """Reject matrices of the wrong shape (one camera, or the same number F of each) or
    intrinsics whose last row is not (0, 0, 1)."""
    if (world_to_camera.shape[-2:] != (4, 4) or intrinsics.shape[-2:] != (3, 3)
            or world_to_camera.shape[:-2] != intrinsics.shape[:-2] or world_to_camera.ndim > 3):
        raise ValueError(f"expected 4x4 and 3x3 matrices (or F of each), got "
                         f"{world_to_camera.shape} and {intrinsics.shape}")
    if not np.allclose(intrinsics[..., 2, :], (0.0, 0.0, 1.0)):
        raise ValueError(f"intrinsics last row must be (0, 0, 1), got {intrinsics[..., 2, :]}")


def point_columns(points: np.ndarray) -> np.ndarray:
    """f32[3,N] contiguous x, y, z columns of f32[N,3] points: the kernel's layout, made once."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape [N, 3], got {points.shape}")
    return np.ascontiguousarray(points.T, dtype=np.float32)


def project_columns(xyz: np.ndarray, world_to_camera: np.ndarray, intrinsics: np.ndarray,
                    image_hw: tuple[int, int], *, min_depth: float = 0.0, border: int = 0,
                    depth: np.ndarray | None = None, depth_abs_tol: float | None = 0.05,
                    depth_rel_tol: float | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`project_points` on `point_columns(points)`, also returning each kept point's z (f32).

    The pairs stage makes the columns once per scene and projects them into every frame.
    """
    world_to_camera = np.ascontiguousarray(world_to_camera, dtype=np.float64)
    intrinsics = np.ascontiguousarray(intrinsics, dtype=np.float64)
    check_camera(world_to_camera, intrinsics)
    height, width = int(image_hw[0]), int(image_hw[1])
    depth, use_depth, abs_tol, rel_tol = depth_test(depth, (height, width), "image_hw",
                                                    depth_abs_tol, depth_rel_tol)
    return project_kernel(np.ascontiguousarray(xyz, dtype=np.float32), world_to_camera,
                          intrinsics, height, width, float(min_depth), float(border),
                          depth, use_depth, abs_tol, rel_tol)


def project_scene(xyz: np.ndarray, world_to_camera: np.ndarray, intrinsics: np.ndarray,
                  image_hw: tuple[int, int], *, min_depth: float = 0.0, border: int = 0,
                  depth: np.ndarray | None = None, depth_abs_tol: float | None = 0.05,
                  depth_rel_tol: float | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`project_columns` for F cameras (f64[F,4,4], f64[F,3,3], depth f32[F,H,W]) in one call:
    point i32[P], pixel i16[P,2] (row, col), z f32[P], and offsets i64[F+1] (frame k's pairs
    are [offsets[k], offsets[k+1])). What the pairs stage runs."""
    world_to_camera = np.ascontiguousarray(world_to_camera, dtype=np.float64)
    intrinsics = np.ascontiguousarray(intrinsics, dtype=np.float64)
    if world_to_camera.ndim != 3:
        raise ValueError(f"expected F 4x4 matrices, got shape {world_to_camera.shape}")
    check_camera(world_to_camera, intrinsics)
    height, width = int(image_hw[0]), int(image_hw[1])
    if max(height, width) > np.iinfo(np.int16).max:
        raise ValueError(f"image size {height}x{width} does not fit int16 pixel coordinates")
    depth, use_depth, abs_tol, rel_tol = depth_test(
        depth, (world_to_camera.shape[0], height, width), "(frames, image_hw)", depth_abs_tol, depth_rel_tol)
    return project_scene_kernel(np.ascontiguousarray(xyz, dtype=np.float32), world_to_camera,
                                intrinsics, height, width, float(min_depth), float(border),
                                depth, use_depth, abs_tol, rel_tol)


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
    idx, rows, cols, _ = project_columns(
        point_columns(points), world_to_camera, intrinsics, image_hw, min_depth=min_depth,
        border=border, depth=depth, depth_abs_tol=depth_abs_tol, depth_rel_tol=depth_rel_tol)
    return idx, rows, cols


def zbuffer_visible(rows: np.ndarray, cols: np.ndarray, zs: np.ndarray,
                    image_hw: tuple[int, int], abs_tol: float | None = 0.05,
                    rel_tol: float | None = None) -> np.ndarray:
    """Bool mask of projected points not hidden by a nearer point in their pixel (for LiDAR)."""
    a, r = tolerances(abs_tol, rel_tol)
    return zbuffer_kernel(rows, cols, zs, int(image_hw[0]), int(image_hw[1]), a, r)
