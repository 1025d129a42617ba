"""Synthetic ScanNet scans made the way ScanNet's were: openings with real geometry, a handheld
scan that sees the room, a structured-light depth model, and a mesh fused from the noisy depth
that holds only measured surface, with ground truth moved onto it."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.datasets.synthetic import coverage, rooms, sensor
from pipeline.datasets.synthetic.fusion import FusedMesh, FusionParams, canonical_order
from pipeline.datasets.synthetic.mesh import build_room_mesh
from pipeline.datasets.synthetic.scannet import FRAMES, FUSION_EVERY, make_scan


@pytest.fixture(scope="module")
def scan():
    """One full-size room (the benchmark's frame count and voxel)."""
    return make_scan(0, 0)


def test_every_room_is_seen_almost_completely(scan):
    seen = coverage.observed(scan.vertices, scan.poses, scan.intrinsics, scan.depth)
    assert len(scan.poses) == FRAMES and len(scan.fused_poses) == FRAMES * FUSION_EVERY
    assert seen.mean() >= 0.95


def test_fused_mesh_holds_no_hidden_surface(scan):
    """No fused vertex lies farther than a few centimetres from every depth measurement."""
    dist = coverage.depth_distance(scan.vertices, scan.fused_poses, scan.intrinsics, scan.fused_depth)
    assert dist.max() < 2.5 * FusionParams.voxel
    assert np.quantile(dist, 0.99) < FusionParams.voxel
    assert 40_000 < len(scan.vertices) < 160_000  # ScanNet's _vh_clean_2 range


def test_ground_truth_moves_to_fused_vertices(scan):
    labelled = scan.labels > 0
    assert labelled.mean() > 0.95
    present = set(np.unique(scan.labels[labelled]).tolist())
    assert {rooms.WALL, rooms.FLOOR, rooms.DOOR, rooms.WINDOW} <= present
    # the per-pixel ground truth agrees with the fused vertices' labels where both see a surface
    assert {rooms.WALL, rooms.FLOOR} <= set(np.unique(scan.frame_labels).tolist())


def test_depth_noise_follows_the_structured_light_model():
    rng = np.random.default_rng(0)
    z = np.repeat(np.linspace(0.2, 4.6, 23), 4000).reshape(92, 1000)
    measured = sensor.measure_depth(z, np.ones_like(z), rng).astype(np.float64) / 1000.0
    assert not measured[z < 0.4].any() and not measured[z > 4.0].any()
    for zi in (1.0, 2.0, 3.0, 3.8):
        rows = np.isclose(z[:, 0], zi, atol=0.1)
        got = measured[rows][measured[rows] > 0] - z[rows][measured[rows] > 0]
        expected = np.sqrt(sensor.axial_sigma(z[rows][0, 0]) ** 2 + 0.001 ** 2 / 12)  # + mm quantisation
        assert abs(got.std() / expected - 1) < 0.15, zi
        assert abs(got.mean()) < expected / 5
    assert np.allclose(measured[measured > 0] * 1000, np.round(measured[measured > 0] * 1000))


def test_depth_drops_out_at_grazing_angles_and_edges():
    rng = np.random.default_rng(1)
    z = np.full((100, 100), 2.0)
    cos = np.cos(np.radians(np.repeat(np.linspace(0, 89, 100)[None], 100, 0)))
    kept = sensor.measure_depth(z, cos, rng) > 0
    assert kept[:, :70].mean() > 0.99 and kept[:, -5:].mean() == 0.0
    step = np.where(np.arange(100)[None] < 50, 1.5, 3.0).repeat(100, 0)
    edge = sensor.measure_depth(step, np.ones_like(step), rng) > 0
    assert edge[:, 49:51].mean() < 0.6 and edge[:, 10:40].mean() > 0.99


def test_openings_are_holes_filled_by_recessed_doors_and_windows():
    room = rooms.generate_room(np.random.default_rng([0, 7]), "office")
    mesh = build_room_mesh(room, 0.04)
    centre = mesh.vertices[mesh.faces].mean(axis=1)
    for op in room.openings:
        axis, fixed = (0, 1) if op.wall in (0, 2) else (1, 0)
        plane = {0: 0.0, 1: room.size[0], 2: room.size[1], 3: 0.0}[op.wall]
        inward = {0: 1.0, 1: -1.0, 2: -1.0, 3: 1.0}[op.wall]
        inside = ((centre[:, axis] > op.s0 + 0.01) & (centre[:, axis] < op.s1 - 0.01)
                  & (centre[:, 2] > op.z0 + 0.01) & (centre[:, 2] < op.z1 - 0.01))
        on_plane = inside & (np.abs(centre[:, fixed] - plane) < 1e-6)
        assert not (mesh.face_labels[on_plane] == rooms.WALL).any()  # a hole in the wall
        depth_into_room = (centre[:, fixed] - plane) * inward
        leaf = inside & (mesh.face_labels == op.label) & (depth_into_room < -0.01)
        recess = rooms.DOOR_RECESS if op.label == rooms.DOOR else rooms.WINDOW_RECESS
        assert np.isclose(-depth_into_room[leaf], recess, atol=1e-6).any()  # set back behind the wall face
        proud = (mesh.face_labels == op.label) & np.isclose(depth_into_room, rooms.FRAME_PROUD, atol=1e-6)
        assert proud.any()  # casings stand out of the wall


def test_written_poses_differ_slightly_from_rendered_ones():
    rng = np.random.default_rng(2)
    pose = np.eye(4)
    errs = np.array([np.linalg.norm(sensor.perturb_pose(pose, rng)[:3, 3]) for _ in range(200)])
    assert 0.002 < np.median(errs) < 0.02


def _triangles(mesh: FusedMesh) -> list[tuple]:
    """Each face as its corners' coordinates, from its smallest corner on (winding kept), sorted."""
    corners = [[tuple(mesh.vertices[i].tolist()) for i in face] for face in mesh.faces]
    return sorted(min(c[k:] + c[:k] for k in range(3)) for c in corners)


def test_canonical_order_depends_on_the_geometry_alone():
    """Any vertex order, face order and face rotation of one mesh give the same arrays, and the
    same triangles with the same winding."""
    rng = np.random.default_rng(0)
    faces = np.stack([rng.choice(50, 3, replace=False) for _ in range(80)])  # no degenerate face, as fuse leaves
    mesh = FusedMesh(rng.random((50, 3), dtype=np.float32), faces.astype(np.int32),
                     rng.integers(0, 256, (50, 3)).astype(np.uint8))
    perm = rng.permutation(50)
    moved = np.argsort(perm)[mesh.faces]
    turns = rng.integers(0, 3, 80)
    rotated = np.stack([np.roll(face, int(k)) for face, k in zip(moved, turns, strict=True)])[rng.permutation(80)]
    shuffled = FusedMesh(mesh.vertices[perm], rotated.astype(np.int32), mesh.colors[perm])
    a, b = canonical_order(mesh), canonical_order(shuffled)
    for name in ("vertices", "faces", "colors"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert _triangles(a) == _triangles(mesh)
    assert (np.diff(a.vertices[:, 0]) >= 0).all() and (a.faces[:, 0] <= a.faces[:, 1:].min(axis=1)).all()


def test_a_room_generated_twice_is_the_same_mesh(scan):
    again = make_scan(0, 0)
    for name in ("vertices", "faces", "colors", "labels"):
        np.testing.assert_array_equal(getattr(again, name), getattr(scan, name), err_msg=name)
