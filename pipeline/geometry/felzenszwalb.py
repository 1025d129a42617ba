"""Felzenszwalb-Huttenlocher segmentation of a triangle mesh by normal smoothness (Sec. 3.2).

The graph, weights and merge rules are those of ScanNet's mesh segmentator, which produced the
`_vh_clean_2.0.010000.segs.json` over-segmentations: one edge per face side, weight
`1 - n_a . n_b` (squared where the surface is convex along the edge), Kruskal-order merging
under the threshold `w + k / |C|`, then a pass in the same edge order that merges every
component smaller than `seg_min_verts` into a neighbour. Edges of equal weight keep face
order (the sort is stable), which makes the result deterministic.
"""
from __future__ import annotations

import numba
import numpy as np

from pipeline.geometry.normals import running_mean_vertex_normals
from pipeline.geometry.sorting import radix_argsort


def segment_mesh(vertices: np.ndarray, faces: np.ndarray, k_thresh: float, seg_min_verts: int,
                 colors: np.ndarray | None = None, color_weight: float = 0.0) -> np.ndarray:
    """Set id per vertex (i32[N], ids 0..S-1 in order of first vertex); unused vertices are singletons.

    `k_thresh` and `seg_min_verts` have no defaults here: the geosets stage declares them in
    stages.yaml (ScanNet's segmentator constants, 0.01 and 20).

    `color_weight` > 0 (beyond ScanNet's segmentator) adds that times the RGB distance of the
    edge's ends, scaled to [0, 1], to every edge weight: sets then also split at colour edges.
    """
    v = np.ascontiguousarray(vertices, dtype=np.float32)
    f = np.ascontiguousarray(faces, dtype=np.int32)
    if color_weight > 0:
        if colors is None or np.shape(colors) != (len(v), 3):
            raise ValueError(f"a colour term needs colours [N,3] for the {len(v)} vertices")
        rgb = np.ascontiguousarray(colors, dtype=np.float32)
    else:
        rgb = np.zeros((0, 3), np.float32)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must be [N,3], got shape {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"faces must be [F,3], got shape {f.shape}")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError(f"faces index vertices outside [0, {len(v)})")
    return _segment(v, f, np.float32(k_thresh), int(seg_min_verts), rgb, np.float32(color_weight))


@numba.njit(cache=True)
def _segment(vertices: np.ndarray, faces: np.ndarray, k_thresh: np.float32, seg_min_verts: int,
             colors: np.ndarray, color_weight: np.float32) -> np.ndarray:
    """The whole pipeline on validated arrays: normals, graph, sort, two merge passes."""
    normals = running_mean_vertex_normals(vertices, faces)
    a, b = mesh_edges(faces)
    w = edge_weights(vertices, normals, a, b)
    if color_weight > 0:
        w += color_weight * color_distances(colors, a, b)
    order = radix_argsort(float_sort_keys(w), 32)
    a, b, w = a[order], b[order], w[order]
    parent = np.arange(vertices.shape[0], dtype=np.int32)
    size = np.ones(vertices.shape[0], dtype=np.int32)
    merge_by_threshold(parent, size, a, b, w, k_thresh)
    merge_small(parent, size, a, b, seg_min_verts)
    return component_ids(parent)


@numba.njit(cache=True)
def mesh_edges(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Three directed edges per face (i1,i2), (i1,i3), (i3,i2); shared sides appear twice."""
    n = faces.shape[0]
    a = np.empty(3 * n, dtype=np.int32)
    b = np.empty(3 * n, dtype=np.int32)
    for f in range(n):
        a[3 * f], b[3 * f] = faces[f, 0], faces[f, 1]
        a[3 * f + 1], b[3 * f + 1] = faces[f, 0], faces[f, 2]
        a[3 * f + 2], b[3 * f + 2] = faces[f, 2], faces[f, 1]
    return a, b


@numba.njit(cache=True, error_model="numpy")
def edge_weights(vertices: np.ndarray, normals: np.ndarray, a: np.ndarray,
                 b: np.ndarray) -> np.ndarray:
    """`1 - n_a . n_b`, squared when n_b points along a->b (a convex edge), in float32."""
    one = np.float32(1.0)
    w = np.empty(a.shape[0], dtype=np.float32)
    for e in range(a.shape[0]):
        i, j = a[e], b[e]
        dx = vertices[j, 0] - vertices[i, 0]
        dy = vertices[j, 1] - vertices[i, 1]
        dz = vertices[j, 2] - vertices[i, 2]
        dd = np.sqrt(dx * dx + dy * dy + dz * dz)
        dx /= dd
        dy /= dd
        dz /= dd
        dot = normals[i, 0] * normals[j, 0] + normals[i, 1] * normals[j, 1] + normals[i, 2] * normals[j, 2]
        along = normals[j, 0] * dx + normals[j, 1] * dy + normals[j, 2] * dz
        ww = one - dot
        if along > 0:
            ww = ww * ww
        w[e] = ww
    return w


@numba.njit(cache=True)
def color_distances(colors: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """f32[E]: RGB distance of each edge's ends over the largest possible (255 sqrt 3)."""
    diff = colors[a] - colors[b]
    return (np.sqrt(np.sum(diff * diff, axis=1)) / np.float32(255.0 * np.sqrt(3.0))).astype(np.float32)


@numba.njit(cache=True)
def float_sort_keys(w: np.ndarray) -> np.ndarray:
    """Unsigned keys whose integer order is the numeric order of float32 `w` (NaN last)."""
    keys = np.empty(w.shape[0], dtype=np.uint64)
    bits = (w + np.float32(0.0)).view(np.uint32)  # + 0 turns -0 into +0
    for i in range(w.shape[0]):
        u = np.uint64(bits[i])
        if w[i] != w[i]:
            keys[i] = np.uint64(0xFFFFFFFF)
            continue
        keys[i] = (u ^ np.uint64(0xFFFFFFFF)) if u >= np.uint64(0x80000000) else (u | np.uint64(0x80000000))
    return keys


@numba.njit(cache=True)
def _find(parent: np.ndarray, x: int) -> int:
    """Root of x, halving the path on the way."""
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@numba.njit(cache=True)
def _union(parent: np.ndarray, size: np.ndarray, ra: int, rb: int) -> int:
    """Join two roots (the larger component stays root); returns the new root."""
    if size[ra] < size[rb]:
        ra, rb = rb, ra
    parent[rb] = ra
    size[ra] += size[rb]
    return ra


@numba.njit(cache=True)
def merge_by_threshold(parent: np.ndarray, size: np.ndarray, a: np.ndarray, b: np.ndarray,
                       w: np.ndarray, k: np.float32) -> None:
    """Kruskal-order merging: join when w <= both components' `w_last + k / |C|` thresholds."""
    thresh = np.full(parent.shape[0], k, dtype=np.float32)
    for e in range(a.shape[0]):
        ra = _find(parent, a[e])
        rb = _find(parent, b[e])
        if ra != rb and w[e] <= thresh[ra] and w[e] <= thresh[rb]:
            r = _union(parent, size, ra, rb)
            thresh[r] = w[e] + k / np.float32(size[r])


@numba.njit(cache=True)
def merge_small(parent: np.ndarray, size: np.ndarray, a: np.ndarray, b: np.ndarray,
                min_size: int) -> None:
    """In edge order, join the two sides of every edge while either side is below `min_size`."""
    for e in range(a.shape[0]):
        ra = _find(parent, a[e])
        rb = _find(parent, b[e])
        if ra != rb and (size[ra] < min_size or size[rb] < min_size):
            _union(parent, size, ra, rb)


@numba.njit(cache=True)
def component_ids(parent: np.ndarray) -> np.ndarray:
    """Consecutive component id per element, numbered by first element."""
    n = parent.shape[0]
    ids = np.empty(n, dtype=np.int32)
    of_root = np.full(n, -1, dtype=np.int32)
    nxt = 0
    for i in range(n):
        r = _find(parent, i)
        if of_root[r] < 0:
            of_root[r] = nxt
            nxt += 1
        ids[i] = of_root[r]
    return ids
