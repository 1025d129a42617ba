"""ScanNet v2 reader: meshes, NYU40 -> 20-class labels and exported RGB-D frames, as Scene records.

Raw layout (``DATA_ROOT``): ``scans/<scene>/<scene>_vh_clean_2.ply``, ``_vh_clean_2.labels.ply``,
and the exported frames ``color/<i>.jpg``, ``depth/<i>.png`` (uint16 mm), ``pose/<i>.txt``
(camera-to-world 4x4), ``intrinsic/intrinsic_depth.txt``, and optionally ``label-filt/<i>.png``
(ScanNet's 2D labels, unzipped from ``<scene>_2d-label-filt.zip``: raw category ids mapped to
NYU40 by ``scannetv2-labels.combined.tsv`` in DATA_ROOT, or NYU40 ids when that file is absent,
as the synthetic rooms write them), read as ``frame_labels`` for the benchmarks' simulated VLM;
the frames may live under another root (``frames_root``, e.g. scannet_frames_25k). Colour is resized onto the depth camera's
frame at ``image_size`` and projected with the depth intrinsics (ScanNet's depth is registered
to colour; this is the usual 2D-3D convention). Frames with non-finite poses or missing files
are skipped and reported per scene.

A scene without exported frames (no ``color/`` folder under the frames root) is read from its
raw stream ``scans/<scene>/<scene>.sens`` instead (:mod:`pipeline.datasets.sens`): depth
intrinsics from its header, every ``frame_skip``-th frame of the stream (``frame_ids`` = index in
the stream; the other frames are never decoded), the same checks and the same record as exported
frames; ``label-filt/<i>.png`` still gives the 2D labels when present.

Meshes: triangle faces are memory-mapped by plyfile (``known_list_len``) instead of parsed one
by one; the labels PLY is read up to the end of its vertex element only (its faces are not
needed).
"""
from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image
from plyfile import PlyData, PlyListProperty

from pipeline.datasets.base import LABELMAPS, ManifestEntry, file_entry, load_label_map, read_split
from pipeline.datasets.sens import SensFile
from pipeline.errors import SceneError
from pipeline.geometry.mesh_normals import area_weighted_normals

SPLITS = ("train", "val", "test")
RAW_LABELS_TSV = "scannetv2-labels.combined.tsv"


TRIANGLES = {"face": {"vertex_indices": 3}}  # plyfile's known_list_len: faces memory-mapped


def _read_ply(path: Path, triangles: bool = False) -> PlyData:
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
            return _read_ply(path, triangles=True)["vertex"].data
        dtype = np.dtype(empty.elements[0].dtype(empty.byte_order))
        f.seek(stop)
        data = f.read(counts[0] * dtype.itemsize)
    if len(data) != counts[0] * dtype.itemsize:
        raise SceneError(f"truncated or corrupt PLY (file ends inside vertex {len(data) // dtype.itemsize} "
                         f"of {counts[0]})", path)
    return np.frombuffer(data, dtype)


def _faces(ply: PlyData, path: Path) -> np.ndarray:
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
    ply = _read_ply(path, triangles=need_faces)
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
        faces = _faces(ply, path)
        if faces.min() < 0 or faces.max() >= len(xyz):
            raise SceneError("faces reference vertices that do not exist", path)
        out["faces"] = faces
    return out


def _frame_index(name: str) -> int | None:
    stem = name.rsplit(".", 1)[0]
    return int(stem) if stem.isdigit() else None


def _intrinsics_3x3(path: Path) -> np.ndarray:
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


class _Frame(NamedTuple):
    """A frame read from either source, before the checks and resizing they share."""

    index: int  # frame number (exported file name, or index in the .sens stream)
    camera_to_world: np.ndarray  # f64[4, 4], finite
    color: Image.Image  # RGB, decoded
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
        self.frames_root = Path(params["frames_root"]) if params.get("frames_root") else self.root / "scans"
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

    def manifest(self, scene: str) -> list[ManifestEntry]:
        """Every raw file the scene's record is computed from, with size and mtime (-1: missing)."""
        d = self.scene_dir(scene)
        files = [d / f"{scene}_vh_clean_2.ply", d / f"{scene}_vh_clean_2.labels.ply"]
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
        if labels_path.exists():
            lv = read_vertex_element(labels_path)
            if len(lv) != len(mesh["points"]):
                raise SceneError(
                    f"labels PLY has {len(lv)} vertices, mesh has {len(mesh['points'])}", labels_path
                )
            if "label" not in (lv.dtype.names or ()):
                raise SceneError("labels PLY vertices have no 'label' property", labels_path)
            nyu = np.asarray(lv["label"]).astype(np.int64)
            labels = self.label_map[np.clip(nyu, 0, len(self.label_map) - 1)]
            labels[(nyu < 0) | (nyu >= len(self.label_map))] = -1
        else:
            labels = np.full(len(mesh["points"]), -1, np.int16)
        record: dict[str, Any] = {
            **mesh,
            "normals": area_weighted_normals(mesh["points"], mesh["faces"]),
            "labels": labels.astype(np.int16),
            "has_labels": labels_path.exists(),
        }
        record.update(self._read_frames(scene))
        return record

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
            color = np.asarray(fr.color.resize((w, h), Image.BILINEAR))
            depth = np.asarray(Image.fromarray(depth_raw).resize((w, h), Image.NEAREST), np.float32)
            if to_nyu40 is not None:
                frame_labels.append(self._frame_labels(labels_dir / f"{fr.label_stem}.png", (h, w), to_nyu40, skip))
            depths.append(depth / fr.depth_scale)
            colors.append(color)
            poses.append(np.linalg.inv(fr.camera_to_world))
            intr.append(scale_intrinsics(fr.k_depth, depth_raw.shape[:2], (h, w)))
            ids.append(fr.index)
        if not ids:
            reasons = "; ".join(f"{r}: {len(p)}" for r, p in skipped.items()) or "no frames listed"
            raise SceneError(f"no usable frame ({reasons})", sens or self.frames_root / scene)
        record = {} if to_nyu40 is None else {"frame_labels": np.stack(frame_labels).astype(np.int16)}
        return {
            **record,
            "color": np.stack(colors).astype(np.uint8),
            "depth": np.stack(depths).astype(np.float32),
            "world_to_camera": np.stack(poses).astype(np.float64),
            "intrinsics": np.stack(intr).astype(np.float64),
            "frame_ids": np.asarray(ids, np.int32),
            "image_hw": [h, w],
            "skipped_frames": skipped,
        }

    def _exported_frames(self, scene: str, skip: Callable[[str, str | Path], None]) -> Iterator[_Frame]:
        """Every kept exported frame whose files are present and readable (the others skipped)."""
        k_depth = _intrinsics_3x3(self.frames_root / scene / "intrinsic" / "intrinsic_depth.txt")
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
            if not np.isfinite(pose).all():
                skip("pose not finite (-inf/nan)", pose_path)
                continue
            try:
                with Image.open(depth_path) as im:
                    depth_raw = np.asarray(im)
            except OSError as exc:
                skip(f"depth image unreadable ({exc.__class__.__name__})", depth_path)
                continue
            try:
                with Image.open(color_path) as im:
                    color = im.convert("RGB")
            except OSError as exc:
                skip(f"colour image unreadable ({exc.__class__.__name__})", color_path)
                continue
            yield _Frame(i, pose, color, depth_raw, float(self.params["depth_scale"]), k_depth,
                         str(depth_path), depth_path.stem)

    def _sens_frames(self, sens: Path, skip: Callable[[str, str | Path], None]) -> Iterator[_Frame]:
        """Every ``frame_skip``-th frame of the stream with a finite pose that decodes; the others
        are skipped (and never decoded)."""
        with SensFile(sens) as f:
            k_depth = f.header.intrinsic_depth[:3, :3].astype(np.float64)
            for i in range(0, len(f.frames), self.params["frame_skip"]):
                pose = f.frames[i].camera_to_world.astype(np.float64)
                if not np.isfinite(pose).all():
                    skip("pose not finite (-inf/nan)", f"{sens} frame {i}")
                    continue
                try:
                    frame = f.read_frame(i)
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
        rows = [line.split("\t") for line in tsv.read_text().splitlines()]
        try:
            col_id, col_nyu = rows[0].index("id"), rows[0].index("nyu40id")
            pairs = [(int(r[col_id]), int(r[col_nyu])) for r in rows[1:] if len(r) > max(col_id, col_nyu) and r[col_nyu]]
        except (ValueError, IndexError) as exc:
            raise SceneError(f"cannot read the 'id' and 'nyu40id' columns ({exc})", tsv) from exc
        table = np.zeros(max(i for i, _ in pairs) + 1, np.int64)
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
