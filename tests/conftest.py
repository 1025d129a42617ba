"""Shared fixtures: a toy pipeline for runner tests and generated synthetic data."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A toy dataset of 4 scenes, its stages file, a store root and a call log."""
    from toy_pipeline import STAGES_YAML

    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(4):
        (raw / f"s{i}.txt").write_text(" ".join(str(i + k) for k in range(5)))
    stages = tmp_path / "stages.yaml"
    stages.write_text(STAGES_YAML)
    log = tmp_path / "calls.log"
    monkeypatch.setenv("TOY_LOG", str(log))
    return {"raw": raw, "stages": stages, "store": str(tmp_path / "stores"), "log": log}


@pytest.fixture(scope="session")
def room_template(tmp_path_factory) -> Path:
    """One generated synthetic room (6 RGB-D frames) in ScanNet's layout, copied by `rooms.copy_rooms`."""
    from rooms import QUICK_FUSION

    from pipeline.datasets.synthetic import generate_scannet

    root = tmp_path_factory.mktemp("room_template")
    generate_scannet(root, scenes=1, seed=3, frames=6, val=0, spacing=0.08, fusion=QUICK_FUSION)
    return root


@pytest.fixture(scope="session")
def beyond_store(tmp_path_factory) -> tuple[Path, list[str]]:
    """A 2-scene synthetic store with every stage (the beyond-the-paper options' tests)."""
    from trainer.synthetic import write_synthetic_store

    root = tmp_path_factory.mktemp("beyond") / "store"
    scenes = write_synthetic_store(root, num_scenes=2, seed=3, embed_dim=16, density=80.0,
                                   size=(2.0, 2.0, 1.5), label_noise=0.3)
    return root, scenes
