"""nuScenes reader: LIDAR_TOP keyframes with lidarseg labels and six camera frames, as Scene records.

Everything goes through nuscenes-devkit (``NuScenes(version, dataroot)``). One pipeline scene is
one keyframe sample, named by its sample token; ``scene_ids`` lists the keyframes of the devkit's
scene splits (``create_splits_scenes``: train/val for v1.0-trainval, mini_train/mini_val for
v1.0-mini, test for v1.0-test). A record holds the keyframe cloud in the LIDAR_TOP frame (x, y, z
and ``intensity``; colours are zeros, LiDAR has none), optionally with the ``sweeps - 1``
previous sweeps moved into that frame (unlabelled), the lidarseg labels mapped to the 16
challenge classes, and per camera the image resized to ``image_size`` with its intrinsics scaled
and ``world_to_camera`` = camera_from_lidar, the devkit's chain
lidar -> ego(t_lidar) -> global -> ego(t_cam) -> camera. There is no depth image.

The fine -> 16-class map is built at run time from the dataset's own category table and the
devkit's lidarseg challenge mapping (``LidarsegClassMapper``), matched by name to
data/classes/nuscenes16.txt; the ignore class becomes -1.

Bad input stays per sample: a missing camera image skips that frame (reported with the sample's
warnings), a missing lidarseg or LiDAR file fails only its sample. The devkit refuses to load a
dataset whose lidarseg folder lacks a file, so the reader loads it with those records set aside.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from nuscenes import NuScenes
from nuscenes.eval.lidarseg.utils import LidarsegClassMapper
from nuscenes.utils.data_classes import LidarPointCloud
from nuscenes.utils.data_io import load_bin_file
from nuscenes.utils.geometry_utils import transform_matrix
from nuscenes.utils.splits import create_splits_scenes
from PIL import Image
from pyquaternion import Quaternion

from pipeline.datasets.base import DATA_DIR, ManifestEntry, file_entry
from pipeline.datasets.scannet import scale_intrinsics
from pipeline.errors import PipelineError, SceneError

CLASSES = DATA_DIR / "classes" / "nuscenes16.txt"
TABLES = ("sample_data", "calibrated_sensor", "ego_pose", "category", "lidarseg")
# pipeline split -> devkit split, per version suffix
DEVKIT_SPLITS = {"trainval": {"train": "train", "val": "val"},
                 "mini": {"train": "mini_train", "val": "mini_val"},
                 "test": {"test": "test"}}


class DevkitNuScenes(NuScenes):
    """NuScenes whose lidarseg table leaves out records without a label file.

    The devkit asserts that the lidarseg folder holds one file per record, so one missing file
    would stop the whole dataset; this keeps the dataset loadable and remembers the missing files
    (``missing_lidarseg``: lidar sample_data token -> path), so only their samples fail.
    """

    def __init__(self, version: str, dataroot: str):
        self.missing_lidarseg: dict[str, str] = {}
        super().__init__(version=version, dataroot=dataroot, verbose=False)

    def __load_table__(self, table_name: str) -> list[dict[str, Any]]:
        table = super().__load_table__(table_name)
        if table_name != "lidarseg":
            return table
        self.missing_lidarseg = {r["sample_data_token"]: os.path.join(self.dataroot, r["filename"])
                                 for r in table if not os.path.isfile(os.path.join(self.dataroot, r["filename"]))}
        return [r for r in table if r["sample_data_token"] not in self.missing_lidarseg]


@functools.lru_cache(maxsize=2)
def load_devkit(dataroot: str, version: str) -> DevkitNuScenes:
    """The devkit's database of one version, loaded once per process (trainval takes a while)."""
    if not (Path(dataroot) / version).is_dir():
        raise PipelineError(f"no nuScenes tables at {Path(dataroot) / version}: is DATA_ROOT a nuScenes "
                            f"root and '{version}' its version?")
    try:
        return DevkitNuScenes(version, dataroot)
    except (AssertionError, KeyError, OSError, ValueError) as exc:
        raise PipelineError(f"nuscenes-devkit cannot load {version} under {dataroot}: {exc}") from exc


def class_names() -> list[str]:
    """The 16 class names in label order (data/classes/nuscenes16.txt)."""
    return [line.strip() for line in CLASSES.read_text().splitlines() if line.strip()]


def fine_to_class(idx2name: Mapping[int, str], fine2coarse: Mapping[str, str], ignore: str,
                  classes: list[str]) -> np.ndarray:
    """i16[256] lookup fine lidarseg index -> class id in ``classes`` (coarse names with '_' as ' ').

    ``ignore`` (the challenge's ignore class) and indices without a category map to -1; a fine
    category the challenge mapping does not know, or a coarse name not in ``classes``, is an error.
    """
    table = np.full(256, -1, np.int16)
    for index, name in idx2name.items():
        if name not in fine2coarse:
            raise PipelineError(f"lidarseg category '{name}' is not in the devkit's challenge mapping")
        coarse = fine2coarse[name]
        if coarse == ignore:
            continue
        label = coarse.replace("_", " ")
        if label not in classes:
            raise PipelineError(f"challenge class '{label}' is not in {CLASSES}")
        table[index] = classes.index(label)
    return table


def label_table(nusc: NuScenes) -> np.ndarray:
    """The fine -> 16-class lookup of a loaded dataset (built from its category table)."""
    mapper = LidarsegClassMapper(nusc)
    return fine_to_class(nusc.lidarseg_idx2name_mapping, mapper.fine_name_2_coarse_name_mapping,
                         mapper.ignore_class["name"], class_names())


def pose(record: Mapping[str, Any], inverse: bool = False) -> np.ndarray:
    """4x4 of a calibrated_sensor or ego_pose record (parent_from_child, or its inverse)."""
    return transform_matrix(record["translation"], Quaternion(record["rotation"]), inverse=inverse)


def global_from_sensor(nusc: NuScenes, sample_data: Mapping[str, Any]) -> np.ndarray:
    """global_from_ego(t) @ ego_from_sensor of a sample_data record."""
    ego = nusc.get("ego_pose", sample_data["ego_pose_token"])
    calibrated = nusc.get("calibrated_sensor", sample_data["calibrated_sensor_token"])
    return pose(ego) @ pose(calibrated)


def sensor_from_global(nusc: NuScenes, sample_data: Mapping[str, Any]) -> np.ndarray:
    """sensor_from_ego @ ego_from_global(t) of a sample_data record."""
    ego = nusc.get("ego_pose", sample_data["ego_pose_token"])
    calibrated = nusc.get("calibrated_sensor", sample_data["calibrated_sensor_token"])
    return pose(calibrated, inverse=True) @ pose(ego, inverse=True)


def load_image(path: Path, hw: tuple[int, int] | None) -> tuple[np.ndarray, tuple[int, int]]:
    """u8[H, W, 3] RGB image resized to ``hw`` (None: kept) and its native (H, W)."""
    with Image.open(path) as im:
        native = (im.height, im.width)
        image = im.convert("RGB")
        if hw is not None and hw != native:
            image = image.resize((hw[1], hw[0]), Image.BILINEAR)
        return np.asarray(image), native


def read_cloud(path: Path, sample: str) -> np.ndarray:
    """f32[4, N] x, y, z, intensity of a .pcd.bin (5 floats per point)."""
    if not path.is_file():
        raise SceneError(f"LiDAR file of sample {sample} is missing", path)
    if path.stat().st_size == 0 or path.stat().st_size % 20:
        raise SceneError(f"LiDAR file of sample {sample} is not 5 float32 per point "
                         f"({path.stat().st_size} bytes)", path)
    return LidarPointCloud.from_file(str(path)).points


class NuScenesReader:
    """Reads nuScenes LIDAR_TOP keyframes (and the synthetic drive, which shares the layout)."""

    def __init__(self, root: str | Path, params: Mapping[str, Any]):
        self.root = Path(root)
        self.version = str(params["version"])
        self.cameras = list(params["cameras"])  # checked against the channels stages.yaml lists
        self.sweeps = int(params["sweeps"])
        self.image_size = tuple(params["image_size"]) if params["image_size"] else None
        if self.sweeps < 1:
            raise PipelineError(f"sweeps must be >= 1 (1 = the keyframe only), got {self.sweeps}")

    @property
    def nusc(self) -> DevkitNuScenes:
        """The devkit database (loaded on first use, once per process)."""
        return load_devkit(str(self.root), self.version)

    @functools.cached_property
    def labels_lut(self) -> np.ndarray | None:
        """Fine -> class lookup, or None when the dataset has no lidarseg."""
        return label_table(self.nusc) if hasattr(self.nusc, "lidarseg") else None

    @functools.cached_property
    def known_fine(self) -> np.ndarray:
        """bool[256]: which fine indices the category table defines."""
        known = np.zeros(256, bool)
        known[list(self.nusc.lidarseg_idx2name_mapping)] = True
        return known

    def scene_ids(self, splits: list[str]) -> list[str]:
        """Keyframe sample tokens of the given splits, by scene name then time."""
        suffix = self.version.rsplit("-", 1)[-1]
        if suffix not in DEVKIT_SPLITS:
            raise PipelineError(f"version '{self.version}' is not v1.0-trainval, v1.0-mini or v1.0-test")
        devkit_splits = create_splits_scenes()
        wanted = {name for s in splits if s in DEVKIT_SPLITS[suffix] for name in devkit_splits[DEVKIT_SPLITS[suffix][s]]}
        tokens: list[str] = []
        for scene in sorted(self.nusc.scene, key=lambda r: r["name"]):
            if scene["name"] not in wanted:
                continue
            sample = scene["first_sample_token"]
            while sample:
                tokens.append(sample)
                sample = self.nusc.get("sample", sample)["next"]
        return tokens

    def _sample(self, scene: str) -> dict[str, Any]:
        try:
            return self.nusc.get("sample", scene)
        except KeyError as exc:
            raise SceneError(f"'{scene}' is not a sample token of {self.version}") from exc

    def _sweep_records(self, lidar: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The ``sweeps - 1`` LIDAR_TOP sample_data records before a keyframe, newest first."""
        out: list[dict[str, Any]] = []
        record = lidar
        while len(out) < self.sweeps - 1 and record["prev"]:
            record = self.nusc.get("sample_data", record["prev"])
            out.append(record)
        return out

    def manifest(self, scene: str) -> list[ManifestEntry]:
        """Every raw file the sample's record is computed from (the tables included).

        Empty for a token that is not a sample (``read`` reports it, for that scene alone).
        """
        try:
            sample = self.nusc.get("sample", scene)
        except KeyError:
            return []
        lidar = self.nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        files = [self.root / self.version / f"{t}.json" for t in TABLES]
        files += [self.root / r["filename"] for r in [lidar, *self._sweep_records(lidar)]]
        if hasattr(self.nusc, "lidarseg"):
            files.append(self.root / self.version / "lidarseg.json")
            labels = self._lidarseg_path(lidar["token"])
            files += [Path(labels)] if labels else []
        files += [self.root / self.nusc.get("sample_data", sample["data"][c])["filename"]
                  for c in self.cameras if c in sample["data"]]
        return [file_entry(f) for f in files]

    def _lidarseg_path(self, lidar_token: str) -> str | None:
        """Path of a keyframe's lidarseg file (also when missing), None when it has no record."""
        if lidar_token in self.nusc.missing_lidarseg:
            return self.nusc.missing_lidarseg[lidar_token]
        try:
            return os.path.join(self.nusc.dataroot, self.nusc.get("lidarseg", lidar_token)["filename"])
        except KeyError:
            return None

    def read(self, scene: str) -> dict[str, Any]:
        """The ``scenes`` stage record of one keyframe sample (see the module docstring)."""
        sample = self._sample(scene)
        lidar = self.nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        key = read_cloud(self.root / lidar["filename"], scene)
        labels, has_labels = self._labels(scene, lidar, key.shape[1])
        skipped: dict[str, list[str]] = {}
        lidar_from_global = sensor_from_global(self.nusc, lidar)
        clouds = [key]
        for record in self._sweep_records(lidar):
            path = self.root / record["filename"]
            if not path.is_file():
                skipped.setdefault("LiDAR sweep missing", []).append(str(path))
                continue
            cloud = read_cloud(path, scene)
            lidar_from_sweep = lidar_from_global @ global_from_sensor(self.nusc, record)
            cloud[:3] = lidar_from_sweep[:3, :3] @ cloud[:3] + lidar_from_sweep[:3, 3:]
            clouds.append(cloud)
        cloud = np.concatenate(clouds, axis=1)
        labels = np.concatenate([labels, np.full(cloud.shape[1] - len(labels), -1, np.int16)])
        record: dict[str, Any] = {
            "points": np.ascontiguousarray(cloud[:3].T, dtype=np.float32),
            "intensity": cloud[3].astype(np.float32),
            "colors": np.zeros((cloud.shape[1], 3), np.uint8),
            "labels": labels,
            "has_labels": has_labels,
            "scene_name": self.nusc.get("scene", sample["scene_token"])["name"],
            "timestamp": int(sample["timestamp"]),
        }
        record.update(self._frames(scene, sample, lidar, skipped))
        return record

    def _labels(self, scene: str, lidar: Mapping[str, Any], count: int) -> tuple[np.ndarray, bool]:
        """Class ids i16[count] of the keyframe points (all -1 without lidarseg) and whether labelled."""
        path = self._lidarseg_path(lidar["token"]) if self.labels_lut is not None else None
        if path is None:
            return np.full(count, -1, np.int16), False
        if not os.path.isfile(path):
            raise SceneError(f"lidarseg labels of sample {scene} are missing", path)
        if os.path.getsize(path) == 0:
            raise SceneError(f"lidarseg labels of sample {scene} are empty", path)
        fine = load_bin_file(path, "lidarseg")
        unknown = np.unique(fine[~self.known_fine[fine]])
        if len(unknown):
            raise SceneError(f"lidarseg labels of sample {scene} use category indices {unknown.tolist()} "
                             f"that category.json does not define", path)
        if len(fine) != count:
            raise SceneError(f"lidarseg file has {len(fine)} labels but the LiDAR keyframe of sample {scene} "
                             f"has {count} points", path)
        return self.labels_lut[fine], True

    def _frames(self, scene: str, sample: Mapping[str, Any], lidar: Mapping[str, Any],
                skipped: dict[str, list[str]]) -> dict[str, Any]:
        """Camera images, intrinsics and camera_from_lidar of every usable camera of the sample."""
        global_from_lidar = global_from_sensor(self.nusc, lidar)
        colors, extrinsics, intrinsics, ids, names = [], [], [], [], []
        for k, channel in enumerate(self.cameras):
            if channel not in sample["data"]:
                skipped.setdefault("camera not in sample", []).append(channel)
                continue
            cam = self.nusc.get("sample_data", sample["data"][channel])
            path = self.root / cam["filename"]
            if not path.is_file():
                skipped.setdefault("camera image missing", []).append(str(path))
                continue
            try:
                image, native = load_image(path, self.image_size)
            except OSError as exc:
                skipped.setdefault(f"camera image unreadable ({type(exc).__name__})", []).append(str(path))
                continue
            colors.append(image)
            calibrated = self.nusc.get("calibrated_sensor", cam["calibrated_sensor_token"])
            k_native = np.asarray(calibrated["camera_intrinsic"], np.float64)
            hw = image.shape[:2]
            intrinsics.append(k_native if hw == native else scale_intrinsics(k_native, native, hw))
            camera_from_global = sensor_from_global(self.nusc, cam)  # at the camera's own time
            extrinsics.append(camera_from_global @ global_from_lidar)  # camera_from_lidar
            ids.append(k)
            names.append(channel)
        if not ids:
            reasons = "; ".join(f"{r}: {len(p)}" for r, p in skipped.items()) or "no camera selected"
            raise SceneError(f"sample {scene} has no usable camera image ({reasons})", self.root / "samples")
        shapes = {c.shape for c in colors}
        if len(shapes) > 1:
            raise SceneError(f"camera images of sample {scene} differ in size {sorted(shapes)}; set image_size")
        return {
            "color": np.stack(colors).astype(np.uint8),
            "world_to_camera": np.stack(extrinsics).astype(np.float64),
            "intrinsics": np.stack(intrinsics).astype(np.float64),
            "frame_ids": np.asarray(ids, np.int32),
            "cameras": names,
            "image_hw": list(colors[0].shape[:2]),
            "skipped_frames": skipped,
        }
