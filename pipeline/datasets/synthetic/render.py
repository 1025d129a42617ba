"""RGB-D rendering of a triangle mesh by ray casting through a bounding volume hierarchy.

Depth is the camera z of the nearest triangle hit through each pixel centre (ScanNet's depth is
z-depth, not range), so back-projecting a depth pixel lands on the mesh itself. Colour is the
barycentric blend of the hit triangle's vertex colours with mild Lambert shading.
Camera convention (ScanNet): x right, y down, z forward; ``u = fx*x/z + cx``, ``v = fy*y/z + cy``
with integer pixel coordinates at pixel centres.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

LEAF_SIZE = 4
STACK = 64


@numba.njit(cache=True)
def build_bvh(tri_lo: np.ndarray, tri_hi: np.ndarray, centroid: np.ndarray, leaf_size: int):
    """Median-split BVH over triangles; children of node k are left[k] and left[k] + 1.

    Returns (node_lo f64[M,3], node_hi f64[M,3], left i32[M] (-1 = leaf), start i32[M],
    count i32[M], order i64[T]) where a leaf holds triangles order[start:start+count].
    """
    n = centroid.shape[0]
    order = np.arange(n)
    cap = 2 * n + 1
    node_lo = np.empty((cap, 3))
    node_hi = np.empty((cap, 3))
    left = np.full(cap, -1, np.int32)
    start = np.zeros(cap, np.int32)
    count = np.zeros(cap, np.int32)
    st_node = np.empty(STACK, np.int64)
    st_s = np.empty(STACK, np.int64)
    st_e = np.empty(STACK, np.int64)
    st_node[0], st_s[0], st_e[0] = 0, 0, n
    sp, n_nodes = 1, 1
    while sp > 0:
        sp -= 1
        node, s, e = st_node[sp], st_s[sp], st_e[sp]
        lo = np.full(3, np.inf)
        hi = np.full(3, -np.inf)
        clo = np.full(3, np.inf)
        chi = np.full(3, -np.inf)
        for k in range(s, e):
            t = order[k]
            for a in range(3):
                lo[a] = min(lo[a], tri_lo[t, a])
                hi[a] = max(hi[a], tri_hi[t, a])
                clo[a] = min(clo[a], centroid[t, a])
                chi[a] = max(chi[a], centroid[t, a])
        node_lo[node] = lo
        node_hi[node] = hi
        ext = chi - clo
        axis = int(np.argmax(ext))
        if e - s <= leaf_size or ext[axis] <= 0.0:
            start[node], count[node] = s, e - s
            continue
        sub = order[s:e].copy()
        order[s:e] = sub[np.argsort(centroid[sub, axis], kind="mergesort")]
        mid = (s + e) // 2
        left[node] = n_nodes
        n_nodes += 2
        st_node[sp], st_s[sp], st_e[sp] = left[node] + 1, mid, e
        st_node[sp + 1], st_s[sp + 1], st_e[sp + 1] = left[node], s, mid
        sp += 2
    return node_lo[:n_nodes], node_hi[:n_nodes], left[:n_nodes], start[:n_nodes], count[:n_nodes], order


@numba.njit(inline="always")
def _slab(o0, o1, o2, i0, i1, i2, lo, hi, node, t_max):
    """Entry distance of a ray into a node's box, or inf when it misses before t_max."""
    ta, tb = (lo[node, 0] - o0) * i0, (hi[node, 0] - o0) * i0
    tmin, tmax = min(ta, tb), max(ta, tb)
    ta, tb = (lo[node, 1] - o1) * i1, (hi[node, 1] - o1) * i1
    tmin, tmax = max(tmin, min(ta, tb)), min(tmax, max(ta, tb))
    ta, tb = (lo[node, 2] - o2) * i2, (hi[node, 2] - o2) * i2
    tmin, tmax = max(tmin, min(ta, tb)), min(tmax, max(ta, tb))
    tmin = max(tmin, 0.0)
    if tmin <= tmax and tmin < t_max:
        return tmin
    return np.inf


@numba.njit(cache=True, parallel=True)
def cast_rays(origin: np.ndarray, dirs: np.ndarray, node_lo: np.ndarray, node_hi: np.ndarray,
              left: np.ndarray, start: np.ndarray, count: np.ndarray, v0: np.ndarray, e1: np.ndarray,
              e2: np.ndarray):
    """Nearest hit along ``origin + t*dirs[r]`` (t > 0) for every ray.

    Triangles are given in BVH order as v0 and edges e1 = v1 - v0, e2 = v2 - v0. Returns
    (t f64[R] (inf = miss), tri i64[R] (BVH-order index, -1 = miss), b1, b2 barycentrics of v1, v2).
    """
    n_rays = dirs.shape[0]
    t_out = np.full(n_rays, np.inf)
    tri_out = np.full(n_rays, -1, np.int64)
    b1_out = np.zeros(n_rays)
    b2_out = np.zeros(n_rays)
    o0, o1, o2 = origin[0], origin[1], origin[2]
    for r in numba.prange(n_rays):
        d0, d1, d2 = dirs[r, 0], dirs[r, 1], dirs[r, 2]
        i0 = 1.0 / d0 if d0 != 0.0 else 1e300
        i1 = 1.0 / d1 if d1 != 0.0 else 1e300
        i2 = 1.0 / d2 if d2 != 0.0 else 1e300
        best, best_tri, best_b1, best_b2 = np.inf, -1, 0.0, 0.0
        stack = np.empty(STACK, np.int64)
        sp = 0
        if _slab(o0, o1, o2, i0, i1, i2, node_lo, node_hi, 0, best) < np.inf:
            stack[0] = 0
            sp = 1
        while sp > 0:
            sp -= 1
            node = stack[sp]
            if left[node] < 0:
                for k in range(start[node], start[node] + count[node]):
                    # Moller-Trumbore
                    p0 = d1 * e2[k, 2] - d2 * e2[k, 1]
                    p1 = d2 * e2[k, 0] - d0 * e2[k, 2]
                    p2 = d0 * e2[k, 1] - d1 * e2[k, 0]
                    det = e1[k, 0] * p0 + e1[k, 1] * p1 + e1[k, 2] * p2
                    if abs(det) < 1e-14:
                        continue
                    inv = 1.0 / det
                    s0, s1, s2 = o0 - v0[k, 0], o1 - v0[k, 1], o2 - v0[k, 2]
                    u = (s0 * p0 + s1 * p1 + s2 * p2) * inv
                    if u < -1e-9 or u > 1.0 + 1e-9:
                        continue
                    q0 = s1 * e1[k, 2] - s2 * e1[k, 1]
                    q1 = s2 * e1[k, 0] - s0 * e1[k, 2]
                    q2 = s0 * e1[k, 1] - s1 * e1[k, 0]
                    v = (d0 * q0 + d1 * q1 + d2 * q2) * inv
                    if v < -1e-9 or u + v > 1.0 + 1e-9:
                        continue
                    t = (e2[k, 0] * q0 + e2[k, 1] * q1 + e2[k, 2] * q2) * inv
                    if 1e-6 < t < best:
                        best, best_tri, best_b1, best_b2 = t, k, u, v
                continue
            a, b = left[node], left[node] + 1
            ta = _slab(o0, o1, o2, i0, i1, i2, node_lo, node_hi, a, best)
            tb = _slab(o0, o1, o2, i0, i1, i2, node_lo, node_hi, b, best)
            if ta > tb:  # push the far child first so the near one is visited next
                a, b, ta, tb = b, a, tb, ta
            if tb < np.inf:
                stack[sp] = b
                sp += 1
            if ta < np.inf:
                stack[sp] = a
                sp += 1
        t_out[r], tri_out[r], b1_out[r], b2_out[r] = best, best_tri, best_b1, best_b2
    return t_out, tri_out, b1_out, b2_out


@dataclass
class RenderMesh:
    """A mesh prepared for ray casting: BVH, triangles in BVH order, colours and face normals."""

    faces: np.ndarray  # i32[F, 3], original order
    colors: np.ndarray  # f64[N, 3]
    order: np.ndarray  # i64[F], BVH order -> original face index
    node_lo: np.ndarray
    node_hi: np.ndarray
    left: np.ndarray
    start: np.ndarray
    count: np.ndarray
    v0: np.ndarray
    e1: np.ndarray
    e2: np.ndarray
    normals: np.ndarray  # f64[F, 3] unit face normals, BVH order


def prepare(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray) -> RenderMesh:
    """Build the BVH of a mesh (vertices are used exactly as given, in float64)."""
    v = np.ascontiguousarray(vertices, np.float64)
    tri = v[faces]
    node_lo, node_hi, left, start, count, order = build_bvh(
        tri.min(axis=1), tri.max(axis=1), tri.mean(axis=1), LEAF_SIZE)
    tri = tri[order]
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    n = np.cross(e1, e2)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-300)
    return RenderMesh(faces, colors.astype(np.float64), order, node_lo, node_hi, left, start, count,
                      np.ascontiguousarray(tri[:, 0]), np.ascontiguousarray(e1), np.ascontiguousarray(e2), n)


def pixel_rays(intrinsics: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Camera-frame ray directions f64[H*W, 3] through pixel centres, scaled to z = 1."""
    h, w = hw
    rows, cols = np.mgrid[0:h, 0:w]
    x = (cols.ravel() - intrinsics[0, 2]) / intrinsics[0, 0]
    y = (rows.ravel() - intrinsics[1, 2]) / intrinsics[1, 1]
    return np.stack([x, y, np.ones_like(x)], axis=1)


def render(mesh: RenderMesh, camera_to_world: np.ndarray, intrinsics: np.ndarray, hw: tuple[int, int],
           light: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Depth f64[H,W] in metres (0 = no hit), colour u8[H,W,3] and hit face i64[H,W] (-1 = none)."""
    dirs = pixel_rays(intrinsics, hw) @ camera_to_world[:3, :3].T  # z-scaled: t is camera depth
    t, k, b1, b2 = cast_rays(np.ascontiguousarray(camera_to_world[:3, 3], np.float64), np.ascontiguousarray(dirs),
                             mesh.node_lo, mesh.node_hi, mesh.left, mesh.start, mesh.count, mesh.v0, mesh.e1, mesh.e2)
    hit = k >= 0
    depth = np.where(hit, t, 0.0)
    color = np.zeros((len(t), 3))
    face = np.full(len(t), -1, np.int64)
    if hit.any():
        kh = k[hit]
        face[hit] = mesh.order[kh]
        tri = mesh.faces[face[hit]]
        w = np.stack([1.0 - b1[hit] - b2[hit], b1[hit], b2[hit]], axis=1)
        rgb = np.einsum("rc,rcd->rd", w, mesh.colors[tri])
        shade = 0.72 + 0.28 * np.abs(mesh.normals[kh] @ light)
        color[hit] = rgb * shade[:, None]
    h, w_ = hw
    return (depth.reshape(h, w_), np.clip(np.round(color), 0, 255).astype(np.uint8).reshape(h, w_, 3),
            face.reshape(h, w_))
