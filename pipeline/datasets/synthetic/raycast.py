"""RGB-D and label rendering of a triangle mesh with Open3D's ray casting (Embree).

Depth is the camera z of the nearest hit through each pixel centre (ScanNet's depth is z-depth,
not range). Colour is the barycentric blend of the hit triangle's vertex colours with mild
Lambert shading; the hit face gives the per-pixel ground-truth label and the surface normal
that the depth sensor's grazing-angle dropout needs. Camera convention (ScanNet): x right,
y down, z forward, integer pixel coordinates at pixel centres.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d


@dataclass
class Hits:
    """One frame's ray hits: true depth f64[H,W] (0 = miss), colour u8[H,W,3], face i64[H,W]
    (-1 = miss) and |cos| of the incidence angle f64[H,W]."""

    depth: np.ndarray
    color: np.ndarray
    face: np.ndarray
    cos_incidence: np.ndarray


class MeshCaster:
    """A mesh (vertices, faces, vertex colours) prepared once for casting many frames."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray):
        self.faces = np.asarray(faces, np.int64)
        self.colors = np.asarray(colors, np.float64)
        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(o3d.core.Tensor(np.asarray(vertices, np.float32)),
                                 o3d.core.Tensor(np.asarray(faces, np.uint32)))

    def cast(self, camera_to_world: np.ndarray, intrinsics: np.ndarray, hw: tuple[int, int],
             light: np.ndarray) -> Hits:
        """Render one frame from a camera-to-world pose."""
        h, w = hw
        rows, cols = np.mgrid[0:h, 0:w]
        cam = np.stack([(cols - intrinsics[0, 2]) / intrinsics[0, 0], (rows - intrinsics[1, 2]) / intrinsics[1, 1],
                        np.ones((h, w))], axis=-1)  # z-scaled: the hit distance t is camera depth
        dirs = cam @ camera_to_world[:3, :3].T
        rays = np.concatenate([np.broadcast_to(camera_to_world[:3, 3], dirs.shape), dirs], axis=-1)
        out = self.scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)))
        t = out["t_hit"].numpy().astype(np.float64)
        prim = out["primitive_ids"].numpy().astype(np.int64)
        hit = np.isfinite(t) & (prim != o3d.t.geometry.RaycastingScene.INVALID_ID)
        face = np.where(hit, prim, -1)
        uv = out["primitive_uvs"].numpy().astype(np.float64)
        normal = out["primitive_normals"].numpy().astype(np.float64)
        tri = self.faces[np.where(hit, prim, 0)]
        weights = np.stack([1.0 - uv[..., 0] - uv[..., 1], uv[..., 0], uv[..., 1]], axis=-1)
        rgb = np.einsum("hwc,hwcd->hwd", weights, self.colors[tri])
        unit = dirs / np.linalg.norm(dirs, axis=-1, keepdims=True)
        cos = np.abs(np.einsum("hwd,hwd->hw", unit, normal))
        shade = 0.72 + 0.28 * np.abs(normal @ light)
        color = np.where(hit[..., None], rgb * shade[..., None], 0.0)
        return Hits(np.where(hit, t, 0.0), np.clip(np.round(color), 0, 255).astype(np.uint8), face,
                    np.where(hit, cos, 0.0))
