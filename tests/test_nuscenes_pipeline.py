"""The stage graph on a synthetic drive (dataset synthetic-nuscenes), and the trainer's LiDAR input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline import store
from pipeline.datasets.synthetic.nuscenes import generate_nuscenes
from pipeline.geometry.vccs import supervoxels
from pipeline.runner import RunConfig, run
from pipeline.stages import load_graph, stage_params

HW = (72, 128)


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> tuple[Path, Path]:
    raw = tmp_path_factory.mktemp("raw")
    generate_nuscenes(raw, scenes=2, seed=2, keyframes=2, sweeps=0, image_hw=HW)
    out = tmp_path_factory.mktemp("stores")
    cfg = RunConfig(dataset="synthetic-nuscenes", data_root=raw, store_root=str(out), workers=0,
                    stages=("refine",))  # text (the simulated prototypes) is not upstream of refine
    reports = {r.name: r for r in run(load_graph(), cfg)}
    assert set(reports) == {"scenes", "pairs", "pseudo", "geosets", "refine"}
    assert all(not r.failed and r.done == 4 for r in reports.values())
    return raw, out


def test_every_stage_runs_with_the_lidar_settings(stores: tuple[Path, Path]):
    raw, out = stores
    overrides = load_graph().dataset("synthetic-nuscenes").stage_params
    assert overrides["text"]["classes"] == "nuscenes16" and overrides["pseudo"]["num_classes"] == 16
    for token in (raw / "nuscenes_train.txt").read_text().split():
        scene = store.read_scene(out, "scenes", token)
        pairs = store.read_scene(out, "pairs", token)
        pseudo = store.read_scene(out, "pseudo", token)
        refined = store.read_scene(out, "refine", token)
        geosets = store.read_scene(out, "geosets", token)
        assert scene["color"].shape == (6, *HW, 3) and "intensity" in scene and "depth" not in scene
        assert len(pseudo["label"]) == len(refined["label"]) == len(pairs["point"]) > 1000
        assert pseudo["label"].max() < 16 and refined["label"].max() < 16
        # VCCS with the LiDAR preset (0.2 m voxels, 2 m seeds), no colour (LiDAR has none)
        assert geosets["method"] == "vccs"
        weights = {k: v for k, v in stage_params("geosets").items() if k.endswith("_importance")}
        expected = supervoxels(scene["points"], None, None, voxel_resolution=0.2, seed_resolution=2.0, **weights)
        np.testing.assert_array_equal(geosets["set_id"], expected)
        assert 50 < geosets["num_sets"] < len(scene["points"]) / 20
        # the simulated VLM is right about half the time, the per-frame set vote more often
        truth = scene["labels"][pairs["point"]]
        known = truth >= 0
        raw_acc = (pseudo["label"][known] == truth[known]).mean()
        assert 0.3 < raw_acc < (refined["label"][known] == truth[known]).mean()


def test_trainer_reads_intensity_as_a_fourth_input_channel(stores: tuple[Path, Path]):
    from trainer.config import load_config
    from trainer.data import SceneDataset

    raw, out = stores
    cfg = load_config("synthetic-nuscenes", [f"store_root={out}"])
    assert cfg.dataset == "nuscenes" and cfg.voxel_size == 0.1
    scenes = (raw / "nuscenes_val.txt").read_text().split()
    item = SceneDataset(cfg, scenes, 16, train=False)[(1, 0, 0)]
    scene = store.read_scene(out, "scenes", scenes[0])
    assert item["feats"].shape == (len(item["coords"]), 4)
    np.testing.assert_allclose(item["feats"][:, :3], -0.5)  # zero colours
    intensity = scene["intensity"] / 255.0
    assert set(np.round(item["feats"][:, 3], 6)) <= set(np.round(intensity, 6))
    np.testing.assert_array_equal(item["point_labels"], scene["labels"])
    train = SceneDataset(cfg, (raw / "nuscenes_train.txt").read_text().split(), 16, train=True)[(1, 0, 0)]
    assert len(train["pair_label"]) > 1000 and train["pair_label"].max() < 16 and len(train["sample_voxel"]) > 0
