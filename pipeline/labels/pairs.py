"""The `pairs` stage: which point lands on which pixel of which frame (paper Sec. 3.1)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline.errors import SceneError
from pipeline.geometry.projection import point_columns, project_scene, zbuffer_visible


def image_size(scene: Mapping[str, np.ndarray]) -> tuple[int, int]:
    """(H, W) of a scene's frames, from its colour images or else its depth images."""
    for name in ("color", "depth"):
        if name in scene:
            shape = scene[name].shape
            return int(shape[1]), int(shape[2])
    raise SceneError("scene has neither color nor depth frames, so the image size is unknown")


def occlusion_filter(pixel: np.ndarray, z: np.ndarray, offsets: np.ndarray,
                     image_hw: tuple[int, int], abs_tol: float | None, rel_tol: float | None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Keep-mask of pairs not hidden by a nearer projected point of their frame (z-buffer),
    and the frame offsets of the kept pairs."""
    keep = np.empty(z.shape[0], np.bool_)
    kept_offsets = np.zeros_like(offsets)
    for k in range(offsets.shape[0] - 1):
        lo, hi = offsets[k], offsets[k + 1]
        keep[lo:hi] = zbuffer_visible(pixel[lo:hi, 0], pixel[lo:hi, 1], z[lo:hi], image_hw,
                                      abs_tol, rel_tol)
        kept_offsets[k + 1] = kept_offsets[k] + np.count_nonzero(keep[lo:hi])
    return keep, kept_offsets


def pairs_stage(inputs: Mapping[str, Mapping[str, np.ndarray]],
                params: Mapping[str, Any]) -> dict[str, Any]:
    """Project every point into every frame; pairs of frame k are [offsets[k], offsets[k+1]).

    With depth images the depth test decides visibility; without (LiDAR), the optional
    z-buffer test of the projected points does.
    """
    scene = inputs["scenes"]
    image_hw = image_size(scene)
    num_frames = scene["world_to_camera"].shape[0]
    if scene["intrinsics"].shape[0] != num_frames:
        raise SceneError(f"{scene['intrinsics'].shape[0]} intrinsics for {num_frames} poses")
    depth = np.asarray(scene["depth"]) if "depth" in scene else None
    abs_tol, rel_tol = params["depth_abs_tol"], params["depth_rel_tol"]
    try:
        point, pixel, z, offsets = project_scene(
            point_columns(scene["points"]), np.asarray(scene["world_to_camera"]),
            np.asarray(scene["intrinsics"]), image_hw, min_depth=params["min_depth"],
            border=params["border"], depth=depth, depth_abs_tol=abs_tol,
            depth_rel_tol=rel_tol)
    except ValueError as exc:
        raise SceneError(str(exc)) from exc
    if depth is None and params["occlusion"]:
        keep, offsets = occlusion_filter(pixel, z, offsets, image_hw, abs_tol, rel_tol)
        point, pixel = point[keep], pixel[keep]
    if offsets[-1] == 0:
        raise SceneError(f"no point is visible in any frame ({num_frames} frames, "
                         f"{scene['points'].shape[0]} points); check poses and intrinsics")
    return {"point": point, "pixel": pixel, "frame_offsets": offsets}
