"""Voxel Cloud Connectivity Segmentation (VCCS, Papon et al. 2013) supervoxels (Sec. 3.2).

For point clouds without a mesh (LiDAR sweeps, meshless indoor scans). The steps follow PCL's
SupervoxelClustering with its default weights:

1. voxelise at `voxel_resolution` (sort of packed integer keys) and link voxels to their 26
   neighbours (merge-join of the sorted keys with each shifted key set, stored as CSR);
2. voxel normals: the mean of given point normals, else PCA over the points of the voxel and its
   26 neighbours, oriented towards the origin (the sensor, for LiDAR);
3. one seed per occupied `seed_resolution` cell (the voxel nearest the cell centre), kept only
   when more than `0.05 * pi * r**2 / voxel_resolution**2` voxels lie within r = seed/2
   (PCL's density filter; if it would drop every seed, all are kept);
4. flow-constrained growth: for `int(1.8 * seed / voxel)` rounds each supervoxel, in seed order,
   offers the neighbours of the voxels it gained in the previous round to itself and takes
   (or steals) those whose distance to its centroid is below their current one, with
   `D = w_c * |rgb| / 255 + w_s * |xyz| / seed_resolution + w_n * (1 - |n . n_c|)`;
   centroids (mean xyz, rgb, normalised mean normal of the members) are updated per round;
5. every voxel that growth did not reach joins the supervoxel of the nearest (Euclidean)
   reached voxel, so, unlike PCL, every point gets a set.

Everything is sequential and tie-breaks by index, so the output is deterministic.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from pipeline.geometry.felzenszwalb import radix_argsort
from pipeline.geometry.normals import smallest_eigenvector

_MAX_KEY_BITS = 62
_SHELLS = 3  # grid shells searched for a reached voxel before falling back to a full scan
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
    extent = (p.max(axis=0) - p.min(axis=0)) / voxel_resolution + 3
    if np.log2(extent).sum() > _MAX_KEY_BITS:
        raise ValueError(f"extent {np.ptp(p, axis=0)} m is too large for voxels of {voxel_resolution} m")
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
    lo = np.array([points[:, 0].min(), points[:, 1].min(), points[:, 2].min()])
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
    owner = grow(xyz, rgb, nrm, indptr, nbrs, seeds, int(1.8 * seed / voxel), seed, w_c, w_s, w_n)
    owner = fill_unreached(owner, xyz, seed, cell_keys, cell_ptr, cell_vox, cell_dims)
    return dense_ids(owner, seeds.shape[0])[inv]


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
        out[g] /= cnt[g]
    return out


@numba.njit(cache=True, error_model="numpy")
def normalise_rows(v: np.ndarray) -> np.ndarray:
    """Unit rows; zero rows stay zero."""
    out = np.zeros_like(v)
    for i in range(v.shape[0]):
        n = math.sqrt(v[i, 0] ** 2 + v[i, 1] ** 2 + v[i, 2] ** 2)
        if n > 0:
            out[i] = v[i] / n
    return out


@numba.njit(cache=True)
def adjacency(keys: np.ndarray, dims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """26-neighbour CSR (indptr, indices) of occupied voxels, by merge-joining shifted keys."""
    nv = keys.shape[0]
    nb = np.full((nv, 26), -1, dtype=np.int32)
    for o in range(26):
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
        m = mom[inv[i]]
        x, y, z = rel[i, 0], rel[i, 1], rel[i, 2]
        m[0] += 1.0
        m[1] += x
        m[2] += y
        m[3] += z
        m[4] += x * x
        m[5] += x * y
        m[6] += x * z
        m[7] += y * y
        m[8] += y * z
        m[9] += z * z
    out = np.zeros((nv, 3))
    acc = np.empty(10)
    for v in range(nv):
        acc[:] = mom[v]
        for k in range(indptr[v], indptr[v + 1]):
            acc += mom[nbrs[k]]
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
def seed_grid(xyz: np.ndarray, seed: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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
        keep[c] = count > min_count
    if not keep.any():
        return cand
    return cand[keep]


@numba.njit(cache=True, error_model="numpy")
def _distance(s: int, v: int, cxyz: np.ndarray, crgb: np.ndarray, cnrm: np.ndarray,
              xyz: np.ndarray, rgb: np.ndarray, nrm: np.ndarray, seed: float, w_c: float,
              w_s: float, w_n: float) -> float:
    """VCCS distance between supervoxel centroid s and voxel v (PCL's voxelDataDistance)."""
    spatial = math.sqrt((cxyz[s, 0] - xyz[v, 0]) ** 2 + (cxyz[s, 1] - xyz[v, 1]) ** 2
                        + (cxyz[s, 2] - xyz[v, 2]) ** 2) / seed
    colour = math.sqrt((crgb[s, 0] - rgb[v, 0]) ** 2 + (crgb[s, 1] - rgb[v, 1]) ** 2
                       + (crgb[s, 2] - rgb[v, 2]) ** 2) / 255.0
    normal = 1.0 - abs(cnrm[s, 0] * nrm[v, 0] + cnrm[s, 1] * nrm[v, 1] + cnrm[s, 2] * nrm[v, 2])
    return w_c * colour + w_s * spatial + w_n * normal


@numba.njit(cache=True, error_model="numpy")
def _update_centroids(owner: np.ndarray, xyz: np.ndarray, rgb: np.ndarray, nrm: np.ndarray,
                      cxyz: np.ndarray, crgb: np.ndarray, cnrm: np.ndarray) -> None:
    """Centroid of each supervoxel: mean xyz and rgb, normalised mean normal of its voxels."""
    cnt = np.zeros(cxyz.shape[0])
    cxyz[:] = 0.0
    crgb[:] = 0.0
    cnrm[:] = 0.0
    for v in range(owner.shape[0]):
        s = owner[v]
        if s < 0:
            continue
        cnt[s] += 1.0
        for a in range(3):
            cxyz[s, a] += xyz[v, a]
            crgb[s, a] += rgb[v, a]
            cnrm[s, a] += nrm[v, a]
    for s in range(cxyz.shape[0]):
        if cnt[s] > 0:
            cxyz[s] /= cnt[s]
            crgb[s] /= cnt[s]
        n = math.sqrt(cnrm[s, 0] ** 2 + cnrm[s, 1] ** 2 + cnrm[s, 2] ** 2)
        if n > 0:
            cnrm[s] /= n


@numba.njit(cache=True, error_model="numpy")
def grow(xyz: np.ndarray, rgb: np.ndarray, nrm: np.ndarray, indptr: np.ndarray,
         nbrs: np.ndarray, seeds: np.ndarray, rounds: int, seed: float, w_c: float, w_s: float,
         w_n: float) -> np.ndarray:
    """Flow-constrained expansion from the seeds; owner per voxel (-1 where not reached)."""
    nv, ns = xyz.shape[0], seeds.shape[0]
    owner = np.full(nv, -1, dtype=np.int32)
    dist = np.full(nv, np.inf)
    cxyz, crgb, cnrm = np.empty((ns, 3)), np.empty((ns, 3)), np.empty((ns, 3))
    front_v = seeds.copy()
    front_s = np.arange(ns, dtype=np.int32)
    for s in range(ns):
        owner[seeds[s]] = s
        dist[seeds[s]] = 0.0
        cxyz[s] = xyz[seeds[s]]
        crgb[s] = rgb[seeds[s]]
        cnrm[s] = nrm[seeds[s]]
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
                d = _distance(s, u, cxyz, crgb, cnrm, xyz, rgb, nrm, seed, w_c, w_s, w_n)
                if d < dist[u]:
                    dist[u] = d
                    owner[u] = s
                    new_v[m] = u
                    new_s[m] = s
                    m += 1
        if m == 0:
            break
        front_v, front_s = new_v[:m], new_s[:m]
        _update_centroids(owner, xyz, rgb, nrm, cxyz, crgb, cnrm)
    return owner


@numba.njit(cache=True)
def fill_unreached(owner: np.ndarray, xyz: np.ndarray, seed: float, cell_keys: np.ndarray,
                   cell_ptr: np.ndarray, cell_vox: np.ndarray, dims: np.ndarray) -> np.ndarray:
    """Give each unreached voxel the owner of the nearest reached voxel.

    Cells are scanned in growing Chebyshev shells around the voxel's cell; once the best
    distance is within `shell * seed`, no farther cell can hold a closer voxel. A voxel with
    nothing reached in its first shells (an isolated outlier) scans all voxels instead.
    """
    out = owner.copy()
    for c in range(cell_keys.shape[0]):
        ci, cj, ck = _cell_coords(cell_keys[c], dims)
        for r in range(cell_ptr[c], cell_ptr[c + 1]):
            v = cell_vox[r]
            if owner[v] >= 0:
                continue
            best, best_owner = np.inf, -1
            shell = 0
            while True:
                for di in range(-shell, shell + 1):
                    for dj in range(-shell, shell + 1):
                        for dk in range(-shell, shell + 1):
                            if max(abs(di), abs(dj), abs(dk)) != shell:
                                continue
                            q = _find_cell(cell_keys, dims, ci + di, cj + dj, ck + dk)
                            if q >= 0:
                                best, best_owner = _nearest_owned(
                                    v, cell_vox[cell_ptr[q]:cell_ptr[q + 1]], owner, xyz,
                                    best, best_owner)
                if best_owner >= 0 and best <= (shell * seed) ** 2:
                    break
                if best_owner < 0 and shell >= _SHELLS:
                    best, best_owner = _nearest_owned(v, cell_vox, owner, xyz, best, best_owner)
                    break
                shell += 1
            out[v] = best_owner
    return out


@numba.njit(cache=True)
def _nearest_owned(v: int, candidates: np.ndarray, owner: np.ndarray, xyz: np.ndarray,
                   best: float, best_owner: int) -> tuple[float, int]:
    """Update (squared distance, owner) of the nearest reached voxel to v among candidates."""
    for u in candidates:
        if owner[u] < 0:
            continue
        d = (xyz[u, 0] - xyz[v, 0]) ** 2 + (xyz[u, 1] - xyz[v, 1]) ** 2 + (xyz[u, 2] - xyz[v, 2]) ** 2
        if d < best:
            best, best_owner = d, owner[u]
    return best, best_owner


@numba.njit(cache=True)
def dense_ids(owner: np.ndarray, ns: int) -> np.ndarray:
    """Renumber owners 0..S-1 in seed order, dropping supervoxels left empty."""
    used = np.zeros(ns, dtype=np.bool_)
    for v in range(owner.shape[0]):
        used[owner[v]] = True
    new = np.cumsum(used).astype(np.int32) - 1
    return new[owner]
