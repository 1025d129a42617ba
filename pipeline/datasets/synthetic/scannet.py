"""Synthetic ScanNet v2: procedural rooms written in exactly the layout of a real export.

``DIR/scans/<scene>/``: ``<scene>_vh_clean_2.ply`` (binary PLY, float xyz + uchar rgba, faces as
``list uchar int``), ``<scene>_vh_clean_2.labels.ply`` (same vertices, NYU40 ``label`` ushort,
NYU40 palette colours), ``<scene>.txt`` (meta: axisAlignment, image sizes, intrinsics), and the
exported frames ``color/<i>.jpg``, ``depth/<i>.png`` (uint16 mm, 0 = no return), ``pose/<i>.txt``
(camera-to-world), ``label-filt/<i>.png`` (uint16 NYU40 id of the surface at each pixel, 0 =
none; ScanNet ships such 2D labels as ``<scene>_2d-label-filt.zip``),
``intrinsic/{intrinsic,extrinsic}_{color,depth}.txt``; ``DIR/scannetv2_train.txt`` and
``scannetv2_val.txt`` list the split. Like real scans, the mesh lives in an arbitrary scan frame
(a random yaw and offset of the room); axisAlignment maps it back to the room's axes.

The mesh is made the way ScanNet's were: a handheld RGB-D scan (loops at several heights, see
:mod:`camera`) with a structured-light depth model and pose error (:mod:`sensor`) is fused into
a TSDF mesh (:mod:`fusion`), so it holds only surface that the sensor saw; the ground truth moves
from the generator's surfaces onto its vertices. Scene i depends only on (seed, i), so any
prefix of a larger run is byte-identical.
"""
from __future__ import annotations

import math
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from plyfile import PlyData, PlyElement

from pipeline.datasets.synthetic import camera, rooms, sensor, texture
from pipeline.datasets.synthetic.fusion import FusionParams, fuse, transfer_labels
from pipeline.datasets.synthetic.mesh import RoomMesh, build_room_mesh
from pipeline.datasets.synthetic.raycast import MeshCaster

SPACING = 0.04  # vertex spacing of the generator's surfaces (rendering and ground truth only)
FRAMES = 45  # kept (exported) frames per room
FUSION_EVERY = 3  # frames rendered and fused into the mesh per kept frame
JPEG_QUALITY = 95
FUSION = FusionParams()  # the benchmark world's fusion settings

# ScanNet's NYU40 visualisation palette (util.create_color_palette), used by the labels PLY.
NYU40_PALETTE = np.array([
    (0, 0, 0), (174, 199, 232), (152, 223, 138), (31, 119, 180), (255, 187, 120), (188, 189, 34),
    (140, 86, 75), (255, 152, 150), (214, 39, 40), (197, 176, 213), (148, 103, 189), (196, 156, 148),
    (23, 190, 207), (178, 76, 76), (247, 182, 210), (66, 188, 102), (219, 219, 141), (140, 57, 197),
    (202, 185, 52), (51, 176, 203), (200, 54, 131), (92, 193, 61), (78, 71, 183), (172, 114, 82),
    (255, 127, 14), (91, 163, 138), (153, 98, 156), (140, 153, 101), (158, 218, 229), (100, 125, 154),
    (178, 127, 135), (120, 185, 128), (146, 111, 194), (44, 160, 44), (112, 128, 144), (96, 207, 209),
    (227, 119, 194), (213, 92, 176), (94, 106, 211), (82, 84, 163), (100, 85, 144),
], np.uint8)


@dataclass
class SyntheticScan:
    """One generated scene in its scan frame: the fused mesh, its frames and the true surfaces."""

    scene_type: str
    vertices: np.ndarray  # f32[N, 3], the fused mesh
    faces: np.ndarray  # i32[F, 3]
    colors: np.ndarray  # u8[N, 3]
    labels: np.ndarray  # u16[N], NYU40 (0 = unannotated)
    axis_alignment: np.ndarray  # f64[4, 4], scan frame -> axis-aligned, centred room frame
    intrinsics: np.ndarray  # f64[3, 3]
    poses: np.ndarray  # f64[K, 4, 4] camera-to-world as written (scan frame), kept frames
    depth: np.ndarray  # u16[K, H, W] measured millimetres, kept frames
    color: np.ndarray  # u8[K, H, W, 3]
    frame_labels: np.ndarray  # u16[K, H, W], NYU40 of the true surface at each pixel (0 = none)
    truth: RoomMesh  # the generator's surfaces, scan frame
    fused_poses: np.ndarray  # f64[R, 4, 4] written poses of every frame fused into the mesh
    fused_depth: np.ndarray  # u16[R, H, W]


def scene_ids(count: int) -> list[str]:
    """ScanNet-style ids scene0000_00, scene0001_00, ..."""
    return [f"scene{i:04d}_00" for i in range(count)]


def _scan_frame(room: rooms.Room, rng: np.random.Generator) -> np.ndarray:
    """Room -> scan frame: a random yaw about the room centre, then an offset to positive x, y."""
    lx, ly = room.size
    yaw = rng.uniform(0, 2 * math.pi)
    c, s = math.cos(yaw), math.sin(yaw)
    rot = np.eye(4)
    rot[:2, :2] = [[c, -s], [s, c]]
    centre = np.eye(4)
    centre[:3, 3] = (-lx / 2, -ly / 2, 0.0)
    half = 0.5 * (abs(c) * lx + abs(s) * ly), 0.5 * (abs(s) * lx + abs(c) * ly)
    shift = np.eye(4)
    shift[:3, 3] = (half[0] + rng.uniform(0.1, 1.0), half[1] + rng.uniform(0.1, 1.0), rng.uniform(-0.05, 0.05))
    return shift @ rot @ centre


def make_scan(seed: int, index: int, frames: int = FRAMES, spacing: float = SPACING,
              hw: tuple[int, int] = camera.IMAGE_HW, fusion: FusionParams = FUSION) -> SyntheticScan:
    """Generate scene ``index`` of the run seeded by ``seed``: lay out and mesh the room, scan it
    with a handheld RGB-D sensor (FUSION_EVERY frames rendered per kept frame), fuse the noisy
    depth into the scan mesh and move the ground truth onto it."""
    rng = np.random.default_rng([seed, index])
    scene_type = rooms.SCENE_TYPES[(seed + index) % len(rooms.SCENE_TYPES)]
    room = rooms.generate_room(rng, scene_type)
    mesh = build_room_mesh(room, spacing)
    colors = texture.vertex_colors(mesh.vertices, mesh.materials, mesh.styles, rng)
    to_scan = _scan_frame(room, rng)
    mesh.vertices = mesh.vertices @ to_scan[:3, :3].T + to_scan[:3, 3]
    true_poses = to_scan @ camera.camera_path(room, frames * FUSION_EVERY, rng)
    k = camera.intrinsics(rng, hw)
    light = to_scan[:3, :3] @ np.array([0.35, 0.5, 0.8]) / np.linalg.norm([0.35, 0.5, 0.8])
    caster = MeshCaster(mesh.vertices, mesh.faces, colors)
    n = len(true_poses)
    depth = np.zeros((n, *hw), np.uint16)
    color = np.zeros((n, *hw, 3), np.uint8)
    frame_labels = np.zeros((n, *hw), np.uint16)
    written = np.empty_like(true_poses)
    for i, pose in enumerate(true_poses):
        hits = caster.cast(pose, k, hw, light)
        depth[i] = sensor.measure_depth(hits.depth, hits.cos_incidence, rng)
        color[i] = hits.color
        frame_labels[i] = np.where(hits.face >= 0, mesh.face_labels[np.maximum(hits.face, 0)], 0)
        written[i] = sensor.perturb_pose(pose, rng)
    fused = fuse(depth, color, k, written, fusion)
    labels, _ = transfer_labels(fused.vertices, mesh.vertices, mesh.faces, mesh.face_labels,
                                fusion.max_label_distance)
    centred = np.eye(4)
    centred[:2, 3] = (-room.size[0] / 2, -room.size[1] / 2)
    kept = slice(0, None, FUSION_EVERY)
    return SyntheticScan(room.scene_type, fused.vertices, fused.faces, fused.colors, labels,
                         centred @ np.linalg.inv(to_scan), k, written[kept], depth[kept], color[kept],
                         frame_labels[kept], mesh, written, depth)


def write_ply(path: Path, vertices: np.ndarray, faces: np.ndarray, rgb: np.ndarray,
              labels: np.ndarray | None = None) -> None:
    """Binary little-endian PLY as ScanNet ships it: x y z float, red green blue alpha uchar,
    optional label ushort, faces as ``list uchar int vertex_indices``."""
    fields = [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"), ("alpha", "u1")]
    if labels is not None:
        fields.append(("label", "u2"))
    vert = np.empty(len(vertices), fields)
    vert["x"], vert["y"], vert["z"] = vertices[:, 0], vertices[:, 1], vertices[:, 2]
    vert["red"], vert["green"], vert["blue"], vert["alpha"] = rgb[:, 0], rgb[:, 1], rgb[:, 2], 255
    if labels is not None:
        vert["label"] = labels
    face = np.empty(len(faces), [("vertex_indices", "i4", (3,))])
    face["vertex_indices"] = faces
    PlyData([PlyElement.describe(vert, "vertex"),
             PlyElement.describe(face, "face", len_types={"vertex_indices": "u1"}, val_types={"vertex_indices": "i4"})],
            text=False, byte_order="<", comments=["VCGLIB generated"]).write(str(path))


def _matrix_line(m: np.ndarray) -> str:
    return " ".join(f"{x:f}" for x in np.asarray(m).ravel())


def write_meta(path: Path, scan: SyntheticScan) -> None:
    """``<scene>.txt`` with the keys of a real ScanNet meta file (colour and depth share a camera)."""
    h, w = scan.depth.shape[1:]
    k = scan.intrinsics
    values = {
        "axisAlignment": _matrix_line(scan.axis_alignment),
        "colorHeight": h, "colorToDepthExtrinsics": _matrix_line(np.eye(4)), "colorWidth": w,
        "depthHeight": h, "depthWidth": w,
        "fx_color": f"{k[0, 0]:f}", "fx_depth": f"{k[0, 0]:f}", "fy_color": f"{k[1, 1]:f}", "fy_depth": f"{k[1, 1]:f}",
        "mx_color": f"{k[0, 2]:f}", "mx_depth": f"{k[0, 2]:f}", "my_color": f"{k[1, 2]:f}", "my_depth": f"{k[1, 2]:f}",
        "numColorFrames": len(scan.poses), "numDepthFrames": len(scan.poses), "numIMUmeasurements": 0,
        "sceneType": scan.scene_type,
    }
    path.write_text("".join(f"{key} = {val}\n" for key, val in values.items()))


def _save_matrix(path: Path, m: np.ndarray) -> None:
    """A matrix as SensReader exports it: one row per line, '%f' values."""
    np.savetxt(path, m, fmt="%f")


def write_scan(scene_dir: Path, scene: str, scan: SyntheticScan) -> None:
    """All files of one scene, in the real export layout."""
    for sub in ("color", "depth", "pose", "intrinsic", "label-filt"):
        (scene_dir / sub).mkdir(parents=True, exist_ok=True)
    write_ply(scene_dir / f"{scene}_vh_clean_2.ply", scan.vertices, scan.faces, scan.colors)
    write_ply(scene_dir / f"{scene}_vh_clean_2.labels.ply", scan.vertices, scan.faces,
              NYU40_PALETTE[np.minimum(scan.labels, len(NYU40_PALETTE) - 1)], scan.labels)
    write_meta(scene_dir / f"{scene}.txt", scan)
    k4 = np.eye(4)
    k4[:3, :3] = scan.intrinsics
    for name, m in (("intrinsic_color", k4), ("intrinsic_depth", k4), ("extrinsic_color", np.eye(4)),
                    ("extrinsic_depth", np.eye(4))):
        _save_matrix(scene_dir / "intrinsic" / f"{name}.txt", m)
    for i in range(len(scan.poses)):
        Image.fromarray(scan.color[i]).save(scene_dir / "color" / f"{i}.jpg", quality=JPEG_QUALITY)
        Image.fromarray(scan.depth[i]).save(scene_dir / "depth" / f"{i}.png")
        Image.fromarray(scan.frame_labels[i]).save(scene_dir / "label-filt" / f"{i}.png")
        _save_matrix(scene_dir / "pose" / f"{i}.txt", scan.poses[i])


def write_splits(out: Path, ids: list[str], val: int) -> None:
    """``scannetv2_train.txt`` / ``scannetv2_val.txt``: the last ``val`` scenes are validation."""
    cut = len(ids) - val
    (out / "scannetv2_train.txt").write_text("".join(f"{s}\n" for s in ids[:cut]))
    (out / "scannetv2_val.txt").write_text("".join(f"{s}\n" for s in ids[cut:]))


def _write_one(out: Path, scene: str, seed: int, index: int, frames: int, spacing: float,
               fusion: FusionParams) -> str:
    """Generate and write one scene (a worker process's unit of work)."""
    write_scan(out / "scans" / scene, scene, make_scan(seed, index, frames, spacing, fusion=fusion))
    return scene


def generate_scannet(out: Path, scenes: int, seed: int, frames: int = FRAMES, *, val: int | None = None,
                     spacing: float = SPACING, fusion: FusionParams = FUSION, jobs: int = 1,
                     on_scene: Callable[[str], None] | None = None) -> list[str]:
    """Write ``scenes`` synthetic rooms under ``out`` in ScanNet's layout; return their ids.

    ``val`` scenes (default a quarter, at least one when there are two or more) go to the
    validation list, the rest to train. ``fusion`` sets the TSDF fusion (a coarser voxel and a
    lower weight threshold suit quick tests with few frames). ``jobs`` > 1 generates scenes in
    that many processes (the output does not depend on it).
    """
    if scenes < 1 or frames < 1 or jobs < 1:
        raise ValueError("scenes, frames and jobs must be at least 1")
    n_val = (max(1, scenes // 4) if scenes >= 2 else 0) if val is None else val
    if not 0 <= n_val <= scenes:
        raise ValueError(f"val must be in [0, {scenes}], got {n_val}")
    out = Path(out)
    ids = scene_ids(scenes)
    args = [(out, scene, seed, i, frames, spacing, fusion) for i, scene in enumerate(ids)]
    report = on_scene or (lambda scene: None)
    if jobs == 1:
        for a in args:
            report(_write_one(*a))
    else:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            for future in as_completed([pool.submit(_write_one, *a) for a in args]):
                report(future.result())
    write_splits(out, ids, n_val)
    return ids
