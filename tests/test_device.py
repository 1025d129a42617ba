"""Device choice: the trainer and the `features` stage take the GPU when there is one, unless told.

CUDA is simulated (torch.cuda.is_available, MinkowskiEngine's build flag, torch.autocast), so
these run on CPU-only machines.
"""
from __future__ import annotations

import contextlib
import types

import pytest
import torch
from typer.testing import CliRunner

import pipeline.clip.stages as clip_stages
from pipeline.clip.model import pick_device as pipeline_device
from pipeline.stages import load_graph
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
