"""Correlation transformers over sampled point features (Sec. 3.2, Eq. 3 and Eq. 7).

Each is a stack of standard pre-norm encoder layers (x + Attn(LN(x)), then x + MLP(LN(x)))
with d_model = D, the CLIP width, so that its output f^_m stays in the text-embedding space
as the residual form of Eq. 3 requires (no final norm, no dropout).
"""
from __future__ import annotations

import torch
import torch.nn as nn


class CorrelationTransformer(nn.Module):
    """`depth` pre-norm encoder layers of width `dim` over sets of point features."""

    def __init__(self, dim: int, depth: int = 3, heads: int = 8, mlp_ratio: int = 4):
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=mlp_ratio * dim, dropout=0.0, activation="gelu",
            batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        """f32[B, L, D] -> f32[B, L, D]; `padding` (bool[B, L]) marks slots to ignore."""
        return self.encoder(x, src_key_padding_mask=padding)


def intra_scene(transformer: CorrelationTransformer, features: torch.Tensor,
                offsets: torch.Tensor) -> torch.Tensor:  # Eq. 3
    """Attention within each scene's samples: rows [offsets[b], offsets[b+1]) are scene b."""
    counts = (offsets[1:] - offsets[:-1]).tolist()
    chunks = [c for c in torch.split(features, counts) if len(c)]  # a fully masked row gives NaN
    counts = [n for n in counts if n]
    padded = nn.utils.rnn.pad_sequence(chunks, batch_first=True)
    lengths = torch.tensor(counts, device=features.device)
    padding = torch.arange(padded.shape[1], device=features.device)[None, :] >= lengths[:, None]
    out = transformer(padded, padding)
    return out[~padding]


def inter_scene(transformer: CorrelationTransformer, features: torch.Tensor) -> torch.Tensor:  # Eq. 7
    """Attention across all scenes' samples of the batch as one sequence."""
    return transformer(features[None])[0]
