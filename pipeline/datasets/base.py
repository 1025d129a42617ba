"""What every dataset reader shares: label maps, split lists, raw-file manifests, the source stage."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline.errors import SceneError

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
LABELMAPS = DATA_DIR / "labelmaps"
ManifestEntry = tuple[str, int, int]


class Reader(Protocol):
    """A dataset reader: lists scenes, names the raw files of each, reads one scene record."""

    def scene_ids(self, splits: list[str]) -> list[str]: ...
    def manifest(self, scene: str) -> list[ManifestEntry]: ...
    def read(self, scene: str) -> dict[str, Any]: ...


def file_entry(path: Path) -> ManifestEntry:
    """(path, size, mtime_ns) of a raw file; a missing file is recorded as size -1."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return (str(path), -1, 0)
    return (str(path), st.st_size, st.st_mtime_ns)


def load_label_map(path: Path, size: int = 256) -> np.ndarray:
    """Lookup table raw id -> benchmark label (-1 for every id not listed) from a TSV."""
    table = np.full(size, -1, np.int16)
    for line in path.read_text().splitlines():
        if not line or line.startswith("#") or not line[0].isdigit():
            continue
        raw, label = line.split("\t")[:2]
        table[int(raw)] = int(label)
    return table


def read_split(root: Path, dataset: str, filename: str) -> list[str] | None:
    """Scene ids of a split list found in DATA_ROOT, else in data/splits/<dataset>/, else None."""
    for candidate in (root / filename, DATA_DIR / "splits" / dataset / filename):
        if candidate.is_file():
            return [s.strip() for s in candidate.read_text().split() if s.strip()]
    return None


def scenes_stage(reader: Reader, scene: str) -> dict[str, Any]:
    """The source stage: one scene record from the dataset's reader, with its raw-file manifest
    (``raw_files``, so that ``hicl-pipeline status`` can name the file that changed)."""
    return {**reader.read(scene), "raw_files": [list(entry) for entry in reader.manifest(scene)]}


def pose_problem(camera_to_world: np.ndarray) -> str | None:
    """Why a frame's camera-to-world pose cannot place it (not finite, or singular, so that it has
    no camera_from_world); None when it can."""
    if not np.isfinite(camera_to_world).all():
        return "pose not finite (-inf/nan)"
    try:
        np.linalg.inv(camera_to_world)
    except np.linalg.LinAlgError:
        return "pose not invertible (singular matrix)"
    return None


def frames_record(colors: list[np.ndarray], depths: list[np.ndarray], world_to_camera: list[np.ndarray],
                  intrinsics: list[np.ndarray], ids: list[int], hw: tuple[int, int],
                  skipped: dict[str, list[str]], where: str | Path) -> dict[str, Any]:
    """The frame keys of a mesh + RGB-D record from the kept frames, stacked in the declared
    dtypes; no kept frame is a SceneError naming ``where`` and the skip reasons."""
    if not ids:
        reasons = "; ".join(f"{r}: {len(p)}" for r, p in skipped.items()) or "no frames listed"
        raise SceneError(f"no usable frame ({reasons})", where)
    return {
        "color": np.stack(colors).astype(np.uint8),
        "depth": np.stack(depths).astype(np.float32),
        "world_to_camera": np.stack(world_to_camera).astype(np.float64),
        "intrinsics": np.stack(intrinsics).astype(np.float64),
        "frame_ids": np.asarray(ids, np.int32),
        "image_hw": [hw[0], hw[1]],
        "skipped_frames": skipped,
    }
