"""Trainer end to end on procedural rooms: learning, exact resume, the CLI and checkpoint checks.

Training runs in a subprocess through the CLI users call (`typer trainer run ...`) with
OMP_NUM_THREADS=1: on a busy machine MinkowskiEngine's OpenMP threads otherwise spin and slow
a step down ~10x, and the variable only takes effect before torch is first imported, which the
pytest process has long done. Results are then read back here (metrics.jsonl, checkpoints) and
evaluated in-process with `trainer.engine.evaluate`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from trainer.config import load_config
from trainer.engine import evaluate
from trainer.synthetic import write_synthetic_store

TYPER = Path(sys.executable).with_name("typer")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "400", "NO_COLOR": "1"}
EMBED_DIM = 16  # divisible by the 8 heads of the correlation transformers


def cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`typer trainer run <args>` from `cwd`, stdout and stderr merged."""
    return subprocess.run([str(TYPER), "trainer", "run", *args], cwd=cwd, env=ENV, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout
    assert "Traceback" not in result.stdout, result.stdout
    return result.stdout


def write_config(path: Path, **values) -> Path:
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def read_metrics(run_dir: Path, kind: str) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["kind"] == kind]


def test_training_on_ground_truth_pairs_fits_one_scene(tmp_path):
    """Eq. 1 alone with pair labels = ground truth memorises one room (mIoU >= 0.8)."""
    store = tmp_path / "store"
    write_synthetic_store(store, num_scenes=1, seed=0, embed_dim=EMBED_DIM, density=200.0)
    # 60 SGD steps on one scene; eval only at the end, so best.pt is the final model. Enough
    # steps that BatchNorm running statistics (used in eval mode) have caught up with training.
    config = write_config(
        tmp_path / "gt.yaml", name="gt", runs_root=str(tmp_path / "runs"), store_root=str(store),
        label_source="gt", intra_set=False, intra_scene=False, inter_scene=False, feedback=False,
        voxel_size=0.1, epochs=3, loop=20, batch_size=1, lr_3d=0.05, augment=False,
        num_workers=0, device="cpu", eval_every=3, progress=False)
    ok(cli("fit", "--config", str(config), cwd=tmp_path))
    run_dir = tmp_path / "runs" / "gt"
    train = read_metrics(run_dir, "train")
    assert len(train) == 60 and train[-1]["loss"] < 0.5 * train[0]["loss"]
    (logged,) = [r for r in read_metrics(run_dir, "epoch") if "miou" in r]
    result = evaluate(load_config(run_dir / "config.yaml"), run_dir / "best.pt")
    assert result["scenes"] == 1
    assert result["miou"] >= 0.8, result["iou"]
    assert result["miou"] == pytest.approx(logged["miou"], abs=2e-3)  # checkpoint = trained model


def test_resume_continues_exactly_where_the_run_stopped(tmp_path):
    """4 epochs in one go == 2 epochs, stop, --resume: same losses after resuming, same weights."""
    store = tmp_path / "store"
    write_synthetic_store(store, num_scenes=2, seed=1, embed_dim=EMBED_DIM, density=150.0,
                          size=(2.5, 2.5, 1.5), label_noise=0.2)
    # Full method, phases: Eq. 1 (epoch 1), + Eq. 4 intra/inter (epoch 2), + Eq. 8 (epochs 3-4).
    common = dict(store_root=str(store), runs_root=str(tmp_path / "runs"), voxel_size=0.15,
                  epochs=4, phase_epochs=[2, 3], batch_size=1, samples_per_scene=64,
                  transformer_depth=1, num_workers=0, device="cpu", eval_every=2, progress=False)
    config_a = write_config(tmp_path / "a.yaml", name="a", **common)
    config_b = write_config(tmp_path / "b.yaml", name="b", **common)
    ok(cli("fit", "--config", str(config_a), cwd=tmp_path))
    ok(cli("fit", "--config", str(config_b), "--until-epoch", "2", cwd=tmp_path))
    run_a, run_b = tmp_path / "runs" / "a", tmp_path / "runs" / "b"
    assert torch.load(run_b / "last.pt", weights_only=True)["epoch"] == 2
    ok(cli("fit", "--config", str(config_b), "--resume", cwd=tmp_path))

    steps_a, steps_b = read_metrics(run_a, "train"), read_metrics(run_b, "train")
    assert [r["step"] for r in steps_b] == [r["step"] for r in steps_a] == list(range(1, 9))
    first_resumed = steps_a[4]
    assert first_resumed["epoch"] == 3
    assert {"cross_modal", "intra_scene", "inter_scene", "feedback"} <= first_resumed.keys()
    for ra, rb in zip(steps_a, steps_b, strict=True):
        for key in ("loss", "cross_modal", "intra_scene", "inter_scene", "feedback", "lr_3d"):
            if key in ra or key in rb:
                assert rb[key] == pytest.approx(ra[key], rel=1e-5, abs=1e-7), (rb["step"], key)
    epochs_a, epochs_b = read_metrics(run_a, "epoch"), read_metrics(run_b, "epoch")
    assert [r["epoch"] for r in epochs_b] == [1, 2, 3, 4]
    assert epochs_b[-1]["miou"] == pytest.approx(epochs_a[-1]["miou"], abs=1e-6)

    state_a = torch.load(run_a / "last.pt", weights_only=True)
    state_b = torch.load(run_b / "last.pt", weights_only=True)
    assert (state_b["epoch"], state_b["step"]) == (state_a["epoch"], state_a["step"]) == (4, 8)
    assert state_b["best_miou"] == pytest.approx(state_a["best_miou"], abs=1e-6)
    for part in ("encoder", "correlation"):
        assert state_a[part].keys() == state_b[part].keys()
        for name, tensor in state_a[part].items():
            torch.testing.assert_close(state_b[part][name], tensor, rtol=1e-4, atol=1e-6,
                                       msg=f"{part}.{name}")
    assert state_b["optim"]["schedulers"] == state_a["optim"]["schedulers"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-epoch run of the synthetic preset (all terms active) made with the CLI."""
    root = tmp_path_factory.mktemp("cli")
    store = root / "store"
    write_synthetic_store(store, num_scenes=2, seed=2, embed_dim=EMBED_DIM, density=150.0,
                          size=(2.5, 2.5, 1.5))
    # With phase_reference_epochs 120 (from the preset) and epochs 1, both later phases start
    # at epoch 1, so every loss term runs; one DataLoader worker as in real training.
    config = root / "run.yaml"
    config.write_text(f"extends: synthetic-scannet\nname: cli\nruns_root: {root / 'runs'}\n"
                      f"store_root: {store}\ntrain_split: all\nval_split: all\nepochs: 1\nloop: 1\n"
                      f"voxel_size: 0.15\n"
                      f"samples_per_scene: 64\n")
    out = ok(cli("fit", "--config", str(config), cwd=root))
    return {"root": root, "store": store, "config": config, "run": root / "runs" / "cli", "out": out}


def test_cli_fit_then_eval_prints_iou_table(trained):
    assert "mIoU" in trained["out"] and "best mIoU" in trained["out"]
    epoch = read_metrics(trained["run"], "epoch")[-1]
    assert epoch["terms"] == ["cross_modal", "intra_scene", "inter_scene", "feedback"]
    for name in ("best.pt", "last.pt"):
        out = ok(cli("eval", "--checkpoint", str(trained["run"] / name), cwd=trained["root"]))
        assert "mIoU" in out and "wall" in out and "on 2 scenes" in out


def test_cli_rejects_unknown_config_key_without_traceback(trained):
    config = trained["root"] / "typo.yaml"
    config.write_text(f"extends: synthetic-scannet\nruns_root: {trained['root'] / 'typo'}\n"
                      f"store_root: {trained['store']}\ntrain_split: all\nval_split: all\nlr3d: 0.1\n")
    result = cli("fit", "--config", str(config), cwd=trained["root"])
    assert result.returncode != 0
    assert "lr3d" in result.stdout and "lr_3d" in result.stdout  # the key and the suggestion
    assert "Traceback" not in result.stdout
    assert not (trained["root"] / "typo").exists()


def test_eval_refuses_checkpoint_of_a_different_model(trained):
    """A 16-d checkpoint against 24-d text embeddings: one error line naming embed_dim."""
    other = trained["root"] / "store24"
    write_synthetic_store(other, num_scenes=1, seed=3, embed_dim=24, density=100.0,
                          size=(2.0, 2.0, 1.5))
    result = cli("eval", "--checkpoint", str(trained["run"] / "last.pt"),
                 "--set", f"store_root={other}", cwd=trained["root"])
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stdout
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, result.stdout
    assert lines[0].startswith("error:") and "different model" in lines[0]
    assert "embed_dim=16 in checkpoint, 24 now" in lines[0]
