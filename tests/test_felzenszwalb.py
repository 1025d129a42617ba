"""Mesh Felzenszwalb segmentation: parity with ScanNet's segmentator and analytic cases."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData
from sklearn.metrics import adjusted_rand_score

from pipeline.geometry.felzenszwalb import edge_weights, segment_mesh
from pipeline.geometry.sets import geosets_stage
from pipeline.geometry.sorting import radix_argsort
from pipeline.stages import stage_params

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "segmentator"
# mesh -> reference build-to-build ARI, from the fixtures' README
ARI_FLOOR = {"bunny": 0.99885, "cycloidal": 0.99825, "featuretype": 1.0, "octagonal_pocket": 0.92368}
# mesh -> how many segments the reference's own two builds differ by (README: 9 vs 10); the
# count must be within 2% of the reference, or within the reference's own spread where larger
REF_COUNT_SPREAD = {"octagonal_pocket": 1}
# the geosets stage's declared Felzenszwalb params (ScanNet's segmentator constants)
SEGMENTATOR = {k: stage_params("geosets")[k] for k in ("k_thresh", "seg_min_verts")}


def read_mesh(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """float32 vertices and int32 triangle faces of a PLY file."""
    ply = PlyData.read(str(path))
    v = ply["vertex"].data
    vertices = np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float32)
    faces = np.vstack(ply["face"].data["vertex_indices"]).astype(np.int32)
    return vertices, faces


def grid_mesh(nx: int, ny: int, height=None) -> tuple[np.ndarray, np.ndarray]:
    """Triangulated nx*ny vertex grid in the xy plane, z = height(x, y)."""
    x, y = np.meshgrid(np.arange(nx, dtype=np.float32), np.arange(ny, dtype=np.float32), indexing="ij")
    z = np.zeros_like(x) if height is None else height(x, y)
    vertices = np.stack([x, y, z], axis=-1).reshape(-1, 3).astype(np.float32)
    idx = np.arange(nx * ny).reshape(nx, ny)
    a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3),
                            np.stack([a, c, d], -1).reshape(-1, 3)]).astype(np.int32)
    return vertices, faces


@pytest.mark.skipif(not FIXTURES.exists(), reason="segmentator fixtures not present")
@pytest.mark.parametrize("mesh", sorted(ARI_FLOOR))
def test_matches_scannet_segmentator(mesh: str) -> None:
    vertices, faces = read_mesh(FIXTURES / f"{mesh}.ply")
    ref = np.asarray(json.loads((FIXTURES / f"{mesh}.0.010000.segs.json").read_text())["segIndices"])
    ours = segment_mesh(vertices, faces, **SEGMENTATOR)
    assert ours.dtype == np.int32 and ours.shape == ref.shape
    assert adjusted_rand_score(ref, ours) >= ARI_FLOOR[mesh]
    n_ref, n_ours = len(np.unique(ref)), len(np.unique(ours))
    assert abs(n_ours - n_ref) <= max(0.02 * n_ref, REF_COUNT_SPREAD.get(mesh, 0))


def test_flat_grid_is_one_set() -> None:
    vertices, faces = grid_mesh(30, 30)
    ids = segment_mesh(vertices, faces, **SEGMENTATOR)
    assert np.all(ids == 0)


def test_sharp_fold_gives_two_sets() -> None:
    # z = 0 for x <= 15, then a 90 degree wall going up: two planes meeting at the line x = 15
    vertices, faces = grid_mesh(31, 20)
    wall = vertices[:, 0] > 15
    vertices[wall, 2] = vertices[wall, 0] - 15
    vertices[wall, 0] = 15
    ids = segment_mesh(vertices, faces, **SEGMENTATOR)
    assert len(np.unique(ids)) == 2
    floor_side = vertices[:, 0] < 15
    up_side = vertices[:, 2] > 0
    assert len(np.unique(ids[floor_side])) == 1 and len(np.unique(ids[up_side])) == 1
    assert ids[floor_side][0] != ids[up_side][0]


def test_small_segments_are_merged_and_unused_vertices_stay_alone() -> None:
    # a flat grid with one 2x2-vertex bump: the bump is below seg_min_verts, so it joins the
    # plane; a vertex on no face cannot be merged and keeps a set of its own
    vertices, faces = grid_mesh(20, 20)
    vertices[(vertices[:, 0] == 10) & (vertices[:, 1] == 10), 2] = 3.0
    vertices = np.vstack([vertices, [[100, 100, 100]]]).astype(np.float32)
    ids = segment_mesh(vertices, faces, **SEGMENTATOR)
    assert len(np.unique(ids[:-1])) == 1
    assert ids[-1] == 1
    no_merge = segment_mesh(vertices, faces, **{**SEGMENTATOR, "seg_min_verts": 1})
    assert len(np.unique(no_merge)) > 2


def test_convex_edges_get_squared_weights() -> None:
    # edge a->b with n_a at 45 degrees to n_b = +z; b above a is a ridge (n_b points along
    # a->b: convex, weight squared), b below a a valley (concave, weight as is)
    normals = np.array([[-1, 0, 1], [0, 0, 1]], dtype=np.float32)
    normals[0] /= np.sqrt(np.float32(2))
    a, b = np.array([0], dtype=np.int32), np.array([1], dtype=np.int32)
    ridge = np.array([[0, 0, 0], [1, 0, 1]], dtype=np.float32)
    valley = np.array([[0, 0, 0], [1, 0, -1]], dtype=np.float32)
    one_minus_cos = 1 - 1 / np.sqrt(2)
    assert edge_weights(ridge, normals, a, b)[0] == pytest.approx(one_minus_cos ** 2, rel=1e-5)
    assert edge_weights(valley, normals, a, b)[0] == pytest.approx(one_minus_cos, rel=1e-5)


def test_radix_argsort_is_a_stable_sort() -> None:
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 1 << 40, 5000).astype(np.uint64)
    keys[::7] = keys[0]  # many ties
    assert np.array_equal(radix_argsort(keys, 40), np.argsort(keys, kind="stable"))


def test_geosets_stage_uses_the_mesh_when_faces_exist() -> None:
    vertices, faces = grid_mesh(30, 30)
    scene = {"points": vertices, "faces": faces, "colors": np.zeros((900, 3), np.uint8)}
    out = geosets_stage({"scenes": scene}, stage_params("geosets"))
    assert out["method"] == "felzenszwalb" and out["num_sets"] == 1
    assert out["set_id"].dtype == np.int32 and out["set_id"].shape == (900,)
