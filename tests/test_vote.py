"""The weighted set vote (the `vote` stage, beyond the paper): weights decide, abstaining pairs
fall back to counting, scene scope gives a set one label in every frame, the viewing weight
prefers close head-on views, and the colour term and the size cap cut sets where they should."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import SceneError
from pipeline.geometry.felzenszwalb import segment_mesh
from pipeline.geometry.sets import split_sets
from pipeline.labels.refine import refine_labels
from pipeline.labels.vote import (
    pair_weights,
    view_weights,
    vote_sets,
    vote_stage,
    weighted_set_vote,
)
from pipeline.stages import stage_params

SEGMENTATOR = {k: stage_params("geosets")[k] for k in ("k_thresh", "seg_min_verts")}  # declared defaults


def test_weights_decide_the_vote_and_counting_is_the_papers_mode():
    labels = np.array([1, 1, 2, 0], np.uint8)
    sets = np.array([0, 0, 0, -1])
    groups = np.zeros(4, np.int64)
    counted = weighted_set_vote(labels, np.ones(4), sets, groups, 3)
    assert counted.tolist() == [1, 1, 1, 0]  # the set-less pair keeps its label
    assert np.array_equal(counted, refine_labels(labels, sets, groups))
    confident = weighted_set_vote(labels, np.array([0.2, 0.2, 0.9, 1.0]), sets, groups, 3)
    assert confident.tolist() == [2, 2, 2, 0]


def test_abstaining_pairs_fall_back_to_counting_when_a_whole_set_abstains():
    conf = np.array([0.1, 0.1, 0.2, 0.9, 0.3])
    weights = pair_weights("confidence", conf, 0.5, None)
    assert weights.tolist() == [0, 0, 0, 0.9, 0]
    labels = np.array([1, 1, 2, 0, 2], np.uint8)
    sets = np.array([0, 0, 0, 1, 1])
    out = weighted_set_vote(labels, weights, sets, np.zeros(5, np.int64), 3)
    assert out.tolist() == [1, 1, 1, 0, 0]
    with pytest.raises(ValueError, match="vote weight"):
        pair_weights("loudest", conf, 0.0, None)


def test_scene_scope_gives_a_set_one_label_in_every_frame():
    labels = np.array([1, 1, 2, 2, 2], np.uint8)  # frame 0: two 1s; frame 1: three 2s
    sets = np.zeros(5, np.int64)
    frames = np.array([0, 0, 1, 1, 1])
    per_frame = weighted_set_vote(labels, np.ones(5), sets, frames, 3)
    per_scene = weighted_set_vote(labels, np.ones(5), sets, np.zeros(5, np.int64), 3)
    assert per_frame.tolist() == [1, 1, 2, 2, 2]
    assert per_scene.tolist() == [2] * 5


def test_view_weight_prefers_close_head_on_views():
    points = np.array([[0.0, 0.0, 0.0]], np.float32)
    normals = np.array([[0.0, 0.0, 1.0]], np.float32)
    poses = []
    for centre in ([0.0, 0.0, 1.0], [0.0, 0.0, 3.0], [2.0, 0.0, 0.2]):  # near head-on, far, grazing
        pose = np.eye(4)
        pose[:3, 3] = -np.asarray(centre)  # identity rotation: camera_from_world = x - centre
        poses.append(pose)
    w = view_weights(points, normals, np.stack(poses), np.zeros(3, np.int64), np.arange(3))
    assert w[0] == pytest.approx(1.0)
    assert w[1] == pytest.approx(1 / 9)
    assert w[2] < 0.05


def flat_mesh(colors_split: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A flat 20 x 10 vertex grid (1 cm spacing), red on the left half, blue on the right if split."""
    xs, ys = np.meshgrid(np.arange(20), np.arange(10), indexing="ij")
    points = np.stack([xs.ravel() * 0.01, ys.ravel() * 0.01, np.zeros(xs.size)], 1).astype(np.float32)
    idx = np.arange(xs.size).reshape(20, 10)
    faces = np.concatenate([np.stack([idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[:-1, 1:].ravel()], 1),
                            np.stack([idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()], 1)])
    colors = np.zeros((xs.size, 3), np.uint8)
    colors[:, 0] = 255
    if colors_split:
        colors[xs.ravel() >= 10] = (0, 0, 255)
    return points, faces.astype(np.int32), colors


def test_colour_term_splits_a_flat_surface_at_a_colour_edge_and_is_off_at_zero():
    points, faces, colors = flat_mesh(colors_split=True)
    plain = segment_mesh(points, faces, **SEGMENTATOR)
    assert len(np.unique(plain)) == 1  # normals alone: one flat set
    assert np.array_equal(segment_mesh(points, faces, **SEGMENTATOR, colors=colors, color_weight=0.0), plain)
    coloured = segment_mesh(points, faces, **SEGMENTATOR, colors=colors, color_weight=1.0)
    left, right = coloured[points[:, 0] < 0.095], coloured[points[:, 0] > 0.095]
    assert len(np.unique(left)) == 1 and len(np.unique(right)) == 1 and left[0] != right[0]


def test_size_cap_cuts_sets_by_a_grid_and_keeps_unassigned_points():
    points = np.array([[0.1, 0, 0], [0.9, 0, 0], [1.1, 0, 0], [2.5, 0, 0], [0.2, 0, 0]], np.float32)
    sets = np.array([0, 0, 0, 1, -1])
    assert split_sets(sets, points, 1.0).tolist() == [0, 0, 1, 2, -1]


def test_vote_stage_reads_its_declared_params_and_refuses_colour_without_a_mesh():
    params = stage_params("vote")
    points, faces, colors = flat_mesh(colors_split=False)
    n = len(points)
    scene = {"points": points, "normals": np.tile([0, 0, 1.0], (n, 1)).astype(np.float32), "colors": colors,
             "faces": faces, "world_to_camera": np.stack([np.eye(4), np.eye(4)])}
    point = np.concatenate([np.arange(n), np.arange(n)]).astype(np.int32)
    label = np.concatenate([np.full(n, 3), np.full(n, 4)]).astype(np.uint8)
    label[:5] = 4
    conf = np.concatenate([np.full(n, 0.9), np.full(n, 0.5)]).astype(np.float16)
    inputs = {"scenes": scene, "pseudo": {"label": label, "confidence": conf},
              "geosets": {"set_id": np.zeros(n, np.int32)},
              "pairs": {"point": point, "frame_offsets": np.array([0, n, 2 * n])}}
    assert (params["scope"], params["weight"]) == ("scene", "confidence")
    out = vote_stage(inputs, params)["label"]
    assert out.dtype == np.uint8 and set(out.tolist()) == {3}  # 195 x 0.9 for 3 beats 205 x 0.5 for 4
    counted = vote_stage(inputs, {**params, "weight": "count"})["label"]
    assert set(counted.tolist()) == {4}
    with pytest.raises(SceneError, match="needs a mesh"):
        vote_sets({**scene, "faces": np.zeros((0, 3), np.int32)}, np.zeros(n), {**params, "color_weight": 1.0})
