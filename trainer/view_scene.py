"""One scene of a store as the viewer shows it: geometry, ground truth, the pair labels voted onto
points, geometric sets and the kept frames (camera poses, images, 2D pseudo-label images)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pipeline import store
from pipeline.errors import PipelineError
from pipeline.labels.maskclip3d import voted_point_labels
from pipeline.labelsets import read_eval_labels
from trainer.view_colors import intensity_colors, label_colors

VOTED = {"pseudo": "pseudo-labels (voted)", "refine": "refined labels (voted)"}
FILL_PX = 3  # a pair's label colours the pixels up to this far from it in the 2D pseudo-label image


@dataclass
class Frame:
    """A kept frame: its name, pose in the scene's point frame (OpenCV axes) and pinhole."""

    name: str
    camera_from_scene: np.ndarray  # f64[4, 4]
    intrinsics: np.ndarray         # f64[3, 3]
    hw: tuple[int, int]

    @property
    def vertical_fov(self) -> float:
        """Radians, from the focal length in rows."""
        return float(2 * np.arctan(self.hw[0] / (2 * self.intrinsics[1, 1])))


@dataclass
class Scene:
    """What the viewer draws of one scene; `labels` maps a layer name to a class per point (-1: none)."""

    name: str
    points: np.ndarray   # f32[N, 3]
    faces: np.ndarray    # i32[F, 3], F = 0 for a point cloud
    base_name: str       # "RGB", or "intensity" for LiDAR
    base: np.ndarray     # u8[N, 3]
    gt: np.ndarray       # i16[N], -1 = ignore
    labels: dict[str, np.ndarray]
    set_id: np.ndarray | None
    frames: list[Frame]


def _stage_scene(store_root: str, stage: str, scene: str) -> dict | None:
    """The scene's lazy arrays of `stage`, or None where that stage has no finished scene."""
    if not store.stage_exists(store_root, stage):
        return None
    try:
        return store.open_scene(store_root, stage, scene)
    except PipelineError:
        return None


def load_scene(store_root: str, scene: str, num_classes: int, class_set: str | None) -> Scene:
    """Read `scene` from the stores under `store_root` (the scenes stage; the others where done)."""
    arrays = store.open_scene(store_root, "scenes", scene)
    attrs = store.stage_attrs(store_root, "scenes", scene)
    points = np.asarray(arrays["points"][...], np.float32)
    lidar = "intensity" in arrays
    base = intensity_colors(arrays["intensity"][...]) if lidar else np.asarray(arrays["colors"][...])
    faces = arrays["faces"][...] if "faces" in arrays else np.zeros((0, 3), np.int32)
    labels = {}
    if _stage_scene(store_root, "pairs", scene) is not None:
        labels = {title: voted_point_labels(store_root, stage, scene, len(points), num_classes)
                  for stage, title in VOTED.items() if _stage_scene(store_root, stage, scene) is not None}
    geosets = _stage_scene(store_root, "geosets", scene)
    hw = tuple(int(v) for v in attrs["image_hw"])
    names = attrs.get("cameras") or [f"frame {i}" for i in arrays["frame_ids"][...]]
    frames = [Frame(str(name), pose, k, hw) for name, pose, k in
              zip(names, arrays["world_to_camera"][...], arrays["intrinsics"][...], strict=True)]
    return Scene(scene, points, np.asarray(faces, np.int32), "intensity" if lidar else "RGB", base,
                 read_eval_labels(store_root, scene, class_set), labels,
                 None if geosets is None else geosets["set_id"][...], frames)


def frame_image(store_root: str, scene: str, index: int) -> np.ndarray:
    """u8[H, W, 3]: the stored image of frame `index`."""
    return np.asarray(store.open_scene(store_root, "scenes", scene)["color"][index])


def frame_label_image(store_root: str, scene: str, index: int, num_classes: int) -> np.ndarray | None:
    """u8[H, W, 3]: frame `index` with its pairs' pseudo-labels painted over it (each pair's class
    colour spread to the pixels within FILL_PX of it); None without pairs and pseudo-labels."""
    pairs, pseudo = (_stage_scene(store_root, s, scene) for s in ("pairs", "pseudo"))
    if pairs is None or pseudo is None:
        return None
    lo, hi = (int(v) for v in pairs["frame_offsets"][index:index + 2])
    pixel = np.asarray(pairs["pixel"][lo:hi], np.int64)
    image = frame_image(store_root, scene, index)
    if hi == lo:
        return (0.4 * image).astype(np.uint8)
    painted = np.full(image.shape[:2], -1, np.int64)
    painted[pixel[:, 0], pixel[:, 1]] = pseudo["label"][lo:hi]
    distance, (rows, cols) = ndimage.distance_transform_edt(painted < 0, return_indices=True)
    near = painted[rows, cols]
    near[distance > FILL_PX] = -1
    colours = label_colors(near.ravel(), num_classes).reshape(image.shape)
    shade = (0.35 * image + 0.65 * colours).astype(np.uint8)
    return np.where((near >= 0)[..., None], shade, (0.4 * image).astype(np.uint8))
