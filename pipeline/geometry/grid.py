"""Voxel-grid kernels on point arrays: packed cell keys, sort-based grouping, per-group means,
cell buckets and the 26-neighbour CSR adjacency of occupied cells (Numba, pure arrays).

A grid of cell size ``size`` over points relative to their minimum numbers cell (i, j, k) from 1
(one empty cell of padding on every side, so every neighbour key stays inside the grid) and
packs it into one unsigned key, ``(i * dims[1] + j) * dims[2] + k``.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from pipeline.geometry.sorting import radix_argsort

# 26-neighbourhood offsets, in lexicographic order (so 25 - o mirrors o)
OFFSETS_26 = np.array([(dx, dy, dz) for dx in (-1, 0, 1) for dy in (-1, 0, 1) for dz in (-1, 0, 1)
                       if (dx, dy, dz) != (0, 0, 0)], dtype=np.int64)


@numba.njit(cache=True)
def bounds(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-axis minimum and maximum of [N,3] points (N > 0)."""
    lo = points[0].copy()
    hi = points[0].copy()
    for i in range(1, points.shape[0]):
        for a in range(3):
            lo[a] = min(lo[a], points[i, a])
            hi[a] = max(hi[a], points[i, a])
    return lo, hi


@numba.njit(cache=True)
def key_bits(n: int) -> int:
    """Bits needed for integers in [0, n)."""
    b = 0
    while (1 << b) < n:
        b += 1
    return b


@numba.njit(cache=True)
def grid_keys(rel: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray]:
    """Packed integer key of the `size` grid cell of each point (one empty cell of padding)."""
    n = rel.shape[0]
    ijk = np.empty((n, 3), dtype=np.int64)
    dims = np.zeros(3, dtype=np.int64)
    for i in range(n):
        for a in range(3):
            c = int(math.floor(rel[i, a] / size)) + 1
            ijk[i, a] = c
            dims[a] = max(dims[a], c + 2)
    keys = np.empty(n, dtype=np.uint64)
    for i in range(n):
        keys[i] = np.uint64((ijk[i, 0] * dims[1] + ijk[i, 1]) * dims[2] + ijk[i, 2])
    return keys, dims


@numba.njit(cache=True)
def group_sorted(keys: np.ndarray, dims: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort-based hashing: (group id per element, sorted unique keys, element order by key)."""
    order = radix_argsort(keys, key_bits(dims[0] * dims[1] * dims[2]))
    n = keys.shape[0]
    gid = np.empty(n, dtype=np.int32)
    uniq = np.empty(n, dtype=np.uint64)
    g = -1
    for r in range(n):
        k = keys[order[r]]
        if g < 0 or k != uniq[g]:
            g += 1
            uniq[g] = k
        gid[order[r]] = g
    return gid, uniq[:g + 1].copy(), order


@numba.njit(cache=True)
def voxelize(rel: np.ndarray, voxel: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(voxel id per point, sorted voxel keys, grid dims) for points relative to their minimum."""
    keys, dims = grid_keys(rel, voxel)
    inv, uniq, _ = group_sorted(keys, dims)
    return inv, uniq, dims


@numba.njit(cache=True)
def group_mean(gid: np.ndarray, ng: int, values: np.ndarray) -> np.ndarray:
    """Per-group mean of the rows of `values`."""
    out = np.zeros((ng, values.shape[1]))
    cnt = np.zeros(ng)
    for i in range(gid.shape[0]):
        cnt[gid[i]] += 1.0
        for a in range(values.shape[1]):
            out[gid[i], a] += values[i, a]
    for g in range(ng):
        for a in range(values.shape[1]):
            out[g, a] /= cnt[g]
    return out


@numba.njit(cache=True)
def cell_buckets(xyz: np.ndarray,
                 size: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Points bucketed by `size` grid cell: (sorted cell keys, CSR pointer, point ids, dims)."""
    keys, dims = grid_keys(xyz, size)
    gid, cell_keys, order = group_sorted(keys, dims)
    ptr = np.zeros(cell_keys.shape[0] + 1, dtype=np.int64)
    for v in range(gid.shape[0]):
        ptr[gid[v] + 1] += 1
    for c in range(cell_keys.shape[0]):
        ptr[c + 1] += ptr[c]
    return cell_keys, ptr, order.astype(np.int32), dims


@numba.njit(cache=True)
def cell_coords(key: np.uint64, dims: np.ndarray) -> tuple[int, int, int]:
    """Grid coordinates of a packed cell key."""
    k = np.int64(key)
    return k // (dims[1] * dims[2]), (k // dims[2]) % dims[1], k % dims[2]


@numba.njit(cache=True)
def find_cell(cell_keys: np.ndarray, dims: np.ndarray, i: int, j: int, k: int) -> int:
    """Index of cell (i, j, k) in the sorted keys, or -1 if empty or off the grid."""
    if i < 0 or j < 0 or k < 0 or i >= dims[0] or j >= dims[1] or k >= dims[2]:
        return -1
    key = np.uint64((i * dims[1] + j) * dims[2] + k)
    c = np.searchsorted(cell_keys, key)
    if c < cell_keys.shape[0] and cell_keys[c] == key:
        return c
    return -1


@numba.njit(cache=True)
def adjacency(keys: np.ndarray, dims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """26-neighbour CSR (indptr, indices) of occupied voxels, neighbours in index order.

    For each of the 13 offsets o with a positive key shift, a merge-join of the sorted keys
    with the shifted ones finds the pairs (i, j) with j at i + o; i is then j's neighbour at -o.
    """
    nv = keys.shape[0]
    nb = np.full((nv, 26), -1, dtype=np.int32)
    for o in range(13, 26):  # the offsets are in lexicographic order: 25 - o mirrors o
        delta = (OFFSETS_26[o, 0] * dims[1] + OFFSETS_26[o, 1]) * dims[2] + OFFSETS_26[o, 2]
        j = 0
        for i in range(nv):
            target = np.int64(keys[i]) + delta  # padding keeps every target inside the grid
            while j < nv and np.int64(keys[j]) < target:
                j += 1
            if j == nv:
                break
            if np.int64(keys[j]) == target:
                nb[i, o] = j
                nb[j, 25 - o] = i
    indptr = np.zeros(nv + 1, dtype=np.int64)
    for i in range(nv):
        c = 0
        for o in range(26):
            c += nb[i, o] >= 0
        indptr[i + 1] = indptr[i] + c
    indices = np.empty(indptr[nv], dtype=np.int32)
    for i in range(nv):
        k = indptr[i]
        for o in range(26):
            if nb[i, o] >= 0:
                indices[k] = nb[i, o]
                k += 1
    return indptr, indices
