"""Pairs on nuScenes equal nuscenes-devkit's map_pointcloud_to_image (same points, same pixels).

The devkit keeps a LiDAR point in a camera when depth > min_dist and 1 < u < W-1, 1 < v < H-1,
after moving the cloud step by step (lidar -> ego -> global -> ego' -> camera) in float32. The
reference here repeats exactly those steps with the devkit's own classes but keeps the point
indices; it is checked against map_pointcloud_to_image's output, then evaluated in float64 too,
and the pairs stage (with the dataset's params from stages.yaml) must equal the float64
reference exactly. The float32 devkit differs from it only by its own rounding (< TOL px).
"""
from __future__ import annotations

import os.path as osp

import numpy as np
import pytest
from nuscenes.utils.data_classes import LidarPointCloud
from nuscenes.utils.geometry_utils import view_points
from pyquaternion import Quaternion

from pipeline.datasets.nuscenes import NuScenesReader
from pipeline.datasets.synthetic.nuscenes import generate_nuscenes
from pipeline.labels.pairs import pairs_stage
from pipeline.stages import load_graph, stage_params

HW = (90, 160)
TOL = 5e-3  # px: float32 rounding of the devkit's chain at global coordinates of ~100 m
PARAMS = stage_params("scenes", {"version": "v1.0-mini", "sweeps": 1, "image_size": None},
                      dataset="synthetic-nuscenes")


@pytest.fixture(scope="module")
def drive(tmp_path_factory) -> NuScenesReader:
    root = tmp_path_factory.mktemp("nuscenes")
    generate_nuscenes(root, scenes=2, seed=11, keyframes=3, sweeps=0, image_hw=HW)
    return NuScenesReader(root, PARAMS)


def devkit_steps(nusc, lidar_token: str, camera_token: str, min_dist: float, dtype: type
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Indices and (u, v) of the points map_pointcloud_to_image keeps, by its own steps in ``dtype``."""
    cam = nusc.get("sample_data", camera_token)
    pointsensor = nusc.get("sample_data", lidar_token)
    pc = LidarPointCloud.from_file(osp.join(nusc.dataroot, pointsensor["filename"]))
    pc.points = pc.points.astype(dtype)
    cs = nusc.get("calibrated_sensor", pointsensor["calibrated_sensor_token"])
    pc.rotate(Quaternion(cs["rotation"]).rotation_matrix)
    pc.translate(np.array(cs["translation"]))
    pose = nusc.get("ego_pose", pointsensor["ego_pose_token"])
    pc.rotate(Quaternion(pose["rotation"]).rotation_matrix)
    pc.translate(np.array(pose["translation"]))
    pose = nusc.get("ego_pose", cam["ego_pose_token"])
    pc.translate(-np.array(pose["translation"]))
    pc.rotate(Quaternion(pose["rotation"]).rotation_matrix.T)
    cs = nusc.get("calibrated_sensor", cam["calibrated_sensor_token"])
    pc.translate(-np.array(cs["translation"]))
    pc.rotate(Quaternion(cs["rotation"]).rotation_matrix.T)
    depths = pc.points[2, :]
    uv = view_points(pc.points[:3, :], np.array(cs["camera_intrinsic"]), normalize=True)[:2]
    width, height = cam["width"], cam["height"]
    keep = (depths > min_dist) & (uv[0] > 1) & (uv[0] < width - 1) & (uv[1] > 1) & (uv[1] < height - 1)
    return np.flatnonzero(keep), uv


def test_pairs_equal_the_devkit_for_every_camera_of_every_sample(drive: NuScenesReader):
    assert dict(load_graph().dataset("synthetic-nuscenes").stage_params["pairs"]) == {"min_depth": 1.0, "border": 1}
    params = stage_params("pairs", dataset="synthetic-nuscenes")
    nusc = drive.nusc
    samples = drive.scene_ids(["train", "val"])
    assert len(samples) == 6
    frames = pairs_total = 0
    worst = 0.0
    for token in samples:
        record = drive.read(token)
        pairs = pairs_stage({"scenes": record}, params)
        sample = nusc.get("sample", token)
        lidar_token = sample["data"]["LIDAR_TOP"]
        for k, channel in enumerate(record["cameras"]):
            camera_token = sample["data"][channel]
            devkit_points, _, _ = nusc.explorer.map_pointcloud_to_image(lidar_token, camera_token, min_dist=1.0)
            idx32, uv32 = devkit_steps(nusc, lidar_token, camera_token, 1.0, np.float32)
            np.testing.assert_array_equal(uv32[:, idx32], devkit_points[:2])  # the reference is the devkit
            idx, uv = devkit_steps(nusc, lidar_token, camera_token, 1.0, np.float64)
            lo, hi = pairs["frame_offsets"][k], pairs["frame_offsets"][k + 1]
            np.testing.assert_array_equal(pairs["point"][lo:hi], idx, err_msg=f"{token} {channel}")
            rows, cols = np.floor(uv[1, idx] + 0.5), np.floor(uv[0, idx] + 0.5)  # DESIGN.md: half up
            np.testing.assert_array_equal(pairs["pixel"][lo:hi, 0], rows, err_msg=f"{token} {channel}")
            np.testing.assert_array_equal(pairs["pixel"][lo:hi, 1], cols, err_msg=f"{token} {channel}")
            # the devkit's float32 chain keeps the same points up to its own rounding
            near_edge = ((np.abs(uv - 1) < TOL) | (np.abs(uv - np.array(HW[::-1])[:, None] + 1) < TOL)).any(0)
            assert set(np.setxor1d(idx32, idx)) <= set(np.flatnonzero(near_edge))
            common = np.intersect1d(idx32, idx)
            worst = max(worst, float(np.abs(uv32[:, common] - uv[:, common]).max()))
            frames += 1
            pairs_total += hi - lo
    assert frames == 36 and pairs_total > 20000
    assert worst < TOL


def test_resized_frames_keep_the_geometry(drive: NuScenesReader):
    """Stored at half size, every pair's pixel is the native pixel halved (within a pixel)."""
    token = drive.scene_ids(["train"])[0]
    params = stage_params("pairs", {"min_depth": 1.0, "border": 1})
    native = drive.read(token)
    half = NuScenesReader(drive.root, {**PARAMS, "image_size": [HW[0] // 2, HW[1] // 2]}).read(token)
    assert half["color"].shape[1:3] == (HW[0] // 2, HW[1] // 2)
    full_pairs = pairs_stage({"scenes": native}, params)
    half_pairs = pairs_stage({"scenes": half}, params)
    for k in range(len(native["cameras"])):
        a = slice(*full_pairs["frame_offsets"][k:k + 2])
        b = slice(*half_pairs["frame_offsets"][k:k + 2])
        common, ia, ib = np.intersect1d(full_pairs["point"][a], half_pairs["point"][b], return_indices=True)
        assert len(common) > 0.9 * len(half_pairs["point"][b])
        # pixel centres: (p + 0.5) / 2 - 0.5 is the half-size coordinate of native pixel p
        expected = (full_pairs["pixel"][a][ia] + 0.5) / 2 - 0.5
        assert np.abs(half_pairs["pixel"][b][ib] - expected).max() <= 1.0


def test_occlusion_test_removes_hidden_points(drive: NuScenesReader):
    """The optional z-buffer keeps a subset; behind a nearer point in the same pixel is dropped."""
    record = drive.read(drive.scene_ids(["val"])[0])
    plain = pairs_stage({"scenes": record}, stage_params("pairs", {"min_depth": 1.0, "border": 1}))
    occluded = pairs_stage({"scenes": record},
                           stage_params("pairs", {"min_depth": 1.0, "border": 1, "occlusion": True}))
    assert 0 < len(occluded["point"]) < len(plain["point"])
    frame = np.repeat(np.arange(len(record["cameras"])), np.diff(occluded["frame_offsets"]))
    key = frame * HW[0] * HW[1] + occluded["pixel"][:, 0].astype(np.int64) * HW[1] + occluded["pixel"][:, 1]
    z = np.einsum("fij,fj->fi", record["world_to_camera"][frame][:, :3, :3],
                  record["points"][occluded["point"]].astype(np.float64))[:, 2]
    z += record["world_to_camera"][frame][:, 2, 3]
    order = np.lexsort((z, key))
    first = np.r_[True, key[order][1:] != key[order][:-1]]
    nearest = np.repeat(z[order][first], np.diff(np.r_[np.flatnonzero(first), len(order)]))
    assert (z[order] - nearest < 0.05 + 1e-4).all()
