"""Simulated MaskCLIP features: clean at scale 0, each noise's structure, determinism, the stage, pseudo labels."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import SceneError
from pipeline.labels.pseudo import pseudo_labels
from pipeline.labels.simulated_vlm import (
    incidence_cosines,
    simulated_features,
    simulated_features_stage,
    view_confusion_probability,
)

H, W, PATCH = 96, 128, 16
INTR = np.array([[100.0, 0.0, 64.0], [0.0, 100.0, 48.0], [0.0, 0.0, 1.0]])
PARAMS = {
    "seed": 0, "noise_scale": 1.0, "patch_size": PATCH, "bleed_px": 8.0,
    "scene_confusion_prob": 0.15, "scene_confusion_strength": 0.6,
    "view_confusion_prob": 0.1, "view_confusion_strength": 0.6,
    "view_distance_gain": 1.0, "view_border_gain": 0.5, "view_grazing_gain": 0.5,
    "bias_std": 0.1, "noise_std": 0.25,
}
QUIET = {**PARAMS, "bleed_px": 0.0, "scene_confusion_prob": 0.0, "scene_confusion_strength": 0.0,
         "view_confusion_prob": 0.0, "view_confusion_strength": 0.0, "bias_std": 0.0, "noise_std": 0.0}


def prototypes(num_classes: int = 20, dim: int = 512, orthonormal: bool = False) -> np.ndarray:
    """Unit class prototypes f32[C,D]: random directions, or exactly orthonormal ones."""
    rng = np.random.default_rng(7)
    t = rng.standard_normal((dim, num_classes) if orthonormal else (num_classes, dim))
    t = np.linalg.qr(t)[0].T if orthonormal else t / np.linalg.norm(t, axis=1, keepdims=True)
    return t.astype(np.float32)


def frames(labels: np.ndarray, depth: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels i16[K,H,W], constant depth and shared intrinsics for a stack of label images."""
    labels = np.asarray(labels, dtype=np.int16)
    return labels, np.full(labels.shape, depth, np.float32), np.repeat(INTR[None], labels.shape[0], axis=0)


def rectangles(seed: int, num_frames: int = 3, num_classes: int = 20) -> np.ndarray:
    """Label images of random unaligned rectangles of random classes (some unannotated) on a class-0 field."""
    rng = np.random.default_rng(seed)
    out = np.zeros((num_frames, H, W), np.int16)
    for k in range(num_frames):
        for _ in range(6):
            y, x = rng.integers(0, H - 20), rng.integers(0, W - 20)
            dy, dx = rng.integers(20, 60, 2)
            out[k, y:y + dy, x:x + dx] = rng.integers(-1, num_classes)
    return out


def scores(features: np.ndarray, protos: np.ndarray) -> np.ndarray:
    """Per-patch class scores f32[K,h,w,C]."""
    return features.astype(np.float32) @ protos.T


def patch_classes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per patch of i16[K,H,W]: its first pixel's class and whether all its pixels share it."""
    k, h, w = labels.shape[0], labels.shape[1] // PATCH, labels.shape[2] // PATCH
    blocks = labels[:, :h * PATCH, :w * PATCH].reshape(k, h, PATCH, w, PATCH)
    first = blocks[:, :, 0, :, 0]
    return first, (blocks == first[:, :, None, :, None]).all(axis=(2, 4))


def test_scale_zero_gives_clean_features():
    protos = prototypes()
    labels, depth, intr = frames(rectangles(0))
    f = simulated_features(labels, depth, intr, protos, 0, {**PARAMS, "noise_scale": 0.0})
    assert f.shape == (3, H // PATCH, W // PATCH, 512) and f.dtype == np.float16
    cls, pure = patch_classes(labels)
    pure &= cls >= 0
    assert pure.sum() > 50
    np.testing.assert_array_equal(scores(f, protos).argmax(-1)[pure], cls[pure])
    np.testing.assert_allclose(scores(f, protos).max(-1)[pure], 1.0, atol=2e-3)


def test_bleed_carries_the_neighbour_across_a_boundary():
    protos = prototypes(orthonormal=True)
    labels = np.full((1, H, W), 3)
    labels[:, :, 4 * PATCH:] = 7
    labels, depth, intr = frames(labels)
    bled = scores(simulated_features(labels, depth, intr, protos, 0, {**QUIET, "bleed_px": 8.0}), protos)
    clean = scores(simulated_features(labels, depth, intr, protos, 0, {**QUIET, "noise_scale": 0.0,
                                                                         "bleed_px": 8.0}), protos)
    assert (bled[0, :, 3, 7] > 0.05).all() and (bled[0, :, 4, 3] > 0.05).all()
    assert (bled[0, :, 0, 7] < 1e-3).all()  # far from the boundary: nothing
    assert np.abs(clean[0, :, 3, 7]).max() < 1e-3
    assert (bled[0, :, 3].argmax(-1) == 3).all()


def test_scene_confusion_is_the_same_in_every_frame():
    num_classes = 7
    protos = prototypes(num_classes)
    stripes = np.repeat(np.arange(num_classes), PATCH)[None, None, :].repeat(H, axis=1).repeat(5, axis=0)
    labels, depth, intr = frames(stripes)
    params = {**QUIET, "scene_confusion_prob": 1.0, "scene_confusion_strength": 1.0}
    read = scores(simulated_features(labels, depth, intr, protos, 0, params, scene_key=11), protos).argmax(-1)
    mapping = read[0, 0]
    assert (read == mapping).all()  # every frame, every row
    assert (mapping != np.arange(num_classes)).all()
    other = scores(simulated_features(labels, depth, intr, protos, 0, params, scene_key=12), protos).argmax(-1)
    assert (other[:, 0] != mapping).any()  # another scene, another draw


def test_scene_confusion_uses_scannet_lookalikes():
    protos = prototypes(20)
    labels, depth, intr = frames(np.full((2, H, W), 6))  # table
    params = {**QUIET, "scene_confusion_prob": 1.0, "scene_confusion_strength": 1.0}
    read = scores(simulated_features(labels, depth, intr, protos, 0, params), protos).argmax(-1)
    assert (read == 12).all()  # desk


def test_view_confusion_varies_between_frames():
    num_classes = 7
    protos = prototypes(num_classes)
    labels, depth, intr = frames(np.full((8, H, W), 2))
    params = {**QUIET, "view_confusion_prob": 1.0, "view_confusion_strength": 1.0}
    read = scores(simulated_features(labels, depth, intr, protos, 0, params), protos).argmax(-1)
    per_frame = read[:, 0, 0]
    assert (read == per_frame[:, None, None]).all() and (per_frame != 2).all()
    assert len(set(per_frame.tolist())) > 1


def test_view_confusion_probability_terms():
    labels = np.full((H, W), -1)
    labels[10:30, 10:30] = 1       # near, inside, facing the camera
    labels[0:20, 60:80] = 2        # cut by the top border
    labels[40:60, 10:30] = 3       # far
    labels[40:60, 60:80] = 4       # grazing
    depth = np.where(labels == 3, 4.0, 1.0).astype(np.float32)
    cosines = np.where(labels == 4, 0.2, 0.9).astype(np.float32)
    gains = {"view_confusion_prob": 0.1, "view_distance_gain": 1.0, "view_border_gain": 2.0,
             "view_grazing_gain": 3.0}
    chance = view_confusion_probability(labels, depth, cosines, np.array([1, 2, 3, 4]), gains)
    np.testing.assert_allclose(chance, [0.1, 0.3, 0.2, 0.4])


def test_incidence_cosines_of_a_wall_and_a_floor():
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    wall = incidence_cosines(np.full((H, W), 2.0, np.float32), INTR)
    ray_z = 1.0 / np.sqrt(((u - 64) / 100) ** 2 + ((v - 48) / 100) ** 2 + 1)
    np.testing.assert_allclose(wall[:-1, :-1], ray_z[:-1, :-1], atol=1e-4)  # the last row and column: copies
    below = (v - 48) / 100  # floor 1 m below the camera (camera y points down)
    depth = np.where(below > 0, 1.0 / np.maximum(below, 1e-9), 0.0).astype(np.float32)
    floor = incidence_cosines(depth, INTR)
    inner = (v > 50) & (v < H - 1) & (u < W - 1)
    np.testing.assert_allclose(floor[inner], (below * ray_z)[inner], atol=1e-4)
    assert np.isnan(floor[:40]).all()


def test_deterministic_and_seeded():
    protos = prototypes()
    labels, depth, intr = frames(rectangles(1))
    a = simulated_features(labels, depth, intr, protos, 3, PARAMS, scene_key=5)
    b = simulated_features(labels, depth, intr, protos, 3, PARAMS, scene_key=5)
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, simulated_features(labels, depth, intr, protos, 4, PARAMS, scene_key=5))
    assert not np.array_equal(a, simulated_features(labels, depth, intr, protos, 3, PARAMS, scene_key=6))


def test_class_bias_depends_on_the_seed_only():
    protos = prototypes(orthonormal=True)
    labels, depth, intr = frames(rectangles(2, num_classes=20).clip(0))
    params = {**QUIET, "bias_std": 0.3}
    a = simulated_features(labels, depth, intr, protos, 1, params, scene_key=1)
    np.testing.assert_array_equal(a, simulated_features(labels, depth, intr, protos, 1, params, scene_key=2))
    assert not np.array_equal(a, simulated_features(labels, depth, intr, protos, 2, params, scene_key=1))
    # on a patch of class c every other class's score is its bias over the norm: the same everywhere
    s = scores(a, protos)
    cls, pure = patch_classes(labels)
    first, second = np.argwhere(pure & (cls == 0))[[0, -1]]
    np.testing.assert_allclose(s[tuple(first)][1:], s[tuple(second)][1:], atol=2e-3)
    assert np.abs(s[tuple(first)][1:]).max() > 0.05


def stage_inputs(labels: np.ndarray, num_points: int = 100) -> dict:
    """Stage inputs: a scene with frames of `labels` and random points, and the text stage."""
    labels, depth, intr = frames(labels)
    points = np.random.default_rng(num_points).uniform(0, 4, (num_points, 3)).astype(np.float32)
    scene = {"frame_labels": labels, "depth": depth, "intrinsics": intr, "points": points,
             "frame_ids": np.arange(labels.shape[0])}
    return {"scenes": scene, "text": {"embeddings": prototypes()}}


def test_stage_output():
    inputs = stage_inputs(rectangles(3, num_frames=2))
    out = simulated_features_stage(inputs, PARAMS)
    f = out["features"]
    assert f.shape == (2, H // PATCH, W // PATCH, 512) and f.dtype == np.float16
    np.testing.assert_allclose(np.linalg.norm(f.astype(np.float32), axis=-1), 1.0, atol=2e-3)
    assert out["patch_size"] == [PATCH, PATCH]
    other_scene = simulated_features_stage(stage_inputs(rectangles(3, num_frames=2), num_points=101), PARAMS)
    assert not np.array_equal(f, other_scene["features"])


def test_stage_errors():
    inputs = stage_inputs(rectangles(4, num_frames=1))
    del inputs["scenes"]["frame_labels"]
    with pytest.raises(SceneError, match="scene has no frame_labels"):
        simulated_features_stage(inputs, PARAMS)
    with pytest.raises(ValueError, match="view_confusion_prob"):
        simulated_features_stage(stage_inputs(rectangles(4, num_frames=1)), {**PARAMS, "view_confusion_prob": 1.5})
    bad = stage_inputs(np.full((1, H, W), 25))
    with pytest.raises(SceneError, match="class 25"):
        simulated_features_stage(bad, PARAMS)


def test_pseudo_labels_from_features():
    protos = prototypes()
    boundary = 72  # inside a patch
    labels = np.where(np.arange(W) < boundary, 2, 5)[None, None, :].repeat(H, axis=1)
    labels, depth, intr = frames(labels)
    f = simulated_features(labels, depth, intr, protos, 0, {**QUIET, "bleed_px": 8.0, "noise_std": 0.05})
    v, u = np.mgrid[0:H, 0:W]
    pixels = np.stack([v.ravel(), u.ravel()], axis=1).astype(np.int32)
    label, confidence = pseudo_labels(f, protos, pixels, np.array([0, pixels.shape[0]]), (H, W))
    distance = np.abs(u.ravel() - boundary)
    away = distance >= PATCH
    np.testing.assert_array_equal(label[away], labels.ravel()[away])
    confidence = confidence.astype(np.float32)
    inside = confidence[distance >= 2 * PATCH]
    assert inside.min() > 0.99
    assert confidence[distance <= 2].mean() < inside.mean() - 0.02
    assert confidence[distance <= 2].min() < 0.8
