"""Loading open_clip CLIP models once per process, with clear errors when weights are missing."""
from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import open_clip
import torch

from pipeline.errors import PipelineError

# A CLIP small enough for tests and the synthetic demo; vocabulary of open_clip's BPE tokenizer.
TINY_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}

RANDOM_INIT_SEED = 0  # `pretrained: none` builds the same weights in every process

OFFLINE_HINT = (
    "weights cannot be downloaded here (no network): copy the weights file to disk and set "
    "`checkpoint: /path/to/file`, or use `pretrained: none` for random weights (tests only)"
)


def pick_device(device: str = "auto") -> torch.device:
    """Resolve `auto|cpu|cuda` to a torch device; `auto` takes CUDA when it is available."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise PipelineError(f"device {device!r} requested but torch sees no CUDA device; use auto or cpu")
        return torch.device(device)
    raise PipelineError(f"unknown device {device!r}; options: auto, cpu, cuda")


def load_clip(
    model_name: str = "ViT-B-16",
    pretrained: str = "openai",
    checkpoint: str | None = None,
    device: str = "cpu",
    model_config: Mapping[str, Any] | None = None,
) -> tuple[torch.nn.Module, Callable[..., torch.Tensor]]:
    """Return (model in eval mode on `device`, tokenizer), cached per process for Dask workers.

    `checkpoint` (a file) wins over `pretrained` (an open_clip tag, or `none` for random
    weights). `model_config` (open_clip's `{embed_dim, vision_cfg, text_cfg}`) builds a model
    that open_clip does not list; `model_name` then only names it.
    """
    resolved = str(pick_device(device))
    config_json = json.dumps(model_config, sort_keys=True) if model_config is not None else None
    return _load_cached(model_name, pretrained, checkpoint, resolved, config_json)


@functools.lru_cache(maxsize=4)
def _load_cached(
    model_name: str, pretrained: str, checkpoint: str | None, device: str, config_json: str | None
) -> tuple[torch.nn.Module, Callable[..., torch.Tensor]]:
    """Build the model and tokenizer; the key is hashable so one process loads each once."""
    config = json.loads(config_json) if config_json is not None else None
    if config is None and model_name not in open_clip.list_models():
        raise PipelineError(
            f"unknown CLIP model {model_name!r}; open_clip models: {', '.join(open_clip.list_models())}"
        )
    if checkpoint is not None:
        model = _from_checkpoint(model_name, config, checkpoint)
    elif pretrained.lower() == "none":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            model = _build(model_name, config)
    elif config is not None:
        raise PipelineError(
            f"model_config builds an unlisted model, so pretrained tag {pretrained!r} cannot apply; "
            "give `checkpoint: /path/to/file` or `pretrained: none`"
        )
    else:
        model = _from_tag(model_name, pretrained)
    model = model.to(device).eval()
    model.requires_grad_(False)
    return model, _tokenizer(model_name, config)


def _build(model_name: str, config: dict[str, Any] | None) -> torch.nn.Module:
    """Randomly initialised model from open_clip's registry or from an explicit config."""
    if config is None:
        return open_clip.create_model(model_name, pretrained=None)
    try:
        return open_clip.model.CLIP(**config)
    except TypeError as err:
        raise PipelineError(f"model_config is not an open_clip CLIP config: {err}") from err


def _from_checkpoint(model_name: str, config: dict[str, Any] | None, checkpoint: str) -> torch.nn.Module:
    """Model with weights from a local file; a missing or unreadable file is a PipelineError."""
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise PipelineError(
            f"CLIP checkpoint {str(path)!r} does not exist; `checkpoint:` must name a weights file "
            f"on disk for {model_name} (open_clip tags for it: {', '.join(_tags(model_name)) or 'none'}; "
            f"{OFFLINE_HINT})"
        )
    try:
        if config is None:
            return open_clip.create_model(model_name, pretrained=str(path))
        model = _build(model_name, config)
        open_clip.load_checkpoint(model, str(path))
        return model
    except PipelineError:
        raise
    except Exception as err:  # torch/open_clip raise many types for a bad file
        raise PipelineError(f"cannot load CLIP checkpoint {str(path)!r} into {model_name}: {err}") from err


def _from_tag(model_name: str, pretrained: str) -> torch.nn.Module:
    """Model with open_clip's pretrained weights (only works when they are already cached)."""
    tags = _tags(model_name)
    if pretrained not in tags:
        raise PipelineError(
            f"unknown pretrained tag {pretrained!r} for {model_name}; open_clip tags: "
            f"{', '.join(tags) or 'none'}; or `pretrained: none` for random weights; {OFFLINE_HINT}"
        )
    try:
        return open_clip.create_model(model_name, pretrained=pretrained)
    except Exception as err:  # download failures surface as many exception types
        raise PipelineError(
            f"cannot load {model_name} weights {pretrained!r} ({type(err).__name__}: {err}); {OFFLINE_HINT}"
        ) from err


def _tags(model_name: str) -> list[str]:
    """Pretrained tags open_clip knows for `model_name`."""
    return list(open_clip.list_pretrained_tags_by_model(model_name))


def _tokenizer(model_name: str, config: dict[str, Any] | None) -> Callable[..., torch.Tensor]:
    """open_clip's tokenizer for the model; explicit configs use the standard BPE tokenizer."""
    if config is None:
        return open_clip.get_tokenizer(model_name)
    context_length = config.get("text_cfg", {}).get("context_length", 77)
    return open_clip.tokenizer.SimpleTokenizer(context_length=context_length)
