"""Broken nuScenes input fails per sample with the sample token and the file; the rest is processed."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from nuscenes import NuScenes

from pipeline import store
from pipeline.datasets.nuscenes import NuScenesReader
from pipeline.datasets.synthetic.nuscenes import generate_nuscenes
from pipeline.errors import SceneError
from pipeline.runner import RunConfig, run
from pipeline.stages import load_graph, stage_params

HW = (48, 80)
PARAMS = stage_params("scenes", {"version": "v1.0-mini", "sweeps": 1, "image_size": None},
                      dataset="synthetic-nuscenes")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nuscenes")
    generate_nuscenes(out, scenes=2, seed=7, keyframes=2, sweeps=0, image_hw=HW)
    return out


@pytest.fixture
def raw(pristine: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "raw"))


def sample_files(root: Path, token: str) -> dict[str, Path]:
    """LiDAR, lidarseg and camera files of one sample, by channel (lidarseg as 'lidarseg')."""
    nusc = NuScenes("v1.0-mini", str(root), verbose=False)
    data = nusc.get("sample", token)["data"]
    files = {channel: root / nusc.get("sample_data", sd)["filename"] for channel, sd in data.items()}
    files["lidarseg"] = root / nusc.get("lidarseg", data["LIDAR_TOP"])["filename"]
    return files


def test_missing_camera_image_and_lidarseg_file_fail_only_their_samples(raw: Path, tmp_path: Path):
    samples = (raw / "nuscenes_train.txt").read_text().split() + (raw / "nuscenes_val.txt").read_text().split()
    no_camera, no_labels = samples[0], samples[3]
    camera = sample_files(raw, no_camera)["CAM_BACK"]
    labels = sample_files(raw, no_labels)["lidarseg"]
    camera.unlink()
    labels.unlink()
    with pytest.raises(AssertionError, match="label files"):  # the devkit alone refuses the dataset
        NuScenes("v1.0-mini", str(raw), verbose=False)
    cfg = RunConfig(dataset="synthetic-nuscenes", data_root=raw, store_root=str(tmp_path / "stores"),
                    stages=("scenes",), workers=0)
    (report,) = run(load_graph(), cfg)
    assert report.done == len(samples) - 1
    assert list(report.failed) == [no_labels]
    line = report.failed[no_labels]
    assert no_labels in line and str(labels) in line and "lidarseg" in line and "missing" in line
    (warning,) = report.warnings
    assert no_camera in warning and str(camera) in warning and "camera image missing" in warning
    rec = store.read_scene(tmp_path / "stores", "scenes", no_camera)
    assert rec["cameras"] == ["CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK_LEFT", "CAM_FRONT_LEFT"]
    assert rec["frame_ids"].tolist() == [0, 1, 2, 4, 5] and rec["color"].shape[0] == 5
    with pytest.raises(SceneError) as err:
        NuScenesReader(raw, PARAMS).read(no_labels)
    assert err.value.path == str(labels) and no_labels in err.value.reason


def test_missing_or_corrupt_lidar_and_labels_name_the_sample_and_file(raw: Path):
    samples = (raw / "nuscenes_train.txt").read_text().split()
    lidar = sample_files(raw, samples[0])["LIDAR_TOP"]
    labels = sample_files(raw, samples[1])["lidarseg"]
    lidar.unlink()
    reader = NuScenesReader(raw, PARAMS)
    with pytest.raises(SceneError, match="LiDAR file of sample .* is missing") as err:
        reader.read(samples[0])
    assert err.value.path == str(lidar) and samples[0] in err.value.reason
    fine = np.fromfile(labels, np.uint8)
    fine[:-1].tofile(labels)
    with pytest.raises(SceneError, match="labels but the LiDAR keyframe"):
        reader.read(samples[1])
    fine[0] = 200
    fine.tofile(labels)
    with pytest.raises(SceneError, match=r"category indices \[200\]"):
        reader.read(samples[1])
    with pytest.raises(SceneError, match="not a sample token"):
        reader.read("0" * 32)


def test_all_cameras_missing_fails_the_sample(raw: Path):
    token = (raw / "nuscenes_val.txt").read_text().split()[0]
    for channel, path in sample_files(raw, token).items():
        if channel.startswith("CAM_"):
            path.unlink()
    with pytest.raises(SceneError, match="no usable camera image .*camera image missing: 6"):
        NuScenesReader(raw, PARAMS).read(token)
