"""Device choice: the trainer and the `features` stage take the GPU when there is one, unless told;
on a Dask cluster GPU tasks take the `GPU` resource, one at a time.

CUDA is simulated (torch.cuda.is_available, MinkowskiEngine's build flag, torch.autocast), so
these run on CPU-only machines.
"""
from __future__ import annotations

import contextlib
import threading
import time
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import pipeline.clip.stages as clip_stages
from pipeline import runner, store
from pipeline.clip.model import pick_device as pipeline_device
from pipeline.errors import PipelineError
from pipeline.plan import Status
from pipeline.stages import load_graph, parse_graph
from trainer.cli import app, with_device
from trainer.config import ConfigError, TrainConfig, load_config
from trainer.engine import pick_device as trainer_device
from trainer.me_compat import ME


def _cuda(monkeypatch: pytest.MonkeyPatch, torch_cuda: bool, me_cuda: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: torch_cuda)
    monkeypatch.setattr(ME, "is_cuda_available", lambda: me_cuda)


@pytest.mark.parametrize("torch_cuda, me_cuda, auto", [
    (False, False, "cpu"), (True, True, "cuda"), (False, True, "cpu"), (True, False, "cpu")])
def test_trainer_auto_takes_cuda_only_when_torch_and_minkowskiengine_have_it(
        monkeypatch, recwarn, torch_cuda, me_cuda, auto):
    _cuda(monkeypatch, torch_cuda, me_cuda)
    assert trainer_device("auto") == torch.device(auto)
    assert trainer_device("cpu") == torch.device("cpu")
    if auto == "cuda":
        assert trainer_device("cuda") == torch.device("cuda")
    else:
        with pytest.raises(ConfigError, match="device: cuda requested"):
            trainer_device("cuda")
    # a GPU that the CPU-only MinkowskiEngine cannot use is said, not silently skipped
    warned = [w for w in recwarn if "CPU-only build" in str(w.message)]
    assert bool(warned) == (torch_cuda and not me_cuda)


def test_trainer_defaults_to_auto():
    assert TrainConfig().device == "auto"
    assert load_config("scannet").device == "auto"


def test_device_option_wins_over_config_and_set():
    assert with_device(None, None) == []
    assert with_device(["epochs=3"], None) == ["epochs=3"]
    assert with_device(["device=cuda", "epochs=3"], "cpu")[-1] == "device=cpu"
    assert load_config("scannet", with_device(["device=cuda"], "cpu")).device == "cpu"
    with pytest.raises(ConfigError, match="device: must be one of"):
        load_config("scannet", with_device(None, "tpu"))


@pytest.mark.parametrize("command", ["fit", "eval", "predict"])
def test_commands_take_device_option(command):
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--device" in result.output


def test_features_and_text_stages_default_to_auto():
    graph = load_graph()
    for stage in ("features", "text"):
        param = graph.stages[stage].params["device"]
        assert param.default == "auto" and set(param.choices) == {"auto", "cpu", "cuda"}


def test_pipeline_auto_takes_cuda_when_torch_has_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pipeline_device("auto") == torch.device("cuda")
    assert pipeline_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pipeline_device("auto") == torch.device("cpu")


class _On:
    """A stand-in model whose parameters live on `device` (nothing is allocated there)."""

    def __init__(self, device: str):
        self.device = torch.device(device)

    def parameters(self):
        yield types.SimpleNamespace(device=self.device)


@pytest.mark.parametrize("device, expected", [("cuda", [("cuda", torch.float16)]), ("cpu", [])])
def test_features_run_in_fp16_autocast_on_cuda_only(monkeypatch, device, expected):
    calls = []

    def autocast(device_type, dtype=None, **kwargs):
        calls.append((device_type, dtype))
        return contextlib.nullcontext()

    monkeypatch.setattr(clip_stages.torch, "autocast", autocast)
    with clip_stages._inference(_On(device)):
        assert torch.is_inference_mode_enabled()
    assert calls == expected


# ---- the GPU as a Dask resource: one GPU task at a time ----

_RUNS: list[tuple[str, float, float]] = []  # (worker address, start, end) of each recorded task
_RUNS_LOCK = threading.Lock()


def record_worker(inputs, params):
    """A stage function that notes which worker ran it and when (the cluster runs threads here)."""
    from distributed import get_worker

    start = time.perf_counter()
    time.sleep(0.05)
    with _RUNS_LOCK:
        _RUNS.append((get_worker().address, start, time.perf_counter()))
    return {"x": np.zeros(1, np.uint8)}


def _overlaps(runs):
    return any(a[1] < b[2] and b[1] < a[2] for i, a in enumerate(runs) for b in runs[i + 1:])


def test_gpu_tasks_run_one_at_a_time_on_the_gpu_worker():
    root = "memory://gpu-resource"
    store.reset_stage(root, "probe", {"fingerprint": "f"})
    tasks = [("probe", f"{__name__}:record_worker", "scene", (), root, f"s{i}", {}, "f", None)
             for i in range(6)]
    executor = runner.Executor(3, None, processes=False, gpu=True)
    try:
        gpu_workers = executor.gpu_workers()
        assert len(gpu_workers) == 1  # one of the three, not an extra one
        assert len(executor._start().scheduler_info(n_workers=-1)["workers"]) == 3
        results = []
        _RUNS.clear()
        executor.map(tasks, results.append, gpu=True)
        assert sorted(r[0] for r in results) == [f"s{i}" for i in range(6)] and all(r[1] is None for r in results)
        assert {w for w, _, _ in _RUNS} == set(gpu_workers) and not _overlaps(list(_RUNS))
        _RUNS.clear()
        cpu_tasks = [(*t[:7], "g", None) for t in tasks]  # other keys: not the results above
        executor.map(cpu_tasks, results.append, gpu=False)  # CPU tasks use every worker
        assert len({w for w, _, _ in _RUNS}) > 1
    finally:
        executor.close()


def test_without_a_gpu_worker_gpu_tasks_still_run():
    root = "memory://gpu-resource-none"
    store.reset_stage(root, "probe", {"fingerprint": "f"})
    tasks = [("probe", f"{__name__}:record_worker", "scene", (), root, f"s{i}", {}, "f", None) for i in range(2)]
    executor = runner.Executor(2, None, processes=False, gpu=False)
    try:
        assert executor.gpu_workers() == []
        results = []
        executor.map(tasks, results.append, gpu=True)  # no worker has the resource: not held back
        assert len(results) == 2 and all(r[1] is None for r in results)
    finally:
        executor.close()


def test_gpu_stages_and_when_the_local_cluster_gets_a_gpu_worker(monkeypatch):
    graph = load_graph()
    assert graph.stages["features"].gpu and graph.stages["text"].gpu
    assert not graph.stages["text"].variants["simulated"].gpu and not graph.stages["pairs"].gpu
    features = graph.stages["features"]
    assert runner.uses_gpu(features, {"device": "auto"}) and not runner.uses_gpu(features, {"device": "cpu"})
    checked = []
    monkeypatch.setattr(runner, "cuda_available", lambda: checked.append(1) or True)
    cfg = runner.RunConfig("scannet", Path("."), "memory://x", workers=2)
    todo = runner.StagePlan(features, {"device": "auto"}, "f", Status.REBUILD, "never run")
    assert runner.needs_local_gpu(cfg, [todo])
    assert not runner.needs_local_gpu(replace(cfg, workers=0), [todo])            # in-process
    assert not runner.needs_local_gpu(replace(cfg, scheduler="tcp://a:1"), [todo])  # the cluster's own
    checked.clear()
    assert not runner.needs_local_gpu(cfg, [replace(todo, status=Status.UP_TO_DATE)])
    assert not runner.needs_local_gpu(cfg, [replace(todo, params={"device": "cpu"})])
    assert not checked  # torch is not asked when no GPU stage runs


@pytest.mark.parametrize("spec, message", [
    ({"gpu": "yes"}, "gpu must be true or false"),
    ({"gpu": True}, "a gpu stage needs a 'device' param"),
])
def test_gpu_key_is_validated(spec, message):
    raw = {"stages": {"s": {"function": "m:f", "kind": "scene", "version": 1, **spec}}, "datasets": {}}
    with pytest.raises(PipelineError, match=message):
        parse_graph(raw)
