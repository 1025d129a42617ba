"""Voxel Cloud Connectivity Segmentation (VCCS, Papon et al. 2013) supervoxels (Sec. 3.2).

For point clouds without a mesh (LiDAR sweeps, meshless indoor scans). The steps follow PCL's
SupervoxelClustering with its default weights:

1. voxelise at `voxel_resolution` (sort of packed integer keys) and link voxels to their 26
   neighbours (merge-joins of the sorted keys with 13 shifted key sets, stored as CSR; both in
   :mod:`pipeline.geometry.grid`);
2. voxel normals: the mean of given point normals, else PCA over the points of the voxel and its
   26 neighbours, oriented towards the origin (the sensor, for LiDAR);
3. one seed per occupied `seed_resolution` cell (the voxel nearest the cell centre), kept only
   when more than `0.05 * pi * r**2 / voxel_resolution**2` voxels, and at least two, lie
   within r = seed/2 (PCL's density filter, which counts the seed itself: without the second
   bound a lone outlier voxel would become a supervoxel of its own when that threshold is
   below one; if the filter would drop every seed, all are kept);
4. flow-constrained growth: for `int(1.8 * seed / voxel)` rounds each supervoxel, in seed order,
   offers the neighbours of the voxels it gained in the previous round to itself and takes
   (or steals) those whose distance to its centroid is below their current one, with
   `D = w_c * |rgb| / 255 + w_s * |xyz| / seed_resolution + w_n * (1 - |n . n_c|)`;
   centroids (mean xyz, rgb, normalised mean normal of the members) are updated per round;
5. one refinement pass, as PCL's refineSupervoxels: every supervoxel restarts from its member
   voxel nearest its mean position, with the centroid it had, and the growth runs again. Growth
   advances one voxel per round whatever the distance, so which side of a crease takes the
   voxels there depends on whose seed arrives first, and grid-cell seeds can sit far from the
   part of their cell they end up covering; restarted from the middle of their regions,
   supervoxels reach a crease from both sides at about the same round and the distance decides
   (on a floor meeting a wall, the normal term keeps each plane's supervoxels to their plane);
6. every voxel that growth did not reach (outliers, and scan lines whose own seed the density
   filter dropped) joins the supervoxel of the nearest (Euclidean) reached voxel, found with a
   k-d tree (:mod:`pipeline.geometry.neighbours`), so, unlike PCL, every point gets a set. Seeds are never stolen, so no supervoxel
   is empty.

Everything is sequential and tie-breaks by index, so the output is deterministic.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from pipeline.geometry.grid import (
    adjacency,
    bounds,
    cell_buckets,
    cell_coords,
    find_cell,
    group_mean,
    voxelize,
)
from pipeline.geometry.neighbours import nearest_indices
from pipeline.geometry.normals import normalise_rows, pca_normals

_MAX_KEY_BITS = 62


def supervoxels(points: np.ndarray, colors: np.ndarray | None = None,
                normals: np.ndarray | None = None, *, voxel_resolution: float,
                seed_resolution: float, color_importance: float, spatial_importance: float,
                normal_importance: float) -> np.ndarray:
    """Supervoxel id per point (i32[N], ids 0..S-1 in seed order); every point is assigned.

    The sizes and weights have no defaults here: the geosets stage declares them in stages.yaml.
    """
    p = np.ascontiguousarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"points must be [N,3], got shape {p.shape}")
    if not 0 < voxel_resolution < seed_resolution:
        raise ValueError(f"need 0 < voxel_resolution < seed_resolution, got "
                         f"{voxel_resolution} and {seed_resolution}")
    if len(p) == 0:
        return np.zeros(0, dtype=np.int32)
    if not np.isfinite(p).all():
        raise ValueError("points contain NaN or inf")
    lo, hi = bounds(p)
    if np.log2((hi - lo) / voxel_resolution + 3).sum() > _MAX_KEY_BITS:
        raise ValueError(f"extent {hi - lo} m is too large for voxels of {voxel_resolution} m")
    c = _optional(colors, len(p), "colors")
    n = _optional(normals, len(p), "normals")
    return _supervoxels(p, c, n, float(voxel_resolution), float(seed_resolution),
                        float(color_importance) if len(c) else 0.0, float(spatial_importance),
                        float(normal_importance))


def _optional(values: np.ndarray | None, n: int, name: str) -> np.ndarray:
    """float64 [n,3] copy of an optional per-point attribute, or an empty [0,3] array."""
    if values is None:
        return np.zeros((0, 3), dtype=np.float64)
    v = np.ascontiguousarray(values, dtype=np.float64)
    if v.shape != (n, 3):
        raise ValueError(f"{name} must be [{n},3], got shape {v.shape}")
    return v


@numba.njit(cache=True, error_model="numpy")
def _supervoxels(points: np.ndarray, colors: np.ndarray, normals: np.ndarray, voxel: float,
                 seed: float, w_c: float, w_s: float, w_n: float) -> np.ndarray:
    """VCCS on validated float64 arrays (empty colors/normals mean: not given)."""
    lo = bounds(points)[0]
    rel = points - lo
    inv, keys, dims = voxelize(rel, voxel)
    nv = keys.shape[0]
    xyz = group_mean(inv, nv, rel)
    rgb = group_mean(inv, nv, colors) if colors.shape[0] else np.zeros((nv, 3))
    indptr, nbrs = adjacency(keys, dims)
    if normals.shape[0]:
        nrm = normalise_rows(group_mean(inv, nv, normals))
    else:
        nrm = pca_normals(inv, rel, indptr, nbrs, xyz, -lo)
    cell_keys, cell_ptr, cell_vox, cell_dims = cell_buckets(xyz, seed)
    seeds = select_seeds(xyz, voxel, seed, cell_keys, cell_ptr, cell_vox, cell_dims)
    feats = features(xyz, rgb, nrm, w_s / seed, w_c / 255.0)
    owner = grow(feats, xyz, indptr, nbrs, seeds, int(1.8 * seed / voxel), w_n)
    return fill_unreached(owner, xyz)[inv]


@numba.njit(cache=True)
def select_seeds(xyz: np.ndarray, voxel: float, seed: float, cell_keys: np.ndarray,
                 cell_ptr: np.ndarray, cell_vox: np.ndarray, dims: np.ndarray) -> np.ndarray:
    """Seed voxels: per occupied cell the voxel nearest its centre, then PCL's density filter."""
    nc = cell_keys.shape[0]
    cand = np.empty(nc, dtype=np.int32)
    for c in range(nc):
        i, j, k = cell_coords(cell_keys[c], dims)
        cx, cy, cz = (i - 0.5) * seed, (j - 0.5) * seed, (k - 0.5) * seed  # cell i spans [i-1, i)
        best = np.inf
        for r in range(cell_ptr[c], cell_ptr[c + 1]):
            v = cell_vox[r]
            d = (xyz[v, 0] - cx) ** 2 + (xyz[v, 1] - cy) ** 2 + (xyz[v, 2] - cz) ** 2
            if d < best:
                best = d
                cand[c] = v
    radius = 0.5 * seed
    min_count = 0.05 * math.pi * radius * radius / (voxel * voxel)
    keep = np.zeros(nc, dtype=np.bool_)
    for c in range(nc):
        s = cand[c]
        i, j, k = cell_coords(cell_keys[c], dims)
        count = 0
        for di in range(-1, 2):
            for dj in range(-1, 2):
                for dk in range(-1, 2):
                    q = find_cell(cell_keys, dims, i + di, j + dj, k + dk)
                    if q < 0:
                        continue
                    for r in range(cell_ptr[q], cell_ptr[q + 1]):
                        v = cell_vox[r]
                        d = ((xyz[v, 0] - xyz[s, 0]) ** 2 + (xyz[v, 1] - xyz[s, 1]) ** 2
                             + (xyz[v, 2] - xyz[s, 2]) ** 2)
                        count += d <= radius * radius
        keep[c] = count > max(min_count, 1.0)  # the seed counts itself: a lone voxel never seeds
    if not keep.any():
        return cand
    return cand[keep]


@numba.njit(cache=True)
def features(xyz: np.ndarray, rgb: np.ndarray, nrm: np.ndarray, xyz_scale: float,
             rgb_scale: float) -> np.ndarray:
    """Per-voxel rows [xyz * xyz_scale, rgb * rgb_scale, normal] (f32[V, 9]).

    Packed and narrow, a distance reads one short row per voxel; scaled, it needs no weight
    but w_n.
    """
    out = np.empty((xyz.shape[0], 9), dtype=np.float32)
    for v in range(xyz.shape[0]):
        for a in range(3):
            out[v, a] = xyz[v, a] * xyz_scale
            out[v, 3 + a] = rgb[v, a] * rgb_scale
            out[v, 6 + a] = nrm[v, a]
    return out


@numba.njit(cache=True, error_model="numpy")
def _distance(cent: np.ndarray, s: int, feats: np.ndarray, v: int, w_n: float) -> float:
    """PCL's voxelDataDistance `w_s |dxyz| / seed + w_c |drgb| / 255 + w_n (1 - |n . n_c|)`."""
    spatial = math.sqrt((cent[s, 0] - feats[v, 0]) ** 2 + (cent[s, 1] - feats[v, 1]) ** 2
                        + (cent[s, 2] - feats[v, 2]) ** 2)
    colour = math.sqrt((cent[s, 3] - feats[v, 3]) ** 2 + (cent[s, 4] - feats[v, 4]) ** 2
                       + (cent[s, 5] - feats[v, 5]) ** 2)
    dot = cent[s, 6] * feats[v, 6] + cent[s, 7] * feats[v, 7] + cent[s, 8] * feats[v, 8]
    return spatial + colour + w_n * (1.0 - abs(dot))


@numba.njit(cache=True, error_model="numpy")
def _centroids(sums: np.ndarray, cnt: np.ndarray) -> np.ndarray:
    """Centroid rows (mean xyz and rgb, normalised mean normal) from member sums [S, 9]."""
    cent = np.zeros_like(sums)
    for s in range(sums.shape[0]):
        for a in range(6):
            cent[s, a] = sums[s, a] / cnt[s]  # every supervoxel keeps its seed
        n = math.sqrt(sums[s, 6] ** 2 + sums[s, 7] ** 2 + sums[s, 8] ** 2)
        if n > 0:
            for a in range(6, 9):
                cent[s, a] = sums[s, a] / n
    return cent


@numba.njit(cache=True)
def _move(sums: np.ndarray, cnt: np.ndarray, feats: np.ndarray, v: int, old: int,
          new: int) -> None:
    """Move voxel v from supervoxel `old` (-1: none) to `new` in the member sums."""
    for a in range(9):
        sums[new, a] += feats[v, a]
    cnt[new] += 1.0
    if old >= 0:
        for a in range(9):
            sums[old, a] -= feats[v, a]
        cnt[old] -= 1.0


@numba.njit(cache=True, error_model="numpy")
def expand(feats: np.ndarray, indptr: np.ndarray, nbrs: np.ndarray, seeds: np.ndarray,
           cent: np.ndarray, rounds: int, w_n: float) -> tuple[np.ndarray, np.ndarray]:
    """One flow-constrained growth from seeds and their starting centroids: (owner, centroids).

    Owner is -1 for voxels not reached. Centroids change between rounds only.
    """
    nv, ns = feats.shape[0], seeds.shape[0]
    owner = np.full(nv, -1, dtype=np.int32)
    dist = np.full(nv, np.inf, dtype=np.float32)
    sums, cnt = np.zeros((ns, 9)), np.zeros(ns)
    front_v = seeds.copy()
    front_s = np.arange(ns, dtype=np.int32)
    for s in range(ns):
        owner[seeds[s]] = s
        dist[seeds[s]] = 0.0
        _move(sums, cnt, feats, seeds[s], -1, s)
    for _ in range(rounds):
        new_v = np.empty(26 * front_v.shape[0], dtype=np.int32)
        new_s = np.empty(26 * front_v.shape[0], dtype=np.int32)
        m = 0
        for f in range(front_v.shape[0]):
            v, s = front_v[f], front_s[f]
            if owner[v] != s:
                continue  # stolen since it was gained
            for k in range(indptr[v], indptr[v + 1]):
                u = nbrs[k]
                if owner[u] == s:
                    continue
                d = _distance(cent, s, feats, u, w_n)
                if d < dist[u]:
                    dist[u] = d
                    _move(sums, cnt, feats, u, owner[u], s)
                    owner[u] = s
                    new_v[m] = u
                    new_s[m] = s
                    m += 1
        if m == 0:
            break
        front_v, front_s = new_v[:m], new_s[:m]
        cent = _centroids(sums, cnt)
    return owner, cent


@numba.njit(cache=True)
def nearest_members(owner: np.ndarray, xyz: np.ndarray, ns: int) -> np.ndarray:
    """Per supervoxel, its member voxel nearest its mean position (the lowest index on ties)."""
    mean, cnt = np.zeros((ns, 3)), np.zeros(ns)
    for v in range(owner.shape[0]):
        if owner[v] >= 0:
            cnt[owner[v]] += 1.0
            for a in range(3):
                mean[owner[v], a] += xyz[v, a]
    for s in range(ns):
        for a in range(3):
            mean[s, a] /= cnt[s]  # every supervoxel keeps its seed
    best = np.full(ns, np.inf)
    out = np.zeros(ns, dtype=np.int32)
    for v in range(owner.shape[0]):
        s = owner[v]
        if s < 0:
            continue
        d = ((xyz[v, 0] - mean[s, 0]) ** 2 + (xyz[v, 1] - mean[s, 1]) ** 2
             + (xyz[v, 2] - mean[s, 2]) ** 2)
        if d < best[s]:
            best[s] = d
            out[s] = v
    return out


@numba.njit(cache=True, error_model="numpy")
def grow(feats: np.ndarray, xyz: np.ndarray, indptr: np.ndarray, nbrs: np.ndarray,
         seeds: np.ndarray, rounds: int, w_n: float) -> np.ndarray:
    """Owner per voxel (-1: not reached) after growth from the seeds and one refinement pass."""
    owner, cent = expand(feats, indptr, nbrs, seeds, feats[seeds].astype(np.float64), rounds, w_n)
    reseeds = nearest_members(owner, xyz, seeds.shape[0])
    return expand(feats, indptr, nbrs, reseeds, cent, rounds, w_n)[0]


@numba.njit(cache=True)
def fill_unreached(owner: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """Give each unreached voxel the owner of the nearest reached voxel."""
    reached = np.flatnonzero(owner >= 0)
    unreached = np.flatnonzero(owner < 0)
    if unreached.shape[0] == 0:
        return owner
    nearest = nearest_indices(xyz[reached], xyz[unreached])
    out = owner.copy()
    for q in range(unreached.shape[0]):
        out[unreached[q]] = owner[reached[nearest[q]]]
    return out
