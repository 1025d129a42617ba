"""Adding a dataset touches four things: a reader, its stages.yaml entry, a class list, a trainer
preset. Here a `toy` dataset made of exactly those, all written by the fixture outside the
repository, is preprocessed by the unchanged pipeline (and trained on, once the trainer takes a
dataset by name from stages.yaml)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from pipeline import contract, store
from pipeline.classes import CLASSES_DIR_ENV
from pipeline.cli import app
from pipeline.stages import DEFAULT_STAGES_FILE, STAGES_FILE_ENV

REPOSITORY = Path(__file__).resolve().parents[1]
WATCHED = ("pipeline", "trainer", "data/classes", "stages.yaml")  # what "nothing else changed" covers
SCENES = ("toy_00", "toy_01")
STAGES = ("scenes", "text", "features", "pairs", "pseudo", "geosets", "refine")

READER = '''"""The toy dataset: a floor of two classes seen from above by two RGB-D cameras (no raw files)."""
from pathlib import Path
from typing import Any

import numpy as np

COLOURS = np.array([[200, 60, 60], [60, 60, 200]], np.uint8)
SIZE, STEP, HEIGHT, FOCAL = 2.0, 0.05, 1.5, 40.0
DOWN = np.diag([1.0, -1.0, -1.0])  # camera axes (x right, y down, z forward) of a camera facing -z


class ToyReader:
    """Scenes toy_00, toy_01, ...: a flat mesh floor; class 1 beyond a split line that moves per scene."""

    def __init__(self, root: Path, params: dict[str, Any]):
        self.count, self.hw = params["scenes"], tuple(params["image_size"])

    def scene_ids(self, splits: list[str]) -> list[str]:
        return [f"toy_{i:02d}" for i in range(self.count)]

    def manifest(self, scene: str) -> list:
        return []

    def read(self, scene: str) -> dict[str, Any]:
        split = 0.8 + 0.2 * int(scene.rsplit("_", 1)[1])
        n = int(round(SIZE / STEP)) + 1
        gx, gy = np.meshgrid(np.arange(n) * STEP, np.arange(n) * STEP, indexing="ij")
        points = np.stack([gx.ravel(), gy.ravel(), np.zeros(n * n)], 1).astype(np.float32)
        labels = (points[:, 0] >= split).astype(np.int16)
        v = np.arange(n * n).reshape(n, n)[:-1, :-1].ravel()
        faces = np.concatenate([np.stack([v, v + n, v + 1], 1), np.stack([v + 1, v + n, v + n + 1], 1)])
        h, w = self.hw
        k = np.array([[FOCAL, 0, (w - 1) / 2], [0, FOCAL, (h - 1) / 2], [0, 0, 1]])
        frames = [self._frame(np.array([x, y, HEIGHT]), k, split) for x, y in ((1.0, 1.0), (0.9, 1.1))]
        color, depth, frame_labels, poses = (np.stack(a) for a in zip(*frames, strict=True))
        return {
            "points": points, "colors": COLOURS[labels], "labels": labels, "has_labels": True,
            "normals": np.tile(np.float32([0, 0, 1]), (n * n, 1)), "faces": faces.astype(np.int32),
            "color": color, "depth": depth, "frame_labels": frame_labels,
            "world_to_camera": poses, "intrinsics": np.stack([k, k]),
            "frame_ids": np.arange(2, dtype=np.int32), "image_hw": [h, w], "skipped_frames": {},
        }

    def _frame(self, centre: np.ndarray, k: np.ndarray, split: float) -> tuple[np.ndarray, ...]:
        """Colour, depth (metres), 2D labels and camera_from_world of a camera above the floor."""
        h, w = self.hw
        rows, cols = np.mgrid[0:h, 0:w]
        x = centre[0] + (cols - k[0, 2]) / FOCAL * HEIGHT  # where each pixel's ray meets z = 0
        y = centre[1] - (rows - k[1, 2]) / FOCAL * HEIGHT
        on_floor = (x >= 0) & (x <= SIZE) & (y >= 0) & (y <= SIZE)
        label = np.where(on_floor, (x >= split).astype(np.int16), -1).astype(np.int16)
        colour = np.where(on_floor[..., None], COLOURS[np.clip(label, 0, 1)], 0).astype(np.uint8)
        depth = np.where(on_floor, HEIGHT, 0.0).astype(np.float32)
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = DOWN, -DOWN @ centre
        return colour, depth, label, pose
'''

ENTRY = '''
  toy:
    reader: toy_reader:ToyReader
    record: mesh-rgbd
    classes: toy
    channels: [colors]
    params:
      scenes: {type: int, default: 2, min: 1, doc: Number of procedural scenes.}
      image_size: {type: list, default: [48, 64], doc: "Frame size [H, W]."}
    variants: {features: simulated, text: simulated}
    stages:
      text: {classes: toy, dim: 16}
'''


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """(mtime, size) of every file of the watched repository paths (caches left out)."""
    files = {}
    for name in WATCHED:
        path = root / name
        for file in ([path] if path.is_file() else path.rglob("*")):
            if file.is_file() and "__pycache__" not in file.parts:
                stat = file.stat()
                files[str(file.relative_to(root))] = (stat.st_mtime_ns, stat.st_size)
    return files


@pytest.fixture(scope="module")
def toy_project(tmp_path_factory) -> dict[str, Path]:
    """The four things a new dataset needs, written outside the repository."""
    root = tmp_path_factory.mktemp("toy_project")
    (root / "toy_reader.py").write_text(READER)
    (root / "stages.yaml").write_text(DEFAULT_STAGES_FILE.read_text().rstrip("\n") + "\n" + ENTRY)
    (root / "classes").mkdir()
    (root / "classes" / "toy.txt").write_text("floor\nrug\n")
    (root / "raw").mkdir()  # its data root: the toy reader makes its scenes without raw files
    out = tmp_path_factory.mktemp("toy_out")
    (root / "presets").mkdir()
    (root / "presets" / "toy.yaml").write_text(yaml.safe_dump({
        "name": "toy", "dataset": "toy", "store_root": str(out / "stores"), "runs_root": str(out / "runs"),
        "voxel_size": 0.1, "epochs": 1, "batch_size": 2, "samples_per_scene": 16, "transformer_depth": 1,
        "num_workers": 0, "device": "cpu", "progress": False}, sort_keys=False))
    return {"root": root, "stages": root / "stages.yaml", "classes": root / "classes",
            "preset": root / "presets" / "toy.yaml", "stores": out / "stores"}


@pytest.fixture(scope="module")
def toy_run(toy_project) -> tuple[str, dict[str, tuple[int, int]], dict[str, tuple[int, int]]]:
    """`hicl-pipeline run -d toy` with the toy stages file; its output and repository snapshots around it.

    The class list is found through $HICL_CLASSES_DIR.
    """
    before = snapshot(REPOSITORY)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(toy_project["root"]))
        patch.setenv(CLASSES_DIR_ENV, str(toy_project["classes"]))
        result = CliRunner().invoke(app, [
            "run", "-d", "toy", "--data-root", str(toy_project["root"] / "raw"), "--store-root",
            str(toy_project["stores"]), "--workers", "0", "--stages-file", str(toy_project["stages"])])
    assert result.exit_code == 0, result.output
    return result.output, before, snapshot(REPOSITORY)


def test_a_toy_dataset_needs_a_reader_an_entry_a_class_list_and_a_preset(toy_project, toy_run):
    created = {str(p.relative_to(toy_project["root"])) for p in toy_project["root"].rglob("*") if p.is_file()
               and "__pycache__" not in p.parts}
    assert created == {"toy_reader.py", "stages.yaml", "classes/toy.txt", "presets/toy.yaml"}
    repository_text = DEFAULT_STAGES_FILE.read_text().rstrip("\n")
    assert toy_project["stages"].read_text() == repository_text + "\n" + ENTRY  # one entry added
    _, before, after = toy_run
    assert before == after  # nothing in the repository changed


def test_the_pipeline_preprocesses_the_toy_dataset(toy_project, toy_run):
    root = str(toy_project["stores"])
    for stage in STAGES:
        if stage != "text":
            assert store.done_scenes(root, stage) == list(SCENES), stage
        assert not store.stage_attrs(root, stage)["failed"], stage
    names = contract.output_names("scenes", "toy", stages_file=toy_project["stages"])
    for scene in SCENES:
        record = store.read_arrays(root, "scenes", scene)
        assert set(record) == set(names) - {"raw_labels"}  # every array of the record, frame_labels too
        pairs = store.read_scene(root, "pairs", scene)
        refined = store.read_scene(root, "refine", scene)["label"]
        assert len(pairs["point"]) > 1000 and refined.shape == pairs["point"].shape and refined.max() < 2
    assert store.stage_attrs(root, "text", store.GLOBAL)["class_names"] == ["floor", "rug"]


def test_the_trainer_trains_on_the_toy_store(toy_project, toy_run, monkeypatch):
    from trainer.config import load_config

    monkeypatch.setenv(STAGES_FILE_ENV, str(toy_project["stages"]))  # the trainer learns "toy" from it
    assert load_config(toy_project["preset"]).channels == ("colors",)
    env = {**os.environ, "OMP_NUM_THREADS": "1", STAGES_FILE_ENV: str(toy_project["stages"]),
           CLASSES_DIR_ENV: str(toy_project["classes"]),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(toy_project["root"]), os.environ.get("PYTHONPATH")]))}
    typer = Path(sys.executable).with_name("typer")
    result = subprocess.run([str(typer), "trainer", "run", "fit", "--config", str(toy_project["preset"])],
                            cwd=toy_project["root"], env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, timeout=600)
    assert result.returncode == 0, result.stdout
    run_dir = Path(load_config(toy_project["preset"]).run_dir)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert losses and np.isfinite(losses).all()
