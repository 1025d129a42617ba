"""ScanNet v2 reader: meshes, per-vertex labels and exported RGB-D frames, as Scene records.

Raw layout (``DATA_ROOT``): ``scans/<scene>/<scene>_vh_clean_2.ply``, ``_vh_clean_2.labels.ply``,
optionally ``<scene>.aggregation.json`` and ``<scene>_vh_clean_2.0.010000.segs.json``, and the
exported frames ``color/<i>.jpg``, ``depth/<i>.png`` (uint16 mm), ``pose/<i>.txt``
(camera-to-world 4x4), ``intrinsic/intrinsic_depth.txt``, and optionally ``label-filt/<i>.png``
(ScanNet's 2D labels, unzipped from ``<scene>_2d-label-filt.zip``: raw category ids mapped to
NYU40 by ``scannetv2-labels.combined.tsv`` in DATA_ROOT, or NYU40 ids when that file is absent,
as the synthetic rooms write them), read as ``frame_labels`` for the benchmarks' simulated VLM;
the frames may live under another root (``frames_root``, e.g. scannet_frames_25k). Colour is resized onto the depth camera's
frame at ``image_size`` and projected with the depth intrinsics (ScanNet's depth is registered
to colour; this is the usual 2D-3D convention). Frames with non-finite or singular poses or missing
files are skipped and reported per scene.

A scene without exported frames (no ``color/`` folder under the frames root) is read from its
raw stream ``scans/<scene>/<scene>.sens`` instead (:mod:`pipeline.datasets.sens`): depth
intrinsics from its header, every ``frame_skip``-th frame of the stream (``frame_ids`` = index in
the stream; the other frames are never decoded), the same checks and the same record as exported
frames; ``label-filt/<i>.png`` still gives the 2D labels when present.

Labels: ``labels`` i16[N] are the 20 benchmark classes of the labels PLY's NYU40 ids
(``data/labelmaps/scannet20.tsv``, -1 ignore). ``raw_labels`` i32[N] keep the finest ids at hand
for other class sets (:mod:`pipeline.labelsets`), with their id space ``raw_label_space``:
ScanNet's raw category ids (``scannet_raw``) when the scene has its aggregation (labelled segment
groups) and segments (segment per vertex) files and DATA_ROOT has ``scannetv2-labels.combined.tsv``
(raw category name -> id; 0 for a vertex in no group or with an unlisted name), else the labels
PLY's NYU40 ids (``nyu40``; all 0 without a labels PLY).

Colour: every frame is decoded by :func:`pipeline.datasets.sens.color_image` (JPEG draft decoding
at the smallest DCT scale still at least ``image_size``, then a bilinear resize).

Meshes: triangle faces are memory-mapped by plyfile (``known_list_len``) instead of parsed one
by one; the labels PLY is read up to the end of its vertex element only (its faces are not
needed).
"""
from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image
from plyfile import PlyData, PlyListProperty

from pipeline.datasets.base import (
    LABELMAPS,
    ManifestEntry,
    file_entry,
    frames_record,
    load_label_map,
    pose_problem,
    read_split,
)
from pipeline.datasets.sens import COLOR_ERRORS, SensFile, color_image
from pipeline.errors import SceneError
from pipeline.geometry.mesh_normals import area_weighted_normals
from pipeline.labelsets import NYU40, RAW

SPLITS = ("train", "val", "test")
RAW_LABELS_TSV = "scannetv2-labels.combined.tsv"


TRIANGLES = {"face": {"vertex_indices": 3}}  # plyfile's known_list_len: faces memory-mapped


def read_ply(path: Path, triangles: bool = False) -> PlyData:
    """Parse a PLY, turning plyfile's errors into a one-line SceneError. ``triangles``: try
    memory-mapping the faces as triangles first (no per-face Python loop); a file whose faces
    are not all triangles, or that fails that way, is parsed the plain way."""
    if not path.is_file():
        raise SceneError("file is missing", path)
    if path.stat().st_size == 0:
        raise SceneError("PLY file is empty", path)
    if triangles:
        try:
            return PlyData.read(str(path), known_list_len=TRIANGLES)
        except Exception:  # "unexpected list length", or a defect the plain parse reports below
            pass
    try:
        return PlyData.read(str(path))
    except Exception as exc:  # plyfile raises several types for truncated/corrupt files
        raise SceneError(f"truncated or corrupt PLY ({type(exc).__name__}: {exc})", path) from exc


_ELEMENT_LINE = re.compile(rb"^(element[ \t]+\S+[ \t]+)(\d+)([ \t\r]*)$", re.M)
_HEADER_MAX = 1 << 16  # bytes; a PLY header is a few hundred


def read_vertex_element(path: Path) -> np.ndarray:
    """The structured vertex data of a binary PLY whose first element is ``vertex``, read without
    touching the elements after it (the labels PLY's faces: only its vertex ``label`` is used).

    The header is parsed by plyfile with every element count set to 0 (so it reads no data) to
    get the vertex dtype; then exactly the vertex bytes are read. Any other PLY (ASCII, vertex
    not first, list properties on vertices) is parsed whole."""
    if not path.is_file():
        raise SceneError("file is missing", path)
    with open(path, "rb") as f:
        head = f.read(4096)
        while b"end_header" not in head and len(head) < _HEADER_MAX and (chunk := f.read(4096)):
            head += chunk
        end = head.find(b"end_header")
        stop = head.find(b"\n", end) + 1 if end >= 0 else 0
        counts = [int(m.group(2)) for m in _ELEMENT_LINE.finditer(head[:stop])]
        try:
            empty = PlyData.read(io.BytesIO(_ELEMENT_LINE.sub(rb"\g<1>0\g<3>", head[:stop])))
        except Exception:
            empty = None
        if (stop == 0 or empty is None or empty.text or not empty.elements or not counts
                or empty.elements[0].name != "vertex"
                or any(isinstance(p, PlyListProperty) for p in empty.elements[0].properties)):
            return read_ply(path, triangles=True)["vertex"].data
        dtype = np.dtype(empty.elements[0].dtype(empty.byte_order))
        f.seek(stop)
        data = f.read(counts[0] * dtype.itemsize)
    if len(data) != counts[0] * dtype.itemsize:
        raise SceneError(f"truncated or corrupt PLY (file ends inside vertex {len(data) // dtype.itemsize} "
                         f"of {counts[0]})", path)
    return np.frombuffer(data, dtype)


def ply_faces(ply: PlyData, path: Path) -> np.ndarray:
    """i32[F, 3] triangles of a parsed PLY (memory-mapped as an [F, 3] field, or parsed per face)."""
    try:
        field = ply["face"].data["vertex_indices"]
    except (KeyError, ValueError) as exc:
        raise SceneError(f"PLY faces lack vertex_indices ({exc})", path) from exc
    if field.dtype != object:
        return np.array(field, np.int32).reshape(len(field), -1)  # a copy: not backed by the file
    sizes = sorted({len(f) for f in field})
    if sizes != [3]:
        raise SceneError(f"faces must be triangles, got {', '.join(map(str, sizes))} vertices per face", path)
    return np.vstack(field).astype(np.int32)


def read_mesh(path: Path, need_faces: bool = True) -> dict[str, np.ndarray]:
    """Vertices f32[N,3], colours u8[N,3] and faces i32[F,3] of a ScanNet mesh PLY."""
    ply = read_ply(path, triangles=need_faces)
    names = [el.name for el in ply.elements]
    if "vertex" not in names:
        raise SceneError("PLY has no vertex element", path)
    v = ply["vertex"].data
    try:
        xyz = np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float32)
        rgb = np.stack([v["red"], v["green"], v["blue"]], axis=1).astype(np.uint8)
    except ValueError as exc:
        raise SceneError(f"PLY vertices lack x/y/z/red/green/blue ({exc})", path) from exc
    if len(xyz) == 0:
        raise SceneError("PLY has no vertices", path)
    bad = ~np.isfinite(xyz).all(axis=1)
    if bad.any():
        raise SceneError(f"{int(bad.sum())} vertices have non-finite coordinates", path)
    out = {"points": xyz, "colors": rgb}
    if need_faces:
        if "face" not in names or ply["face"].count == 0:
            raise SceneError("PLY has no faces, but this dataset needs a mesh", path)
        faces = ply_faces(ply, path)
        if faces.min() < 0 or faces.max() >= len(xyz):
            raise SceneError("faces reference vertices that do not exist", path)
        out["faces"] = faces
    return out


def _frame_index(name: str) -> int | None:
    stem = name.rsplit(".", 1)[0]
    return int(stem) if stem.isdigit() else None


def read_intrinsics_3x3(path: Path) -> np.ndarray:
    try:
        k = np.loadtxt(path)
    except (OSError, ValueError) as exc:
        raise SceneError(f"cannot read intrinsics ({exc})", path) from exc
    if k.shape not in ((4, 4), (3, 3)):
        raise SceneError(f"intrinsics must be 3x3 or 4x4, got {k.shape}", path)
    return k[:3, :3].astype(np.float64)


def scale_intrinsics(k: np.ndarray, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> np.ndarray:
    """Intrinsics for an image resized from ``src_hw`` to ``dst_hw`` (pixel centres at integers)."""
    sy, sx = dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1]
    out = k.copy()
    out[0, 0] *= sx
    out[1, 1] *= sy
    out[0, 2] = (k[0, 2] + 0.5) * sx - 0.5
    out[1, 2] = (k[1, 2] + 0.5) * sy - 0.5
    return out


def _tsv_rows(tsv: Path, columns: tuple[str, ...]) -> list[list[str]]:
    """The named columns of every row of a TSV with a header line (rows too short are left
    out); a column missing from the header is a SceneError naming the file."""
    lines = [line.split("\t") for line in tsv.read_text().splitlines() if line]
    header = lines[0] if lines else []
    missing = [c for c in columns if c not in header]
    if missing:
        raise SceneError(f"no column {missing[0]!r} in the header", tsv)
    at = [header.index(c) for c in columns]
    return [[row[i] for i in at] for row in lines[1:] if len(row) > max(at)]


def raw_category_ids(tsv: Path) -> dict[str, int]:
    """ScanNet's raw category name -> raw category id (``raw_category`` and ``id`` columns)."""
    try:
        return {name: int(i) for i, name in _tsv_rows(tsv, ("id", "raw_category"))}
    except ValueError as exc:
        raise SceneError(f"cannot read the 'id' column ({exc})", tsv) from exc


def _json_key(path: Path, key: str) -> Any:
    """``key`` of a JSON file's top-level object; a missing, unreadable or keyless file is a SceneError."""
    if not path.is_file():
        raise SceneError("file is missing", path)
    try:
        with open(path, "rb") as f:
            return json.load(f)[key]
    except (OSError, ValueError) as exc:
        raise SceneError(f"not readable JSON ({type(exc).__name__}: {exc})", path) from exc
    except (KeyError, TypeError) as exc:
        raise SceneError(f"no top-level {key!r}", path) from exc


def read_raw_labels(aggregation: Path, segments: Path, ids: Mapping[str, int],
                    num_vertices: int) -> np.ndarray:
    """Raw category id i32[N] of every vertex from ScanNet's aggregation (segment groups with a
    ``label`` name) and segments (``segIndices``, a segment per vertex) files; 0 where no group
    covers the vertex or its name is not in ``ids``."""
    try:
        seg = np.asarray(_json_key(segments, "segIndices"), np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise SceneError(f"segIndices is not a list of integers ({exc})", segments) from exc
    if seg.shape != (num_vertices,):
        raise SceneError(f"segIndices has {seg.size} entries, the mesh {num_vertices} vertices", segments)
    if seg.size and seg.min() < 0:
        raise SceneError("segIndices holds negative segment ids", segments)
    groups = _json_key(aggregation, "segGroups")
    if not isinstance(groups, list):
        raise SceneError("segGroups is not a list", aggregation)
    table = np.zeros(int(seg.max()) + 1 if seg.size else 0, np.int32)
    for k, group in enumerate(groups):
        try:
            members = np.asarray(group["segments"], np.int64).reshape(-1)
            table[members[(members >= 0) & (members < len(table))]] = ids.get(str(group["label"]), 0)
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise SceneError(f"segGroups[{k}] lacks a label or a list of segments ({exc})",
                             aggregation) from exc
    return table[seg]


class _Frame(NamedTuple):
    """A frame read from either source, before the checks they share."""

    index: int  # frame number (exported file name, or index in the .sens stream)
    camera_to_world: np.ndarray  # f64[4, 4], finite
    color: Image.Image  # RGB, decoded at the stored size
    depth_raw: np.ndarray  # as stored (uint16 units for a valid frame)
    depth_scale: float  # stored units per metre
    k_depth: np.ndarray  # f64[3, 3] at the stored depth size
    depth_ref: str  # where the depth came from, for skip reports
    label_stem: str  # name of the frame's label-filt/<stem>.png


class ScanNetReader:
    """Reads ScanNet v2 scenes (and the synthetic rooms, which share the layout)."""

    def __init__(self, root: str | Path, params: Mapping[str, Any]):
        self.root = Path(root)
        self.params = dict(params)
        self.frames_root = Path(params["frames_root"]) if params["frames_root"] else self.root / "scans"
        self.label_map = load_label_map(LABELMAPS / "scannet20.tsv")

    def scene_dir(self, scene: str) -> Path:
        return self.root / "scans" / scene

    def scene_ids(self, splits: list[str]) -> list[str]:
        """Scenes of the given splits (split lists from DATA_ROOT or data/splits/scannet/)."""
        scans = self.root / "scans"
        if not scans.is_dir():
            raise SceneError("no 'scans' folder: is DATA_ROOT a ScanNet v2 root?", scans)
        present = sorted(p.name for p in scans.iterdir() if p.is_dir())
        chosen: list[str] = []
        for split in splits:
            listed = read_split(self.root, "scannet", f"scannetv2_{split}.txt")
            chosen += present if listed is None else [s for s in listed if s in set(present)]
        return sorted(dict.fromkeys(chosen))

    def _frame_files(self, scene: str) -> list[tuple[int, Path, Path, Path]]:
        """(index, colour, depth, pose) of every frame with a colour or depth image, every N-th kept."""
        base = self.frames_root / scene
        color_dir, depth_dir = base / "color", base / "depth"
        if not color_dir.is_dir():
            raise SceneError("no exported frames (color/ folder missing)", color_dir)
        colors = {i: n for n in os.listdir(color_dir) if (i := _frame_index(n)) is not None}
        depths = {i: n for n in (os.listdir(depth_dir) if depth_dir.is_dir() else [])
                  if (i := _frame_index(n)) is not None}
        out = []
        for i in sorted(colors.keys() | depths.keys())[:: self.params["frame_skip"]]:
            stem = (colors.get(i) or depths[i]).rsplit(".", 1)[0]
            color = color_dir / colors.get(i, f"{stem}.jpg")
            out.append((i, color, depth_dir / f"{stem}.png", base / "pose" / f"{stem}.txt"))
        return out

    def sens_path(self, scene: str) -> Path | None:
        """``scans/<scene>/<scene>.sens`` when the scene's frames are read from it: it exists and
        the frames root has no exported ``color/`` folder for the scene; else None."""
        sens = self.scene_dir(scene) / f"{scene}.sens"
        if (self.frames_root / scene / "color").is_dir() or not sens.is_file():
            return None
        return sens

    def annotation_files(self, scene: str) -> tuple[Path, Path]:
        """The scene's aggregation and segments files (giving its raw category ids), present or not."""
        d = self.scene_dir(scene)
        return d / f"{scene}.aggregation.json", d / f"{scene}_vh_clean_2.0.010000.segs.json"

    def manifest(self, scene: str) -> list[ManifestEntry]:
        """Every raw file the scene's record is computed from, with size and mtime (-1: missing)."""
        d = self.scene_dir(scene)
        files = [d / f"{scene}_vh_clean_2.ply", d / f"{scene}_vh_clean_2.labels.ply", *self.annotation_files(scene)]
        labels_dir = self.frames_root / scene / "label-filt"
        sens = self.sens_path(scene)
        if sens is not None:
            files.append(sens)
            if labels_dir.is_dir():
                try:
                    with SensFile(sens, index=False) as f:
                        count = f.header.num_frames
                except SceneError:  # read() reports it
                    count = 0
                files += [labels_dir / f"{i}.png" for i in range(0, count, self.params["frame_skip"])]
        else:
            files.append(self.frames_root / scene / "intrinsic" / "intrinsic_depth.txt")
            try:
                frames = self._frame_files(scene)
            except SceneError:  # no color/ folder: recorded as missing, read() reports it
                frames, files = [], [*files, self.frames_root / scene / "color"]
            for _, c, dep, p in frames:
                files += [c, dep, p] + ([labels_dir / f"{dep.stem}.png"] if labels_dir.is_dir() else [])
        if (self.root / RAW_LABELS_TSV).is_file():
            files.append(self.root / RAW_LABELS_TSV)
        return [file_entry(f) for f in files]

    def read(self, scene: str) -> dict[str, Any]:
        """The ``scenes`` stage record of one scene (see DESIGN.md's stage table)."""
        d = self.scene_dir(scene)
        mesh = read_mesh(d / f"{scene}_vh_clean_2.ply", need_faces=True)
        labels_path = d / f"{scene}_vh_clean_2.labels.ply"
        n = len(mesh["points"])
        nyu = self._nyu40(labels_path, n) if labels_path.exists() else np.zeros(n, np.int64)
        labels = self.label_map[np.clip(nyu, 0, len(self.label_map) - 1)]
        labels[(nyu < 0) | (nyu >= len(self.label_map))] = -1
        raw_labels, space = self._raw_labels(scene, nyu)
        record: dict[str, Any] = {
            **mesh,
            "normals": area_weighted_normals(mesh["points"], mesh["faces"]),
            "labels": labels.astype(np.int16),
            "raw_labels": raw_labels,
            "raw_label_space": space,
            "has_labels": labels_path.exists(),
        }
        record.update(self._read_frames(scene))
        return record

    @staticmethod
    def _nyu40(labels_path: Path, num_vertices: int) -> np.ndarray:
        """NYU40 id i64[N] of every vertex, from the labels PLY."""
        lv = read_vertex_element(labels_path)
        if len(lv) != num_vertices:
            raise SceneError(f"labels PLY has {len(lv)} vertices, mesh has {num_vertices}", labels_path)
        if "label" not in (lv.dtype.names or ()):
            raise SceneError("labels PLY vertices have no 'label' property", labels_path)
        return np.asarray(lv["label"]).astype(np.int64)

    def _raw_labels(self, scene: str, nyu: np.ndarray) -> tuple[np.ndarray, str]:
        """``raw_labels`` i32[N] and their id space: ScanNet's raw category ids when the scene has
        its aggregation and segments files and DATA_ROOT the label table, else the NYU40 ids."""
        aggregation, segments = self.annotation_files(scene)
        tsv = self.root / RAW_LABELS_TSV
        if aggregation.is_file() and segments.is_file() and tsv.is_file():
            return read_raw_labels(aggregation, segments, raw_category_ids(tsv), len(nyu)), RAW
        return nyu.astype(np.int32), NYU40

    def _depth_hw(self, scene: str) -> tuple[int, int] | None:
        """Depth image size announced by the scene's ``<scene>.txt`` meta file, if any."""
        meta = self.scene_dir(scene) / f"{scene}.txt"
        if not meta.is_file():
            return None
        values = dict(
            (k.strip(), v.strip()) for k, _, v in
            (line.partition("=") for line in meta.read_text().splitlines()) if v
        )
        if "depthHeight" in values and "depthWidth" in values:
            return int(values["depthHeight"]), int(values["depthWidth"])
        return None

    def _read_frames(self, scene: str) -> dict[str, Any]:
        h, w = self.params["image_size"]
        colors, depths, poses, intr, ids, frame_labels = [], [], [], [], [], []
        labels_dir = self.frames_root / scene / "label-filt"
        to_nyu40 = self._raw_to_nyu40() if labels_dir.is_dir() else None
        skipped: dict[str, list[str]] = {}
        expected = self._depth_hw(scene)

        def skip(reason: str, where: str | Path) -> None:
            skipped.setdefault(reason, []).append(str(where))

        sens = self.sens_path(scene)
        source = self._exported_frames(scene, skip) if sens is None else self._sens_frames(sens, skip)
        for fr in source:
            depth_raw = fr.depth_raw
            if depth_raw.ndim != 2 or depth_raw.dtype != np.uint16:
                skip("depth is not a single-channel uint16 PNG", fr.depth_ref)
                continue
            if expected and tuple(depth_raw.shape) != expected:
                skip(f"depth size {depth_raw.shape[1]}x{depth_raw.shape[0]} != {expected[1]}x{expected[0]}", fr.depth_ref)
                continue
            color = np.asarray(fr.color)
            depth = np.asarray(Image.fromarray(depth_raw).resize((w, h), Image.NEAREST), np.float32)
            if to_nyu40 is not None:
                frame_labels.append(self._frame_labels(labels_dir / f"{fr.label_stem}.png", (h, w), to_nyu40, skip))
            depths.append(depth / fr.depth_scale)
            colors.append(color)
            poses.append(np.linalg.inv(fr.camera_to_world))
            intr.append(scale_intrinsics(fr.k_depth, depth_raw.shape[:2], (h, w)))
            ids.append(fr.index)
        record = frames_record(colors, depths, poses, intr, ids, (h, w), skipped, sens or self.frames_root / scene)
        return record if to_nyu40 is None else {"frame_labels": np.stack(frame_labels).astype(np.int16), **record}

    def _exported_frames(self, scene: str, skip: Callable[[str, str | Path], None]) -> Iterator[_Frame]:
        """Every kept exported frame whose files are present and readable (the others skipped)."""
        h, w = self.params["image_size"]
        k_depth = read_intrinsics_3x3(self.frames_root / scene / "intrinsic" / "intrinsic_depth.txt")
        for i, color_path, depth_path, pose_path in self._frame_files(scene):
            if not color_path.is_file():
                skip("colour frame missing", color_path)
                continue
            if not depth_path.is_file():
                skip("depth frame missing", depth_path)
                continue
            if not pose_path.is_file():
                skip("pose missing", pose_path)
                continue
            try:
                pose = np.loadtxt(pose_path).reshape(4, 4)
            except ValueError:
                skip("pose unreadable", pose_path)
                continue
            if problem := pose_problem(pose):
                skip(problem, pose_path)
                continue
            try:
                with Image.open(depth_path) as im:
                    depth_raw = np.asarray(im)
            except OSError as exc:
                skip(f"depth image unreadable ({exc.__class__.__name__})", depth_path)
                continue
            try:
                color = color_image(color_path, (w, h))
            except COLOR_ERRORS as exc:
                skip(f"colour image unreadable ({exc.__class__.__name__})", color_path)
                continue
            yield _Frame(i, pose, color, depth_raw, float(self.params["depth_scale"]), k_depth,
                         str(depth_path), depth_path.stem)

    def _sens_frames(self, sens: Path, skip: Callable[[str, str | Path], None]) -> Iterator[_Frame]:
        """Every ``frame_skip``-th frame of the stream with a usable pose (finite, invertible) that decodes; the others
        are skipped (and never decoded)."""
        h, w = self.params["image_size"]
        with SensFile(sens) as f:
            k_depth = f.header.intrinsic_depth[:3, :3].astype(np.float64)
            for i in range(0, len(f.frames), self.params["frame_skip"]):
                pose = f.frames[i].camera_to_world.astype(np.float64)
                if problem := pose_problem(pose):
                    skip(problem, f"{sens} frame {i}")
                    continue
                try:
                    frame = f.read_frame(i, (w, h))
                except SceneError as exc:
                    skip("frame does not decode (.sens)", f"{sens} frame {i}: {exc.reason}")
                    continue
                yield _Frame(i, pose, frame.color, frame.depth_raw, frame.depth_shift, k_depth,
                             f"{sens} frame {i}", str(i))

    def _raw_to_nyu40(self) -> np.ndarray:
        """Lookup raw 2D label id -> NYU40 id: ScanNet's label table when DATA_ROOT has it, else identity."""
        tsv = self.root / RAW_LABELS_TSV
        if not tsv.is_file():
            return np.arange(len(self.label_map), dtype=np.int64)
        try:
            pairs = [(int(i), int(nyu)) for i, nyu in _tsv_rows(tsv, ("id", "nyu40id")) if nyu]
        except ValueError as exc:
            raise SceneError(f"cannot read the 'id' and 'nyu40id' columns ({exc})", tsv) from exc
        table = np.zeros(max((i for i, _ in pairs), default=0) + 1, np.int64)
        for raw, nyu in pairs:
            table[raw] = nyu
        return table

    def _frame_labels(self, path: Path, hw: tuple[int, int], to_nyu40: np.ndarray,
                      skip: Callable[[str, Path], None]) -> np.ndarray:
        """A frame's 2D labels i16[H,W] in the benchmark classes (-1 ignore); all -1 when unreadable."""
        h, w = hw
        try:
            with Image.open(path) as im:
                raw = np.asarray(im.resize((w, h), Image.NEAREST)).astype(np.int64)
        except (OSError, ValueError) as exc:
            skip(f"2D labels missing or unreadable ({exc.__class__.__name__}; frame kept without them)", path)
            return np.full((h, w), -1, np.int16)
        nyu = np.where((raw >= 0) & (raw < len(to_nyu40)), to_nyu40[np.clip(raw, 0, len(to_nyu40) - 1)], 0)
        return self.label_map[np.clip(nyu, 0, len(self.label_map) - 1)].astype(np.int16)
