"""Synthetic nuScenes: procedural streets driven through, written as a devkit-loadable dataset.

``DIR/<version>/*.json`` holds every table ``nuscenes.NuScenes(version, DIR)`` loads (category
with lidarseg indices, attribute, visibility, instance, sensor, calibrated_sensor, ego_pose, log,
scene, sample, sample_data, sample_annotation, map, lidarseg). Blobs as in nuScenes:
``samples/LIDAR_TOP/*.pcd.bin`` (float32 x, y, z, intensity, ring per point, sensor frame),
``sweeps/LIDAR_TOP/*.pcd.bin`` (the LiDAR sweeps between keyframes), ``samples/CAM_*/*.jpg``,
``lidarseg/<version>/<lidar sample_data token>_lidarseg.bin`` (uint8 fine category index per
keyframe point) and ``maps/<token>.png`` (the drivable area at 0.1 m per pixel). Split lists
``DIR/nuscenes_train.txt`` and ``nuscenes_val.txt`` hold the keyframe sample tokens of each split
(the pipeline's scene ids, for the trainer).

Scenes take names from the devkit's split lists so that ``create_splits_scenes()`` files them
correctly: v1.0-mini uses mini_train (8 names) then mini_val (2); v1.0-trainval uses train then
val. Category indices follow the devkit's lidarseg colour map, whose order is nuScenes-lidarseg's
category.json (0 noise ... 31 vehicle.ego). Every object is static and the ego drives through
(see :mod:`rig` for sensors and timing, :mod:`street` for the scene grammar). Annotation
visibility is not modelled (every box gets the v80-100 level). Scene i depends only on (seed, i)
and the drive settings (keyframes, sweeps, image size), not on how many scenes are written.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from nuscenes.eval.detection.constants import ATTRIBUTE_NAMES
from nuscenes.utils.color_map import get_colormap
from nuscenes.utils.geometry_utils import transform_matrix
from nuscenes.utils.splits import create_splits_scenes
from PIL import Image, ImageDraw
from pyquaternion import Quaternion

from pipeline.datasets.synthetic import lidar, render, rig, solids
from pipeline.datasets.synthetic import street as streets

JPEG_QUALITY = 92
MAP_RESOLUTION = 0.1  # metres per map pixel (the devkit's default)
KEYFRAME_PERIOD_US = 500_000  # keyframes at 2 Hz, as in nuScenes
START_US = 1_532_402_900_000_000
SPLITS = {"v1.0-mini": ("mini_train", "mini_val"), "v1.0-trainval": ("train", "val")}
VISIBILITY = (("1", "v0-40"), ("2", "v40-60"), ("3", "v60-80"), ("4", "v80-100"))
SKY_TOP, SKY_HORIZON = np.array([110.0, 150.0, 210.0]), np.array([200.0, 215.0, 230.0])
REFLECTIVITY = {  # 0-255 intensity of a head-on return, per fine category
    streets.DRIVEABLE: 10, streets.SIDEWALK: 22, streets.TERRAIN: 16, streets.OTHER_FLAT: 14,
    streets.MANMADE: 45, streets.VEGETATION: 28, streets.STATIC_OTHER: 30, streets.CAR: 38,
    streets.TRUCK: 48, streets.BUS: 55, streets.TRAILER: 48, streets.CONSTRUCTION: 85,
    streets.MOTORCYCLE: 25, streets.BICYCLE: 20, streets.ADULT: 14, streets.CHILD: 14,
    streets.WORKER: 120, streets.BARRIER: 70, streets.CONE: 110,
}


def token(*keys: Any) -> str:
    """A 32-hex-digit nuScenes-style token, a pure function of the keys."""
    return hashlib.blake2b(":".join(map(str, keys)).encode(), digest_size=16).hexdigest()


def category_table() -> list[dict[str, Any]]:
    """The lidarseg category table: the devkit's class names with their lidarseg indices."""
    return [{"token": token("category", name), "name": name, "description": f"nuScenes-lidarseg class {name}",
             "index": index} for index, name in enumerate(get_colormap())]


def scene_names(version: str, train: int, val: int) -> list[str]:
    """Names of ``train`` train scenes then ``val`` val scenes from the devkit's split lists."""
    if version not in SPLITS:
        raise ValueError(f"version must be one of {', '.join(SPLITS)}, got {version!r}")
    train_split, val_split = SPLITS[version]
    lists = create_splits_scenes()
    if train > len(lists[train_split]) or val > len(lists[val_split]):
        raise ValueError(f"{version} has {len(lists[train_split])} train and {len(lists[val_split])} val "
                         f"scene names; asked for {train} and {val} (use v1.0-trainval for more)")
    return lists[train_split][:train] + lists[val_split][:val]


def global_from_street(rng: np.random.Generator, street: streets.Street) -> tuple[np.ndarray, float, float]:
    """Street -> global 4x4 (a random yaw, the street centred in a map square) and the square's side."""
    side = street.length + 60.0
    yaw = rng.uniform(0.0, 2 * math.pi)
    return transform_matrix([side / 2, side / 2, 0.0], Quaternion(axis=[0.0, 0.0, 1.0], angle=yaw)), yaw, side


def drivable_mask(street: streets.Street, g_from_s: np.ndarray, side: float) -> np.ndarray:
    """u8 map mask (255 = road, less median islands) over [0, side]^2 in the devkit's map layout."""
    n = int(round(side / MAP_RESOLUTION))
    mask = Image.new("L", (n, n), 0)
    draw = ImageDraw.Draw(mask)

    def rectangle(x0: float, y0: float, x1: float, y1: float, fill: int) -> None:
        corners = np.array([[x0, y0, 0.0, 1.0], [x1, y0, 0.0, 1.0], [x1, y1, 0.0, 1.0], [x0, y1, 0.0, 1.0]])
        g = corners @ g_from_s.T  # map pixel (col, row) = (x / res, n - y / res)
        draw.polygon([(x / MAP_RESOLUTION, n - y / MAP_RESOLUTION) for x, y in g[:, :2]], fill=fill)

    half = street.length / 2
    rectangle(-half, -street.road_half, half, street.road_half, 255)
    for item in street.items:
        if item.category == streets.OTHER_FLAT:
            (x0, y0, _), (x1, y1, _) = item.parts[0].lo, item.parts[0].hi
            rectangle(x0, y0, x1, y1, 0)
    return np.asarray(mask)


def sky(image: np.ndarray, face: np.ndarray) -> np.ndarray:
    """The image with a vertical sky gradient where no surface was hit."""
    h = image.shape[0]
    ramp = (np.arange(h) / max(h - 1, 1))[:, None, None]
    gradient = np.broadcast_to(SKY_TOP * (1 - ramp) + SKY_HORIZON * ramp, image.shape)
    return np.where((face < 0)[..., None], np.round(gradient).astype(np.uint8), image)


def box_record(item: streets.Item, g_from_s: np.ndarray, street_yaw: float) -> dict[str, Any]:
    """Global centre, size (w, l, h) and rotation of an item's box."""
    lo, hi = item.local_bounds()
    x, y, z, yaw = item.pose
    c, s = math.cos(yaw), math.sin(yaw)
    centre_local = (lo + hi) / 2
    centre = np.array([x + c * centre_local[0] - s * centre_local[1],
                       y + s * centre_local[0] + c * centre_local[1], z + centre_local[2], 1.0])
    rotation = Quaternion(axis=[0.0, 0.0, 1.0], angle=street_yaw + yaw)
    return {"translation": (g_from_s @ centre)[:3].tolist(), "size": [hi[1] - lo[1], hi[0] - lo[0], hi[2] - lo[2]],
            "rotation": list(rotation.elements)}


class Writer:
    """Accumulates the tables of all scenes and writes the blobs of each as it goes."""

    def __init__(self, out: Path, version: str, seed: int):
        self.out, self.version, self.seed = Path(out), version, seed
        self.tables: dict[str, list[dict[str, Any]]] = {name: [] for name in (
            "category", "attribute", "visibility", "instance", "sensor", "calibrated_sensor", "ego_pose",
            "log", "scene", "sample", "sample_data", "sample_annotation", "map", "lidarseg")}
        self.tables["category"] = category_table()
        self.category_index = {c["name"]: c["index"] for c in self.tables["category"]}
        self.tables["attribute"] = [{"token": token("attribute", a), "name": a, "description": a}
                                    for a in ATTRIBUTE_NAMES]
        self.tables["visibility"] = [{"token": t, "level": level, "description": f"visibility {level}"}
                                     for t, level in VISIBILITY]
        channels = [("LIDAR_TOP", "lidar")] + [(c, "camera") for c in rig.CAMERAS]
        self.tables["sensor"] = [{"token": token("sensor", c), "channel": c, "modality": m} for c, m in channels]
        for sub in ["samples/LIDAR_TOP", "sweeps/LIDAR_TOP", f"lidarseg/{version}", "maps", version,
                    *(f"samples/{c}" for c in rig.CAMERAS)]:
            (self.out / sub).mkdir(parents=True, exist_ok=True)

    def save(self) -> None:
        """Write every table as ``<version>/<table>.json``."""
        for name, rows in self.tables.items():
            (self.out / self.version / f"{name}.json").write_text(json.dumps(rows, indent=0))


class Drive:
    """One scene being written: its street, sensors, ego path and per-channel sample_data chains."""

    def __init__(self, writer: Writer, index: int, name: str, keyframes: int, sweeps: int, hw: tuple[int, int]):
        self.writer, self.index, self.name, self.sweeps, self.hw = writer, index, name, sweeps, hw
        self.rng = rng = np.random.default_rng([writer.seed, index])
        self.street = streets.generate_street(rng)
        self.global_from_street, self.street_yaw, self.map_side = global_from_street(rng, self.street)
        self.mesh = solids.street_mesh(self.street, self.global_from_street)
        self.item_category = np.array([writer.category_index[i.category] for i in self.street.items], np.uint8)
        self.reflectivity = np.array([REFLECTIVITY[i.category] for i in self.street.items])[self.mesh.face_item]
        light = np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), 1.0])
        self.light = light / np.linalg.norm(light)
        period = KEYFRAME_PERIOD_US // (sweeps + 1)
        self.times = [START_US + index * 3_600_000_000 + j * period for j in range(keyframes * (sweeps + 1))]
        self.path = rig.trajectory(rng, self.street.ego_lane_y, (self.times[-1] - self.times[0]) / 1e6 + 0.1)
        self.calibrations = {"LIDAR_TOP": rig.lidar_calibration(),
                             **{c: rig.camera_calibration(c, rng, hw) for c in rig.CAMERAS}}
        self.logfile = f"n015-synthetic-s{writer.seed}-{index:03d}"
        self.samples = [self.token("sample", k) for k in range(keyframes)]
        self.chains: dict[str, list[dict[str, Any]]] = {c: [] for c in self.calibrations}
        self.seen: dict[int, list[dict[str, Any]]] = {}  # item -> its keyframe annotations

    def token(self, *keys: Any) -> str:
        """A token of this scene's record."""
        return token(self.writer.seed, self.index, *keys)

    def write(self) -> list[str]:
        """Ray-cast and write every sweep and image, then the scene's records; return its samples."""
        tables = self.writer.tables
        log = self.token("log")
        tables["log"].append({"token": log, "logfile": self.logfile, "vehicle": "n015",
                              "date_captured": "2018-07-24", "location": "synthetic-street"})
        map_token = self.token("map")
        mask = drivable_mask(self.street, self.global_from_street, self.map_side)
        Image.fromarray(mask).save(self.writer.out / "maps" / f"{map_token}.png")
        tables["map"].append({"token": map_token, "category": "semantic_prior",
                              "filename": f"maps/{map_token}.png", "log_tokens": [log]})
        for channel, cal in self.calibrations.items():
            tables["calibrated_sensor"].append({
                "token": self.token("calibrated_sensor", channel), "sensor_token": token("sensor", channel),
                "translation": list(cal.translation), "rotation": list(cal.rotation.elements),
                "camera_intrinsic": [] if cal.intrinsics is None else cal.intrinsics.tolist()})
        for j, t_us in enumerate(self.times):
            k, is_key = divmod(j, self.sweeps + 1)[0], j % (self.sweeps + 1) == self.sweeps
            self.lidar(j, k, t_us, is_key)
            if is_key:
                for channel in rig.CAMERAS:
                    self.camera(channel, k, t_us + rig.camera_offset_us(channel, self.rng))
        for chain in self.chains.values():
            for a, b, c in zip([None] + chain[:-1], chain, chain[1:] + [None], strict=True):
                b["prev"], b["next"] = a["token"] if a else "", c["token"] if c else ""
            tables["sample_data"].extend(chain)
        scene = self.token("scene")
        n = len(self.samples)
        for k, sample in enumerate(self.samples):
            tables["sample"].append({"token": sample, "timestamp": self.times[k * (self.sweeps + 1) + self.sweeps],
                                     "scene_token": scene, "prev": self.samples[k - 1] if k else "",
                                     "next": self.samples[k + 1] if k + 1 < n else ""})
        tables["scene"].append({"token": scene, "log_token": log, "nbr_samples": n, "name": self.name,
                                "first_sample_token": self.samples[0], "last_sample_token": self.samples[-1],
                                "description": f"synthetic street, road {2 * self.street.road_half:.1f} m wide, "
                                               f"ego {self.path.speed:.1f} m/s"})
        self.annotate()
        return self.samples

    def ego(self, t_us: int) -> tuple[np.ndarray, str]:
        """global_from_ego at t_us, with its ego_pose record written (one per sample_data)."""
        position, yaw = self.path.pose((t_us - self.times[0]) / 1e6)
        translation = (self.global_from_street @ np.append(position, 1.0))[:3]
        rotation = Quaternion(axis=[0.0, 0.0, 1.0], angle=self.street_yaw + yaw)
        poses = self.writer.tables["ego_pose"]
        pose_token = self.token("ego_pose", t_us, len(poses))
        poses.append({"token": pose_token, "timestamp": t_us, "translation": translation.tolist(),
                      "rotation": list(rotation.elements)})
        return transform_matrix(translation, rotation), pose_token

    def sample_data(self, channel: str, key: Any, k: int, pose: str, t_us: int, filename: str,
                    is_key: bool) -> dict[str, Any]:
        """A sample_data record, appended to its channel's chain."""
        record = {"token": self.token("sample_data", channel, key), "sample_token": self.samples[k],
                  "ego_pose_token": pose, "calibrated_sensor_token": self.token("calibrated_sensor", channel),
                  "timestamp": t_us, "fileformat": "pcd" if channel == "LIDAR_TOP" else "jpg",
                  "is_key_frame": is_key, "height": 0 if channel == "LIDAR_TOP" else self.hw[0],
                  "width": 0 if channel == "LIDAR_TOP" else self.hw[1], "filename": filename}
        self.chains[channel].append(record)
        return record

    def lidar(self, j: int, k: int, t_us: int, is_key: bool) -> None:
        """Sweep j (of sample k): points, and for a keyframe its lidarseg labels and annotations."""
        global_from_ego, pose = self.ego(t_us)
        cal = self.calibrations["LIDAR_TOP"]
        global_from_lidar = global_from_ego @ transform_matrix(cal.translation, cal.rotation)
        sweep = lidar.cast_sweep(self.mesh.render, global_from_lidar, self.reflectivity, self.rng)
        filename = f"{'samples' if is_key else 'sweeps'}/LIDAR_TOP/{self.logfile}__LIDAR_TOP__{t_us}.pcd.bin"
        cloud = np.column_stack([sweep.points, sweep.intensity, sweep.ring]).astype(np.float32)
        cloud.tofile(self.writer.out / filename)
        record = self.sample_data("LIDAR_TOP", j, k, pose, t_us, filename, is_key)
        if not is_key:
            return
        hit_item = self.mesh.face_item[sweep.face]
        labels = f"lidarseg/{self.writer.version}/{record['token']}_lidarseg.bin"
        self.item_category[hit_item].tofile(self.writer.out / labels)
        self.writer.tables["lidarseg"].append({"token": record["token"], "sample_data_token": record["token"],
                                               "filename": labels})
        counts = np.bincount(hit_item, minlength=len(self.street.items))
        for i in np.flatnonzero(counts):
            if self.street.items[i].annotated:
                self.seen.setdefault(int(i), []).append({"sample": self.samples[k], "num_lidar_pts": int(counts[i])})

    def camera(self, channel: str, k: int, t_us: int) -> None:
        """Render and write the image of one camera of sample k, exposed at t_us."""
        global_from_ego, pose = self.ego(t_us)
        cal = self.calibrations[channel]
        global_from_camera = global_from_ego @ transform_matrix(cal.translation, cal.rotation)
        _, image, face = render.render(self.mesh.render, global_from_camera, cal.intrinsics, self.hw, self.light)
        filename = f"samples/{channel}/{self.logfile}__{channel}__{t_us}.jpg"
        Image.fromarray(sky(image, face)).save(self.writer.out / filename, quality=JPEG_QUALITY)
        self.sample_data(channel, k, k, pose, t_us, filename, True)

    def annotate(self) -> None:
        """Instance and sample_annotation records of every thing the LiDAR hit in some keyframe."""
        tables = self.writer.tables
        for i, seen in self.seen.items():
            item = self.street.items[i]
            instance = self.token("instance", i)
            tokens = [self.token("annotation", i, n) for n in range(len(seen))]
            box = box_record(item, self.global_from_street, self.street_yaw)
            for n, ann in enumerate(seen):
                tables["sample_annotation"].append({
                    "token": tokens[n], "sample_token": ann["sample"], "instance_token": instance,
                    "visibility_token": "4",
                    "attribute_tokens": [token("attribute", item.attribute)] if item.attribute else [],
                    **box, "prev": tokens[n - 1] if n else "", "next": tokens[n + 1] if n + 1 < len(seen) else "",
                    "num_lidar_pts": ann["num_lidar_pts"], "num_radar_pts": 0})
            tables["instance"].append({"token": instance, "category_token": token("category", item.category),
                                       "nbr_annotations": len(seen), "first_annotation_token": tokens[0],
                                       "last_annotation_token": tokens[-1]})


def generate_nuscenes(out: Path, scenes: int, seed: int, keyframes: int = 6, *, sweeps: int = 1,
                      version: str = "v1.0-mini", val: int | None = None,
                      image_hw: tuple[int, int] = rig.IMAGE_HW,
                      on_scene: Callable[[str], None] | None = None) -> list[str]:
    """Write ``scenes`` synthetic drives under ``out`` as a nuScenes ``version``; return scene names.

    ``val`` scenes (default a quarter, at least one when there are two or more) take val split
    names, the rest train names; each drive has ``keyframes`` samples and ``sweeps`` LiDAR sweeps
    before each keyframe.
    """
    if scenes < 1 or keyframes < 1 or sweeps < 0:
        raise ValueError("scenes and keyframes must be at least 1 and sweeps at least 0")
    n_val = (max(1, scenes // 4) if scenes >= 2 else 0) if val is None else val
    if not 0 <= n_val <= scenes:
        raise ValueError(f"val must be in [0, {scenes}], got {n_val}")
    names = scene_names(version, scenes - n_val, n_val)
    writer = Writer(out, version, seed)
    split_tokens: dict[str, list[str]] = {"train": [], "val": []}
    for index, name in enumerate(names):
        tokens = Drive(writer, index, name, keyframes, sweeps, image_hw).write()
        split_tokens["train" if index < scenes - n_val else "val"] += tokens
        if on_scene is not None:
            on_scene(name)
    writer.save()
    for split, tokens in split_tokens.items():
        (writer.out / f"nuscenes_{split}.txt").write_text("".join(f"{t}\n" for t in tokens))
    return names
