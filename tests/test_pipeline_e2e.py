"""The whole stage graph on generated rooms with the MaskCLIP path (tiny random CLIP), and the
cache promise: a new class list reruns only text, pseudo and refine."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rooms import QUICK_FUSION

from pipeline import store
from pipeline.clip.model import TINY_CONFIG
from pipeline.datasets.synthetic import generate_scannet
from pipeline.runner import RunConfig, run
from pipeline.stages import load_graph

TINY = {"model_name": "tiny", "pretrained": "none", "model_config": TINY_CONFIG, "device": "cpu"}


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rooms")
    generate_scannet(root, scenes=2, seed=5, frames=3, val=1, spacing=0.08, fusion=QUICK_FUSION)
    return root


def _run(raw: Path, stores: Path, classes: str) -> dict:
    cfg = RunConfig(dataset="synthetic-scannet", data_root=raw, store_root=str(stores), workers=0,
                    variants={"features": "default", "pseudo": "default", "text": "default"},
                    overrides={"scenes": {"image_size": [64, 80]}, "features": TINY,
                               "text": {**TINY, "classes": classes}})
    return {r.name: r for r in run(load_graph(), cfg)}


def test_new_class_list_reuses_features_and_pairs(raw: Path, tmp_path: Path):
    first = _run(raw, tmp_path, "scannet20")
    assert all(r.done == (1 if r.name == "text" else 2) and not r.failed for r in first.values())
    scene = "scene0000_00"
    pairs = store.read_scene(tmp_path, "pairs", scene)
    feats = store.read_scene(tmp_path, "features", scene)["features"]
    assert feats.shape == (3, 64 // 8, 80 // 8, 32) and feats.dtype == np.float16
    labels = store.read_scene(tmp_path, "pseudo", scene)["label"]
    assert labels.shape == pairs["point"].shape and labels.max() < 20
    assert store.read_scene(tmp_path, "refine", scene)["label"].shape == labels.shape

    second = _run(raw, tmp_path, "nuscenes16")
    assert {n: (r.done, r.skipped) for n, r in second.items()} == {
        "scenes": (0, 2), "features": (0, 2), "pairs": (0, 2), "geosets": (0, 2),
        "text": (1, 0), "pseudo": (2, 0), "refine": (2, 0), "vote": (2, 0)}
    assert store.read_scene(tmp_path, "pseudo", scene)["label"].max() < 16
    names = store.stage_attrs(tmp_path, "text", store.GLOBAL)["class_names"]
    assert len(names) == 16 and names[0] != "wall"
