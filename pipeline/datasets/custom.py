"""Reader for your own scans: a mesh or point-cloud PLY per scene plus posed RGB-D frames.

Raw layout (``DATA_ROOT``)::

    train.txt, val.txt, test.txt   optional split lists, one scene id per line; a split
                                   without a list holds every scene folder
    <scene>/mesh.ply               triangle mesh: vertices x, y, z (metres) and faces
      or <scene>/cloud.ply         point cloud: vertices x, y, z (any faces are not read)
    <scene>/intrinsics.txt         3x3 or 4x4 pinhole matrix of the depth images
    <scene>/frames/<id>.jpg        colour (or .jpeg, .png), registered to depth (same camera
                                   and field of view; any resolution)
    <scene>/frames/<id>.depth.png  depth, uint16, ``depth_scale`` units per metre, 0 = no depth
    <scene>/frames/<id>.pose.txt   camera-to-world 4x4, camera axes ``camera_axes``

Every non-hidden folder of DATA_ROOT is a scene; ``<id>`` is an integer (leading zeros allowed).
Optional vertex properties of the PLY: ``red, green, blue`` (u8; absent: 0), ``nx, ny, nz``
(absent: area-weighted normals of the mesh, or PCA normals of the cloud over each
``normal_voxel`` voxel's 3x3x3 neighbourhood, VCCS's estimate, facing the cloud's centre) and an
integer ``label`` per vertex, used only for evaluation: ids of the run's class list
(``text.classes``, default scannet20), -1 = unlabelled. Without faces the ``geosets`` stage uses
VCCS supervoxels instead of Felzenszwalb.

Frames are read like ScanNet's exported frames (:mod:`pipeline.datasets.scannet`): colour decoded
by :func:`pipeline.datasets.sens.color_image` onto the depth camera's frame at ``image_size``,
depth resized nearest, intrinsics scaled to it. A frame with a file missing or unreadable, a
pose that is not finite or not invertible, or depth that is not single-channel uint16 of the first
kept frame's size is skipped and reported per scene; so are files in ``frames/`` not named like a frame.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from pipeline.datasets.base import ManifestEntry, file_entry, frames_record, pose_problem
from pipeline.datasets.scannet import ply_faces, read_intrinsics_3x3, read_ply, scale_intrinsics
from pipeline.datasets.sens import COLOR_ERRORS, color_image
from pipeline.errors import PipelineError, SceneError
from pipeline.geometry.grid import adjacency, group_mean, voxelize
from pipeline.geometry.mesh_normals import area_weighted_normals
from pipeline.geometry.normals import normalise_rows, pca_normals

MESH, CLOUD, INTRINSICS, FRAMES = "mesh.ply", "cloud.ply", "intrinsics.txt", "frames"
COLOUR_SUFFIXES = (".jpg", ".jpeg", ".png")
_FRAME_FILE = re.compile(r"^(\d+)(\.depth\.png|\.pose\.txt|\.jpg|\.jpeg|\.png)$", re.IGNORECASE)
# Camera axes of an OpenGL-style pose (x right, y up, z backward) -> OpenCV's (x right, y down,
# z forward), which the projection uses: world_from_camera_cv = world_from_camera_gl @ GL_FROM_CV.
GL_FROM_CV = np.diag([1.0, -1.0, -1.0, 1.0])
Skip = Callable[[str, str | Path], None]


class FrameFiles(NamedTuple):
    """The paths of one frame's files (a missing colour image is looked for as <id>.jpg)."""

    colour: Path
    depth: Path
    pose: Path


def scene_ply(scene_dir: Path) -> tuple[Path, bool]:
    """The scene's PLY and whether it is a mesh; exactly one of mesh.ply and cloud.ply must exist."""
    mesh, cloud = scene_dir / MESH, scene_dir / CLOUD
    if mesh.is_file() and cloud.is_file():
        raise SceneError(f"both {MESH} and {CLOUD}: keep one", scene_dir)
    if not mesh.is_file() and not cloud.is_file():
        raise SceneError(f"no {MESH} or {CLOUD} in the scene folder", scene_dir)
    return (mesh, True) if mesh.is_file() else (cloud, False)


def _columns(vertex: np.ndarray, names: tuple[str, ...], dtype: type, path: Path) -> np.ndarray | None:
    """The vertex properties ``names`` as an [N, len(names)] array, None when all are absent."""
    present = [n for n in names if n in (vertex.dtype.names or ())]
    if not present:
        return None
    if len(present) < len(names):
        missing = ", ".join(n for n in names if n not in present)
        raise SceneError(f"PLY vertices have {', '.join(present)} but lack {missing}", path)
    return np.stack([vertex[n] for n in names], axis=1).astype(dtype)


def _labels(vertex: np.ndarray, path: Path) -> np.ndarray | None:
    """The per-vertex ``label`` ids i16[N] (-1 unlabelled), None when the PLY has none."""
    if "label" not in (vertex.dtype.names or ()):
        return None
    raw = np.asarray(vertex["label"])
    if raw.dtype.kind not in "iu":
        raise SceneError(f"vertex property 'label' must be an integer type, got {raw.dtype}", path)
    bad = (raw < -1) | (raw > np.iinfo(np.int16).max)
    if bad.any():
        raise SceneError(f"vertex 'label' {int(raw[bad][0])} is not a class id (-1 = unlabelled)", path)
    return raw.astype(np.int16)


def cloud_normals(points: np.ndarray, voxel: float) -> np.ndarray:
    """Unit normals f32[N,3] of a point cloud: VCCS's PCA over each voxel's 3x3x3 neighbourhood
    (:func:`pipeline.geometry.normals.pca_normals`), facing the cloud's bounding-box centre
    (inward for a room); zero where the neighbourhood is too small or line-like."""
    p = points.astype(np.float64)
    lo = p.min(axis=0)
    rel = p - lo
    inv, keys, dims = voxelize(rel, voxel)
    indptr, nbrs = adjacency(keys, dims)
    centres = group_mean(inv, len(keys), rel)
    return pca_normals(inv, rel, indptr, nbrs, centres, (p.max(axis=0) - lo) / 2)[inv].astype(np.float32)


def read_scan(path: Path, mesh: bool, normal_voxel: float) -> dict[str, Any]:
    """Points, colours, normals, labels, has_labels and faces (i32[0,3] for a cloud) of a scene PLY."""
    ply = read_ply(path, triangles=mesh)
    if "vertex" not in [el.name for el in ply.elements] or ply["vertex"].count == 0:
        raise SceneError("PLY has no vertices", path)
    vertex = ply["vertex"].data
    points = _columns(vertex, ("x", "y", "z"), np.float32, path)
    if points is None:
        raise SceneError("PLY vertices lack x/y/z", path)
    bad = ~np.isfinite(points).all(axis=1)
    if bad.any():
        raise SceneError(f"{int(bad.sum())} vertices have non-finite coordinates", path)
    colors = _columns(vertex, ("red", "green", "blue"), np.uint8, path)
    normals = _columns(vertex, ("nx", "ny", "nz"), np.float32, path)
    labels = _labels(vertex, path)
    faces = _mesh_faces(ply, path, len(points)) if mesh else np.zeros((0, 3), np.int32)
    if normals is None:
        normals = area_weighted_normals(points, faces) if mesh else cloud_normals(points, normal_voxel)
    else:
        normals = normalise_rows(normals.astype(np.float64)).astype(np.float32)
    return {
        "points": points,
        "colors": np.zeros_like(points, np.uint8) if colors is None else colors,
        "normals": normals,
        "labels": np.full(len(points), -1, np.int16) if labels is None else labels,
        "has_labels": labels is not None,
        "faces": faces,
    }


def _mesh_faces(ply: Any, path: Path, num_points: int) -> np.ndarray:
    """i32[F,3] triangles of mesh.ply, checked against the vertex count."""
    if "face" not in [el.name for el in ply.elements] or ply["face"].count == 0:
        raise SceneError(f"{MESH} has no faces; a scan without faces goes in {CLOUD}", path)
    faces = ply_faces(ply, path)
    if faces.min() < 0 or faces.max() >= num_points:
        raise SceneError("faces reference vertices that do not exist", path)
    return faces


def read_intrinsics(path: Path) -> np.ndarray:
    """f64[3,3] pinhole matrix of intrinsics.txt (3x3 or 4x4) with positive finite focal lengths."""
    if not path.is_file():
        raise SceneError("file is missing (3x3 or 4x4 pinhole intrinsics of the depth images)", path)
    k = read_intrinsics_3x3(path)
    if not np.isfinite(k).all() or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise SceneError(f"intrinsics need finite values and positive fx, fy, got {k.tolist()}", path)
    return k


def frame_files(frames_dir: Path, skip: Skip) -> dict[int, FrameFiles]:
    """Every frame id found in ``frames/`` with its files; misnamed files are reported to ``skip``."""
    if not frames_dir.is_dir():
        raise SceneError("no frames folder (<id>.jpg, <id>.depth.png, <id>.pose.txt)", frames_dir)
    stems: dict[int, str] = {}
    colours: dict[int, list[Path]] = {}
    for path in sorted(frames_dir.iterdir()):
        if path.name.startswith("."):
            continue
        match = _FRAME_FILE.match(path.name)
        if match is None or not path.is_file():
            skip("not a frame file (<id>.jpg|.jpeg|.png, <id>.depth.png, <id>.pose.txt); ignored", path)
            continue
        stem, kind = match.group(1), match.group(2).lower()
        stems.setdefault(int(stem), stem)
        if kind in COLOUR_SUFFIXES:
            colours.setdefault(int(stem), []).append(path)
    out = {}
    for i, stem in sorted(stems.items()):
        found = colours.get(i, [])
        if len(found) > 1:
            skip(f"several colour images ({', '.join(p.name for p in found)}); frame ignored", frames_dir / stem)
            continue
        out[i] = FrameFiles(found[0] if found else frames_dir / f"{stem}.jpg",
                            frames_dir / f"{stem}.depth.png", frames_dir / f"{stem}.pose.txt")
    return out


def read_pose(path: Path, camera_axes: str, skip: Skip) -> np.ndarray | None:
    """Camera-to-world f64[4,4] in OpenCV camera axes, or None (reported to ``skip``)."""
    if not path.is_file():
        skip("pose missing", path)
        return None
    try:
        pose = np.loadtxt(path).reshape(4, 4)
    except ValueError:
        skip("pose unreadable (want 16 numbers, a 4x4 camera-to-world matrix)", path)
        return None
    if problem := pose_problem(pose):
        skip(problem, path)
        return None
    return pose @ GL_FROM_CV if camera_axes == "opengl" else pose


def read_images(files: FrameFiles, size: tuple[int, int], skip: Skip) -> tuple[Image.Image, np.ndarray] | None:
    """(colour RGB resized to ``size`` (W, H), raw uint16 depth) of a frame, or None (reported to ``skip``)."""
    if not files.colour.is_file():
        skip("colour frame missing", files.colour)
        return None
    if not files.depth.is_file():
        skip("depth frame missing", files.depth)
        return None
    try:
        with Image.open(files.depth) as im:
            depth = np.asarray(im)
    except OSError as exc:
        skip(f"depth image unreadable ({exc.__class__.__name__})", files.depth)
        return None
    if depth.ndim != 2 or depth.dtype != np.uint16:
        skip("depth is not a single-channel uint16 PNG", files.depth)
        return None
    try:
        colour = color_image(files.colour, size)
    except COLOR_ERRORS as exc:
        skip(f"colour image unreadable ({exc.__class__.__name__})", files.colour)
        return None
    return colour, depth


class CustomReader:
    """Reads scenes in the layout above (your own sensor's scans)."""

    def __init__(self, root: str | Path, params: Mapping[str, Any]):
        self.root = Path(root)
        self.params = dict(params)

    def scene_ids(self, splits: list[str]) -> list[str]:
        """Scenes of the given splits: DATA_ROOT/<split>.txt when present, else every scene folder."""
        if not self.root.is_dir():
            raise PipelineError(f"DATA_ROOT {self.root} is not a folder (one folder per scene)")
        present = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not present:
            raise PipelineError(f"DATA_ROOT {self.root} has no scene folders")
        chosen: list[str] = []
        for split in splits:
            listed = self.root / f"{split}.txt"
            if not listed.is_file():
                chosen += present
                continue
            names = listed.read_text().split()
            missing = sorted(set(names) - set(present))
            if missing:
                raise PipelineError(f"file {listed}: scene '{missing[0]}' has no folder in {self.root}")
            chosen += names
        return sorted(dict.fromkeys(chosen))

    def manifest(self, scene: str) -> list[ManifestEntry]:
        """Every raw file the scene's record is computed from, with size and mtime (-1: missing)."""
        d = self.root / scene
        frames_dir = d / FRAMES
        files = [d / MESH, d / CLOUD, d / INTRINSICS]
        try:
            kept = self._kept(frame_files(frames_dir, lambda reason, where: None))
        except SceneError:  # no frames folder: recorded as missing, read() reports it
            return [file_entry(f) for f in (*files, frames_dir)]
        for f in kept.values():
            files += [f.colour, f.depth, f.pose]
        return [file_entry(f) for f in files]

    def read(self, scene: str) -> dict[str, Any]:
        """The ``scenes`` stage record of one scene (the keys and dtypes of the ScanNet reader's)."""
        d = self.root / scene
        if not d.is_dir():
            raise SceneError("scene folder is missing", d)
        path, mesh = scene_ply(d)
        return {**read_scan(path, mesh, self.params["normal_voxel"]), **self._read_frames(d)}

    def _kept(self, frames: dict[int, FrameFiles]) -> dict[int, FrameFiles]:
        """Every ``frame_skip``-th frame, in id order."""
        return {i: frames[i] for i in sorted(frames)[:: self.params["frame_skip"]]}

    def _read_frames(self, scene_dir: Path) -> dict[str, Any]:
        """Colour u8[F,H,W,3], depth f32[F,H,W] (metres), world_to_camera, intrinsics, frame ids."""
        h, w = self.params["image_size"]
        k_depth = read_intrinsics(scene_dir / INTRINSICS)
        skipped: dict[str, list[str]] = {}

        def skip(reason: str, where: str | Path) -> None:
            skipped.setdefault(reason, []).append(str(where))

        colours, depths, poses, intrinsics, ids = [], [], [], [], []
        depth_hw: tuple[int, int] | None = None
        for i, files in self._kept(frame_files(scene_dir / FRAMES, skip)).items():
            camera_to_world = read_pose(files.pose, self.params["camera_axes"], skip)
            images = None if camera_to_world is None else read_images(files, (w, h), skip)
            if images is None:
                continue
            colour, depth_raw = images
            depth_hw = depth_hw or depth_raw.shape
            if depth_raw.shape != depth_hw:
                skip(f"depth size {depth_raw.shape[1]}x{depth_raw.shape[0]} != the first frame's "
                     f"{depth_hw[1]}x{depth_hw[0]} (intrinsics.txt is for one size)", files.depth)
                continue
            colours.append(np.asarray(colour))
            depth = np.asarray(Image.fromarray(depth_raw).resize((w, h), Image.NEAREST), np.float32)
            depths.append(depth / self.params["depth_scale"])
            poses.append(np.linalg.inv(camera_to_world))
            intrinsics.append(scale_intrinsics(k_depth, depth_hw, (h, w)))
            ids.append(i)
        return frames_record(colours, depths, poses, intrinsics, ids, (h, w), skipped, scene_dir / FRAMES)
