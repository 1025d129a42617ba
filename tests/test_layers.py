"""Layers point one way: the preprocessing half never imports the trainer, and loads torch only in
its CLIP stages and typer only in its command lines."""
from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pipeline

CLIP = "pipeline.clip"
COMMAND_LINES = ("pipeline.cli", "pipeline.datasets.synthetic.__main__", "pipeline.datasets.nuscenes_splits")


def imported_by(module: str) -> set[str]:
    """Top-level packages loaded by importing `module` in a fresh interpreter."""
    code = f"import importlib, json, sys; importlib.import_module({module!r}); print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return {name.split(".")[0] for name in json.loads(out.splitlines()[-1])}


def pipeline_modules() -> list[str]:
    """Every module of the pipeline package."""
    return sorted(m.name for m in pkgutil.walk_packages(pipeline.__path__, "pipeline."))


def test_no_pipeline_module_imports_the_trainer_torch_or_typer():
    modules = [m for m in pipeline_modules() if not m.startswith(CLIP) and m not in COMMAND_LINES]
    code = ("import importlib, json, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out.splitlines()[-1]))
    assert len(modules) > 30
    assert not loaded & {"trainer", "torch", "typer"}, sorted(loaded & {"trainer", "torch", "typer"})


def test_command_lines_load_typer_but_never_the_trainer_or_torch():
    for module in COMMAND_LINES:
        loaded = imported_by(module)
        assert "typer" in loaded and not loaded & {"trainer", "torch"}, module
