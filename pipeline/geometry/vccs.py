"""Voxel Cloud Connectivity Segmentation (VCCS, Papon et al. 2013) supervoxels (Sec. 3.2).

For point clouds without a mesh (LiDAR sweeps, meshless indoor scans). The steps follow PCL's
SupervoxelClustering with its default weights:

1. voxelise at `voxel_resolution` (sort of packed integer keys) and link voxels to their 26
   neighbours (merge-joins of the sorted keys with 13 shifted key sets, stored as CSR);
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
   k-d tree, so, unlike PCL, every point gets a set. Seeds are never stolen, so no supervoxel
   is empty.

Everything is sequential and tie-breaks by index, so the output is deterministic.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from pipeline.geometry.felzenszwalb import radix_argsort
from pipeline.geometry.normals import smallest_eigenvector

_MAX_KEY_BITS = 62
_LEAF = 8  # k-d tree ranges this small are scanned, not split
_FEW = 64  # up to this many unreached voxels are matched by a scan: building a tree costs more
# 26-neighbourhood offsets
_OFFSETS = np.array([(dx, dy, dz) for dx in (-1, 0, 1) for dy in (-1, 0, 1) for dz in (-1, 0, 1)
                     if (dx, dy, dz) != (0, 0, 0)], dtype=np.int64)


def supervoxels(points: np.ndarray, colors: np.ndarray | None = None,
                normals: np.ndarray | None = None, *, voxel_resolution: float,
                seed_resolution: float, color_importance: float = 0.1,
                spatial_importance: float = 0.4, normal_importance: float = 1.0) -> np.ndarray:
    """Supervoxel id per point (i32[N], ids 0..S-1 in seed order); every point is assigned."""
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
    cell_keys, cell_ptr, cell_vox, cell_dims = seed_grid(xyz, seed)
    seeds = select_seeds(xyz, voxel, seed, cell_keys, cell_ptr, cell_vox, cell_dims)
    feats = features(xyz, rgb, nrm, w_s / seed, w_c / 255.0)
    owner = grow(feats, xyz, indptr, nbrs, seeds, int(1.8 * seed / voxel), w_n)
    return fill_unreached(owner, xyz)[inv]


@numba.njit(cache=True)
def _bits(n: int) -> int:
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
    order = radix_argsort(keys, _bits(dims[0] * dims[1] * dims[2]))
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


@numba.njit(cache=True, error_model="numpy")
def normalise_rows(v: np.ndarray) -> np.ndarray:
    """Unit rows; zero rows stay zero."""
    out = np.zeros_like(v)
    for i in range(v.shape[0]):
        n = math.sqrt(v[i, 0] ** 2 + v[i, 1] ** 2 + v[i, 2] ** 2)
        if n > 0:
            for a in range(3):
                out[i, a] = v[i, a] / n
    return out


@numba.njit(cache=True)
def adjacency(keys: np.ndarray, dims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """26-neighbour CSR (indptr, indices) of occupied voxels, neighbours in index order.

    For each of the 13 offsets o with a positive key shift, a merge-join of the sorted keys
    with the shifted ones finds the pairs (i, j) with j at i + o; i is then j's neighbour at -o.
    """
    nv = keys.shape[0]
    nb = np.full((nv, 26), -1, dtype=np.int32)
    for o in range(13, 26):  # the offsets are in lexicographic order: 25 - o mirrors o
        delta = (_OFFSETS[o, 0] * dims[1] + _OFFSETS[o, 1]) * dims[2] + _OFFSETS[o, 2]
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


@numba.njit(cache=True, error_model="numpy")
def pca_normals(inv: np.ndarray, rel: np.ndarray, indptr: np.ndarray, nbrs: np.ndarray,
                xyz: np.ndarray, viewpoint: np.ndarray) -> np.ndarray:
    """Normal per voxel by PCA of the points in it and its 26 neighbours, facing `viewpoint`.

    Point moments are summed per voxel once, so each neighbourhood costs 27 additions, not a
    pass over its points. Neighbourhoods too small or line-like get a zero normal.
    """
    nv = xyz.shape[0]
    mom = np.zeros((nv, 10))  # count, x, y, z, xx, xy, xz, yy, yz, zz
    for i in range(inv.shape[0]):
        v = inv[i]
        x, y, z = rel[i, 0], rel[i, 1], rel[i, 2]
        mom[v, 0] += 1.0
        mom[v, 1] += x
        mom[v, 2] += y
        mom[v, 3] += z
        mom[v, 4] += x * x
        mom[v, 5] += x * y
        mom[v, 6] += x * z
        mom[v, 7] += y * y
        mom[v, 8] += y * z
        mom[v, 9] += z * z
    out = np.zeros((nv, 3))
    acc = np.empty(10)
    for v in range(nv):
        for a in range(10):
            acc[a] = mom[v, a]
        for k in range(indptr[v], indptr[v + 1]):
            for a in range(10):
                acc[a] += mom[nbrs[k], a]
        n = acc[0]
        if n < 3:
            continue
        mx, my, mz = acc[1] / n, acc[2] / n, acc[3] / n
        nx, ny, nz = smallest_eigenvector(acc[4] / n - mx * mx, acc[5] / n - mx * my,
                                          acc[6] / n - mx * mz, acc[7] / n - my * my,
                                          acc[8] / n - my * mz, acc[9] / n - mz * mz)
        if (nx * (viewpoint[0] - xyz[v, 0]) + ny * (viewpoint[1] - xyz[v, 1])
                + nz * (viewpoint[2] - xyz[v, 2])) < 0:
            nx, ny, nz = -nx, -ny, -nz
        out[v, 0], out[v, 1], out[v, 2] = nx, ny, nz
    return out


@numba.njit(cache=True)
def seed_grid(xyz: np.ndarray,
              seed: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Voxels bucketed by `seed` grid cell: (sorted cell keys, CSR pointer, voxel ids, dims)."""
    keys, dims = grid_keys(xyz, seed)
    gid, cell_keys, order = group_sorted(keys, dims)
    ptr = np.zeros(cell_keys.shape[0] + 1, dtype=np.int64)
    for v in range(gid.shape[0]):
        ptr[gid[v] + 1] += 1
    for c in range(cell_keys.shape[0]):
        ptr[c + 1] += ptr[c]
    return cell_keys, ptr, order.astype(np.int32), dims


@numba.njit(cache=True)
def _cell_coords(key: np.uint64, dims: np.ndarray) -> tuple[int, int, int]:
    """Grid coordinates of a packed cell key."""
    k = np.int64(key)
    return k // (dims[1] * dims[2]), (k // dims[2]) % dims[1], k % dims[2]


@numba.njit(cache=True)
def _find_cell(cell_keys: np.ndarray, dims: np.ndarray, i: int, j: int, k: int) -> int:
    """Index of cell (i, j, k) in the sorted keys, or -1 if empty or off the grid."""
    if i < 0 or j < 0 or k < 0 or i >= dims[0] or j >= dims[1] or k >= dims[2]:
        return -1
    key = np.uint64((i * dims[1] + j) * dims[2] + k)
    c = np.searchsorted(cell_keys, key)
    if c < cell_keys.shape[0] and cell_keys[c] == key:
        return c
    return -1


@numba.njit(cache=True)
def select_seeds(xyz: np.ndarray, voxel: float, seed: float, cell_keys: np.ndarray,
                 cell_ptr: np.ndarray, cell_vox: np.ndarray, dims: np.ndarray) -> np.ndarray:
    """Seed voxels: per occupied cell the voxel nearest its centre, then PCL's density filter."""
    nc = cell_keys.shape[0]
    cand = np.empty(nc, dtype=np.int32)
    for c in range(nc):
        i, j, k = _cell_coords(cell_keys[c], dims)
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
        i, j, k = _cell_coords(cell_keys[c], dims)
        count = 0
        for di in range(-1, 2):
            for dj in range(-1, 2):
                for dk in range(-1, 2):
                    q = _find_cell(cell_keys, dims, i + di, j + dj, k + dk)
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
def _select(pts: np.ndarray, order: np.ndarray, lo: int, hi: int, k: int, ax: int) -> None:
    """Quickselect: reorder rows lo:hi of pts (and order along) so row k has rank k on axis ax."""
    while hi - lo > 1:
        a, b, c = pts[lo, ax], pts[(lo + hi) // 2, ax], pts[hi - 1, ax]
        pivot = max(min(a, b), min(max(a, b), c))  # median of three
        i, j = lo, hi - 1
        while i <= j:
            while pts[i, ax] < pivot:
                i += 1
            while pts[j, ax] > pivot:
                j -= 1
            if i <= j:
                for a in range(3):
                    pts[i, a], pts[j, a] = pts[j, a], pts[i, a]
                order[i], order[j] = order[j], order[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j + 1
        elif k >= i:
            lo = i
        else:
            return


@numba.njit(cache=True)
def kd_build(points: np.ndarray, leaf: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Balanced k-d tree (tree, order, axis), held in tree = points[order].

    The node over rows lo:hi splits at mid = (lo + hi) // 2 on axis[mid], the longest side of
    its box; ranges of `leaf` rows or fewer are leaves (one leaf: a plain scan).
    """
    m = points.shape[0]
    tree = points.copy()
    order = np.arange(m)
    axis = np.zeros(m, dtype=np.int64)
    ranges = np.empty((2 * 64 + 2, 2), dtype=np.int64)
    boxes = np.empty((2 * 64 + 2, 6))  # min xyz, max xyz of each pending node
    lo, hi = bounds(points)
    for a in range(3):
        boxes[0, a], boxes[0, 3 + a] = lo[a], hi[a]
    ranges[0, 0], ranges[0, 1] = 0, m
    top = 1
    while top > 0:
        top -= 1
        lo, hi = ranges[top, 0], ranges[top, 1]
        if hi - lo <= leaf:
            continue
        ax = 0
        for a in range(1, 3):
            if boxes[top, 3 + a] - boxes[top, a] > boxes[top, 3 + ax] - boxes[top, ax]:
                ax = a
        mid = (lo + hi) // 2
        _select(tree, order, lo, hi, mid, ax)
        axis[mid] = ax
        for a in range(6):
            boxes[top + 1, a] = boxes[top, a]
        boxes[top, 3 + ax] = tree[mid, ax]
        boxes[top + 1, ax] = tree[mid, ax]
        ranges[top, 1] = mid
        ranges[top + 1, 0], ranges[top + 1, 1] = mid + 1, hi
        top += 2
    return tree, order, axis


@numba.njit(cache=True)
def kd_nearest(tree: np.ndarray, order: np.ndarray, axis: np.ndarray, leaf: int,
               q: np.ndarray) -> int:
    """Index of the tree's point nearest q (in the points it was built from; lowest on ties)."""
    best_d, best = np.inf, -1
    los = np.empty(2 * 64 + 2, dtype=np.int64)
    his = np.empty(2 * 64 + 2, dtype=np.int64)
    gaps = np.empty(2 * 64 + 2)  # squared distance from q to the range's side of the splits
    los[0], his[0], gaps[0] = 0, tree.shape[0], 0.0
    top = 1
    while top > 0:
        top -= 1
        lo, hi, gap = los[top], his[top], gaps[top]
        if gap > best_d:
            continue
        is_leaf = hi - lo <= leaf
        mid = (lo + hi) // 2
        for r in range(lo if is_leaf else mid, hi if is_leaf else mid + 1):
            d = (tree[r, 0] - q[0]) ** 2 + (tree[r, 1] - q[1]) ** 2 + (tree[r, 2] - q[2]) ** 2
            if d < best_d or (d == best_d and order[r] < best):
                best_d, best = d, order[r]
        if is_leaf:
            continue
        diff = q[axis[mid]] - tree[mid, axis[mid]]
        near_lo, near_hi, far_lo, far_hi = lo, mid, mid + 1, hi
        if diff > 0:
            near_lo, near_hi, far_lo, far_hi = mid + 1, hi, lo, mid
        los[top], his[top], gaps[top] = far_lo, far_hi, max(gap, diff * diff)
        los[top + 1], his[top + 1], gaps[top + 1] = near_lo, near_hi, gap
        top += 2
    return best


@numba.njit(cache=True)
def fill_unreached(owner: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """Give each unreached voxel the owner of the nearest reached voxel."""
    reached = np.flatnonzero(owner >= 0)
    unreached = np.flatnonzero(owner < 0)
    if unreached.shape[0] == 0:
        return owner
    leaf = _LEAF if unreached.shape[0] > _FEW else reached.shape[0]
    tree, order, axis = kd_build(xyz[reached], leaf)
    out = owner.copy()
    for v in unreached:
        out[v] = owner[reached[kd_nearest(tree, order, axis, leaf, xyz[v])]]
    return out
