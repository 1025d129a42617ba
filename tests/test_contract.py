"""The declared data contract: what each stage writes and what each kind of scene record holds,
checked at the write, so a missing, undeclared or mistyped key fails its scene in one line."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from pipeline import contract, store
from pipeline.cli import app
from pipeline.datasets.base import scenes_stage
from pipeline.datasets.nuscenes import NuScenesReader
from pipeline.datasets.scannet import ScanNetReader
from pipeline.datasets.synthetic.nuscenes import generate_nuscenes
from pipeline.errors import PipelineError, SceneError
from pipeline.runner import RunConfig, run
from pipeline.stages import DEFAULT_STAGES_FILE, load_graph, parse_graph, stage_params

SCENE = "scene0000_00"
LABEL = "stage 'scenes' (record 'mesh-rgbd')"
KINDS = {"scannet": "mesh-rgbd", "synthetic-scannet": "mesh-rgbd",
         "nuscenes": "lidar-cameras", "synthetic-nuscenes": "lidar-cameras"}
FORGETFUL = '''
from pipeline.datasets.scannet import ScanNetReader


class ForgetfulReader(ScanNetReader):
    """ScanNet's reader, but it forgets the poses."""

    def read(self, scene):
        record = super().read(scene)
        del record["world_to_camera"]
        return record
'''


@pytest.fixture(scope="module")
def scannet_record(room_template: Path) -> dict:
    """The source stage's output for one generated room, read with small frames."""
    params = stage_params("scenes", {"image_size": [48, 64]}, dataset="synthetic-scannet")
    return scenes_stage(ScanNetReader(room_template, params), SCENE)


def test_the_repository_declares_every_output_and_its_datasets_records():
    graph = load_graph()
    for stage in graph.stages.values():
        for declared in (stage, *stage.variants.values()):
            assert declared.outputs is not None, f"stage '{declared.name}' declares no outputs"
    for dataset, kind in KINDS.items():
        assert graph.dataset(dataset).record == kind
    assert set(graph.records) == {"mesh-rgbd", "lidar-cameras"}


def test_the_scannet_reader_writes_a_mesh_rgbd_record(scannet_record):
    load_graph().outputs("scenes", "synthetic-scannet").check(scannet_record)


def test_the_nuscenes_reader_writes_a_lidar_cameras_record(tmp_path):
    generate_nuscenes(tmp_path, scenes=1, seed=4, keyframes=1, sweeps=0, image_hw=(36, 64))
    params = stage_params("scenes", dataset="synthetic-nuscenes")
    reader = NuScenesReader(tmp_path, params)
    (token, *_) = reader.scene_ids(["train", "val"])
    load_graph().outputs("scenes", "synthetic-nuscenes").check(scenes_stage(reader, token))


def _without(record: dict, key: str) -> dict:
    return {k: v for k, v in record.items() if k != key}


@pytest.mark.parametrize("change, message", [
    (lambda r: _without(r, "world_to_camera"), f"{LABEL} lacks required key 'world_to_camera'"),
    (lambda r: {**_without(r, "world_to_camera"), "world_to_camra": r["world_to_camera"]},
     f"{LABEL} wrote undeclared key 'world_to_camra' (did you mean 'world_to_camera'?)"),
    (lambda r: {**r, "world_to_camera": r["world_to_camera"].astype(np.float32)},
     f"{LABEL} key 'world_to_camera' must be a float64 array of rank 3, got float32 array of rank 3"),
    (lambda r: {**r, "labels": r["labels"][:, None]},
     f"{LABEL} key 'labels' must be a int16 array of rank 1, got int16 array of rank 2"),
    (lambda r: {**r, "image_hw": np.array(r["image_hw"])},
     f"{LABEL} key 'image_hw' must be a list value, got ndarray"),
    (lambda r: {**r, "has_labels": 1}, f"{LABEL} key 'has_labels' must be a bool value, got int"),
    (lambda r: _without(_without(r, "depth"), "color"), f"{LABEL} lacks required keys 'color', 'depth'"),
], ids=["missing", "typo", "dtype", "rank", "array for a value", "value type", "two missing"])
def test_a_broken_record_is_one_line_naming_the_key(scannet_record, change, message):
    with pytest.raises(SceneError) as caught:
        load_graph().outputs("scenes", "synthetic-scannet").check(change(copy.copy(scannet_record)))
    assert caught.value.line() == message


def test_optional_keys_may_be_absent(scannet_record):
    declared = load_graph().outputs("scenes", "synthetic-scannet")
    assert {"frame_labels", "raw_labels", "raw_label_space"} <= set(declared.optional)
    bare = {k: v for k, v in scannet_record.items() if k not in declared.optional}
    declared.check(bare)


def test_a_reader_that_forgets_world_to_camera_fails_at_scenes(room_template, tmp_path, monkeypatch):
    """Through the command line: the scene fails in `scenes`, in one line naming scene and key,
    and nothing downstream runs on it."""
    (tmp_path / "forgetful.py").write_text(FORGETFUL)
    monkeypatch.syspath_prepend(str(tmp_path))
    raw = yaml.safe_load(DEFAULT_STAGES_FILE.read_text())
    raw["datasets"]["forgetful"] = {**raw["datasets"]["synthetic-scannet"], "reader": "forgetful:ForgetfulReader"}
    raw["datasets"]["forgetful"].pop("generator")
    stages = tmp_path / "stages.yaml"
    stages.write_text(yaml.safe_dump(raw, sort_keys=False))
    result = CliRunner().invoke(app, [
        "run", "-d", "forgetful", "--data-root", str(room_template), "--store-root", str(tmp_path / "stores"),
        "--workers", "0", "--stages-file", str(stages), "--stages", "pairs", "--set", "scenes.image_size=[48, 64]"])
    assert result.exit_code == 1, result.output
    failed = [line for line in result.output.splitlines() if line.startswith("failed ") and ": scene " in line]
    assert failed == [f"failed scenes: scene {SCENE}: {LABEL} lacks required key 'world_to_camera'"]
    assert "Traceback" not in result.output
    assert store.done_scenes(tmp_path / "stores", "pairs") == []


def test_a_stage_writing_the_wrong_dtype_fails_that_scene(toy, monkeypatch):
    """A scene stage's declared outputs are checked too (the toy runner pipeline, one declaration added)."""
    text = toy["stages"].read_text().replace(
        '    function: "toy_pipeline:double_stage"\n',
        '    function: "toy_pipeline:double_stage"\n    outputs: {values: {dtype: float32, rank: 1}}\n')
    toy["stages"].write_text(text)
    cfg = RunConfig(dataset="toy", data_root=toy["raw"], store_root=toy["store"], workers=0)
    reports = {r.name: r for r in run(load_graph(toy["stages"]), cfg)}
    assert reports["double"].failed["s0"] == (
        "scene s0: stage 'double' key 'values' must be a float32 array of rank 1, got float64 array of rank 1")
    assert reports["shifted"].blocked == 4 and reports["scenes"].done == 4


def test_output_names_read_the_declarations():
    assert contract.output_names("pairs") == ("point", "pixel", "frame_offsets")
    assert contract.output_names("refine") == ("label",)
    assert contract.output_names("geosets") == ("set_id",)  # method and num_sets are attributes
    assert "intensity" in contract.output_names("scenes", "nuscenes")
    assert "intensity" not in contract.output_names("scenes", "scannet")
    assert contract.output_names("scenes", "scannet")[:3] == ("points", "colors", "normals")
    field = contract.output_field("features", "features")
    assert (field.dtype, field.rank) == ("float16", 4)
    with pytest.raises(PipelineError, match="^stage 'scenes' writes its dataset's record: name the dataset$"):
        contract.output_names("scenes")
    with pytest.raises(PipelineError, match="^unknown stage 'paris'"):
        contract.output_names("paris")


def test_output_names_follow_another_stages_file(tmp_path, monkeypatch):
    raw = yaml.safe_load(DEFAULT_STAGES_FILE.read_text())
    raw["stages"]["refine"]["outputs"]["votes"] = {"dtype": "int32", "rank": 1}
    other = tmp_path / "stages.yaml"
    other.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert contract.output_names("refine", stages_file=other) == ("label", "votes")
    monkeypatch.setenv("HICL_STAGES_FILE", str(other))
    assert contract.output_names("refine") == ("label", "votes")


def test_channels_name_per_point_arrays_of_the_record():
    raw = yaml.safe_load(DEFAULT_STAGES_FILE.read_text())
    raw["datasets"]["scannet"]["channels"] = ["colors"]
    assert parse_graph(copy.deepcopy(raw)).dataset("scannet").channels == ("colors",)
    raw["datasets"]["scannet"]["channels"] = ["intensity"]
    with pytest.raises(PipelineError, match="dataset 'scannet': channel 'intensity' is not a per-point array of "
                                            "record 'mesh-rgbd'"):
        parse_graph(raw)


def test_every_array_the_trainer_reads_is_declared():
    from trainer.config import ConfigError
    from trainer.data import STORE_READS, check_store_reads

    for dataset, channels in (("scannet", ("colors",)), ("nuscenes", ("colors", "intensity"))):
        check_store_reads(dataset, channels)
        for stage, names in STORE_READS.items():
            assert set(names) <= set(contract.output_names(stage, dataset if stage == "scenes" else None))
    with pytest.raises(ConfigError, match=r"^store contract: .*'intensity'"):
        check_store_reads("scannet", ("colors", "intensity"))  # a mesh record has no intensity


def test_write_scene_checks_the_declaration_before_writing(tmp_path):
    """The store itself refuses a write that breaks the contract, so no writer can bypass it."""
    root = str(tmp_path / "stores")
    store.reset_stage(root, "refine", {"fingerprint": "f"})
    declared = contract.declared("refine")
    with pytest.raises(SceneError, match="^stage 'refine' wrote undeclared key 'labels' \\(did you mean 'label'\\?\\)$"):
        store.write_scene(root, "refine", SCENE, {"labels": np.zeros(3, np.uint8)}, "f", declared=declared)
    with pytest.raises(SceneError, match="^stage 'refine' key 'label' must be a uint8 array of rank 1, got int64"):
        store.write_scene(root, "refine", SCENE, {"label": np.zeros(3, np.int64)}, "f", declared=declared)
    assert SCENE not in store.open_stage(root, "refine")
    store.write_scene(root, "refine", SCENE, {"label": np.zeros(3, np.uint8)}, "f", declared=declared)
    assert store.done_scenes(root, "refine") == [SCENE]


def test_the_trainers_synthetic_store_holds_scannets_declared_record(tmp_path):
    """The procedural rooms the trainer's tests and benchmarks train on are written through the
    contract: each stage's scene holds every required key of what a ScanNet store holds there."""
    from trainer.synthetic import write_synthetic_store

    root = tmp_path / "store"
    (scene,) = write_synthetic_store(root, num_scenes=1, density=40.0)
    for stage in ("scenes", "pairs", "pseudo", "refine", "vote", "geosets"):
        written = set(store.read_scene(root, stage, scene))
        fields = contract.declared(stage, "scannet")
        assert set(fields.required) <= written <= set(fields.all()), stage
