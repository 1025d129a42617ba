"""Pseudo labels (Eq. 1's l_ij): exact on ground-truth features, bilinear/nearest as PyTorch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.errors import SceneError
from pipeline.labels.pairs import pairs_stage
from pipeline.labels.pseudo import denoise_candidates, pseudo_labels, pseudo_stage
from pipeline.stages import stage_params

NUM_CLASSES, WIDTH = 20, 32


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """n random L2-normalised f32 vectors."""
    x = rng.normal(size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def wall_scene(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A 10 cm grid of points on the wall z=4 seen by four cameras; at most one point per pixel."""
    g = np.arange(-2.0, 2.001, 0.1)
    xs, ys = np.meshgrid(g, g)
    points = np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, 4.0)], 1).astype(np.float32)
    poses = []
    for k in range(4):
        a = 0.3 * k
        pose = np.eye(4)
        pose[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
        pose[:2, 3] = rng.uniform(-0.5, 0.5, 2)
        poses.append(pose)
    hw = (64, 96)
    intr = np.array([[80.0, 0.0, 48.0], [0.0, 80.0, 32.0], [0.0, 0.0, 1.0]])
    return {"points": points, "labels": rng.integers(0, NUM_CLASSES, len(points)).astype(np.int16),
            "world_to_camera": np.stack(poses), "intrinsics": np.stack([intr] * 4),
            "depth": np.full((4, *hw), 4.0, np.float32), "color": np.zeros((4, *hw, 3), np.uint8)}


PAIR_PARAMS = {"min_depth": 0.0, "border": 0, "depth_abs_tol": 0.05, "depth_rel_tol": None,
               "occlusion": False}


def test_ground_truth_features_give_ground_truth_labels():
    rng = np.random.default_rng(0)
    scene = wall_scene(rng)
    text = unit_rows(rng, NUM_CLASSES, WIDTH)
    pairs = pairs_stage({"scenes": scene}, PAIR_PARAMS)
    off = pairs["frame_offsets"]
    frame = np.repeat(np.arange(4), np.diff(off))
    row, col = pairs["pixel"][:, 0], pairs["pixel"][:, 1]
    assert len(np.unique(np.stack([frame, row, col]), axis=1).T) == len(frame)  # one per pixel
    pixel_class = rng.integers(0, NUM_CLASSES, (4, 64, 96))
    pixel_class[frame, row, col] = scene["labels"][pairs["point"]]
    features = text[pixel_class].astype(np.float16)  # patch = pixel: h, w = H, W
    out = pseudo_stage({"features": {"features": features}, "text": {"embeddings": text},
                        "pairs": pairs, "scenes": scene},
                       stage_params("pseudo", {"sampling": "bilinear", "temperature": 100.0}))
    assert len(frame) > 3000
    assert out["label"].dtype == np.uint8 and out["confidence"].dtype == np.float16
    np.testing.assert_array_equal(out["label"], scene["labels"][pairs["point"]])
    assert np.all(out["confidence"] > 0.99)


def every_pixel(num_frames: int, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixels i16[P,2] and frame offsets covering every pixel of every frame."""
    rows, cols = np.mgrid[0:hw[0], 0:hw[1]]
    one = np.stack([rows.ravel(), cols.ravel()], 1)
    return (np.tile(one, (num_frames, 1)).astype(np.int16),
            np.arange(num_frames + 1, dtype=np.int64) * len(one))


def torch_reference(features, text, hw, mode, temperature):
    """Labels and confidences from PyTorch upsampled features dotted with the text."""
    f = torch.from_numpy(features.astype(np.float32)).permute(0, 3, 1, 2)
    kw = {"align_corners": False} if mode == "bilinear" else {}
    up = torch.nn.functional.interpolate(f, size=hw, mode=mode, **kw)
    scores = torch.einsum("kdhw,cd->khwc", up, torch.from_numpy(text)).reshape(-1, len(text))
    top2 = scores.topk(2, dim=1).values
    conf = torch.softmax(temperature * scores, dim=1).max(dim=1).values
    return scores.argmax(1).numpy(), conf.numpy(), (top2[:, 0] - top2[:, 1]).numpy()


@pytest.mark.parametrize(("sampling", "torch_mode", "hw"), [
    ("bilinear", "bilinear", (48, 64)), ("bilinear", "bilinear", (50, 70)),
    ("nearest", "nearest-exact", (48, 64)), ("nearest", "nearest-exact", (50, 70))])
def test_sampling_matches_pytorch_upsampling(sampling, torch_mode, hw):
    rng = np.random.default_rng(1)
    features = unit_rows(rng, 3 * 6 * 8, WIDTH).reshape(3, 6, 8, WIDTH).astype(np.float16)
    text = unit_rows(rng, NUM_CLASSES, WIDTH)
    pixels, offsets = every_pixel(3, hw)
    labels, conf = pseudo_labels(features, text, pixels, offsets, hw, sampling=sampling,
                                 temperature=30.0, frames_per_chunk=2)
    ref_labels, ref_conf, margin = torch_reference(features, text, hw, torch_mode, 30.0)
    clear = margin > 1e-4
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(labels[clear], ref_labels[clear])
    np.testing.assert_allclose(conf.astype(np.float32), ref_conf, rtol=2e-3, atol=1e-4)


def test_stage_rejects_mismatched_frames():
    rng = np.random.default_rng(2)
    pixels, offsets = every_pixel(2, (16, 16))
    inputs = {"features": {"features": np.zeros((3, 2, 2, WIDTH), np.float16)},
              "text": {"embeddings": unit_rows(rng, NUM_CLASSES, WIDTH)},
              "pairs": {"point": np.zeros(len(pixels), np.int32), "pixel": pixels,
                        "frame_offsets": offsets},
              "scenes": {"color": np.zeros((2, 16, 16, 3), np.uint8)}}
    with pytest.raises(SceneError, match="3 frames"):
        pseudo_stage(inputs, stage_params("pseudo"))


def hand_frames() -> tuple[np.ndarray, np.ndarray]:
    """Three 2x2-patch frames over 4 classes (text = identity), from chosen patch probabilities.

    The feature of a patch is log(p) / 100, so softmax(100 <f, T>) = p. Frame maxima per class:
    frame 0: 0.9, 0.4, 0.6, 0.3 -> classes 1 and 3 fall below 0.5; patch 1's argmax (class 1)
    goes, leaving class 2. Frame 1: no class reaches 0.5 -> all kept. Frame 2: 0.45, 0.55, 0.75,
    0.85 -> class 0 goes.
    """
    probs = np.array([
        [[0.90, 0.05, 0.03, 0.02], [0.20, 0.40, 0.30, 0.10],
         [0.10, 0.20, 0.60, 0.10], [0.35, 0.30, 0.05, 0.30]],
        [[0.30, 0.25, 0.25, 0.20], [0.20, 0.40, 0.20, 0.20],
         [0.25, 0.25, 0.30, 0.20], [0.20, 0.20, 0.15, 0.45]],
        [[0.45, 0.50, 0.03, 0.02], [0.10, 0.10, 0.75, 0.05],
         [0.05, 0.05, 0.05, 0.85], [0.40, 0.55, 0.03, 0.02]],
    ])
    return (np.log(probs) / 100.0).reshape(3, 2, 2, 4).astype(np.float16), np.eye(4, dtype=np.float32)


def test_prompt_denoising_removes_exactly_the_classes_below_threshold():
    features, text = hand_frames()
    pixels, offsets = every_pixel(3, (2, 2))  # one pixel per patch
    scores = features.astype(np.float32).reshape(3, 4, 4)
    probs = np.exp(100.0 * scores.astype(np.float64))
    probs /= probs.sum(axis=-1, keepdims=True)
    keep = np.array([[1, 0, 1, 0], [1, 1, 1, 1], [0, 1, 1, 1]], dtype=bool)
    np.testing.assert_array_equal(probs.max(axis=1) >= 0.5, [[1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 1, 1]])
    inputs = {"features": {"features": features}, "text": {"embeddings": text},
              "pairs": {"point": np.zeros(len(pixels), np.int32), "pixel": pixels,
                        "frame_offsets": offsets},
              "scenes": {"color": np.zeros((3, 2, 2, 3), np.uint8)}}
    for sampling in ("bilinear", "nearest"):
        plain = pseudo_stage(inputs, stage_params("pseudo", {"sampling": sampling}))
        out = pseudo_stage(inputs, stage_params("pseudo", {"sampling": sampling, "denoise_threshold": 0.5}))
        np.testing.assert_array_equal(plain["label"], probs.argmax(-1).ravel())
        kept = np.where(keep[:, None, :], probs, 0.0)
        kept /= kept.sum(axis=-1, keepdims=True)
        np.testing.assert_array_equal(out["label"], kept.argmax(-1).ravel())
        np.testing.assert_array_equal(out["label"], [0, 2, 2, 0, 0, 1, 2, 3, 1, 2, 3, 1])
        np.testing.assert_allclose(out["confidence"].astype(np.float64), kept.max(-1).ravel(), rtol=3e-3)
    # just above / just below every frame maximum: kept exactly when max >= threshold
    frame_max = probs.max(axis=1)
    for t in np.concatenate([frame_max.ravel() - 0.005, frame_max.ravel() + 0.005]):
        expected = frame_max >= t
        expected[~expected.any(axis=1)] = True
        np.testing.assert_array_equal(denoise_candidates(scores.reshape(3, 2, 2, 4), t), expected)
    np.testing.assert_array_equal(denoise_candidates(scores.reshape(3, 2, 2, 4), None), True)
    # frames are denoised one by one, whatever the chunking
    chunked = pseudo_labels(features, text, pixels, offsets, (2, 2), denoise_threshold=0.5,
                            frames_per_chunk=2)
    np.testing.assert_array_equal(chunked[0], out["label"])


@pytest.mark.parametrize("sampling", ["bilinear", "nearest"])
def test_prompt_denoising_at_zero_threshold_changes_nothing(sampling):
    rng = np.random.default_rng(3)
    features = unit_rows(rng, 3 * 6 * 8, WIDTH).reshape(3, 6, 8, WIDTH).astype(np.float16)
    text = unit_rows(rng, NUM_CLASSES, WIDTH)
    pixels, offsets = every_pixel(3, (50, 70))
    kw = {"sampling": sampling, "temperature": 30.0}
    plain = pseudo_labels(features, text, pixels, offsets, (50, 70), **kw)
    zero = pseudo_labels(features, text, pixels, offsets, (50, 70), denoise_threshold=0.0, **kw)
    half = pseudo_labels(features, text, pixels, offsets, (50, 70), denoise_threshold=0.5, **kw)
    np.testing.assert_array_equal(zero[0], plain[0])
    np.testing.assert_array_equal(zero[1], plain[1])
    assert len(np.unique(plain[0])) > 10 and not np.array_equal(half[0], plain[0])


def test_denoise_threshold_out_of_range_is_rejected():
    features, text = hand_frames()
    pixels, offsets = every_pixel(3, (2, 2))
    with pytest.raises(ValueError, match="denoise_threshold"):
        pseudo_labels(features, text, pixels, offsets, (2, 2), denoise_threshold=1.5)
