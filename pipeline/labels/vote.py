"""Beyond the paper: a weighted vote within each geometric set, per frame or across a scene.

The paper's refinement (`refine.py`, Sec. 3.2) gives each set in each frame the mode of its pixel
pseudo-labels: every pair counts once, however confident the VLM was and however the camera saw
the surface. This vote weighs each pair before the mode:

- `confidence`: the pseudo stage's max-softmax confidence of the pair (pairs below
  `min_confidence` abstain, unless every pair of a set would);
- `view`: |cos| of the angle between the point's normal and the viewing ray over the squared
  viewing distance, proportional to the pixels per unit of surface that the frame spends on it;
- `confidence_view`: both factors; `count`: every pair once (the paper's weighting).

With `scope: scene` every pair of a set, in any frame, takes the set's label: a set's label is
decided once from all the views of the scene. The sets are the `geosets` stage's, or, with
`color_weight` > 0, the mesh re-segmented with a colour term; `max_set_extent` cuts them by a grid.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline.errors import SceneError
from pipeline.geometry.felzenszwalb import segment_mesh
from pipeline.geometry.sets import split_sets
from pipeline.labels.refine import check_pair_labels, scope_groups
from pipeline.stages import stage_params

WEIGHTS = ("count", "confidence", "view", "confidence_view")
VIEW_WEIGHTS = ("view", "confidence_view")  # the weights that need the viewing geometry


def view_weights(points: np.ndarray, normals: np.ndarray, world_to_camera: np.ndarray,
                 point: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """f64[P]: |cos(normal, ray)| / distance^2 of each pair (point `point[k]` seen by frame `frame[k]`)."""
    rotation = world_to_camera[:, :3, :3]
    centres = -np.einsum("kji,kj->ki", rotation, world_to_camera[:, :3, 3])  # camera centre per frame
    ray = points[point].astype(np.float64) - centres[frame]
    dist2 = np.maximum(np.einsum("ij,ij->i", ray, ray), 1e-6)
    cos = np.abs(np.einsum("ij,ij->i", ray, normals[point].astype(np.float64))) / np.sqrt(dist2)
    return cos / dist2


def pair_weights(weight: str, confidence: np.ndarray, min_confidence: float,
                 view: np.ndarray | None) -> np.ndarray:
    """f64[P]: each pair's weight in the vote; 0 for an abstaining (unconfident) pair."""
    if weight not in WEIGHTS:
        raise ValueError(f"vote weight must be one of {', '.join(WEIGHTS)}, got {weight!r}")
    conf = np.asarray(confidence, dtype=np.float64)
    out = conf.copy() if weight in ("confidence", "confidence_view") else np.ones(len(conf))
    if weight in VIEW_WEIGHTS:
        if view is None:
            raise ValueError(f"vote weight {weight!r} needs the pairs' viewing geometry")
        out *= view
    return np.where(conf >= min_confidence, out, 0.0)


def weighted_set_vote(labels: np.ndarray, weights: np.ndarray, set_ids: np.ndarray,
                      group_ids: np.ndarray, num_classes: int) -> np.ndarray:
    """u8[P]: the weighted mode of the labels within each (group, set), written to every member.

    A (group, set) whose pairs all have weight 0 takes the unweighted mode; ties go to the
    lowest label; a pair whose set id is negative (no set) keeps its own label.
    """
    lab = np.asarray(labels).astype(np.int64)
    if not lab.shape == np.shape(weights) == np.shape(set_ids) == np.shape(group_ids) or lab.ndim != 1:
        raise ValueError("labels, weights, set_ids and group_ids must be 1-D of one length")
    out = np.asarray(labels, dtype=np.uint8).copy()
    member = np.asarray(set_ids) >= 0
    if not member.any():
        return out
    keys = np.stack([np.asarray(group_ids)[member], np.asarray(set_ids)[member]], axis=1)
    run = np.unique(keys, axis=0, return_inverse=True)[1].reshape(-1)
    cells = run * num_classes + lab[member]
    size = (int(run.max()) + 1) * num_classes
    weighted = np.bincount(cells, weights=np.asarray(weights, np.float64)[member], minlength=size)
    counts = np.bincount(cells, minlength=size).astype(np.float64)
    weighted, counts = weighted.reshape(-1, num_classes), counts.reshape(-1, num_classes)
    votes = np.where(weighted.sum(1, keepdims=True) > 0, weighted, counts)
    out[member] = votes.argmax(1)[run].astype(np.uint8)
    return out


def vote_sets(scene: Mapping[str, Any], set_id: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """i64[N]: the sets the vote runs in: `set_id` (geosets), or the mesh re-segmented with the
    colour term (Felzenszwalb with the geosets stage's declared defaults), then cut by the cap."""
    if params["color_weight"] > 0:
        faces = np.asarray(scene.get("faces", np.zeros((0, 3), np.int32)))
        if len(faces) == 0:
            raise SceneError("vote.color_weight > 0 needs a mesh, but the scene has no faces")
        geosets = stage_params("geosets")
        set_id = segment_mesh(np.asarray(scene["points"]), faces, geosets["k_thresh"], geosets["seg_min_verts"],
                              colors=np.asarray(scene["colors"]), color_weight=params["color_weight"])
    if params["max_set_extent"] is not None:
        set_id = split_sets(set_id, np.asarray(scene["points"]), params["max_set_extent"])
    return np.asarray(set_id).astype(np.int64)


def vote_stage(inputs: Mapping[str, Mapping[str, np.ndarray]], params: Mapping[str, Any]) -> dict[str, Any]:
    """Per-scene stage: each pair's label after the weighted vote of its set (per frame or scene)."""
    label = np.asarray(inputs["pseudo"]["label"])
    confidence = np.asarray(inputs["pseudo"]["confidence"], dtype=np.float32)
    point = np.asarray(inputs["pairs"]["point"]).astype(np.int64)
    offsets = np.asarray(inputs["pairs"]["frame_offsets"], dtype=np.int64)
    scene = inputs["scenes"]
    check_pair_labels(label, point, offsets, len(inputs["geosets"]["set_id"]))
    if confidence.shape != label.shape:
        raise SceneError(f"pseudo confidences ({confidence.shape[0]}) and labels ({label.shape[0]}) differ in length")
    set_id = vote_sets(scene, np.asarray(inputs["geosets"]["set_id"]), params)
    view = None
    if params["weight"] in VIEW_WEIGHTS:
        frame = scope_groups(offsets, "frame")
        view = view_weights(np.asarray(scene["points"]), np.asarray(scene["normals"]),
                            np.asarray(scene["world_to_camera"], np.float64), point, frame)
    weights = pair_weights(params["weight"], confidence, params["min_confidence"], view)
    num_classes = int(label.max()) + 1 if len(label) else 1
    return {"label": weighted_set_vote(label, weights, set_id[point], scope_groups(offsets, params["scope"]),
                                       num_classes)}
