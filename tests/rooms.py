"""Small ScanNet-layout datasets made of copies of one generated room, and store comparison."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from pipeline import store
from pipeline.datasets.synthetic.fusion import FusionParams

TEMPLATE = "scene0000_00"
# Fusion for quick test rooms with a handful of frames: a coarse voxel (fewer vertices) and no
# multi-frame weight threshold (each surface is seen by one or two frames only).
QUICK_FUSION = FusionParams(voxel=0.06, truncation=0.12, min_weight=1.0)


def scene_id(i: int) -> str:
    """ScanNet-style id of the i-th scene."""
    return f"scene{i:04d}_00"


def copy_rooms(template: Path, out: Path, count: int, frames: int | None = None) -> Path:
    """``count`` copies of the template room under ``out/scans`` (no split lists: every scene is
    used), each with its first ``frames`` frames (default all)."""
    for i in range(count):
        scene = scene_id(i)
        dst = out / "scans" / scene
        shutil.copytree(template / "scans" / TEMPLATE, dst)
        for path in list(dst.iterdir()):
            if path.is_file() and path.name.startswith(TEMPLATE):
                path.rename(dst / path.name.replace(TEMPLATE, scene))
        for path in dst.glob("[cdp]*/*.*"):  # color/, depth/, pose/
            if frames is not None and path.stem.isdigit() and int(path.stem) >= frames:
                path.unlink()
    return out


def snapshot(store_root: str | Path, stages: list[str]) -> dict:
    """Every done scene of ``stages``: arrays and attributes, plus each stage's root attributes."""
    out: dict = {}
    for stage in stages:
        out[stage] = {"_root": store.stage_attrs(store_root, stage)}
        names = store.done_scenes(store_root, stage)
        if store.GLOBAL in store.open_stage(store_root, stage):
            names.append(store.GLOBAL)
        for scene in names:
            out[stage][scene] = {"attrs": store.stage_attrs(store_root, stage, scene),
                                 "arrays": store.read_arrays(store_root, stage, scene)}
    return out


def assert_same_stores(got: dict, expected: dict) -> None:
    """Two snapshots hold the same scenes, attributes and arrays (bit for bit, dtypes included)."""
    assert got.keys() == expected.keys()
    for stage, scenes in expected.items():
        assert sorted(got[stage]) == sorted(scenes), stage
        for scene, content in scenes.items():
            if scene == "_root":
                assert got[stage][scene] == content, stage
                continue
            assert got[stage][scene]["attrs"] == content["attrs"], (stage, scene)
            arrays = got[stage][scene]["arrays"]
            assert arrays.keys() == content["arrays"].keys(), (stage, scene)
            for name, value in content["arrays"].items():
                assert arrays[name].dtype == value.dtype, (stage, scene, name)
                np.testing.assert_array_equal(arrays[name], value, err_msg=f"{stage}/{scene}/{name}")
