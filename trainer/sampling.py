"""Set-proportional sampling of voxels for the correlation transformers (Sec. 3.2).

Each geometric set G_i gets M_i = M * N_i / N samples, N_i being its number of eligible voxels
(voxels with a label, i.e. with at least one pair) and N their total. The real-valued quotas
are rounded by the largest-remainder method so the counts sum to exactly M; sets whose quota
rounds to 0 are not sampled. Voxels outside every set (set id -1) are pooled as one more set.
When a scene has fewer than M eligible voxels, all of them are taken.
"""
from __future__ import annotations

import numpy as np


def allocate_counts(set_sizes: np.ndarray, total: int) -> np.ndarray:
    """Per-set sample counts proportional to `set_sizes`, summing to min(total, sum of sizes).

    Largest-remainder rounding with exact integer arithmetic; ties in the remainder go to
    the larger set, then to the lower set index.
    """
    sizes = np.asarray(set_sizes, dtype=np.int64)
    n = int(sizes.sum())
    if n <= total:
        return sizes.copy()
    numerator = sizes * total
    counts = numerator // n
    remainder = numerator % n
    missing = total - int(counts.sum())
    order = np.lexsort((np.arange(len(sizes)), -sizes, -remainder))
    counts[order[:missing]] += 1
    return counts


def sample_by_set(set_ids: np.ndarray, eligible: np.ndarray, total: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Indices of up to `total` eligible items, drawn without replacement per set, sorted."""
    candidates = np.flatnonzero(eligible)
    if len(candidates) == 0:
        return candidates.astype(np.int64)
    _, group = np.unique(set_ids[candidates], return_inverse=True)
    counts = allocate_counts(np.bincount(group), total)
    shuffled = candidates[rng.permutation(len(candidates))]
    shuffled_group = group[np.searchsorted(candidates, shuffled)]
    order = np.argsort(shuffled_group, kind="stable")
    by_group = shuffled[order]
    sorted_group = shuffled_group[order]
    starts = np.searchsorted(sorted_group, np.arange(len(counts)))
    rank = np.arange(len(by_group)) - starts[sorted_group]
    return np.sort(by_group[rank < counts[sorted_group]]).astype(np.int64)
