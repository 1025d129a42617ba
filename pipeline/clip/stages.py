"""Stage adapters: `text` (global, class embeddings) and `features` (per scene, MaskCLIP)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import open_clip
import torch

from pipeline.classes import read_class_names
from pipeline.clip.maskclip import dense_features
from pipeline.clip.model import load_clip
from pipeline.clip.templates import PROMPT_TEMPLATES
from pipeline.clip.text import text_embeddings
from pipeline.errors import PipelineError, SceneError


def text_stage(inputs: Mapping[str, Mapping[str, np.ndarray]], params: Mapping[str, Any]) -> dict[str, Any]:
    """Prompt-ensembled text embeddings f32[C,D] of the class set, with its class names."""
    names = read_class_names(params["classes"])
    model, tokenizer = _model(params)
    with _inference(model):
        embeddings = text_embeddings(model, tokenizer, names, list(PROMPT_TEMPLATES))
    return {"embeddings": embeddings, "class_names": names}


def features_stage(inputs: Mapping[str, Mapping[str, np.ndarray]], params: Mapping[str, Any]) -> dict[str, Any]:
    """MaskCLIP features f16[K,h,w,D] of a scene's frames, batched, at patch resolution.

    With `key_smoothing` the stored features are MaskCLIP's key-smoothed ones (see
    `pipeline.clip.maskclip.smooth_by_keys`): labels are linear in the feature, so this equals
    smoothing the class scores of any class set later read from the store.
    """
    color = inputs["scenes"]["color"]
    if color.ndim != 4 or color.shape[-1] != 3 or color.dtype != np.uint8:
        raise SceneError(f"frames color must be u8[K,H,W,3], got {color.dtype}{list(color.shape)}")
    model, _ = _model(params)
    patch_hw = tuple(model.visual.patch_size)
    if color.shape[1] < patch_hw[0] or color.shape[2] < patch_hw[1]:
        raise SceneError(f"frames of {color.shape[1]}x{color.shape[2]} are smaller than a {patch_hw} patch")
    batch_size = int(params["batch_size"])
    key_smoothing = bool(params["key_smoothing"])
    if batch_size < 1:
        raise PipelineError(f"features batch_size must be >= 1, got {batch_size}")
    grid_hw = (color.shape[1] // patch_hw[0], color.shape[2] // patch_hw[1])
    out = np.empty((color.shape[0], *grid_hw, model.visual.output_dim), dtype=np.float16)
    device = next(model.parameters()).device
    mean, std = _mean_std(model, device)
    with _inference(model):
        for start in range(0, color.shape[0], batch_size):
            frames = torch.from_numpy(np.ascontiguousarray(color[start:start + batch_size])).to(device)
            images = (frames.permute(0, 3, 1, 2).float() / 255.0 - mean) / std
            out[start:start + len(frames)] = dense_features(model, images, key_smoothing=key_smoothing).half().cpu().numpy()
    return {"features": out, "patch_size": list(patch_hw)}


def _model(params: Mapping[str, Any]) -> tuple[torch.nn.Module, Any]:
    """The stage's (cached) CLIP model and tokenizer from its params."""
    return load_clip(
        model_name=params["model_name"],
        pretrained=str(params["pretrained"]),
        checkpoint=params["checkpoint"] or None,
        device=str(params["device"]),
        model_config=params["model_config"] or None,
    )


def _mean_std(model: torch.nn.Module, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """CLIP's input normalisation (the model's own when it declares one) as [1,3,1,1] tensors."""
    mean = getattr(model.visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN
    std = getattr(model.visual, "image_std", None) or open_clip.OPENAI_DATASET_STD
    shape = (1, 3, 1, 1)
    return (torch.tensor(mean, device=device).reshape(shape), torch.tensor(std, device=device).reshape(shape))


@contextlib.contextmanager
def _inference(model: torch.nn.Module) -> Iterator[None]:
    """Inference mode, with fp16 autocast when the model is on CUDA."""
    on_cuda = next(model.parameters()).device.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.float16) if on_cuda else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        yield
