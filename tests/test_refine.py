"""Intra-set label refinement: the vote on a hand-built scene, ties, no-set pairs, scopes."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import SceneError
from pipeline.labels.refine import refine_labels, refine_stage


def hand_scene() -> dict[str, dict[str, np.ndarray]]:
    """6 points in sets [0, 0, 0, 1, 1, -1]; frame 0 sees points 0-5, frame 1 sees 0-3."""
    set_id = np.array([0, 0, 0, 1, 1, -1], dtype=np.int32)
    point = np.array([0, 1, 2, 3, 4, 5, 0, 1, 2, 3], dtype=np.int32)
    label = np.array([2, 2, 7, 4, 5, 9, 7, 7, 3, 1], dtype=np.uint8)
    offsets = np.array([0, 6, 10], dtype=np.int64)
    return {"pseudo": {"label": label}, "pairs": {"point": point, "frame_offsets": offsets},
            "geosets": {"set_id": set_id}}


def test_frame_vote_on_hand_built_scene() -> None:
    out = refine_stage(hand_scene(), {"scope": "frame"})["label"]
    # frame 0: set 0 votes {2, 2, 7} -> 2; set 1 ties {4, 5} -> 4; point 5 has no set -> 9
    # frame 1: set 0 votes {7, 7, 3} -> 7; set 1 has only {1} -> 1
    assert out.dtype == np.uint8
    assert out.tolist() == [2, 2, 2, 4, 4, 9, 7, 7, 7, 1]


def test_scene_vote_pools_frames() -> None:
    out = refine_stage(hand_scene(), {"scope": "scene"})["label"]
    # set 0 over both frames: {2, 2, 7, 7, 7, 3} -> 7; set 1: {4, 5, 1} all once -> 1
    assert out.tolist() == [7, 7, 7, 1, 1, 9, 7, 7, 7, 1]


def test_kernel_matches_a_brute_force_vote() -> None:
    rng = np.random.default_rng(0)
    n = 5000
    labels = rng.integers(0, 20, n).astype(np.uint8)
    sets = rng.integers(-1, 60, n).astype(np.int32)
    groups = rng.integers(0, 7, n).astype(np.int32) * 1000 - 3000  # sparse, negative ids too
    out = refine_labels(labels, sets, groups)
    expected = labels.copy()
    for g in np.unique(groups):
        for s in np.unique(sets[sets >= 0]):
            m = (groups == g) & (sets == s)
            if m.any():
                expected[m] = np.argmax(np.bincount(labels[m], minlength=256))
    assert np.array_equal(out, expected)


def test_stage_rejects_misaligned_inputs() -> None:
    scene = hand_scene()
    scene["pseudo"]["label"] = scene["pseudo"]["label"][:-1]
    with pytest.raises(SceneError):
        refine_stage(scene, {"scope": "frame"})
    scene = hand_scene()
    scene["pairs"]["point"] = scene["pairs"]["point"] + 10
    with pytest.raises(SceneError):
        refine_stage(scene, {"scope": "frame"})
