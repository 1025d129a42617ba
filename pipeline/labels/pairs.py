"""The `pairs` stage: which point lands on which pixel of which frame (paper Sec. 3.1)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline.errors import SceneError
from pipeline.geometry.projection import point_columns, project_columns, zbuffer_visible


def image_size(scene: Mapping[str, np.ndarray]) -> tuple[int, int]:
    """(H, W) of a scene's frames, from its colour images or else its depth images."""
    for name in ("color", "depth"):
        if name in scene:
            shape = scene[name].shape
            return int(shape[1]), int(shape[2])
    raise SceneError("scene has neither color nor depth frames, so the image size is unknown")


def frame_pairs(scene: Mapping[str, np.ndarray], xyz: np.ndarray, k: int,
                image_hw: tuple[int, int], params: Mapping[str, Any]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Visible (point, row, col) of frame k: depth test when the scene has depth, else z-buffer.

    xyz is `point_columns(scene["points"])`, made once per scene.
    """
    depth = np.asarray(scene["depth"][k]) if "depth" in scene else None
    abs_tol = params.get("depth_abs_tol", 0.05)
    rel_tol = params.get("depth_rel_tol")
    idx, rows, cols, zs = project_columns(
        xyz, np.asarray(scene["world_to_camera"][k]),
        np.asarray(scene["intrinsics"][k]), image_hw,
        min_depth=params.get("min_depth", 0.0), border=params.get("border", 0),
        depth=depth, depth_abs_tol=abs_tol, depth_rel_tol=rel_tol)
    if depth is None and params.get("occlusion", False):
        keep = zbuffer_visible(rows, cols, zs, image_hw, abs_tol, rel_tol)
        idx, rows, cols = idx[keep], rows[keep], cols[keep]
    return idx, rows, cols


def pairs_stage(inputs: Mapping[str, Mapping[str, np.ndarray]],
                params: Mapping[str, Any]) -> dict[str, Any]:
    """Project every point into every frame; pairs of frame k are [offsets[k], offsets[k+1])."""
    scene = inputs["scenes"]
    image_hw = image_size(scene)
    num_frames = scene["world_to_camera"].shape[0]
    if scene["intrinsics"].shape[0] != num_frames:
        raise SceneError(f"{scene['intrinsics'].shape[0]} intrinsics for {num_frames} poses")
    xyz = point_columns(scene["points"])
    points, pixels, counts = [], [], np.zeros(num_frames + 1, np.int64)
    for k in range(num_frames):
        idx, rows, cols = frame_pairs(scene, xyz, k, image_hw, params)
        points.append(idx)
        pixels.append(np.stack([rows, cols], axis=1).astype(np.int16))
        counts[k + 1] = idx.shape[0]
    offsets = np.cumsum(counts)
    if offsets[-1] == 0:
        raise SceneError(f"no point is visible in any frame ({num_frames} frames, "
                         f"{scene['points'].shape[0]} points); check poses and intrinsics")
    return {"point": np.concatenate(points), "pixel": np.concatenate(pixels),
            "frame_offsets": offsets}
