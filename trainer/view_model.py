"""A checkpoint's 3D model for the viewer, loaded once: per scene, the predicted class and the
feature f_m of every point (the open-vocabulary queries compare phrases with it)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from trainer.checkpoint import CheckpointError, load
from trainer.config import TrainConfig
from trainer.engine import build_models, eval_loader, load_encoder, pick_device
from trainer.evaluation import point_classes


@dataclass
class ScenePrediction:
    """A scene's prediction: class per point, and the L2-normalised feature of each point's voxel."""

    labels: np.ndarray  # i16[N]
    voxel_features: np.ndarray  # f32[V, D]
    inverse: np.ndarray  # i64[N] point -> voxel

    def similarity(self, text: np.ndarray) -> np.ndarray:
        """f32[N]: cosine similarity of each point's feature with an L2-normalised f32[D]."""
        if text.shape[-1] != self.voxel_features.shape[1]:
            raise CheckpointError(f"the text encoder gives {text.shape[-1]}-d embeddings but the 3D model "
                                  f"outputs {self.voxel_features.shape[1]}-d features")
        return (self.voxel_features @ text.astype(np.float32))[self.inverse]


class CheckpointModel:
    """The 3D model of a checkpoint with the class embeddings it was trained with, in eval mode."""

    def __init__(self, cfg: TrainConfig, checkpoint: Path) -> None:
        saved = load(checkpoint)
        self.cfg = cfg
        self.class_names = list(saved["class_names"])
        self.device = pick_device(cfg.device)
        self.models = build_models(cfg, self.device, saved["text"].numpy(), self.class_names)
        load_encoder(self.models, checkpoint)
        self.models.train(False)

    def predict(self, scene: str) -> ScenePrediction:
        """Run the 3D model on `scene` as evaluation reads it (full point resolution)."""
        (batch,) = list(eval_loader(self.cfg, [scene], len(self.class_names)))
        batch = batch.to(self.device)
        with torch.no_grad():
            feats = self.models.encoder(batch.coords, batch.feats)
            labels = point_classes(feats, self.models.text, batch.inverse)
            unit = torch.nn.functional.normalize(feats, dim=1)
        return ScenePrediction(labels.cpu().numpy().astype(np.int16), unit.cpu().numpy(),
                               batch.inverse.cpu().numpy())
