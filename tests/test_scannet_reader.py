"""ScanNet reader on the synthetic export: round trip, label map, raw labels, poses, and known raw defects."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from plyfile import PlyData
from rooms import QUICK_FUSION

from pipeline import store
from pipeline.datasets.base import LABELMAPS, load_label_map
from pipeline.datasets.scannet import RAW_LABELS_TSV, ScanNetReader
from pipeline.datasets.synthetic import generate_scannet
from pipeline.runner import RunConfig, run
from pipeline.stages import load_graph

PARAMS = {"frame_skip": 1, "image_size": [120, 160], "depth_scale": 1000.0, "frames_root": None}
FRAMES = 4


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scannet")
    generate_scannet(root, scenes=2, seed=3, frames=FRAMES, val=1, spacing=0.08, fusion=QUICK_FUSION)
    return root


@pytest.fixture
def raw_copy(raw: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(raw, tmp_path / "raw"))


def test_round_trip_counts_labels_and_poses(raw: Path):
    reader = ScanNetReader(raw, PARAMS)
    assert reader.scene_ids(["train"]) == ["scene0000_00"]
    assert reader.scene_ids(["train", "val"]) == ["scene0000_00", "scene0001_00"]
    scene = "scene0000_00"
    rec = reader.read(scene)
    mesh = PlyData.read(str(raw / "scans" / scene / f"{scene}_vh_clean_2.ply"))
    n = mesh["vertex"].count
    assert rec["points"].shape == (n, 3) and rec["colors"].shape == (n, 3)
    assert rec["faces"].shape == (mesh["face"].count, 3)
    np.testing.assert_allclose(np.linalg.norm(rec["normals"], axis=1), 1.0, atol=1e-4)
    nyu = PlyData.read(str(raw / "scans" / scene / f"{scene}_vh_clean_2.labels.ply"))["vertex"]["label"]
    np.testing.assert_array_equal(rec["labels"], load_label_map(LABELMAPS / "scannet20.tsv")[nyu])
    assert rec["raw_label_space"] == "nyu40" and rec["raw_labels"].dtype == np.int32  # no aggregation files
    np.testing.assert_array_equal(rec["raw_labels"], nyu)
    assert rec["labels"].min() >= -1 and rec["labels"].max() < 20 and len(np.unique(rec["labels"])) >= 4
    assert rec["color"].shape == (FRAMES, 120, 160, 3) and rec["depth"].shape == (FRAMES, 120, 160)
    for k, frame in enumerate(rec["frame_ids"]):
        pose = np.loadtxt(raw / "scans" / scene / "pose" / f"{frame}.txt")
        np.testing.assert_allclose(rec["world_to_camera"][k] @ pose, np.eye(4), atol=1e-9)
    assert rec["skipped_frames"] == {}


def test_depth_agrees_with_projected_mesh(raw: Path):
    """Depth at a projected vertex is never behind it (the vertex's own surface would be hit
    first) and equals its camera depth for the unoccluded ones."""
    rec = ScanNetReader(raw, PARAMS).read("scene0000_00")
    cam = rec["points"] @ rec["world_to_camera"][0][:3, :3].T + rec["world_to_camera"][0][:3, 3]
    uvw = cam @ rec["intrinsics"][0].T
    front = cam[:, 2] > 0.1
    u, v = uvw[front, 0] / uvw[front, 2], uvw[front, 1] / uvw[front, 2]
    inside = (u > 0) & (u < 159) & (v > 0) & (v < 119)
    rows, cols = np.round(v[inside]).astype(int), np.round(u[inside]).astype(int)
    diff = rec["depth"][0][rows, cols] - cam[front][inside, 2]
    assert inside.sum() > 500 and np.mean(np.abs(diff) < 0.05) > 0.3 and np.mean(diff > 0.05) < 0.02


def _scenes_only(root: Path, tmp_path: Path):
    graph = load_graph()
    cfg = RunConfig(dataset="synthetic-scannet", data_root=root, store_root=str(tmp_path / "stores"),
                    stages=("scenes",), workers=0, overrides={"scenes": {"image_size": [60, 80]}})
    return {r.name: r for r in run(graph, cfg)}, cfg.store_root


def test_truncated_ply_fails_alone_with_its_file_named(raw_copy: Path, tmp_path: Path):
    ply = raw_copy / "scans" / "scene0001_00" / "scene0001_00_vh_clean_2.ply"
    ply.write_bytes(ply.read_bytes()[: ply.stat().st_size // 2])
    reports, root = _scenes_only(raw_copy, tmp_path)
    assert reports["scenes"].done == 1
    line = reports["scenes"].failed["scene0001_00"]
    assert line.startswith(f"scene scene0001_00: file {ply}: truncated or corrupt PLY"), line
    assert store.done_scenes(root, "scenes") == ["scene0000_00"]


def test_empty_ply_and_mesh_without_faces(raw_copy: Path, tmp_path: Path):
    (raw_copy / "scans" / "scene0000_00" / "scene0000_00_vh_clean_2.ply").write_bytes(b"")
    ply = raw_copy / "scans" / "scene0001_00" / "scene0001_00_vh_clean_2.ply"
    vertices = PlyData.read(str(ply), mmap=False)["vertex"]
    PlyData([vertices], text=False).write(str(ply))
    failed = _scenes_only(raw_copy, tmp_path)[0]["scenes"].failed
    assert failed["scene0000_00"].endswith("PLY file is empty")
    assert failed["scene0001_00"].endswith("PLY has no faces, but this dataset needs a mesh")


def test_inf_pose_skips_that_frame_and_reports_it(raw_copy: Path, tmp_path: Path):
    pose = raw_copy / "scans" / "scene0000_00" / "pose" / "1.txt"
    pose.write_text("\n".join(["-inf -inf -inf -inf"] * 4) + "\n")
    (raw_copy / "scans" / "scene0001_00" / "depth" / "2.png").unlink()
    reports, root = _scenes_only(raw_copy, tmp_path)
    assert reports["scenes"].done == 2 and not reports["scenes"].failed
    rec = store.read_scene(root, "scenes", "scene0000_00")
    assert list(rec["frame_ids"]) == [0, 2, 3]
    assert any(w.startswith("scene scene0000_00: skipped 1 frame(s): pose not finite (-inf/nan)")
               and str(pose) in w for w in reports["scenes"].warnings)
    assert any(w.startswith("scene scene0001_00: skipped 1 frame(s): depth frame missing")
               for w in reports["scenes"].warnings)


@pytest.mark.parametrize("defect, message", [
    ("short", "segIndices has 3 entries, the mesh"),
    ("not json", "not readable JSON (JSONDecodeError"),
    ("no label", "segGroups[0] lacks a label or a list of segments"),
])
def test_bad_annotation_files_fail_the_scene_with_one_line(raw_copy: Path, tmp_path: Path, defect: str,
                                                           message: str):
    scene = "scene0000_00"
    d = raw_copy / "scans" / scene
    (raw_copy / RAW_LABELS_TSV).write_text("id\traw_category\tnyu40id\n1\twall\t1\n")
    n = PlyData.read(str(d / f"{scene}_vh_clean_2.ply"))["vertex"].count
    segs, agg = d / f"{scene}_vh_clean_2.0.010000.segs.json", d / f"{scene}.aggregation.json"
    segs.write_text(json.dumps({"segIndices": [0, 0, 0] if defect == "short" else [0] * n}))
    groups = [{"segments": [0]}] if defect == "no label" else [{"label": "wall", "segments": [0]}]
    agg.write_text("{" if defect == "not json" else json.dumps({"segGroups": groups}))
    failed = _scenes_only(raw_copy, tmp_path)[0]["scenes"].failed
    bad = segs if defect == "short" else agg
    line = failed[scene]
    assert "\n" not in line and line.startswith(f"scene {scene}: file {bad}: {message}"), line
    assert "scene0001_00" not in failed
