"""Soft per-set targets (beyond the paper): each pair's target is its geometric set's
distribution of the supervising labels over the whole scene, instead of one label.

The intra-set mode (the refine stage) keeps only a set's most frequent label; the distribution
keeps the rest of the votes, so a set whose frames disagree teaches its disagreement. Eq. 1
averages over pairs, and every pair of a voxel is scored on that voxel's logits, so the pairs'
targets are summed per voxel once here: the loss is then one row per voxel, not one per pair.
"""
from __future__ import annotations

import numpy as np


def set_distributions(pair_set: np.ndarray, pair_label: np.ndarray, num_classes: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Local set index i64[P] of each pair and each set's label distribution f32[S, C] over its
    pairs; a negative set id (a point outside every set) is a set of its own per pair."""
    own = np.where(pair_set >= 0, pair_set.astype(np.int64), -1 - np.arange(len(pair_set), dtype=np.int64))
    sets, local = np.unique(own, return_inverse=True)
    counts = np.bincount(local * num_classes + pair_label, minlength=len(sets) * num_classes)
    counts = counts.reshape(len(sets), num_classes).astype(np.float64)
    return local.astype(np.int64), (counts / counts.sum(1, keepdims=True)).astype(np.float32)


def voxel_target_mass(pair_voxel: np.ndarray, pair_set: np.ndarray, pair_label: np.ndarray,
                      num_voxels: int, num_classes: int) -> np.ndarray:
    """f32[V, C]: per voxel, the sum of its pairs' set distributions (a row sums to the voxel's
    pair count; a voxel without pairs is all 0). Eq. 1 against soft targets is
    sum(mass * -log p) / P, equal to averaging each pair's soft cross-entropy."""
    local, dist = set_distributions(pair_set, pair_label, num_classes)
    keys, count = np.unique(pair_voxel.astype(np.int64) * len(dist) + local, return_counts=True)
    voxel, group = np.divmod(keys, len(dist))
    mass = np.zeros((num_voxels, num_classes), np.float64)
    np.add.at(mass, voxel, count[:, None] * dist[group].astype(np.float64))
    return mass.astype(np.float32)
