"""The `geosets` stage: geometric consistency sets per scene (Sec. 3.2).

Meshes (ScanNet) are over-segmented with Felzenszwalb on mesh normals, exactly like ScanNet's
`.segs.json`; clouds without faces with VCCS supervoxels. VCCS sizes are params, declared in
stages.yaml with indoor defaults (voxel 0.05 m, seed 0.3 m: the furniture-part scale the mesh
segmentation gives on ScanNet); LiDAR datasets set theirs in their `stages:` block (voxel 0.2 m,
seed 2.0 m: sets about the size of a car door, so poles, pedestrians and cones are not merged
into the road around them, and near-range ring lines, closer than about two voxels, still
connect).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline.errors import SceneError
from pipeline.geometry.felzenszwalb import segment_mesh
from pipeline.geometry.vccs import supervoxels


def geosets_stage(inputs: Mapping[str, Mapping[str, np.ndarray]],
                  params: Mapping[str, Any]) -> dict[str, Any]:
    """Set id per point (i32[N]) plus the method used and the number of sets as attributes."""
    scene = inputs["scenes"]
    points = np.asarray(scene["points"], dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise SceneError(f"points must be a non-empty [N,3] array, got shape {points.shape}")
    faces = np.asarray(scene["faces"]) if "faces" in scene else None
    method = params["method"]
    if method == "auto":
        method = "felzenszwalb" if faces is not None and len(faces) else "vccs"
    if method == "felzenszwalb":
        if faces is None or len(faces) == 0:
            raise SceneError("method 'felzenszwalb' needs a mesh, but the scene has no faces")
        try:
            set_id = segment_mesh(points, faces, k_thresh=params["k_thresh"],
                                  seg_min_verts=params["seg_min_verts"])
        except ValueError as exc:
            raise SceneError(str(exc)) from exc
    elif method == "vccs":
        try:
            set_id = supervoxels(
                points, _colors(scene), _usable_normals(scene), voxel_resolution=params["voxel_resolution"],
                seed_resolution=params["seed_resolution"], color_importance=params["color_importance"],
                spatial_importance=params["spatial_importance"], normal_importance=params["normal_importance"])
        except ValueError as exc:
            raise SceneError(str(exc)) from exc
    else:
        raise SceneError(f"geosets method must be auto, felzenszwalb or vccs, got {method!r}")
    return {"set_id": set_id.astype(np.int32), "method": method,
            "num_sets": int(set_id.max()) + 1 if len(set_id) else 0}


def split_sets(set_id: np.ndarray, points: np.ndarray, extent: float) -> np.ndarray:
    """i32[N]: each set cut by a grid of cubes `extent` metres wide (a cap on set size, beyond the
    paper); ids renumbered 0..S-1 in order of first point, negative ids (no set) stay -1."""
    set_id = np.asarray(set_id, np.int64)
    out = np.full(len(set_id), -1, np.int32)
    member = np.flatnonzero(set_id >= 0)
    cells = np.floor(np.asarray(points, np.float64)[member] / extent).astype(np.int64)
    keys = np.column_stack([set_id[member], cells])
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    out[member] = rank[inverse.reshape(-1)]
    return out


def _colors(scene: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """Point colours when the scene has any that vary (LiDAR scenes may store zeros)."""
    if "colors" not in scene:
        return None
    colors = np.asarray(scene["colors"])
    return colors if colors.size and np.ptp(colors) > 0 else None


def _usable_normals(scene: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """The scene's normals if nearly all are finite unit vectors, else None (VCCS estimates them)."""
    if "normals" not in scene:
        return None
    normals = np.asarray(scene["normals"], dtype=np.float32)
    norm = np.linalg.norm(normals, axis=1)
    ok = np.isfinite(norm) & (np.abs(norm - 1) < 0.1)
    if ok.mean() <= 0.99:
        return None
    return np.where(ok[:, None], normals, 0.0).astype(np.float32)  # a zero normal is neutral
