"""The scan mesh fused from the noisy RGB-D frames, as ScanNet's meshes were, and its labels.

ScanNet's ``_vh_clean_2.ply`` is a TSDF reconstruction (BundleFusion) of the depth stream,
cleaned and decimated: it holds only surface that some frame measured. Here Open3D's TSDF
voxel block grid integrates every rendered frame at the poses written for them, marching cubes
extracts the surface at a voxel size that gives ScanNet's vertex counts, and small floating
components are removed. The extraction's vertex order depends on the hash map's threads, so the
mesh is put in one canonical order (vertices by coordinates, faces by vertex ids): a room
generated twice is the same file, and the noise the simulated VLM seeds from a scene's points
is the same too. Ground truth moves to the fused vertices from the generator's
surfaces: each vertex takes the label of the nearest surface point, or none (0, unannotated) when
that point is farther than ``max_label_distance``, as ScanNet leaves unannotated what no
annotator could assign.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d


@dataclass(frozen=True)
class FusionParams:
    """TSDF fusion and mesh clean-up settings."""

    voxel: float = 0.03  # metres: marching cubes then gives ScanNet's 50k-150k vertices a room
    truncation: float = 0.06  # metres, the signed distance's band
    max_depth: float = 4.0  # metres
    min_weight: float = 4.0  # a voxel must be measured by at least this many frames (fewer: not fused)
    block_count: int = 40_000  # hash capacity of 16^3-voxel blocks
    min_component_faces: int = 300  # smaller connected pieces are removed (floaters)
    max_label_distance: float = 0.05  # metres


@dataclass
class FusedMesh:
    """Vertices f32[N,3], faces i32[F,3] and colours u8[N,3] of the fused scan."""

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray


def fuse(depth_mm: np.ndarray, color: np.ndarray, intrinsics: np.ndarray, camera_to_world: np.ndarray,
         params: FusionParams = FusionParams()) -> FusedMesh:
    """Integrate frames (depth u16[K,H,W] mm, colour u8[K,H,W,3], one 3x3 intrinsics, poses
    f64[K,4,4]) into a TSDF voxel block grid and extract and clean its surface."""
    o3c = o3d.core
    grid = o3d.t.geometry.VoxelBlockGrid(
        attr_names=("tsdf", "weight", "color"), attr_dtypes=(o3c.float32, o3c.float32, o3c.float32),
        attr_channels=(1, 1, 3), voxel_size=params.voxel, block_resolution=16, block_count=params.block_count,
        device=o3c.Device("CPU:0"))
    k = o3c.Tensor(np.asarray(intrinsics, np.float64))
    trunc = params.truncation / params.voxel
    for i in np.flatnonzero(depth_mm.reshape(len(depth_mm), -1).any(axis=1)):  # frames with a return
        extrinsic = o3c.Tensor(np.linalg.inv(camera_to_world[i]))
        depth = o3d.t.geometry.Image(o3c.Tensor(np.ascontiguousarray(depth_mm[i])))
        rgb = o3d.t.geometry.Image(o3c.Tensor(np.ascontiguousarray(color[i])))
        try:
            blocks = grid.compute_unique_block_coordinates(depth, k, extrinsic, 1000.0, params.max_depth, trunc)
        except RuntimeError as exc:  # a frame whose few returns touch no voxel block adds nothing
            if "No block is touched" not in str(exc):
                raise
            continue
        grid.integrate(blocks, depth, rgb, k, k, extrinsic, 1000.0, params.max_depth, trunc)
    mesh = grid.extract_triangle_mesh(weight_threshold=params.min_weight).to_legacy()
    mesh.remove_duplicated_vertices()
    mesh.remove_degenerate_triangles()
    clusters, sizes, _ = mesh.cluster_connected_triangles()
    clusters, sizes = np.asarray(clusters), np.asarray(sizes)
    mesh.remove_triangles_by_mask(sizes[clusters] < params.min_component_faces)
    mesh.remove_unreferenced_vertices()
    colors = np.asarray(mesh.vertex_colors)
    scale = 255.0 if colors.size and colors.max() <= 1.0 + 1e-6 else 1.0
    return canonical_order(FusedMesh(np.asarray(mesh.vertices, np.float32), np.asarray(mesh.triangles, np.int32),
                                     np.clip(np.round(colors * scale), 0, 255).astype(np.uint8)))


def canonical_order(mesh: FusedMesh) -> FusedMesh:
    """The same mesh in an order fixed by its geometry alone: vertices sorted by (x, y, z) (they are
    distinct after de-duplication), each face rotated to start at its lowest vertex id (winding
    kept), faces sorted by their vertex ids."""
    v = mesh.vertices
    order = np.lexsort((v[:, 2], v[:, 1], v[:, 0]))
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    faces = rank[mesh.faces]
    start = faces.argmin(axis=1)[:, None] if len(faces) else np.zeros((0, 1), np.int64)
    faces = np.take_along_axis(faces, (start + np.arange(3)) % 3, axis=1)
    faces = faces[np.lexsort((faces[:, 2], faces[:, 1], faces[:, 0]))]
    return FusedMesh(v[order], faces.astype(np.int32), mesh.colors[order])


def transfer_labels(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray, face_labels: np.ndarray,
                    max_distance: float) -> tuple[np.ndarray, np.ndarray]:
    """Label u16[N] of each point from the nearest surface point of a labelled mesh (0 beyond
    ``max_distance``), and that distance f32[N]."""
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(vertices, np.float32)), o3d.core.Tensor(np.asarray(faces, np.uint32)))
    closest = scene.compute_closest_points(o3d.core.Tensor(np.asarray(points, np.float32)))
    face = closest["primitive_ids"].numpy().astype(np.int64)
    dist = np.linalg.norm(closest["points"].numpy() - points, axis=1).astype(np.float32)
    labels = np.asarray(face_labels, np.uint16)[face]
    labels[dist > max_distance] = 0
    return labels, dist
