"""Projection and pairs: pixel convention, depth visibility on a ray-cast room, z-buffer, stage."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.datasets.synthetic.camera import look_at
from pipeline.errors import SceneError
from pipeline.geometry.projection import project_points
from pipeline.labels.pairs import pairs_stage

# ---------------------------------------------------------------- pixel convention, hand-chosen
K = np.array([[64.0, 0.0, 32.0], [0.0, 64.0, 24.0], [0.0, 0.0, 1.0]])
HW = (48, 64)
EYE = np.eye(4)


def at_pixel(u: float, v: float, z: float = 1.0) -> list[float]:
    """The camera-frame point that projects to continuous (u, v) at depth z (exact in f32 here)."""
    return [(u - 32.0) / 64.0 * z, (v - 24.0) / 64.0 * z, z]


def project(pts, **kw):
    """project_points of hand-chosen points with the test camera."""
    return project_points(np.array(pts, np.float32), EYE, K, HW, **kw)


def test_rounding_is_half_up_and_clamped_to_the_last_pixel():
    idx, row, col = project([at_pixel(2.5, 3.5), at_pixel(0.25, 0.75), at_pixel(63.75, 47.5),
                             at_pixel(10.49, 20.51)])
    assert idx.tolist() == [0, 1, 2, 3]
    assert col.tolist() == [3, 0, 63, 10]
    assert row.tolist() == [4, 1, 47, 21]
    assert idx.dtype == row.dtype == col.dtype == np.int32


def test_bounds_are_strict_on_continuous_coordinates():
    pts = [at_pixel(0.0, 10.0), at_pixel(64.0, 10.0), at_pixel(10.0, 0.0), at_pixel(10.0, 48.0),
           at_pixel(0.015625, 10.0), at_pixel(63.984375, 47.984375)]
    idx, row, col = project(pts)
    assert idx.tolist() == [4, 5]
    assert (row.tolist(), col.tolist()) == ([10, 47], [0, 63])
    idx, _, _ = project(pts + [at_pixel(1.0, 10.0), at_pixel(1.015625, 10.0),
                               at_pixel(63.0, 10.0), at_pixel(10.0, 47.0)], border=1)
    assert idx.tolist() == [7]


def test_min_depth_is_strict_and_points_behind_the_camera_are_dropped():
    pts = [at_pixel(10, 10, 1.0), at_pixel(10, 10, 1.0001), at_pixel(10, 10, -2.0),
           [0.0, 0.0, 0.0]]
    assert project(pts, min_depth=1.0)[0].tolist() == [1]
    assert project(pts)[0].tolist() == [0, 1]


def test_depth_tolerances_absolute_relative_and_either():
    depth = np.zeros(HW, np.float32)
    depth[10, 10], depth[10, 20], depth[10, 30], depth[10, 40] = 2.04, 2.06, 10.1, 1.0
    pts = [at_pixel(10, 10, 2.0), at_pixel(20, 10, 2.0), at_pixel(30, 10, 10.0),
           at_pixel(40, 10, 1.0), at_pixel(50, 10, 1.0)]  # the last pixel has no depth (0)
    assert project(pts, depth=depth)[0].tolist() == [0, 3]
    assert project(pts, depth=depth, depth_abs_tol=None, depth_rel_tol=0.015)[0].tolist() == [
        2, 3]
    assert project(pts, depth=depth, depth_abs_tol=0.05, depth_rel_tol=0.015)[0].tolist() == [
        0, 2, 3]
    with pytest.raises(ValueError):
        project(pts, depth=depth, depth_abs_tol=None)


def devkit_rule(points, world_to_camera, intrinsics, image_hw, min_dist):
    """nuscenes-devkit map_pointcloud_to_image's mask, with the same half-up rounding."""
    cam = (world_to_camera[:3, :3] @ points.T.astype(np.float64)) + world_to_camera[:3, 3:]
    uvw = intrinsics @ cam
    u, v = uvw[0] / uvw[2], uvw[1] / uvw[2]
    h, w = image_hw
    mask = (cam[2] > min_dist) & (u > 1) & (u < w - 1) & (v > 1) & (v < h - 1)
    idx = np.flatnonzero(mask)
    return idx, np.floor(v[idx] + 0.5).astype(int), np.floor(u[idx] + 0.5).astype(int)


def test_border_one_and_min_depth_one_is_the_devkit_rule():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-20, 20, (50000, 3)).astype(np.float32)
    pose = rigid(rng)
    intr = np.array([[1266.4, 0.0, 816.3], [0.0, 1266.4, 491.5], [0.0, 0.0, 1.0]])
    got = project_points(pts, pose, intr, (900, 1600), min_depth=1.0, border=1)
    want = devkit_rule(pts, pose, intr, (900, 1600), 1.0)
    assert got[0].size > 1000
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


def rigid(rng: np.random.Generator) -> np.ndarray:
    """A random rigid 4x4 transform."""
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    pose = np.eye(4)
    pose[:3, :3] = q * np.sign(np.linalg.det(q))
    pose[:3, 3] = rng.normal(size=3)
    return pose


# ------------------------------------------------------------ a ray-cast room with a box in it
ROOM = (np.array([-3.0, -3.0, 0.0]), np.array([3.0, 3.0, 3.0]))  # floor z=0, walls, ceiling
BOX = (np.array([-0.5, -0.5, 0.0]), np.array([0.5, 0.5, 1.0]))   # standing on the floor
ROOM_K = np.array([[160.0, 0.0, 80.0], [0.0, 160.0, 60.0], [0.0, 0.0, 1.0]])
ROOM_HW = (120, 160)


def slab(origin, dirs, lo, hi):
    """Entry and exit ray parameters of rays origin + t*dirs[i] through an axis-aligned box."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t0, t1 = (lo - origin) / dirs, (hi - origin) / dirs
    return np.nanmax(np.minimum(t0, t1), axis=1), np.nanmin(np.maximum(t0, t1), axis=1)


def ray_depth(origin, dirs, box=BOX):
    """Parameter of the first surface hit (box, else room wall) for rays with unit camera z."""
    _, t_room = slab(origin, dirs, *ROOM)
    t_in, t_out = slab(origin, dirs, *box)
    hits_box = (t_in <= t_out) & (t_in > 0)
    return np.where(hits_box, np.minimum(t_in, t_room), t_room)


def render_depth(pose: np.ndarray) -> np.ndarray:
    """Depth image (camera z per pixel centre) of the room seen from world_to_camera pose."""
    rows, cols = np.mgrid[0:ROOM_HW[0], 0:ROOM_HW[1]]
    pix = np.stack([cols.ravel(), rows.ravel(), np.ones(cols.size)])
    dirs = (pose[:3, :3].T @ np.linalg.inv(ROOM_K) @ pix).T  # camera z component is 1
    eye = -pose[:3, :3].T @ pose[:3, 3]
    return ray_depth(eye, dirs).reshape(ROOM_HW).astype(np.float32)


def room_points(rng: np.random.Generator, n: int = 6000) -> np.ndarray:
    """Points on the floor, the four walls and the five visible faces of the box."""
    pts = []
    for axis, value in ((2, 0.0), (0, -3.0), (0, 3.0), (1, -3.0), (1, 3.0)):
        p = rng.uniform(ROOM[0], ROOM[1], (n, 3))
        p[:, axis] = value
        pts.append(p)
    pts[0] = pts[0][~inside(pts[0], BOX[0] - 1e-9, BOX[1] + 1e-9)]  # floor under the box
    for axis, value in ((0, -0.5), (0, 0.5), (1, -0.5), (1, 0.5), (2, 1.0)):
        p = rng.uniform(BOX[0], BOX[1], (n // 3, 3))
        p[:, axis] = value
        pts.append(p)
    return np.concatenate(pts).astype(np.float32)


def inside(p, lo, hi):
    """Mask of points inside an axis-aligned box."""
    return np.all((p >= lo) & (p <= hi), axis=1)


CAMERAS = [look_at(np.array([0.3, -2.5, 1.6]), [0.0, 0.0, 0.6]),
           look_at(np.array([2.4, 2.0, 2.2]), [0.0, 0.0, 0.5]),
           look_at(np.array([-2.6, 0.4, 1.0]), [0.0, 0.0, 0.3])]


@pytest.fixture(scope="module")
def room():
    """Points, depth images and poses of the ray-cast room."""
    pts = room_points(np.random.default_rng(1))
    depths = np.stack([render_depth(pose) for pose in CAMERAS])
    return pts, depths


def camera_z(pts, pose):
    """Camera-frame depth of points."""
    return (pts.astype(np.float64) @ pose[2, :3]) + pose[2, 3]


def test_kept_pairs_match_the_depth_image_and_lie_inside(room):
    pts, depths = room
    for pose, depth in zip(CAMERAS, depths, strict=True):
        idx, row, col = project_points(pts, pose, ROOM_K, ROOM_HW, depth=depth)
        assert idx.size > 2000
        z = camera_z(pts[idx], pose)
        assert np.all(np.abs(depth[row, col] - z) < 0.05)
        assert np.all((row >= 0) & (row < ROOM_HW[0]) & (col >= 0) & (col < ROOM_HW[1]))
        assert np.all(np.diff(idx) > 0)


def grazing(pts, dirs, min_cos=0.3):
    """Room points seen at a grazing angle (|cos| of ray and wall normal below min_cos): a pixel
    there spans more depth than the 5 cm tolerance, so a fair test leaves them out."""
    normals = np.zeros(pts.shape)
    for axis in range(3):
        normals[np.isclose(pts[:, axis], ROOM[0][axis]) | np.isclose(pts[:, axis], ROOM[1][axis]), axis] = 1.0
    cos = np.abs((normals * dirs).sum(1)) / np.linalg.norm(dirs, axis=1)
    return cos < min_cos


def test_occluded_points_are_rejected_and_visible_ones_kept(room):
    pts, depths = room
    shrunk = (BOX[0] + 0.1, BOX[1] - 0.1)
    grown = (BOX[0] - 0.1, BOX[1] + 0.1)
    for pose, depth in zip(CAMERAS, depths, strict=True):
        eye = -pose[:3, :3].T @ pose[:3, 3]
        dirs = pts.astype(np.float64) - eye  # t = 1 at the point
        t_in, t_out = slab(eye, dirs, *shrunk)
        behind_box = (t_in <= t_out) & (t_in > 0) & (t_in < 1.0)
        g_in, g_out = slab(eye, dirs, *grown)
        clear = ~((g_in <= g_out) & (g_in > 0) & (g_in < 1.0 - 1e-6))
        kept = np.zeros(len(pts), bool)
        kept[project_points(pts, pose, ROOM_K, ROOM_HW, depth=depth)[0]] = True
        seen = np.zeros(len(pts), bool)
        seen[project_points(pts, pose, ROOM_K, ROOM_HW)[0]] = True
        assert (behind_box & seen).sum() > 200  # occluded points do fall inside the image
        assert not np.any(kept & behind_box)
        on_box = inside(pts, grown[0], grown[1])
        visible = seen & clear & ~on_box & ~grazing(pts, dirs)
        assert kept[visible].mean() > 0.97


def test_points_outside_the_image_never_appear(room):
    pts, _ = room
    for pose in CAMERAS:
        idx, row, col = project_points(pts, pose, ROOM_K, ROOM_HW)
        cam = (pose[:3, :3] @ pts[idx].T.astype(np.float64)) + pose[:3, 3:]
        u, v = (ROOM_K @ (cam / cam[2]))[:2]
        assert np.all((cam[2] > 0) & (u > 0) & (u < ROOM_HW[1]) & (v > 0) & (v < ROOM_HW[0]))
        out = np.setdiff1d(np.arange(len(pts)), idx)
        cam = (pose[:3, :3] @ pts[out].T.astype(np.float64)) + pose[:3, 3:]
        u, v = (ROOM_K @ (cam / cam[2]))[:2]
        assert not np.any((cam[2] > 0) & (u > 0) & (u < ROOM_HW[1]) & (v > 0) & (v < ROOM_HW[0]))


# ------------------------------------------------------------------------------- pairs stage
def scene_of(pts, depths=None):
    """A scenes-stage mapping for the room cameras."""
    scene = {"points": pts, "world_to_camera": np.stack(CAMERAS),
             "intrinsics": np.stack([ROOM_K] * len(CAMERAS)),
             "color": np.zeros((len(CAMERAS), *ROOM_HW, 3), np.uint8),
             "frame_ids": np.arange(len(CAMERAS), dtype=np.int32)}
    if depths is not None:
        scene["depth"] = depths
    return scene


PARAMS = {"min_depth": 0.0, "border": 0, "depth_abs_tol": 0.05, "depth_rel_tol": None,
          "occlusion": False}


def test_pairs_stage_concatenates_frames_with_offsets(room):
    pts, depths = room
    out = pairs_stage({"scenes": scene_of(pts, depths)}, PARAMS)
    assert out["point"].dtype == np.int32 and out["pixel"].dtype == np.int16
    assert out["frame_offsets"].dtype == np.int64 and out["frame_offsets"][0] == 0
    off = out["frame_offsets"]
    assert off.shape == (len(CAMERAS) + 1,) and off[-1] == len(out["point"])
    for k, (pose, depth) in enumerate(zip(CAMERAS, depths, strict=True)):
        idx, row, col = project_points(pts, pose, ROOM_K, ROOM_HW, depth=depth)
        np.testing.assert_array_equal(out["point"][off[k]:off[k + 1]], idx)
        np.testing.assert_array_equal(out["pixel"][off[k]:off[k + 1]], np.stack([row, col], 1))


def test_zbuffer_occlusion_for_scenes_without_depth():
    ray = np.array(at_pixel(20, 20, 1.0), np.float32)
    pts = np.stack([ray * 2.0, ray * 5.0, ray * 2.03, np.array(at_pixel(30, 30, 5.0))])
    scene = {"points": pts.astype(np.float32), "world_to_camera": EYE[None],
             "intrinsics": K[None], "color": np.zeros((1, *HW, 3), np.uint8)}
    assert pairs_stage({"scenes": scene}, PARAMS)["point"].tolist() == [0, 1, 2, 3]
    occluding = pairs_stage({"scenes": scene}, {**PARAMS, "occlusion": True})
    assert occluding["point"].tolist() == [0, 2, 3]


def test_pairs_stage_without_visible_points_is_a_scene_error(room):
    pts, depths = room
    with pytest.raises(SceneError, match="no point is visible"):
        pairs_stage({"scenes": scene_of(pts, np.zeros_like(depths))}, PARAMS)
