"""VCCS supervoxels: separation, full assignment, determinism, size scaling, PCA normals."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import SceneError
from pipeline.geometry.normals import smallest_eigenvector
from pipeline.geometry.sets import geosets_stage
from pipeline.geometry.vccs import supervoxels
from pipeline.stages import stage_params

WEIGHTS = {k: stage_params("geosets")[k] for k in ("color_importance", "spatial_importance", "normal_importance")}


def blobs(n_blobs: int = 4, per_blob: int = 3000, gap: float = 3.0,
          seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points, colours and blob id of solid balls of radius 0.6 m with centres `gap` apart."""
    rng = np.random.default_rng(seed)
    pts, cols, ids = [], [], []
    for b in range(n_blobs):
        d = rng.normal(size=(per_blob, 3))
        d *= (0.6 * rng.random(per_blob) ** (1 / 3) / np.linalg.norm(d, axis=1))[:, None]
        pts.append(d + [b * gap, (b % 2) * gap, 0])
        cols.append(np.full((per_blob, 3), 40 * b, dtype=np.uint8))
        ids.append(np.full(per_blob, b))
    return np.concatenate(pts).astype(np.float32), np.concatenate(cols), np.concatenate(ids)


def solid_cube(side: float, step: float) -> np.ndarray:
    """Jittered lattice filling [0, side)^3, one point per `step` cell."""
    g = np.arange(0, side, step) + step / 2
    pts = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    return (pts + np.random.default_rng(1).uniform(-step / 4, step / 4, pts.shape)).astype(np.float32)


def test_blobs_are_never_mixed_and_every_point_is_assigned() -> None:
    points, colors, blob = blobs()
    ids = supervoxels(points, colors, voxel_resolution=0.1, seed_resolution=0.4, **WEIGHTS)
    assert ids.dtype == np.int32 and ids.shape == (len(points),)
    assert ids.min() == 0 and np.array_equal(np.unique(ids), np.arange(ids.max() + 1))
    for s in np.unique(ids):
        assert len(np.unique(blob[ids == s])) == 1
    per_blob = [len(np.unique(ids[blob == b])) for b in range(4)]
    assert min(per_blob) > 5  # each 1.2 m ball is split into many 0.4 m supervoxels


def test_deterministic() -> None:
    points, colors, _ = blobs(n_blobs=2)
    first = supervoxels(points, colors, voxel_resolution=0.1, seed_resolution=0.4, **WEIGHTS)
    again = supervoxels(points.copy(), colors.copy(), voxel_resolution=0.1, seed_resolution=0.4, **WEIGHTS)
    assert np.array_equal(first, again)


@pytest.mark.parametrize("seed_resolution", [0.4, 0.5, 1.0])
def test_set_count_scales_with_volume_over_seed_cube(seed_resolution: float) -> None:
    points = solid_cube(2.0, 0.1)
    ids = supervoxels(points, voxel_resolution=0.1, seed_resolution=seed_resolution, **WEIGHTS)
    expected = (2.0 / seed_resolution) ** 3
    assert abs(ids.max() + 1 - expected) <= 0.1 * expected


def test_isolated_outliers_join_the_nearest_supervoxel() -> None:
    points, colors, blob = blobs(n_blobs=2)
    far = np.array([[-2.0, 0, 0], [20.0, 0, 0]], dtype=np.float32)  # near blob 0 / past blob 1
    ids = supervoxels(np.vstack([points, far]), np.vstack([colors, np.zeros((2, 3), np.uint8)]),
                      voxel_resolution=0.1, seed_resolution=0.4, **WEIGHTS)
    assert ids.min() >= 0
    assert ids[-2] in ids[:-2][blob == 0] and ids[-1] in ids[:-2][blob == 1]


def test_normals_split_an_l_shaped_surface() -> None:
    # floor and wall with normals given: no supervoxel reaches more than one voxel into the
    # other plane, because the normal term (1.0) outweighs the spatial term (0.4 * d / seed)
    g = np.arange(0, 2, 0.02)
    u, v = (a.ravel() for a in np.meshgrid(g, g, indexing="ij"))
    floor = np.stack([u, v, np.zeros_like(u)], 1)
    wall = np.stack([np.zeros_like(u), v, u + 0.02], 1)
    points = np.vstack([floor, wall]).astype(np.float32)
    normals = np.repeat(np.array([[0, 0, 1], [1, 0, 0]], np.float32), len(u), axis=0)
    ids = supervoxels(points, normals=normals, voxel_resolution=0.05, seed_resolution=0.4, **WEIGHTS)
    on_floor = np.arange(len(points)) < len(u)
    for s in np.unique(ids):
        member = ids == s
        minority = min(np.sum(member & on_floor), np.sum(member & ~on_floor))
        assert minority <= 0.1 * member.sum()


def test_pca_normal_is_the_smallest_eigenvector() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        a = rng.normal(size=(3, 3))
        cov = a @ a.T
        w, vecs = np.linalg.eigh(cov)
        n = np.array(smallest_eigenvector(cov[0, 0], cov[0, 1], cov[0, 2], cov[1, 1], cov[1, 2], cov[2, 2]))
        if w[1] - w[0] > 1e-3 * w[2]:
            assert abs(abs(n @ vecs[:, 0]) - 1) < 1e-6
    line = np.outer([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])  # rank one: no unique normal
    assert smallest_eigenvector(line[0, 0], line[0, 1], line[0, 2], line[1, 1], line[1, 2], line[2, 2]) == (0, 0, 0)


def test_rejects_bad_resolutions() -> None:
    points, _, _ = blobs(n_blobs=1)
    with pytest.raises(ValueError):
        supervoxels(points, voxel_resolution=0.5, seed_resolution=0.4, **WEIGHTS)


def test_geosets_stage_runs_vccs_without_faces() -> None:
    points, colors, blob = blobs(n_blobs=2)
    scene = {"points": points, "colors": colors, "normals": np.zeros_like(points)}
    out = geosets_stage({"scenes": scene}, stage_params("geosets", {"voxel_resolution": 0.1,
                                                                    "seed_resolution": 0.4}))
    assert out["method"] == "vccs" and out["set_id"].min() == 0
    assert out["num_sets"] == out["set_id"].max() + 1
    with pytest.raises(SceneError):
        geosets_stage({"scenes": scene}, stage_params("geosets", {"method": "felzenszwalb"}))


def test_nearest_indices_match_a_scan_with_the_lowest_index_on_ties() -> None:
    from pipeline.geometry.neighbours import FEW, nearest_indices

    rng = np.random.default_rng(3)
    points = rng.integers(0, 6, (400, 3)).astype(np.float64)  # a small lattice: many exact ties
    for count in (FEW, 5 * FEW):  # a scan, then a k-d tree
        queries = rng.integers(-1, 7, (count, 3)).astype(np.float64)
        d = ((points[None, :, :] - queries[:, None, :]) ** 2).sum(-1)
        np.testing.assert_array_equal(nearest_indices(points, queries), d.argmin(1))


def test_geosets_vccs_sizes_are_params_not_a_sensor_guess() -> None:
    """A cloud with LiDAR intensity gets the sizes it is given (the dataset declares LiDAR's)."""
    points, colors, _ = blobs(n_blobs=2)
    scene = {"points": points, "colors": colors, "intensity": np.ones(len(points), np.float32)}
    params = stage_params("geosets", {"method": "vccs"})
    expected = supervoxels(points, colors, voxel_resolution=params["voxel_resolution"],
                           seed_resolution=params["seed_resolution"], **WEIGHTS)
    np.testing.assert_array_equal(geosets_stage({"scenes": scene}, params)["set_id"], expected)
    lidar = stage_params("geosets", dataset="nuscenes")
    expected = supervoxels(points, colors, voxel_resolution=0.2, seed_resolution=2.0, **WEIGHTS)
    np.testing.assert_array_equal(geosets_stage({"scenes": scene}, lidar)["set_id"], expected)
