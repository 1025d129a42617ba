"""A simulated MaskCLIP: dense per-frame patch features composed from per-pixel ground truth.

No CLIP weights ship with the project, so quality benchmarks replace the `features` stage by
this model of a MaskCLIP patch feature: the class prototypes (the `text` stage's embeddings) of
the patch's content, mixed with MaskCLIP's failure modes: (a) boundary bleed between neighbouring
objects, (b) scene-level look-alike confusions, (c) view-dependent confusions that grow with
distance, a cut by the image border and grazing incidence, (d) a global per-class bias, (e) a
background direction and (f) Gaussian noise. The ordinary `pseudo` stage then labels the pairs,
so errors follow image structure and the max-softmax confidence carries signal, unlike
`pipeline.labels.simulated`, which corrupts labels point by point. One knob, `noise_scale`,
scales every noise magnitude; 0 gives clean features. Randomness comes from Generators seeded by
(seed, scene digest, frame index): deterministic per scene, independent of scheduling. Never a
source for real data.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter1d

from pipeline.errors import SceneError
from pipeline.labels.simulated import LOOKALIKES_BY_CLASS_COUNT, confuse, partner_table, scene_seed

# Params that `noise_scale` multiplies: chances and strengths (clipped to [0, 1]), magnitudes.
UNIT_PARAMS = ("scene_confusion_prob", "scene_confusion_strength", "view_confusion_prob",
               "view_confusion_strength")
MAGNITUDE_PARAMS = ("bleed_px", "bias_std", "noise_std")
GAIN_PARAMS = ("view_distance_gain", "view_border_gain", "view_grazing_gain")
# Median depth (m) where the view distance term starts, and the span over which it reaches 1.
NEAR_DEPTH, DEPTH_SPAN = 1.5, 2.5
GRAZING_COSINE = 0.5

_SALT_BIAS, _SALT_SCENE, _SALT_FRAME = range(1, 4)


def _rng(*keys: int) -> np.random.Generator:
    """A Generator seeded by integer keys (any sign)."""
    return np.random.default_rng([int(key) & 0xFFFFFFFFFFFFFFFF for key in keys])


def scaled_params(params: Mapping[str, Any]) -> dict[str, float]:
    """The noise params times `noise_scale` (chances and strengths clipped to [0, 1]) and the gains."""
    scale = float(params["noise_scale"])
    if scale < 0:
        raise ValueError(f"noise_scale must be >= 0, got {scale}")
    out = {}
    for key in UNIT_PARAMS:
        value = float(params[key])
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{key} must be in [0, 1], got {value}")
        out[key] = min(1.0, scale * value)
    for key in MAGNITUDE_PARAMS:
        value = float(params[key])
        if value < 0:
            raise ValueError(f"{key} must be >= 0, got {value}")
        out[key] = scale * value
    for key in GAIN_PARAMS:
        value = float(params[key])
        if value < 0:
            raise ValueError(f"{key} must be >= 0, got {value}")
        out[key] = value
    return out


def patch_blur_operator(size: int, patch: int, sigma: float) -> np.ndarray:
    """f32[size // patch, size]: a Gaussian blur of sigma pixels (reflected edges), then each patch's mean."""
    blur = np.eye(size)
    if sigma > 0:
        blur = gaussian_filter1d(blur, sigma, axis=0, mode="reflect")
    cells = size // patch
    mean = np.zeros((cells, size))
    mean[np.repeat(np.arange(cells), patch), np.arange(cells * patch)] = 1.0 / patch
    return (mean @ blur).astype(np.float32)


def content_weights(labels: np.ndarray, num_classes: int, rows_op: np.ndarray,
                    cols_op: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Channels i64[n] present in a frame's labels (num_classes = background) and their blurred
    patch fractions f32[n,h,w] (step a); over all channels they sum to 1 at every patch."""
    channel = np.where(labels < 0, num_classes, labels)
    present = np.flatnonzero(np.bincount(channel.ravel(), minlength=num_classes + 1))
    onehot = (channel[None] == present[:, None, None]).astype(np.float32)
    return present, rows_op @ (onehot @ cols_op.T)


def incidence_cosines(depth: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """|cos| f32[H,W] of the angle between each pixel's viewing ray and the depth image's surface
    normal (cross product of forward differences of the back-projected points); NaN without depth."""
    height, width = depth.shape
    camera_from_pixel = np.linalg.inv(intrinsics).astype(np.float32)
    u = np.arange(width, dtype=np.float32)[None, :]
    v = np.arange(height, dtype=np.float32)[:, None]
    z = np.where(depth > 0, depth, np.nan).astype(np.float32)
    rays = [row[0] * u + row[1] * v + row[2] for row in camera_from_pixel]
    points = [ray * z for ray in rays]
    du = [p[:-1, 1:] - p[:-1, :-1] for p in points]
    dv = [p[1:, :-1] - p[:-1, :-1] for p in points]
    normal = (du[1] * dv[2] - du[2] * dv[1], du[2] * dv[0] - du[0] * dv[2], du[0] * dv[1] - du[1] * dv[0])
    ray = [np.broadcast_to(r, z.shape)[:-1, :-1] for r in rays]
    dot = normal[0] * ray[0] + normal[1] * ray[1] + normal[2] * ray[2]
    norms = (normal[0] ** 2 + normal[1] ** 2 + normal[2] ** 2) * (ray[0] ** 2 + ray[1] ** 2 + ray[2] ** 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.abs(dot) / np.sqrt(norms)
    return np.pad(cos, ((0, 1), (0, 1)), mode="edge")


def view_confusion_probability(labels: np.ndarray, depth: np.ndarray, cosines: np.ndarray,
                               classes: np.ndarray, params: Mapping[str, float]) -> np.ndarray:
    """Chance f64[n] that a frame reads each of its classes i64[n] as a look-alike (step c).

    Base chance times 1 + distance gain * ramp(median depth) + border gain * [touches the image
    border] + grazing gain * [median |cos incidence| < 0.5]; pixels without depth are left out.
    """
    on_border = np.isin(classes, np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    distance = np.zeros(classes.size)
    grazing = np.zeros(classes.size, dtype=bool)
    for i, c in enumerate(classes):
        mask = labels == c
        d = depth[mask]
        d = d[d > 0]
        if d.size:
            distance[i] = np.clip((np.median(d) - NEAR_DEPTH) / DEPTH_SPAN, 0.0, 1.0)
        cos = cosines[mask]
        cos = cos[~np.isnan(cos)]
        grazing[i] = cos.size > 0 and np.median(cos) < GRAZING_COSINE
    gain = (1.0 + params["view_distance_gain"] * distance + params["view_border_gain"] * on_border
            + params["view_grazing_gain"] * grazing)
    return np.clip(params["view_confusion_prob"] * gain, 0.0, 1.0)


def simulated_features(frame_labels: np.ndarray, depth: np.ndarray, intrinsics: np.ndarray,
                       prototypes: np.ndarray, seed: int, params: Mapping[str, Any],
                       scene_key: int = 0) -> np.ndarray:
    """Simulated MaskCLIP features f16[K,h,w,D], L2-normalised, of frames' labels i16[K,H,W] (-1: none).

    depth f32[K,H,W] in metres (0: none), intrinsics f64[K,3,3], prototypes f32[C,D] unit rows.
    The class bias depends on `seed` alone; everything else also on `scene_key` (the stage passes
    a digest of the scene's points and frame ids) and the frame's index.
    """
    p = scaled_params(params)
    patch = int(params["patch_size"])
    num_frames, height, width = frame_labels.shape
    num_classes, dim = prototypes.shape
    rows_op = patch_blur_operator(height, patch, p["bleed_px"])
    cols_op = patch_blur_operator(width, patch, p["bleed_px"])
    table, counts = partner_table(LOOKALIKES_BY_CLASS_COUNT.get(num_classes, ()), num_classes)
    classes = np.arange(num_classes)
    protos = np.asarray(prototypes, dtype=np.float32)
    # (d) global class bias: <f, T_c> gains about b_c
    bias = (_rng(seed, _SALT_BIAS).standard_normal(num_classes) * p["bias_std"]).astype(np.float32) @ protos
    # (b) scene-level look-alikes and (e) the scene's background direction
    scene_rng = _rng(seed, scene_key, _SALT_SCENE)
    u_pick, u_partner = scene_rng.random((2, num_classes))
    background = scene_rng.standard_normal(dim).astype(np.float32)
    alpha = np.where(u_pick < p["scene_confusion_prob"], p["scene_confusion_strength"], 0.0)[:, None]
    partner = confuse(classes, u_partner, table, counts, num_classes)
    channels = np.vstack([(1 - alpha) * protos + alpha * protos[partner],
                          background / np.linalg.norm(background)]).astype(np.float32)
    out = np.empty((num_frames, rows_op.shape[0], cols_op.shape[0], dim), np.float16)
    for k in range(num_frames):
        frame_rng = _rng(seed, scene_key, _SALT_FRAME, k)
        u_view, u_swap = frame_rng.random((2, num_classes))
        noise = frame_rng.standard_normal((out.shape[1] * out.shape[2], dim), dtype=np.float32)
        labels, frame_depth = np.asarray(frame_labels[k]), np.asarray(depth[k])
        present, weights = content_weights(labels, num_classes, rows_op, cols_op)
        # (c) view-dependent look-alikes of the frame's classes
        seen = present[present < num_classes]
        chance = view_confusion_probability(labels, frame_depth, incidence_cosines(frame_depth, intrinsics[k]),
                                            seen, p)
        beta = np.where(u_view[seen] < chance, p["view_confusion_strength"], 0.0)[:, None]
        rows = channels[present]
        rows[:seen.size] = (1 - beta) * rows[:seen.size] + beta * protos[
            confuse(seen, u_swap[seen], table, counts, num_classes)]
        # (a) content mix, then (d) bias and (f) noise
        feature = weights.reshape(present.size, -1).T @ rows + bias + p["noise_std"] * noise
        feature /= np.maximum(np.linalg.norm(feature, axis=1, keepdims=True), 1e-12)
        out[k] = feature.reshape(out.shape[1:])
    return out


def simulated_features_stage(inputs: Mapping[str, Mapping[str, np.ndarray]],
                             params: Mapping[str, Any]) -> dict[str, Any]:
    """The `features` stage's simulated variant: MaskCLIP-like patch features from frame ground truth.

    A scene without depth images gets no distance or grazing view terms.
    """
    scene = inputs["scenes"]
    if "frame_labels" not in scene:
        raise SceneError("scene has no frame_labels (per-pixel ground truth); the simulated VLM needs them")
    labels = np.asarray(scene["frame_labels"])
    prototypes = np.asarray(inputs["text"]["embeddings"], dtype=np.float32)
    patch = int(params["patch_size"])
    if patch < 1:
        raise ValueError(f"patch_size must be >= 1, got {patch}")
    if labels.ndim != 3:
        raise SceneError(f"frame_labels must be [K,H,W], got shape {list(labels.shape)}")
    if labels.shape[1] < patch or labels.shape[2] < patch:
        raise SceneError(f"frames of {labels.shape[1]}x{labels.shape[2]} are smaller than a {patch}px patch")
    if labels.size and labels.max() >= prototypes.shape[0]:
        raise SceneError(f"frame_labels have class {labels.max()} but the text stage has {prototypes.shape[0]}")
    depth = np.asarray(scene["depth"]) if "depth" in scene else np.zeros(labels.shape, np.float32)
    if depth.shape != labels.shape:
        raise SceneError(f"depth frames {list(depth.shape)} differ from frame_labels {list(labels.shape)}")
    intrinsics = np.asarray(scene["intrinsics"], dtype=np.float64)
    if intrinsics.shape != (labels.shape[0], 3, 3):
        raise SceneError(f"intrinsics {list(intrinsics.shape)} do not match {labels.shape[0]} frames")
    features = simulated_features(labels, depth, intrinsics, prototypes, int(params["seed"]), params,
                                  scene_key=scene_seed(0, np.asarray(scene["points"]), scene.get("frame_ids")))
    return {"features": features, "patch_size": [patch, patch]}
