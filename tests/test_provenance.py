"""Runs record what trained them (commit, stores, scenes, preset, overrides), and --resume refuses,
in one line, another store, other scenes or other code unless --allow-code-change is given."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from benchmark_module import load_benchmark  # tests/ is on sys.path

from pipeline import store
from trainer import provenance
from trainer.checkpoint import CheckpointError
from trainer.config import from_dict
from trainer.engine import fit
from trainer.synthetic import write_synthetic_store

REPO = Path(__file__).resolve().parent.parent
HICL_TRAIN = Path(sys.executable).with_name("hicl-train")


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory) -> tuple[Path, dict]:
    """A 2-epoch run of the full method stopped after epoch 1, and its config values."""
    root = tmp_path_factory.mktemp("provenance")
    scenes = write_synthetic_store(root / "store", num_scenes=2, seed=2, embed_dim=16, density=60.0,
                                   size=(2.0, 2.0, 1.5))
    values = {"name": "run", "runs_root": str(root / "runs"), "store_root": str(root / "store"),
              "train_split": scenes, "val_split": scenes[:1], "voxel_size": 0.2, "epochs": 2,
              "phase_epochs": [1, 2], "batch_size": 2, "samples_per_scene": 16, "transformer_depth": 1,
              "num_workers": 0, "device": "cpu", "progress": False}
    fit(from_dict(values), until_epoch=1, origin={"config": "ablation-V", "overrides": ["epochs=2"]})
    return root, values


def copy_run(stopped_run, tmp_path: Path, **changes) -> dict:
    """The stopped run and its store copied under tmp_path; its config values with `changes`."""
    root, values = stopped_run
    shutil.copytree(root / "store", tmp_path / "store")
    shutil.copytree(root / "runs", tmp_path / "runs")
    return {**values, "runs_root": str(tmp_path / "runs"), "store_root": str(tmp_path / "store"), **changes}


def test_a_run_records_commit_stores_scenes_preset_and_overrides(stopped_run):
    root, values = stopped_run
    record = json.loads((root / "runs" / "run" / "provenance.json").read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert record["code"]["commit"] == head and isinstance(record["code"]["dirty"], bool)
    assert (record["config"], record["overrides"]) == ("ablation-V", ["epochs=2"])
    assert set(record["stores"]["stages"]) == {"scenes", "text", "pairs", "refine", "geosets"}
    assert record["stores"]["stages"]["refine"]["fingerprint"] == store.stage_attrs(values["store_root"], "refine")["fingerprint"]
    assert record["train_scenes"]["count"] == 2 and record["val_scenes"]["count"] == 1
    assert record["resumes"] == []
    import torch

    assert torch.load(root / "runs" / "run" / "last.pt", weights_only=True)["provenance"] == record


def test_resume_refuses_another_store_and_accepts_a_moved_one(stopped_run, tmp_path):
    values = copy_run(stopped_run, tmp_path)
    other = tmp_path / "other-store"
    shutil.copytree(tmp_path / "store", other)
    store.open_stage(other, "refine", mode="r+").attrs["fingerprint"] = "0123456789abcdef"
    with pytest.raises(CheckpointError, match=r"stage 'refine' of the store differs .*fingerprint .* 0123456789abcdef now"):
        fit(from_dict({**values, "store_root": str(other)}), resume=True)
    moved = tmp_path / "moved-store"
    shutil.move(tmp_path / "store", moved)
    summary = fit(from_dict({**values, "store_root": str(moved)}), resume=True)
    assert summary["epoch"] == 2


def test_resume_refuses_other_validation_scenes(stopped_run, tmp_path):
    values = copy_run(stopped_run, tmp_path)
    with pytest.raises(CheckpointError, match="its validation scenes differ .1 scenes in the checkpoint, 2 now"):
        fit(from_dict({**values, "val_split": values["train_split"]}), resume=True)


def test_resume_refuses_other_code_unless_allowed_and_records_it(stopped_run, tmp_path, monkeypatch):
    values = copy_run(stopped_run, tmp_path)
    other = {"commit": "f" * 40, "dirty": False}
    monkeypatch.setattr(provenance, "code_state", lambda root=provenance.REPO: other)
    with pytest.raises(CheckpointError, match=r"trained by [0-9a-f]{7}.*, the code is now fffffff; pass --allow-code-change"):
        fit(from_dict(values), resume=True)
    assert fit(from_dict(values), resume=True, allow_code_change=True)["epoch"] == 2
    record = provenance.read(Path(values["runs_root"]) / "run")
    assert record["resumes"] == [{"epoch": 1, "code": other, "allow_code_change": True}]
    assert provenance.commits(record)[-1] == "f" * 40


def test_code_states_differ_by_commit_and_by_uncommitted_changes():
    clean = {"commit": "a" * 40, "dirty": False}
    assert provenance.same_code(clean, dict(clean))
    assert not provenance.same_code(clean, {"commit": "b" * 40, "dirty": False})
    assert not provenance.same_code({**clean, "dirty": True, "diff": "1"}, {**clean, "dirty": True, "diff": "2"})
    assert provenance.describe_code({**clean, "dirty": True, "diff": "12ab"}) == "aaaaaaa with uncommitted changes 12ab"


def test_rewritten_results_leave_the_code_clean_and_edited_code_does_not(tmp_path):
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    for path in ("trainer/fit.py", "benchmarks/results/demo.json", "docs/figures/fig3.png"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("0\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    (tmp_path / "benchmarks/results/demo.json").write_text("1\n")
    (tmp_path / "docs/figures/fig3.png").write_text("1\n")
    assert provenance.code_state(tmp_path)["dirty"] is False
    (tmp_path / "trainer/fit.py").write_text("1\n")
    state = provenance.code_state(tmp_path)
    assert state["dirty"] is True and len(state["diff"]) == 16
    (tmp_path / "benchmarks/results/demo.json").write_text("2\n")
    assert provenance.code_state(tmp_path)["diff"] == state["diff"]

def test_cli_names_the_refusal_in_one_line(stopped_run, tmp_path):
    values = copy_run(stopped_run, tmp_path)
    other = tmp_path / "other-store"
    shutil.copytree(tmp_path / "store", other)
    store.open_stage(other, "pairs", mode="r+").attrs["fingerprint"] = "feedfeedfeedfeed"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({**values, "store_root": str(other)}))
    out = subprocess.run([str(HICL_TRAIN), "fit", "--config", str(config), "--resume"], cwd=tmp_path,
                         capture_output=True, text=True, env={"OMP_NUM_THREADS": "1", "COLUMNS": "400",
                                                              "NO_COLOR": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 1 and "Traceback" not in out.stdout + out.stderr
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: cannot resume ") and "stage 'pairs'" in lines[0]


def test_a_table_refuses_runs_of_other_code_unless_reuse_is_asked_for():
    bench = load_benchmark("bench_quality")
    code = {"commit": "a" * 40, "dirty": False}
    record = {"code": code, "config": "ablation-V", "overrides": [], "stores": {"digest": "d1"},
              "resumes": []}
    kept = bench.run_provenance(record, "V")
    assert kept["commits"] == ["a" * 40] and not kept["dirty"]
    assert bench.reuse_problem(kept, code, "d1") is None
    assert "no provenance record" in bench.reuse_problem(bench.run_provenance(None, "V"), code, "d1")
    assert "stores of digest d1" in bench.reuse_problem(kept, code, "d2")
    later = {**record, "resumes": [{"epoch": 3, "code": {"commit": "b" * 40, "dirty": False},
                                    "allow_code_change": True}]}
    kept = bench.run_provenance(later, "V")
    assert kept["commits"] == ["a" * 40, "b" * 40] and kept["code_changed_on_resume"]
    assert "commit(s) aaaaaaa, bbbbbbb" in bench.reuse_problem(kept, code, "d1")


def test_table_order_runs_each_rows_first_seed_first():
    bench = load_benchmark("bench_quality")
    seeds = bench.parse_row_seeds(["II=0", "plus=0"], ["I", "II", "V", "plus"])
    assert bench.run_order(["I", "II", "V", "plus"], (0, 1, 2), seeds) == [
        ("I", 0), ("II", 0), ("V", 0), ("plus", 0), ("I", 1), ("V", 1), ("I", 2), ("V", 2)]
    with pytest.raises(ValueError, match="not ROW=SEEDS"):
        bench.parse_row_seeds(["III=0"], ["I", "V"])
