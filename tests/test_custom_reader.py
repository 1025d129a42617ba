"""The reader for your own scans (`custom` dataset) on a generated room written in its layout,
as a mesh and as a point cloud: the record equals the ScanNet reader's of the same room, broken
frames are skipped and counted, bad input is one line, and the whole graph runs on both."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData, PlyElement
from rooms import QUICK_FUSION

from pipeline import store
from pipeline.clip.model import TINY_CONFIG
from pipeline.datasets.custom import GL_FROM_CV, CustomReader
from pipeline.datasets.scannet import ScanNetReader, scale_intrinsics
from pipeline.datasets.synthetic import generate_scannet
from pipeline.errors import PipelineError, SceneError
from pipeline.runner import RunConfig, run
from pipeline.stages import load_graph

SCENE = "scene0000_00"
FRAMES = 4
PARAMS = {"frame_skip": 1, "image_size": [60, 80], "depth_scale": 1000.0, "camera_axes": "opencv",
          "normal_voxel": 0.05}
SCANNET_PARAMS = {"frame_skip": 1, "image_size": [60, 80], "depth_scale": 1000.0, "frames_root": None}
TINY = {"model_name": "tiny", "pretrained": "none", "model_config": TINY_CONFIG, "device": "cpu"}


def write_custom_scene(scannet_root: Path, out: Path, name: str, cloud: bool) -> Path:
    """The ScanNet-layout room as ``out/<name>`` in the custom layout: one PLY with scannet20
    labels (mesh.ply with faces, or cloud.ply without), intrinsics.txt and frames/."""
    src, dst = scannet_root / "scans" / SCENE, out / name
    (dst / "frames").mkdir(parents=True)
    mesh = PlyData.read(str(src / f"{SCENE}_vh_clean_2.ply"))
    labels = ScanNetReader(scannet_root, SCANNET_PARAMS).read(SCENE)["labels"]
    v = mesh["vertex"].data
    vertex = np.empty(len(v), [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"),
                               ("blue", "u1"), ("label", "i4")])
    for key in ("x", "y", "z", "red", "green", "blue"):
        vertex[key] = v[key]
    vertex["label"] = labels
    elements = [PlyElement.describe(vertex, "vertex"), *([] if cloud else [mesh["face"]])]
    PlyData(elements).write(str(dst / ("cloud.ply" if cloud else "mesh.ply")))
    shutil.copy(src / "intrinsic" / "intrinsic_depth.txt", dst / "intrinsics.txt")
    for i in range(FRAMES):
        shutil.copy(src / "color" / f"{i}.jpg", dst / "frames" / f"{i:04d}.jpg")
        shutil.copy(src / "depth" / f"{i}.png", dst / "frames" / f"{i:04d}.depth.png")
        shutil.copy(src / "pose" / f"{i}.txt", dst / "frames" / f"{i:04d}.pose.txt")
    return dst


@pytest.fixture(scope="module")
def scannet(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scannet_room")
    generate_scannet(root, scenes=1, seed=3, frames=FRAMES, val=0, spacing=0.08, fusion=QUICK_FUSION)
    return root


@pytest.fixture(scope="module")
def custom(scannet: Path, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("custom")
    write_custom_scene(scannet, root, "room_mesh", cloud=False)
    write_custom_scene(scannet, root, "room_cloud", cloud=True)
    return root


@pytest.fixture
def custom_copy(custom: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(custom, tmp_path / "raw"))


def test_mesh_scene_equals_the_scannet_record_of_the_room(scannet: Path, custom: Path):
    expected = ScanNetReader(scannet, SCANNET_PARAMS).read(SCENE)
    rec = CustomReader(custom, PARAMS).read("room_mesh")
    for key in ("points", "colors", "normals", "labels", "faces", "color", "depth", "world_to_camera",
                "intrinsics", "frame_ids"):
        assert rec[key].dtype == expected[key].dtype, key
        np.testing.assert_array_equal(rec[key], expected[key], err_msg=key)
    assert rec["has_labels"] is True and rec["image_hw"] == [60, 80] and rec["skipped_frames"] == {}
    assert len(rec["frame_ids"]) == FRAMES and len(np.unique(rec["labels"])) >= 4
    pose = np.loadtxt(custom / "room_mesh" / "frames" / "0002.pose.txt")
    np.testing.assert_allclose(rec["world_to_camera"][2] @ pose, np.eye(4), atol=1e-9)
    k = np.loadtxt(custom / "room_mesh" / "intrinsics.txt")[:3, :3]
    np.testing.assert_allclose(rec["intrinsics"][2], scale_intrinsics(k, (240, 320), (60, 80)))


def test_cloud_scene_has_no_faces_and_pca_normals(custom: Path):
    mesh = CustomReader(custom, PARAMS).read("room_mesh")
    rec = CustomReader(custom, PARAMS).read("room_cloud")
    np.testing.assert_array_equal(rec["points"], mesh["points"])
    np.testing.assert_array_equal(rec["labels"], mesh["labels"])
    assert rec["faces"].shape == (0, 3) and rec["faces"].dtype == np.int32
    assert rec["normals"].dtype == np.float32
    length = np.linalg.norm(rec["normals"], axis=1)
    assert np.mean(np.abs(length - 1) < 1e-4) > 0.99
    agreement = np.abs(np.einsum("nc,nc->n", rec["normals"], mesh["normals"]))
    assert np.median(agreement) > 0.95  # the mesh's normals, up to sign
    np.testing.assert_array_equal(rec["world_to_camera"], mesh["world_to_camera"])


def write_cloud(path: Path, points: np.ndarray, **extra: np.ndarray) -> None:
    """cloud.ply with x, y, z and the given extra vertex properties."""
    fields = {"x": points[:, 0], "y": points[:, 1], "z": points[:, 2], **extra}
    vertex = np.empty(len(points), [(k, v.dtype) for k, v in fields.items()])
    for key, value in fields.items():
        vertex[key] = value
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(path))


def test_optional_vertex_properties(custom_copy: Path):
    ply = custom_copy / "room_cloud" / "cloud.ply"
    points = CustomReader(custom_copy, PARAMS).read("room_cloud")["points"]
    twice_up = np.full(len(points), 2.0, np.float32)
    zero = np.zeros(len(points), np.float32)
    write_cloud(ply, points, nx=zero, ny=zero, nz=twice_up)
    rec = CustomReader(custom_copy, PARAMS).read("room_cloud")
    assert rec["has_labels"] is False and (rec["labels"] == -1).all() and rec["labels"].dtype == np.int16
    assert rec["colors"].dtype == np.uint8 and not rec["colors"].any()
    np.testing.assert_array_equal(rec["normals"], np.tile([0.0, 0.0, 1.0], (len(points), 1)))
    write_cloud(ply, points, label=np.full(len(points), 1.5, np.float32))
    with pytest.raises(SceneError, match=f"file {ply}: vertex property 'label' must be an integer type"):
        CustomReader(custom_copy, PARAMS).read("room_cloud")
    write_cloud(ply, points, red=np.zeros(len(points), np.uint8))
    with pytest.raises(SceneError, match="PLY vertices have red but lack green, blue"):
        CustomReader(custom_copy, PARAMS).read("room_cloud")


def test_broken_frames_are_skipped_and_counted(custom_copy: Path):
    frames = custom_copy / "room_mesh" / "frames"
    (frames / "0001.pose.txt").write_text("-inf " * 16)
    (frames / "0002.depth.png").unlink()
    (frames / "notes.txt").write_text("taken on a Tuesday")
    rec = CustomReader(custom_copy, PARAMS).read("room_mesh")
    assert rec["frame_ids"].tolist() == [0, 3] and rec["color"].shape == (2, 60, 80, 3)
    assert rec["skipped_frames"] == {
        "pose not finite (-inf/nan)": [str(frames / "0001.pose.txt")],
        "depth frame missing": [str(frames / "0002.depth.png")],
        "not a frame file (<id>.jpg|.jpeg|.png, <id>.depth.png, <id>.pose.txt); ignored": [str(frames / "notes.txt")],
    }


def test_opengl_poses_give_the_same_cameras(custom: Path, custom_copy: Path):
    for pose in (custom_copy / "room_mesh" / "frames").glob("*.pose.txt"):
        np.savetxt(pose, np.loadtxt(pose) @ GL_FROM_CV)  # the same camera in OpenGL axes
    expected = CustomReader(custom, PARAMS).read("room_mesh")["world_to_camera"]
    rec = CustomReader(custom_copy, {**PARAMS, "camera_axes": "opengl"}).read("room_mesh")
    np.testing.assert_allclose(rec["world_to_camera"], expected, atol=1e-12)


def test_missing_intrinsics_is_one_line_naming_the_file(custom_copy: Path, tmp_path: Path):
    missing = custom_copy / "room_cloud" / "intrinsics.txt"
    missing.unlink()
    with pytest.raises(SceneError, match="intrinsics.txt: file is missing"):
        CustomReader(custom_copy, PARAMS).read("room_cloud")
    cfg = RunConfig(dataset="custom", data_root=custom_copy, store_root=str(tmp_path / "stores"),
                    stages=("scenes",), workers=0, overrides={"scenes": {"image_size": [60, 80]}})
    (report,) = run(load_graph(), cfg)
    assert report.done == 1 and list(report.failed) == ["room_cloud"]
    line = report.failed["room_cloud"]
    assert line.startswith(f"scene room_cloud: file {missing}: file is missing") and "\n" not in line


@pytest.mark.parametrize("change, message", [
    (lambda d: (d / "room_mesh" / "cloud.ply").write_bytes((d / "room_mesh" / "mesh.ply").read_bytes()),
     "both mesh.ply and cloud.ply"),
    (lambda d: (d / "room_mesh" / "mesh.ply").unlink(), "no mesh.ply or cloud.ply"),
    (lambda d: shutil.rmtree(d / "room_mesh" / "frames"), "frames: no frames folder"),
    (lambda d: (d / "room_mesh" / "intrinsics.txt").write_text("1 0 0\n0 1 0\n"), "intrinsics must be 3x3 or 4x4"),
])
def test_bad_scene_folders_are_one_clear_line(custom_copy: Path, change, message):
    change(custom_copy)
    with pytest.raises(SceneError, match=message) as info:
        CustomReader(custom_copy, PARAMS).read("room_mesh")
    assert "\n" not in str(info.value)


def test_split_lists_choose_scenes_and_name_a_missing_one(custom_copy: Path):
    reader = CustomReader(custom_copy, PARAMS)
    assert reader.scene_ids(["train", "val"]) == ["room_cloud", "room_mesh"]
    (custom_copy / "train.txt").write_text("room_mesh\n")
    (custom_copy / "val.txt").write_text("room_cloud\n")
    assert reader.scene_ids(["train"]) == ["room_mesh"] and reader.scene_ids(["val"]) == ["room_cloud"]
    (custom_copy / "val.txt").write_text("room_cloud\nroom_kitchen\n")
    with pytest.raises(PipelineError, match=r"val.txt: scene 'room_kitchen' has no folder"):
        reader.scene_ids(["val"])


def test_whole_graph_runs_on_mesh_and_cloud(custom: Path, tmp_path: Path):
    cfg = RunConfig(dataset="custom", data_root=custom, store_root=str(tmp_path / "stores"), workers=0,
                    overrides={"scenes": {"image_size": [64, 80]}, "features": TINY, "text": TINY})
    reports = {r.name: r for r in run(load_graph(), cfg)}
    assert {n: (r.done, r.failed) for n, r in reports.items()} == {
        n: (1 if n == "text" else 2, {})
        for n in ("scenes", "text", "features", "pairs", "pseudo", "geosets", "refine", "vote")}
    methods = {s: store.stage_attrs(cfg.store_root, "geosets", s)["method"] for s in ("room_mesh", "room_cloud")}
    assert methods == {"room_mesh": "felzenszwalb", "room_cloud": "vccs"}
    pairs = store.read_scene(cfg.store_root, "pairs", "room_cloud")["point"]
    assert len(pairs) > 1000
    assert store.read_scene(cfg.store_root, "refine", "room_cloud")["label"].shape == pairs.shape
