"""Intra-set label refinement (Sec. 3.2): each projected geometric set votes for one label."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numba
import numpy as np

from pipeline.errors import SceneError
from pipeline.geometry.sorting import radix_argsort

_MAX_KEY_BITS = 62


def refine_labels(labels: np.ndarray, set_ids: np.ndarray, group_ids: np.ndarray) -> np.ndarray:
    """Mode of the labels within each (group, set), written back to every member (u8[P]).

    Ties go to the smallest label id, so the vote is deterministic; a pair whose set id is -1
    (no set) keeps its own label.
    """
    lab = np.ascontiguousarray(labels, dtype=np.uint8)
    sets = np.maximum(np.asarray(set_ids, dtype=np.int64), -1)  # any negative id: no set
    groups = np.ascontiguousarray(group_ids, dtype=np.int64)
    if not lab.shape == sets.shape == groups.shape or lab.ndim != 1:
        raise ValueError(f"labels, set_ids and group_ids must be 1-D of one length, got "
                         f"{lab.shape}, {sets.shape}, {groups.shape}")
    if lab.size == 0:
        return lab.copy()
    s_hi = max(int(sets.max()), 0) + 1
    g_lo, g_hi = int(groups.min()), int(groups.max())
    if (g_hi - g_lo + 1) * (s_hi + 1) >= 1 << _MAX_KEY_BITS:  # sparse ids: make them dense first
        groups = np.unique(groups, return_inverse=True)[1].astype(np.int64)
        g_lo, g_hi = 0, int(groups.max())
        sets = np.where(sets >= 0, np.unique(sets, return_inverse=True)[1], -1)
        s_hi = max(int(sets.max()), 0) + 1
    return _vote(lab, sets, groups - g_lo, s_hi, (g_hi - g_lo + 1) * (s_hi + 1))


@numba.njit(cache=True)
def _vote(labels: np.ndarray, sets: np.ndarray, groups: np.ndarray, n_sets: int,
          n_keys: int) -> np.ndarray:
    """Group pairs by (group, set) with a radix sort, then replace each run by its mode."""
    n = labels.shape[0]
    keys = np.empty(n, dtype=np.uint64)
    for i in range(n):
        keys[i] = np.uint64(groups[i] * (n_sets + 1) + sets[i] + 1)  # set -1 gets its own runs
    bits = 0
    while (1 << bits) < n_keys:
        bits += 1
    order = radix_argsort(keys, bits)
    out = labels.copy()
    counts = np.zeros(256, dtype=np.int64)
    start = 0
    while start < n:
        key = keys[order[start]]
        end = start
        while end < n and keys[order[end]] == key:
            end += 1
        if sets[order[start]] >= 0:
            for r in range(start, end):
                counts[labels[order[r]]] += 1
            best = np.argmax(counts)  # the first maximum: the smallest label wins ties
            for r in range(start, end):
                out[order[r]] = best
                counts[labels[order[r]]] = 0
        start = end
    return out


def scope_groups(offsets: np.ndarray, scope: str) -> np.ndarray:
    """i64[P]: each pair's vote group, its frame (scope `frame`) or 0 for all (scope `scene`)."""
    if scope == "frame":
        return np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))
    if scope == "scene":
        return np.zeros(int(offsets[-1]), dtype=np.int64)
    raise SceneError(f"scope must be 'frame' or 'scene', got {scope!r}")


def check_pair_labels(label: np.ndarray, point: np.ndarray, offsets: np.ndarray, num_points: int) -> None:
    """SceneError unless there is one label per pair, frame_offsets rise from 0 to the pair
    count and every pair's point is one of the scene's `num_points`."""
    if label.shape != point.shape:
        raise SceneError(f"pseudo labels ({label.shape[0]}) and pairs ({point.shape[0]}) differ in length")
    if offsets.ndim != 1 or len(offsets) == 0 or offsets[0] != 0 or offsets[-1] != len(point) \
            or np.any(np.diff(offsets) < 0):
        raise SceneError(f"frame_offsets must rise from 0 to the pair count {len(point)}")
    if len(point) and (point.min() < 0 or point.max() >= num_points):
        raise SceneError(f"pair point indices fall outside the {num_points} points of the scene")


def refine_stage(inputs: Mapping[str, Mapping[str, np.ndarray]],
                 params: Mapping[str, Any]) -> dict[str, Any]:
    """Per-scene stage: refined pseudo label per pair by voting within sets per frame or scene."""
    label = np.asarray(inputs["pseudo"]["label"])
    point = np.asarray(inputs["pairs"]["point"])
    offsets = np.asarray(inputs["pairs"]["frame_offsets"], dtype=np.int64)
    set_id = np.asarray(inputs["geosets"]["set_id"])
    check_pair_labels(label, point, offsets, len(set_id))
    return {"label": refine_labels(label, set_id[point], scope_groups(offsets, params["scope"]))}
