"""The 3D model (sparse UNet + linear head to the CLIP width) and the correlation transformers."""
from __future__ import annotations

import torch
import torch.nn as nn

from trainer.backbones import BACKBONES
from trainer.channels import input_width
from trainer.config import TrainConfig
from trainer.me_compat import ME
from trainer.models.correlation import CorrelationTransformer, inter_scene, intra_scene
from trainer.models.minkunet import MinkUNet


def input_channels(cfg: TrainConfig) -> int:
    """Per-voxel input features: the widths of the channels the dataset declares."""
    return input_width(cfg.channels)


class PointEncoder(nn.Module):
    """Backbone features -> linear head -> f_m in the text-embedding space (D = CLIP width)."""

    def __init__(self, in_channels: int, embed_dim: int, backbone: str = "MinkUNet14A"):
        super().__init__()
        self.backbone = MinkUNet(in_channels, BACKBONES[backbone])
        self.head = nn.Linear(self.backbone.out_channels, embed_dim)

    def forward(self, coords: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """i32[V,4] batched voxel coordinates + f32[V,F] features -> f32[V,D] in input order."""
        sparse = ME.SparseTensor(feats, coordinates=coords)
        out = self.backbone(sparse).F
        return self.head(out[sparse.inverse_mapping])  # ME's row order -> input row order


class Correlation(nn.Module):
    """The intra-scene and inter-scene transformers that the config switches on."""

    def __init__(self, cfg: TrainConfig, embed_dim: int):
        super().__init__()

        def make() -> CorrelationTransformer:
            return CorrelationTransformer(embed_dim, cfg.transformer_depth, cfg.transformer_heads)

        self.intra = make() if cfg.intra_scene else None
        self.inter = make() if cfg.inter_scene else None

    def forward(self, sampled: torch.Tensor, offsets: torch.Tensor) -> dict[str, torch.Tensor]:
        """The sampled voxels' features after each transformer there is, in order: `intra`
        (Eq. 3, within each scene's rows offsets[b]:offsets[b+1]), then `inter` (Eq. 7, across
        all scenes, fed the intra output when there is one)."""
        outputs: dict[str, torch.Tensor] = {}
        aggregated = sampled
        if self.intra is not None:
            aggregated = outputs["intra"] = intra_scene(self.intra, aggregated, offsets)
        if self.inter is not None:
            aggregated = outputs["inter"] = inter_scene(self.inter, aggregated)
        return outputs


def signature(cfg: TrainConfig, embed_dim: int, num_classes: int) -> dict[str, object]:
    """What a checkpoint's weights depend on; loading demands an exact match."""
    return {
        "backbone": cfg.backbone, "in_channels": input_channels(cfg), "embed_dim": embed_dim,
        "num_classes": num_classes, "intra_scene": cfg.intra_scene, "inter_scene": cfg.inter_scene,
        "transformer_depth": cfg.transformer_depth, "transformer_heads": cfg.transformer_heads,
    }
