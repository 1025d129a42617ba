"""Crash safety: runs SIGKILLed at chosen points resume to exactly what an uninterrupted run makes.

Preprocessing runs the real synthetic-ScanNet graph (scenes, pairs, geosets, simulated pseudo,
refine) on two copies of one small room; `tests/killpoints.py` kills the process with SIGKILL
after k scenes of a stage, between a scene's arrays and its done marker, or right after a
stage's store is reset. The rerun must take over the dead run's lock and leave stores equal,
array by array and attribute by attribute, to an uninterrupted run's. Training is killed in the
middle of an epoch; `--resume` restarts from the last epoch's checkpoint (checkpoints are
written atomically once per epoch) and must reach the uninterrupted run's weights and metrics.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from rooms import assert_same_stores, copy_rooms, scene_id, snapshot
from typer.testing import CliRunner

from pipeline import store
from pipeline.cli import app

STAGES = ["scenes", "pairs", "geosets", "pseudo", "refine"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "NO_COLOR": "1"}
SCENES, FRAMES = 2, 3


def _args(raw: Path, stores: Path) -> list[str]:
    return ["run", "--dataset", "synthetic-scannet", "--data-root", str(raw), "--store-root", str(stores),
            "--workers", "0", "--stages", "refine", "--set", "scenes.image_size=[60, 80]"]


def _killed(kind: str, *head: str, argv: list[str], cwd: Path | None = None) -> subprocess.Popen:
    """Start `python -m killpoints KIND HEAD... -- ARGV`."""
    return subprocess.Popen([sys.executable, "-m", "killpoints", kind, *head, "--", *argv], env=ENV, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _cli_ok(args: list[str]) -> str:
    """`python -m pipeline.cli ARGS` in the killed runs' environment (same BLAS threads, so same
    float rounding), which must exit 0; its output."""
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], env=ENV, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def raw(room_template: Path, tmp_path_factory) -> Path:
    return copy_rooms(room_template, tmp_path_factory.mktemp("crash") / "raw", SCENES, FRAMES)


@pytest.fixture(scope="module")
def clean(raw: Path, tmp_path_factory) -> dict:
    """What an uninterrupted run writes."""
    stores = tmp_path_factory.mktemp("clean")
    _cli_ok(_args(raw, stores))
    return snapshot(stores, STAGES)


@pytest.mark.parametrize("stage, n, when, done_after_kill", [
    ("scenes", 1, "done", 1),     # after the first complete scene of the first stage
    ("pairs", 2, "marker", 1),    # second scene's arrays written, done marker not yet
    ("geosets", 1, "reset", 0),   # a fresh stage store, nothing in it yet
    ("refine", 2, "marker", 1),   # the very last write of the run
])
def test_killed_preprocessing_resumes_to_the_clean_result(raw, clean, tmp_path, stage, n, when,
                                                          done_after_kill):
    stores = tmp_path / "stores"
    proc = _killed("pipeline", stage, str(n), when, argv=_args(raw, stores))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, out
    assert store.done_scenes(stores, stage) == [scene_id(i) for i in range(done_after_kill)]
    if when == "marker":  # the half-written scene is there, and not taken for done
        half = store.open_stage(stores, stage)[scene_id(n - 1)]
        assert list(half.array_keys()) and "done" not in half.attrs
    assert (stores / ".lock").exists()  # left by the killed run, taken over by the next one
    out = _cli_ok(_args(raw, stores))
    assert not [line for line in out.splitlines() if line.startswith(("failed", "error"))], out
    assert_same_stores(snapshot(stores, STAGES), clean)
    assert not (stores / ".lock").exists()


def test_second_concurrent_run_is_refused_at_the_cli(toy):
    """A run in progress holds the store; a second `run` on it gets one line and exit code 2."""
    args = ["run", "--dataset", "toy", "--data-root", str(toy["raw"]), "--store-root", toy["store"],
            "--stages-file", str(toy["stages"]), "--workers", "0"]
    first = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args, "--set", "double.sleep=0.5"],
                             env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lock = Path(toy["store"]) / ".lock"
    deadline = time.time() + 60
    while not lock.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    second = CliRunner().invoke(app, args)
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 0, out
    assert second.exit_code == 2 and "Traceback" not in second.output
    lines = second.output.strip().splitlines()
    assert len(lines) == 1, second.output
    assert lines[0].startswith(f"error: store {toy['store']} is in use by another run (pid {first.pid} on ")
    assert len(store.done_scenes(toy["store"], "shifted")) == 4  # the first run was not disturbed


def _train_config(path: Path, name: str, store_root: Path) -> Path:
    values = dict(name=name, runs_root=str(path.parent / "runs"), store_root=str(store_root),
                  voxel_size=0.15, epochs=2, loop=3, phase_epochs=[2, 2], batch_size=1,
                  samples_per_scene=64, transformer_depth=1, num_workers=0, device="cpu",
                  eval_every=2, progress=False)
    path.write_text(yaml.safe_dump(values))
    return path


def _records(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in lines]


@pytest.mark.slow
def test_training_killed_mid_epoch_resumes_to_the_same_model(tmp_path):
    """Epoch 2 of 2 (steps 4-6, all loss terms on) killed after step 5; --resume from last.pt
    (epoch 1) reaches the same weights, optimiser state and metrics as a run never killed."""
    from trainer.synthetic import write_synthetic_store

    stores = tmp_path / "store"
    write_synthetic_store(stores, num_scenes=1, seed=1, embed_dim=16, density=150.0,
                          size=(2.5, 2.5, 1.5), label_noise=0.2)
    whole = _train_config(tmp_path / "whole.yaml", "whole", stores)
    killed = _train_config(tmp_path / "killed.yaml", "killed", stores)
    uninterrupted = subprocess.Popen([sys.executable, "-m", "trainer", "fit", "--config", str(whole)],
                                     env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    victim = _killed("train", "5", argv=["fit", "--config", str(killed)])
    out, _ = victim.communicate(timeout=300)
    assert victim.returncode == -signal.SIGKILL, out
    run_a, run_b = tmp_path / "runs" / "whole", tmp_path / "runs" / "killed"
    assert torch.load(run_b / "last.pt", weights_only=True)["epoch"] == 1
    assert [r["step"] for r in _records(run_b) if r["kind"] == "train"] == [1, 2, 3, 4, 5]
    resumed = subprocess.run([sys.executable, "-m", "trainer", "fit", "--config", str(killed), "--resume"],
                             env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0 and "Traceback" not in resumed.stdout + resumed.stderr, resumed.stdout
    out, _ = uninterrupted.communicate(timeout=300)
    assert uninterrupted.returncode == 0, out

    records_a, records_b = _records(run_a), _records(run_b)
    assert [(r["kind"], r["step"]) for r in records_b] == [(r["kind"], r["step"]) for r in records_a]
    for ra, rb in zip(records_a, records_b, strict=True):
        assert rb.keys() == ra.keys()
        for key, value in ra.items():
            if isinstance(value, float):
                assert rb[key] == pytest.approx(value, rel=1e-5, abs=1e-7), (ra["step"], key)
            else:
                assert rb[key] == value, (ra["step"], key)
    state_a = torch.load(run_a / "last.pt", weights_only=True)
    state_b = torch.load(run_b / "last.pt", weights_only=True)
    assert (state_b["epoch"], state_b["step"]) == (state_a["epoch"], state_a["step"]) == (2, 6)
    for part in ("encoder", "correlation"):
        assert state_b[part].keys() == state_a[part].keys()
        for name, tensor in state_a[part].items():
            torch.testing.assert_close(state_b[part][name], tensor, rtol=1e-4, atol=1e-6, msg=f"{part}.{name}")
    for opt_a, opt_b in zip(state_a["optim"]["optimizers"], state_b["optim"]["optimizers"], strict=True):
        torch.testing.assert_close(opt_b["state"], opt_a["state"], rtol=1e-4, atol=1e-6)
    assert state_b["optim"]["schedulers"] == state_a["optim"]["schedulers"]
