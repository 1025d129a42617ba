"""Synthetic nuScenes drive: loadable by nuscenes-devkit, renderable, and consistent with itself."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
from nuscenes import NuScenes
from nuscenes.utils.geometry_utils import points_in_box
from nuscenes.utils.splits import create_splits_scenes
from PIL import Image
from typer.testing import CliRunner

from pipeline.datasets.nuscenes import NuScenesReader
from pipeline.datasets.synthetic.__main__ import app
from pipeline.datasets.synthetic.nuscenes import generate_nuscenes
from pipeline.labels.pairs import pairs_stage
from pipeline.stages import stage_params

matplotlib.use("Agg")
HW = (90, 160)
SEED = 1
CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_FRONT_LEFT")
PARAMS = stage_params("scenes", {"version": "v1.0-mini", "sweeps": 1, "image_size": None},
                      dataset="synthetic-nuscenes")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nuscenes")
    generate_nuscenes(out, scenes=2, seed=SEED, keyframes=3, sweeps=1, image_hw=HW)
    return out


@pytest.fixture(scope="module")
def nusc(root: Path) -> NuScenes:
    return NuScenes("v1.0-mini", str(root), verbose=False)


def test_devkit_loads_the_tables_and_renders_a_cloud_in_an_image(nusc: NuScenes, root: Path, tmp_path: Path):
    assert sorted(s["name"] for s in nusc.scene) == ["scene-0061", "scene-0103"]
    splits = create_splits_scenes()
    assert "scene-0061" in splits["mini_train"] and "scene-0103" in splits["mini_val"]
    assert len(nusc.sample) == 6 and len(nusc.lidarseg) == 6 and len(nusc.map) == 2
    assert len(nusc.sample_data) == 6 * 2 + 6 * 6  # keyframe + one sweep, six cameras
    assert len(nusc.category) == 32 and len(nusc.sample_annotation) > 20
    for sample in nusc.sample:
        assert set(sample["data"]) == {"LIDAR_TOP", *CAMERAS}
    nusc.render_pointcloud_in_image(nusc.sample[0]["token"], camera_channel="CAM_BACK", show_lidarseg=True,
                                    out_path=str(tmp_path / "lidarseg.png"), verbose=False)
    matplotlib.pyplot.close("all")
    with Image.open(tmp_path / "lidarseg.png") as im:
        assert im.width > 100 and im.height > 50 and np.asarray(im).std() > 10


def test_drive_has_street_classes_and_hdl32_like_sweeps(nusc: NuScenes, root: Path):
    reader = NuScenesReader(root, PARAMS)
    classes = set()
    for record in nusc.sample_data:
        if record["channel"] != "LIDAR_TOP":
            continue
        cloud = np.fromfile(root / record["filename"], np.float32).reshape(-1, 5)
        assert 20000 < len(cloud) < 40000
        assert 0.9 < np.linalg.norm(cloud[:, :3], axis=1).min() and np.linalg.norm(cloud[:, :3], axis=1).max() < 70
        assert cloud[:, 3].min() >= 0 and cloud[:, 3].max() <= 255 and cloud[:, 3].std() > 5
        assert set(np.unique(cloud[:, 4])) <= set(range(32)) and len(np.unique(cloud[:, 4])) > 20
        if record["is_key_frame"]:
            fine = np.fromfile(root / nusc.get("lidarseg", record["token"])["filename"], np.uint8)
            assert len(fine) == len(cloud)
            classes |= set(reader.labels_lut[fine].tolist()) - {-1}
    assert len(classes) >= 10


def test_ego_drives_on_the_map_drivable_area(nusc: NuScenes):
    for scene in nusc.scene:
        mask = nusc.get("map", nusc.get("log", scene["log_token"])["map_token"])["mask"]
        sample = nusc.get("sample", scene["first_sample_token"])
        poses = [nusc.get("ego_pose", nusc.get("sample_data", sd)["ego_pose_token"])["translation"]
                 for sd in sample["data"].values()]
        xy = np.array(poses)[:, :2]
        assert mask.is_on_mask(xy[:, 0], xy[:, 1]).all()
        assert not mask.is_on_mask(xy[:, 0] + 100.0, xy[:, 1] + 100.0).all()


def test_cameras_fire_off_the_lidar_time_with_their_own_ego_pose(nusc: NuScenes):
    """The projection chain needs both ego poses: they differ by centimetres to decimetres."""
    moved = []
    for sample in nusc.sample:
        lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        lidar_pose = np.array(nusc.get("ego_pose", lidar["ego_pose_token"])["translation"])
        for channel in CAMERAS:
            cam = nusc.get("sample_data", sample["data"][channel])
            assert 0 < abs(cam["timestamp"] - lidar["timestamp"]) < 30_000 or channel == "CAM_FRONT"
            moved.append(np.linalg.norm(np.array(nusc.get("ego_pose", cam["ego_pose_token"])["translation"])
                                        - lidar_pose))
    assert max(moved) > 0.08 and np.median(moved) > 0.01


def test_annotation_boxes_hold_their_lidar_points(nusc: NuScenes, root: Path):
    for sample in nusc.sample:
        lidar = sample["data"]["LIDAR_TOP"]
        path, boxes, _ = nusc.get_sample_data(lidar)
        points = np.fromfile(path, np.float32).reshape(-1, 5)[:, :3].T
        assert boxes
        for box in boxes:
            box.wlh = box.wlh + 0.1  # 5 cm around the surfaces (1 cm range noise)
            inside = points_in_box(box, points).sum()
            assert inside >= nusc.get("sample_annotation", box.token)["num_lidar_pts"] > 0


def test_images_agree_with_the_geometry(root: Path):
    """Projected road points land on grey pixels, vegetation points on green ones, none on the sky."""
    reader = NuScenesReader(root, PARAMS)
    names = ["driveable surface", "vegetation"]
    hits = {name: [] for name in names}
    for token in reader.scene_ids(["train", "val"]):
        record = reader.read(token)
        pairs = pairs_stage({"scenes": record}, stage_params("pairs", {"occlusion": True}, dataset="synthetic-nuscenes"))
        frame = np.repeat(np.arange(len(record["cameras"])), np.diff(pairs["frame_offsets"]))
        rgb = record["color"][frame, pairs["pixel"][:, 0], pairs["pixel"][:, 1]].astype(int)
        labels = record["labels"][pairs["point"]]
        sky = (rgb[:, 2] > rgb[:, 0] + 40) & (rgb[:, 2] > 180)
        assert sky.mean() < 0.01
        for c, name in enumerate(["barrier", "bicycle", "bus", "car", "construction vehicle", "motorcycle",
                                  "pedestrian", "traffic cone", "trailer", "truck", "driveable surface",
                                  "other flat", "sidewalk", "terrain", "manmade", "vegetation"]):
            if name in hits:
                hits[name].append(rgb[labels == c])
    road, green = np.concatenate(hits["driveable surface"]), np.concatenate(hits["vegetation"])
    grey = (np.ptp(road, axis=1) < 25) & (road.mean(axis=1) < 110)
    assert len(road) > 1000 and grey.mean() > 0.9
    greenish = (green[:, 1] > green[:, 0] + 15) & (green[:, 1] > green[:, 2] + 15)
    assert len(green) > 50 and greenish.mean() > 0.8


def test_a_scene_depends_only_on_seed_and_index(root: Path, tmp_path: Path):
    """A one-drive run with the same settings writes the first drive's files byte for byte."""
    generate_nuscenes(tmp_path, scenes=1, seed=SEED, keyframes=3, sweeps=1, val=0, image_hw=HW)
    for sub in ("sweeps/LIDAR_TOP", "samples/LIDAR_TOP", "samples/CAM_BACK", "lidarseg/v1.0-mini"):
        for path in (tmp_path / sub).iterdir():
            assert path.read_bytes() == (root / sub / path.name).read_bytes()


def test_cli_generates_and_rejects_too_many_mini_scenes(tmp_path: Path):
    runner = CliRunner()
    bad = runner.invoke(app, ["nuscenes", "--out", str(tmp_path / "bad"), "--scenes", "11"])
    assert bad.exit_code == 2 and "v1.0-mini has 8 train and 2 val" in bad.output
    assert not (tmp_path / "bad").exists()
    ok = runner.invoke(app, ["nuscenes", "--out", str(tmp_path / "ok"), "--scenes", "1", "--keyframes", "1",
                             "--sweeps", "0", "--height", "36", "--width", "64"])
    assert ok.exit_code == 0, ok.output
    nusc = NuScenes("v1.0-mini", str(tmp_path / "ok"), verbose=False)
    assert [s["name"] for s in nusc.scene] == ["scene-0061"] and len(nusc.sample) == 1
