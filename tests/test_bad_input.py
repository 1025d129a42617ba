"""Bad input through the command lines: one line naming the culprit, no traceback, others go on.

Every case runs `hicl-pipeline` / `hicl-train` (typer's CliRunner, in this process) and checks
the printed line: it names the scene, file or key and says what is wrong; no exception escapes
(it would print a traceback); a broken scene fails alone while the other scenes are done, and a
rerun keeps what was written. Cases already covered elsewhere are listed, not repeated.

| case | test |
|---|---|
| truncated PLY | test_broken_scene_fails_alone[truncated PLY] (line content also in test_scannet_reader.py::test_truncated_ply_fails_alone_with_its_file_named) |
| empty PLY | test_broken_scene_fails_alone[empty PLY] (also test_scannet_reader.py::test_empty_ply_and_mesh_without_faces) |
| PLY without faces (ScanNet needs a mesh) | test_broken_scene_fails_alone[PLY without faces] (also test_scannet_reader.py::test_empty_ply_and_mesh_without_faces) |
| NaN point coordinates | test_broken_scene_fails_alone[NaN vertex] |
| no exported frames (color/ missing) | test_broken_scene_fails_alone[no color folder] |
| missing colour frame | test_defective_frame_is_skipped_with_one_warning[colour missing] |
| missing depth frame | test_defective_frame_is_skipped_with_one_warning[depth missing] (also test_scannet_reader.py::test_inf_pose_skips_that_frame_and_reports_it) |
| depth image of the wrong size | test_defective_frame_is_skipped_with_one_warning[depth size] |
| pose of -inf | test_defective_frame_is_skipped_with_one_warning[pose -inf] (also test_scannet_reader.py::test_inf_pose_skips_that_frame_and_reports_it) |
| pose of NaN | test_defective_frame_is_skipped_with_one_warning[pose NaN] |
| singular pose (all zeros: no camera_from_world) | test_defective_frame_is_skipped_with_one_warning[pose singular] |
| a scene with zero visible pairs | test_scene_without_visible_pairs_fails_in_pairs_only |
| other scenes done, rerun keeps what was written | test_good_scenes_are_done_everywhere, test_rerun_keeps_what_was_written |
| unknown dataset name | test_unknown_dataset_is_one_line (API: test_stages_yaml.py::test_unknown_dataset_lists_known) |
| class list with duplicates or empty names | test_bad_class_list_names_its_file (API: test_text.py::test_bad_class_lists_are_rejected) |
| corrupted Zarr chunk, then a downstream stage, status and eval | test_corrupt_chunk_fails_its_scene_and_names_the_array |
| corrupted Zarr metadata of a finished scene | test_corrupt_chunk_fails_its_scene_and_names_the_array (step 4) |
| stages.yaml param of the wrong type | test_param_of_wrong_type_is_one_line (parsing: test_stages_yaml.py::test_invalid_graphs_are_rejected_with_the_culprit_named) |
| trainer config with an unknown key | test_trainer_e2e.py::test_cli_rejects_unknown_config_key_without_traceback; here the --set path and a wrong type: test_trainer_config_errors_name_the_key |
| checkpoint from a different model | test_trainer_e2e.py::test_eval_refuses_checkpoint_of_a_different_model; files that are no trainer checkpoint at all: test_foreign_checkpoint_is_one_line |
| param out of its declared range (--set, dataset param, stages file default) | test_param_out_of_range_is_one_line (parsing: test_stages_yaml.py::test_param_ranges_are_inclusive_unless_exclusive) |
| CLIP checkpoint that does not exist | test_missing_clip_checkpoint_is_one_line (API: test_preflight.py::test_checkpoint_must_be_a_readable_file) |
| CLIP pretrained tag not in an empty cache | test_missing_clip_weights_fail_before_any_task (API: test_preflight.py::test_pretrained_tag_missing_from_the_cache_names_model_tag_cache_and_param) |
| store root that is a file | test_store_root_that_is_a_file_is_one_line (unwritable folder: test_preflight.py::test_unwritable_store_root_is_refused) |
| data root that does not exist, and CLIP weights missing too | test_missing_data_root_is_reported_before_missing_weights (API: test_preflight.py::test_every_problem_is_reported_most_basic_first) |
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from plyfile import PlyData
from rooms import copy_rooms, scene_id
from test_preflight import block_network
from typer.testing import CliRunner, Result

from pipeline import store
from pipeline.cli import app
from pipeline.stages import DEFAULT_STAGES_FILE
from trainer.cli import app as train_app

STAGES = ["scenes", "pairs", "geosets", "pseudo", "refine"]
SIZE = ["--set", "scenes.image_size=[60, 80]"]
EXTENSIONS = {"color": "jpg", "depth": "png", "pose": "txt"}


def invoke(*args: object, cli=app) -> Result:
    """Run a command; no exception may escape (it would print a traceback)."""
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def only(output: str, prefix: str) -> str:
    """The one line of ``output`` that starts with ``prefix``."""
    lines = [line for line in output.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, f"{len(lines)} lines start with {prefix!r}:\n{output}"
    return lines[0]


def run_args(raw: Path, stores: Path, stages: str = "refine") -> list[str]:
    return ["run", "-d", "synthetic-scannet", "--data-root", raw, "--store-root", stores, "--workers", "0",
            "--stages", stages, *SIZE]


def _ply(raw: Path, i: int) -> Path:
    return raw / "scans" / scene_id(i) / f"{scene_id(i)}_vh_clean_2.ply"


def _frame(raw: Path, i: int, kind: str, k: int) -> Path:
    return raw / "scans" / scene_id(i) / kind / f"{k}.{EXTENSIONS[kind]}"


@pytest.fixture(scope="module")
def damaged(room_template: Path, tmp_path_factory) -> dict:
    """Eight copies of a room, each but the first damaged in its own way, run once through the CLI."""
    root = tmp_path_factory.mktemp("damaged")
    raw = copy_rooms(room_template, root / "raw", 8)
    # 1: frame defects, each in its own frame (frame 5 stays good)
    _frame(raw, 1, "color", 0).unlink()
    _frame(raw, 1, "depth", 1).unlink()
    Image.fromarray(np.full((60, 80), 1000, np.uint16)).save(_frame(raw, 1, "depth", 2))
    _frame(raw, 1, "pose", 3).write_text("-inf -inf -inf -inf\n" * 4)
    _frame(raw, 1, "pose", 4).write_text("0 0 0 0\n" * 4)
    # 2-5: broken meshes
    ply = _ply(raw, 2)
    ply.write_bytes(ply.read_bytes()[: ply.stat().st_size // 2])
    _ply(raw, 3).write_bytes(b"")
    mesh = PlyData.read(str(_ply(raw, 4)), mmap=False)
    PlyData([mesh["vertex"]], text=False).write(str(_ply(raw, 4)))
    mesh = PlyData.read(str(_ply(raw, 5)), mmap=False)
    mesh["vertex"].data["x"][7] = np.nan
    mesh.write(str(_ply(raw, 5)))
    # 6: every camera moved 1 km away (no point visible), and frame 0's pose is NaN
    for k in range(6):
        pose = np.loadtxt(_frame(raw, 6, "pose", k))
        pose[0, 3] = np.nan if k == 0 else pose[0, 3] + 1000.0
        np.savetxt(_frame(raw, 6, "pose", k), pose)
    # 7: no exported frames at all
    shutil.rmtree(raw / "scans" / scene_id(7) / "color")
    stores = root / "stores"
    result = invoke(*run_args(raw, stores))
    return {"raw": raw, "stores": stores, "result": result, "output": result.output}


def test_run_reports_failures_with_exit_code_1(damaged):
    assert damaged["result"].exit_code == 1, damaged["output"]


def test_good_scenes_are_done_everywhere(damaged):
    for stage in STAGES:
        done = store.done_scenes(damaged["stores"], stage)
        assert scene_id(0) in done and scene_id(1) in done, (stage, done)


@pytest.mark.parametrize("i, file, reason", [
    (2, "{ply}", "truncated or corrupt PLY (PlyElementParseError: element 'face': "),
    (3, "{ply}", "PLY file is empty"),
    (4, "{ply}", "PLY has no faces, but this dataset needs a mesh"),
    (5, "{ply}", "1 vertices have non-finite coordinates"),
    (7, "{color}", "no exported frames (color/ folder missing)"),
], ids=["truncated PLY", "empty PLY", "PLY without faces", "NaN vertex", "no color folder"])
def test_broken_scene_fails_alone(damaged, i, file, reason):
    raw, scene = damaged["raw"], scene_id(i)
    path = file.format(ply=_ply(raw, i), color=raw / "scans" / scene / "color")
    line = only(damaged["output"], f"failed scenes: scene {scene}:")
    assert line.startswith(f"failed scenes: scene {scene}: file {path}: {reason}"), line
    assert all(scene not in store.done_scenes(damaged["stores"], stage) for stage in STAGES)


@pytest.mark.parametrize("i, kind, k, reason", [
    (1, "color", 0, "colour frame missing"),
    (1, "depth", 1, "depth frame missing"),
    (1, "depth", 2, "depth size 80x60 != 320x240"),
    (1, "pose", 3, "pose not finite (-inf/nan)"),
    (6, "pose", 0, "pose not finite (-inf/nan)"),
    (1, "pose", 4, "pose not invertible (singular matrix)"),
], ids=["colour missing", "depth missing", "depth size", "pose -inf", "pose NaN", "pose singular"])
def test_defective_frame_is_skipped_with_one_warning(damaged, i, kind, k, reason):
    scene = scene_id(i)
    line = only(damaged["output"], f"warning scenes: scene {scene}: skipped 1 frame(s): {reason} ")
    assert line.endswith(f"(e.g. {_frame(damaged['raw'], i, kind, k)})"), line
    frames = store.read_arrays(damaged["stores"], "scenes", scene, ["frame_ids"])["frame_ids"]
    assert k not in frames.tolist()


def test_scene_without_visible_pairs_fails_in_pairs_only(damaged):
    scene = scene_id(6)
    line = only(damaged["output"], f"failed pairs: scene {scene}:")
    assert line.startswith(f"failed pairs: scene {scene}: no point is visible in any frame (5 frames, "), line
    done = {stage: scene in store.done_scenes(damaged["stores"], stage) for stage in STAGES}
    assert done == {"scenes": True, "pairs": False, "geosets": True, "pseudo": False, "refine": False}


def test_rerun_keeps_what_was_written(damaged):
    """The same failures again, one line each; the done scenes are not touched."""
    before = {p: p.stat().st_mtime_ns for p in damaged["stores"].rglob("*") if p.is_file()
              and p.parent.parent.name != "logs" and p.name != ".lock"}
    again = invoke(*run_args(damaged["raw"], damaged["stores"]))
    assert again.exit_code == 1
    failures = sorted(line for line in again.output.splitlines() if line.startswith("failed "))
    assert failures == sorted(line for line in damaged["output"].splitlines() if line.startswith("failed "))
    kept = {p for p in before if "scene0000_00" in p.parts or "scene0001_00" in p.parts}
    assert kept and all(p.stat().st_mtime_ns == before[p] for p in kept)


@pytest.mark.parametrize("command", ["run", "status", "eval"])
def test_unknown_dataset_is_one_line(command, tmp_path):
    result = invoke(command, "--dataset", "scanet", "--store-root", tmp_path / "stores")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: unknown dataset 'scanet' (known: " + ", ".join(sorted(_datasets())) + ")"]


def _datasets() -> list[str]:
    from pipeline.stages import load_graph

    return list(load_graph().datasets)


@pytest.mark.parametrize("text, reason", [
    ("wall\nchair\ntable\nchair\n", "repeated class name(s) ['chair']; each class must be listed once"),
    ("wall\n\nchair\n", "empty class name at position(s) [1]; every label id needs a name"),
], ids=["duplicate", "empty name"])
def test_bad_class_list_names_its_file(text, reason, room_template, tmp_path, monkeypatch):
    from pipeline import classes

    monkeypatch.setattr(classes, "CLASSES_DIR", tmp_path)
    (tmp_path / "mine.txt").write_text(text)
    result = invoke("run", "-d", "synthetic-scannet", "--data-root", room_template, "--store-root",
                    tmp_path / "stores", "--workers", "0", "--stages", "text", "--set", "text.classes=mine")
    assert result.exit_code == 2  # refused by the pre-flight, before any task starts
    line = only(result.output, "error: ")
    assert line == f"error: stage 'text': file {tmp_path / 'mine.txt'}: {reason}"


@pytest.mark.parametrize("args, message", [
    (["--set", "pairs.border=wide"], "error: stage 'pairs': param 'border' must be int, got 'wide' (str)"),
    (["--set", "scenes.frame_skip=2.5"],
     "error: dataset 'synthetic-scannet': param 'frame_skip' must be int, got 2.5 (float)"),
    (["--stages-file", "{bad}"],
     "error: bad.yaml: stage 'pairs' (default): param 'border' must be int, got 'none' (str)"),
], ids=["--set stage param", "--set dataset param", "stages file default"])
def test_param_of_wrong_type_is_one_line(args, message, room_template, tmp_path):
    bad = tmp_path / "bad.yaml"
    text = DEFAULT_STAGES_FILE.read_text()
    assert text.count("border: {type: int, default: 0,") == 1
    bad.write_text(text.replace("border: {type: int, default: 0,", "border: {type: int, default: none,"))
    stores = tmp_path / "stores"
    result = invoke("run", "-d", "synthetic-scannet", "--data-root", room_template, "--store-root", stores,
                    "--workers", "0", *[a.format(bad=bad) for a in args])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [message]
    assert not list(stores.glob("*.zarr"))


@pytest.mark.parametrize("command, args, message", [
    ("run", ["--set", "geosets.k_thresh=-1"], "error: stage 'geosets': param 'k_thresh' must be > 0, got -1.0"),
    ("run", ["--set", "pseudo.denoise_threshold=1.5"],
     "error: stage 'pseudo': param 'denoise_threshold' must be in [0, 1], got 1.5"),
    ("run", ["--set", "scenes.frame_skip=0"],
     "error: dataset 'synthetic-scannet': param 'frame_skip' must be >= 1, got 0"),
    ("run", ["--stages-file", "{bad}"], "error: bad.yaml: stage 'pairs' (default): param 'border' must be >= 0, got -1"),
    ("status", ["--set", "geosets.k_thresh=-1"], "error: stage 'geosets': param 'k_thresh' must be > 0, got -1.0"),
], ids=["--set stage param", "--set closed range", "--set dataset param", "stages file default", "status"])
def test_param_out_of_range_is_one_line(command, args, message, tmp_path):
    """Checked on the run's resolved params before anything happens: the synthetic dataset is not
    even generated into its missing DATA_ROOT."""
    bad = tmp_path / "bad.yaml"
    text = DEFAULT_STAGES_FILE.read_text()
    assert text.count("border: {type: int, default: 0,") == 1
    bad.write_text(text.replace("border: {type: int, default: 0,", "border: {type: int, default: -1,"))
    raw, stores = tmp_path / "raw", tmp_path / "stores"
    result = invoke(command, "-d", "synthetic-scannet", "--data-root", raw, "--store-root", stores,
                    *(["--workers", "0"] if command == "run" else []), *[a.format(bad=bad) for a in args])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [message]
    assert not raw.exists() and not stores.exists()


def test_store_root_that_is_a_file_is_one_line(room_template, tmp_path):
    """`run` refuses it before taking the lock; `status` says that the next run would stop."""
    file = tmp_path / "stores"
    file.write_text("")
    result = invoke("run", "-d", "synthetic-scannet", "--data-root", room_template, "--store-root", file,
                    "--workers", "0")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: store root {file} is a file; --store-root takes a folder (created when missing) or an fsspec URL"]
    status = invoke("status", "-d", "synthetic-scannet", "--data-root", room_template, "--store-root", file)
    assert status.exit_code == 0
    assert only(status.output, "warning next run stops: ") == (
        f"warning next run stops: store root {file} is a file; --store-root takes a folder (created when "
        "missing) or an fsspec URL")


def test_missing_data_root_is_reported_before_missing_weights(tmp_path, monkeypatch):
    """A typo in --data-root is named first, then the CLIP weights each stage would need (empty
    caches, no network): a user does not download 600 MB to learn of the typo. `status` says the
    same as warnings."""
    import huggingface_hub.constants

    block_network(monkeypatch)
    hub, home = tmp_path / "hf-hub", tmp_path / "home"
    hub.mkdir()
    home.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HOME", str(home))
    raw, stores = tmp_path / "scannet-typo", tmp_path / "stores"
    result = invoke("run", "-d", "scannet", "--data-root", raw, "--store-root", stores, "--workers", "0")
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert errors[0] == f"error: data root {raw} does not exist; --data-root takes the folder of the raw dataset 'scannet'"
    assert [line.split(": ")[1] for line in errors[1:]] == ["stage 'text'", "stage 'features'"]
    assert all("CLIP weights ViT-B-16 pretrained=openai are not on this machine" in line for line in errors[1:])
    assert not stores.exists()
    status = invoke("status", "-d", "scannet", "--data-root", raw, "--store-root", stores)
    warnings = [line for line in status.output.splitlines() if line.startswith("warning next run stops: ")]
    assert [line.removeprefix("warning next run stops: ") for line in warnings] == [e.removeprefix("error: ") for e in errors]


@pytest.mark.parametrize("stage", ["text", "features"])
def test_missing_clip_checkpoint_is_one_line(stage, room_template, tmp_path, monkeypatch):
    """A `checkpoint` that is not on disk stops the run before any task, network untouched."""
    block_network(monkeypatch)
    missing, stores = tmp_path / "ViT-B-16.pt", tmp_path / "stores"
    result = invoke("run", "-d", "synthetic-scannet", "--data-root", room_template, "--store-root", stores,
                    "--workers", "0", "--variant", f"{stage}=default", "--stages", stage,
                    "--set", f"{stage}.checkpoint={missing}")
    assert result.exit_code == 2
    assert only(result.output, "error:") == (
        f"error: stage '{stage}': CLIP checkpoint {missing} (param {stage}.checkpoint) cannot be read (No such "
        "file or directory); give a weights file on this machine for ViT-B-16")
    assert not list(stores.glob("*.zarr"))


def test_missing_clip_weights_fail_before_any_task(room_template, tmp_path):
    """The default ViT-B-16 / openai with empty Hugging Face and open_clip caches (environment of a
    fresh `hicl-pipeline` process, offline): one line per CLIP stage naming model, tag, cache and
    the param that takes a local file, instead of a download retried in every scene."""
    cache, stores = tmp_path / "empty-cache", tmp_path / "stores"
    cache.mkdir()
    env = {**os.environ, "HF_HOME": str(cache), "HF_HUB_CACHE": str(cache), "HOME": str(cache),
           "HF_HUB_OFFLINE": "1", "COLUMNS": "400", "NO_COLOR": "1"}
    start = time.monotonic()
    result = subprocess.run(
        [Path(sys.executable).parent / "hicl-pipeline", "run", "-d", "synthetic-scannet", "--data-root",
         room_template, "--store-root", stores, "--workers", "0", "--variant", "features=default",
         "--variant", "text=default"], capture_output=True, text=True, env=env, timeout=300)
    seconds = time.monotonic() - start
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output, output
    assert [line for line in output.splitlines() if line.startswith("error:")] == [  # every stage that needs them
        f"error: stage '{stage}': CLIP weights ViT-B-16 pretrained=openai are not on this machine (looked for "
        "open_clip_model.safetensors or open_clip_pytorch_model.bin of timm/vit_base_patch16_clip_224.openai "
        f"in the Hugging Face cache {cache}) and would be downloaded for every scene; download them once into "
        f"that cache, or copy the weights file here and pass --set {stage}.checkpoint=/path/ViT-B-16.pt"
        for stage in ("text", "features")]
    assert not list(stores.glob("*.zarr")) and not list(cache.iterdir())
    assert seconds < 60, seconds  # was 57 s for `text` alone, then about 46 s per scene for `features`


def _corrupt(path: Path) -> None:
    path.write_bytes(b"not a zstd frame" * 4)


def test_corrupt_chunk_fails_its_scene_and_names_the_array(room_template, tmp_path):
    raw = copy_rooms(room_template, tmp_path / "raw", 3, frames=3)
    stores = tmp_path / "stores"
    assert invoke(*run_args(raw, stores, "scenes")).exit_code == 0
    group = stores / "scenes.zarr" / scene_id(1)
    _corrupt(group / "points" / "c" / "0" / "0")
    kept = {p: p.stat().st_mtime_ns for p in (stores / "scenes.zarr").glob("*/**/*") if p.is_file()}

    # 1. downstream stages: the scene fails in each stage that reads it, the others are done
    result = invoke(*run_args(raw, stores, "refine,text"))
    assert result.exit_code == 1
    for stage in ("pairs", "geosets"):
        line = only(result.output, f"failed {stage}: ")
        assert line.startswith(f"failed {stage}: scene {scene_id(1)}: file {group / 'points'}: cannot read "
                               f"array 'points' of stage 'scenes' (RuntimeError: Zstd decompression error"), line
        assert line.endswith(f"); if the store is damaged, delete {group} and rerun to recompute this scene")
    assert store.done_scenes(stores, "refine") == [scene_id(0), scene_id(2)]
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # nothing written was lost

    # 2. status explains what the next run does, and shows the failures
    status = invoke("status", "-d", "synthetic-scannet", "--data-root", raw, "--store-root", stores, *SIZE)
    assert status.exit_code == 0
    assert only(status.output, "next run pairs: ") == f"next run pairs: {scene_id(1)}: failed in the last run, retried"
    assert only(status.output, "failed pairs: ").startswith(f"failed pairs: scene {scene_id(1)}: file {group / 'points'}: ")

    # 3. following the advice repairs it
    shutil.rmtree(group)
    assert invoke(*run_args(raw, stores, "refine,text")).exit_code == 0
    assert store.done_scenes(stores, "refine") == [scene_id(i) for i in range(3)]

    # 4. unreadable metadata of a finished scene: not taken for done, recomputed alone
    (stores / "geosets.zarr" / scene_id(2) / "zarr.json").write_text("{not json")
    status = invoke("status", "-d", "synthetic-scannet", "--data-root", raw, "--store-root", stores, *SIZE)
    assert only(status.output, "next run geosets: ") == (
        f"next run geosets: {scene_id(2)}: its stored group cannot be read (JSONDecodeError), recomputed")
    assert invoke(*run_args(raw, stores, "refine,text")).exit_code == 0
    assert store.done_scenes(stores, "geosets") == [scene_id(i) for i in range(3)]

    # 5. eval reading a corrupt chunk: one line naming it, exit code 2
    label = stores / "pseudo.zarr" / scene_id(0) / "label"
    _corrupt(label / "c" / "0")
    result = invoke("eval", "-d", "synthetic-scannet", "--data-root", raw, "--store-root", stores,
                    "--split", "train,val")
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"error: scene {scene_id(0)}: file {label}: cannot read array 'label' of stage "
                           f"'pseudo' (RuntimeError: Zstd decompression error"), line
    assert line.endswith(f"); if the store is damaged, delete {label.parent} and rerun to recompute this scene")


def test_trainer_config_errors_name_the_key(tmp_path):
    typo = invoke("fit", "--config", "synthetic-scannet", "--set", "lr3d=0.1", cli=train_app)
    assert typo.exit_code == 2 and "unknown config key 'lr3d' (did you mean 'lr_3d'?)" in typo.output
    config = tmp_path / "run.yaml"
    config.write_text(f"extends: synthetic-scannet\nruns_root: {tmp_path / 'runs'}\nepochs: many\n")
    wrong = invoke("fit", "--config", config, cli=train_app)
    assert wrong.exit_code == 2 and "epochs: expected an integer, got 'many'" in wrong.output
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("kind, reason", [
    ("garbage", "cannot be read as a trainer checkpoint: truncated, corrupt or not written by torch.save (UnpicklingError)"),
    ("truncated", "cannot be read as a trainer checkpoint: truncated, corrupt or not written by torch.save (RuntimeError)"),
    ("state_dict", "is not a trainer checkpoint (format 1)"),
])
def test_foreign_checkpoint_is_one_line(kind, reason, tmp_path):
    path = tmp_path / f"{kind}.pt"
    torch.save({"conv.weight": torch.zeros(4, 3)}, path)
    if kind == "garbage":
        path.write_bytes(bytes(range(256)) * 4)
    elif kind == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    result = invoke("eval", "--checkpoint", path, cli=train_app)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"error: {path} {reason}"]
