"""nuScenes reader on a synthetic drive: splits, record contents, the 16-class map, sweeps."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nuscenes.eval.lidarseg.utils import LidarsegClassMapper
from nuscenes.utils.data_classes import LidarPointCloud
from nuscenes.utils.splits import create_splits_scenes
from PIL import Image

from pipeline.datasets.nuscenes import NuScenesReader, class_names, fine_to_class
from pipeline.datasets.synthetic.nuscenes import generate_nuscenes
from pipeline.errors import PipelineError
from pipeline.stages import stage_params

HW = (64, 112)
PARAMS = stage_params("scenes", {"version": "v1.0-mini", "sweeps": 1, "image_size": None},
                      dataset="synthetic-nuscenes")

# The nuScenes-lidarseg challenge classes of every fine category, written out from the
# challenge's definition (independent of the devkit's mapper); None = ignored.
CHALLENGE = {
    "noise": None, "animal": None, "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian", "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.personal_mobility": None, "human.pedestrian.police_officer": "pedestrian",
    "human.pedestrian.stroller": None, "human.pedestrian.wheelchair": None,
    "movable_object.barrier": "barrier", "movable_object.debris": None,
    "movable_object.pushable_pullable": None, "movable_object.trafficcone": "traffic cone",
    "static_object.bicycle_rack": None, "vehicle.bicycle": "bicycle", "vehicle.bus.bendy": "bus",
    "vehicle.bus.rigid": "bus", "vehicle.car": "car", "vehicle.construction": "construction vehicle",
    "vehicle.emergency.ambulance": None, "vehicle.emergency.police": None,
    "vehicle.motorcycle": "motorcycle", "vehicle.trailer": "trailer", "vehicle.truck": "truck",
    "flat.driveable_surface": "driveable surface", "flat.other": "other flat",
    "flat.sidewalk": "sidewalk", "flat.terrain": "terrain", "static.manmade": "manmade",
    "static.other": None, "static.vegetation": "vegetation", "vehicle.ego": None,
}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nuscenes")
    generate_nuscenes(out, scenes=2, seed=4, keyframes=2, sweeps=1, image_hw=HW)
    return out


@pytest.fixture(scope="module")
def reader(root: Path) -> NuScenesReader:
    return NuScenesReader(root, PARAMS)


def test_scene_ids_are_the_keyframes_of_the_devkit_splits(root: Path, reader: NuScenesReader):
    splits = create_splits_scenes()
    for split, devkit_split in (("train", "mini_train"), ("val", "mini_val")):
        listed = (root / f"nuscenes_{split}.txt").read_text().split()
        ids = reader.scene_ids([split])
        assert sorted(ids) == sorted(listed) and len(ids) == 2
        assert {reader.nusc.get("scene", reader.nusc.get("sample", t)["scene_token"])["name"]
                for t in ids} <= set(splits[devkit_split])
    assert reader.scene_ids(["test"]) == []
    assert len(reader.scene_ids(["train", "val"])) == 4


def test_record_holds_the_keyframe_cloud_labels_and_six_frames(root: Path, reader: NuScenesReader):
    token = reader.scene_ids(["train"])[0]
    rec = reader.read(token)
    nusc = reader.nusc
    sample = nusc.get("sample", token)
    lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    raw = np.fromfile(root / lidar["filename"], np.float32).reshape(-1, 5)
    np.testing.assert_array_equal(rec["points"], raw[:, :3])
    np.testing.assert_array_equal(rec["intensity"], raw[:, 3])
    assert rec["points"].dtype == rec["intensity"].dtype == np.float32
    assert rec["colors"].shape == (len(raw), 3) and not rec["colors"].any()
    assert "depth" not in rec and "faces" not in rec and rec["has_labels"]
    fine = np.fromfile(root / nusc.get("lidarseg", lidar["token"])["filename"], np.uint8)
    names = class_names()
    expected = [names.index(CHALLENGE[nusc.lidarseg_idx2name_mapping[i]])
                if CHALLENGE[nusc.lidarseg_idx2name_mapping[i]] else -1 for i in fine]
    np.testing.assert_array_equal(rec["labels"], expected)
    assert rec["labels"].dtype == np.int16 and len(np.unique(rec["labels"][rec["labels"] >= 0])) >= 6
    assert rec["cameras"] == ["CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT",
                              "CAM_FRONT_LEFT"]
    assert rec["color"].shape == (6, *HW, 3) and rec["frame_ids"].tolist() == list(range(6))
    for k, channel in enumerate(rec["cameras"]):
        cam = nusc.get("sample_data", sample["data"][channel])
        with Image.open(root / cam["filename"]) as im:
            np.testing.assert_array_equal(rec["color"][k], np.asarray(im.convert("RGB")))
        k_native = np.array(nusc.get("calibrated_sensor", cam["calibrated_sensor_token"])["camera_intrinsic"])
        np.testing.assert_array_equal(rec["intrinsics"][k], k_native)
        assert rec["world_to_camera"][k].shape == (4, 4)
        np.testing.assert_allclose(rec["world_to_camera"][k][3], [0, 0, 0, 1])
    assert rec["skipped_frames"] == {} and rec["scene_name"] in ("scene-0061", "scene-0553")


def test_class_map_agrees_with_the_devkit_for_every_fine_class(reader: NuScenesReader):
    nusc = reader.nusc
    mapper = LidarsegClassMapper(nusc)
    names = class_names()
    assert len(names) == 16 and len(nusc.lidarseg_idx2name_mapping) == 32
    lut = reader.labels_lut
    for index, fine in nusc.lidarseg_idx2name_mapping.items():
        coarse = mapper.fine_name_2_coarse_name_mapping[fine]
        devkit = -1 if coarse == mapper.ignore_class["name"] else names.index(coarse.replace("_", " "))
        assert lut[index] == devkit, fine
        assert lut[index] == (names.index(CHALLENGE[fine]) if CHALLENGE[fine] else -1), fine
        # the devkit's own coarse index order is the class file's (coarse 1..16 -> 0..15)
        assert devkit == mapper.coarse_name_2_coarse_idx_mapping[coarse] - 1 or devkit == -1
    assert set(lut[lut >= 0]) == set(range(16))


def test_class_map_is_built_from_the_category_table_at_run_time(reader: NuScenesReader):
    """Another index order in category.json gives the map of that order, not a fixed table."""
    mapper = LidarsegClassMapper(reader.nusc)
    idx2name = reader.nusc.lidarseg_idx2name_mapping
    shuffled = dict(zip(np.random.default_rng(0).permutation(list(idx2name)).tolist(), idx2name.values(),
                        strict=True))
    lut = fine_to_class(shuffled, mapper.fine_name_2_coarse_name_mapping, "ignore", class_names())
    for index, fine in shuffled.items():
        assert lut[index] == reader.labels_lut[reader.nusc.lidarseg_name2idx_mapping[fine]]
    with pytest.raises(PipelineError, match="not in the devkit's challenge mapping"):
        fine_to_class({0: "vehicle.hovercraft"}, mapper.fine_name_2_coarse_name_mapping, "ignore", class_names())
    with pytest.raises(PipelineError, match="not in"):
        fine_to_class(idx2name, mapper.fine_name_2_coarse_name_mapping, "ignore", class_names()[:-1])


def test_sweeps_are_moved_into_the_keyframe_frame_like_the_devkit(reader: NuScenesReader, root: Path):
    token = reader.scene_ids(["val"])[-1]
    one = reader.read(token)
    two = NuScenesReader(root, {**PARAMS, "sweeps": 2}).read(token)
    n = len(one["points"])
    assert len(two["points"]) > n
    np.testing.assert_array_equal(two["points"][:n], one["points"])
    np.testing.assert_array_equal(two["labels"][:n], one["labels"])
    assert (two["labels"][n:] == -1).all()
    nusc = reader.nusc
    merged, _ = LidarPointCloud.from_file_multisweep(nusc, nusc.get("sample", token), "LIDAR_TOP", "LIDAR_TOP",
                                                     nsweeps=2, min_distance=0.0)
    assert merged.points.shape[1] == len(two["points"])
    np.testing.assert_allclose(two["points"][n:], merged.points[:3, n:].T, atol=1e-4)
    np.testing.assert_array_equal(two["intensity"][n:], merged.points[3, n:])
    # the ego moved between the sweeps: untransformed, the sweep would be off by decimetres
    sweep = nusc.get("sample_data", nusc.get("sample_data", nusc.get("sample", token)["data"]["LIDAR_TOP"])["prev"])
    raw = np.fromfile(root / sweep["filename"], np.float32).reshape(-1, 5)[:, :3]
    assert np.abs(raw - two["points"][n:]).max() > 0.5


def test_split_lists_for_the_trainer(root: Path, tmp_path: Path):
    from typer.testing import CliRunner

    from pipeline.datasets.nuscenes_splits import app

    result = CliRunner().invoke(app, ["--data-root", str(root), "--version", "v1.0-mini", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for split in ("train", "val"):
        written = (tmp_path / f"nuscenes_{split}.txt").read_text().split()
        assert sorted(written) == sorted((root / f"nuscenes_{split}.txt").read_text().split())
    bad = CliRunner().invoke(app, ["--data-root", str(root), "--version", "v1.0-trainval", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "no nuScenes tables" in bad.output
