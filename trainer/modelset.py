"""The models of a run: the 3D model, the transformers and the fixed text embeddings on one
device, built seeded from the config or loaded from a checkpoint."""
from __future__ import annotations

import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainer import checkpoint
from trainer.config import ConfigError, TrainConfig
from trainer.data import read_text
from trainer.me_compat import ME
from trainer.models import Correlation, PointEncoder, input_channels, signature


def pick_device(name: str) -> torch.device:
    """auto|cpu|cuda -> device; CUDA needs both torch and MinkowskiEngine built with it."""
    usable = torch.cuda.is_available() and ME.is_cuda_available()
    if name == "auto":
        if torch.cuda.is_available() and not usable:
            warnings.warn("torch sees a CUDA device but MinkowskiEngine is a CPU-only build: running "
                          "on the CPU (make setup-gpu builds it with CUDA)", stacklevel=2)
        return torch.device("cuda" if usable else "cpu")
    if name == "cuda" and not usable:
        raise ConfigError("device: cuda requested but torch or MinkowskiEngine has no CUDA support")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (model initialisation)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Models:
    """The 3D model, the transformers and the fixed text embeddings, on one device."""

    encoder: PointEncoder
    correlation: Correlation
    text: torch.Tensor          # f32[C, D], fixed
    class_names: list[str]
    signature: dict[str, Any]

    def train(self, mode: bool = True) -> None:
        """Train/eval mode of every module."""
        self.encoder.train(mode)
        self.correlation.train(mode)


def build_models(cfg: TrainConfig, device: torch.device, text: np.ndarray | None = None,
                 class_names: list[str] | None = None) -> Models:
    """Models seeded by cfg.seed; text embeddings from the store unless given."""
    if text is None:
        text, class_names = read_text(cfg.store_root, cfg.text_stage)
    seed_everything(cfg.seed)
    dim = text.shape[1]
    encoder = PointEncoder(input_channels(cfg), dim, cfg.backbone).to(device)
    correlation = Correlation(cfg, dim).to(device)
    return Models(encoder, correlation, torch.from_numpy(np.asarray(text, np.float32)).to(device),
                  list(class_names), signature(cfg, dim, len(text)))


def load_encoder(models: Models, path: Path, state: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load a checkpoint's 3D model into `models` after checking its part of the signature;
    `state`: the checkpoint `path` already read (the file is then not read again)."""
    state = checkpoint.load(path) if state is None else state
    keys = ("backbone", "in_channels", "embed_dim")  # the class list may differ (open vocabulary)
    checkpoint.check_signature(path, {k: state["signature"].get(k) for k in keys},
                               {k: models.signature[k] for k in keys})
    models.encoder.load_state_dict(state["encoder"])
    return state
