"""MaskCLIP dense features (Sec. 3.1): per-patch CLIP embeddings from the value path.

In the last vision block the query-key attention is skipped: each patch token goes through the
value projection and the attention output projection on its own, so its embedding stays local
while living in CLIP's joint image-text space. The model is only read, never modified.

Optional key smoothing (MaskCLIP's first refinement, Zhou et al. ECCV 2022, Sec. 3.3) mixes each
patch's feature with those of patches whose last-block attention keys look alike.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.transformer import VisionTransformer
from torch import nn

from pipeline.errors import PipelineError


def dense_features(model: Any, images: np.ndarray | torch.Tensor, *,
                   key_smoothing: bool = False) -> np.ndarray | torch.Tensor:
    """L2-normalised MaskCLIP features f32[B,h,w,D] of CLIP-normalised images f32[B,3,H,W].

    h, w = H // patch, W // patch; any frame size works through positional-embedding
    interpolation. NumPy in gives NumPy out; a tensor in gives a tensor on its device.
    `key_smoothing` applies `smooth_by_keys` with the last block's patch keys (see there).
    """
    visual = model.visual
    _check_supported(visual)
    as_numpy = isinstance(images, np.ndarray)
    x = torch.from_numpy(images) if as_numpy else images
    if x.ndim != 4 or x.shape[1] != 3:
        raise PipelineError(f"dense_features expects images [B,3,H,W], got {tuple(x.shape)}")
    with torch.no_grad():
        x = x.to(device=visual.conv1.weight.device, dtype=visual.conv1.weight.dtype)
        tokens, grid_hw = _embed_patches(visual, x)
        patches, last_in = _run_blocks(visual, tokens)
        dense = patches @ visual.proj if visual.proj is not None else patches
        dense = F.normalize(dense.float(), dim=-1)
        if key_smoothing:
            dense = smooth_by_keys(dense, patch_keys(visual.transformer.resblocks[-1], last_in))
    dense = dense.reshape(x.shape[0], grid_hw[0], grid_hw[1], -1)
    return dense.cpu().numpy() if as_numpy else dense


def _check_supported(visual: nn.Module) -> None:
    """Raise unless `visual` is open_clip's standard ViT tower (class token, MHA, no attn pool)."""
    if not isinstance(visual, VisionTransformer):
        raise PipelineError(
            f"MaskCLIP dense features need an open_clip ViT image tower, got {type(visual).__name__}; "
            "use a ViT model such as ViT-B-16"
        )
    if getattr(visual, "attn_pool", None) is not None:
        raise PipelineError("MaskCLIP dense features do not support ViTs with attentional pooling")
    attn = visual.transformer.resblocks[-1].attn
    if not isinstance(attn, nn.MultiheadAttention) or attn.in_proj_weight is None:
        raise PipelineError(
            f"MaskCLIP needs a packed-qkv nn.MultiheadAttention in the last block, got {type(attn).__name__}"
        )


def _embed_patches(visual: VisionTransformer, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """Patch tokens with the class token prepended and positional embeddings added, after ln_pre."""
    x = visual.conv1(images)
    grid_hw = (x.shape[2], x.shape[3])
    x = x.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + positional_embedding(visual, grid_hw).to(x.dtype)
    return visual.ln_pre(x), grid_hw


def positional_embedding(visual: VisionTransformer, grid_hw: tuple[int, int]) -> torch.Tensor:
    """The class + patch positional embeddings for a patch grid, bicubic-resized when it differs."""
    pos = visual.positional_embedding
    grid0 = tuple(visual.grid_size)
    if grid0 == tuple(grid_hw):
        return pos
    width = pos.shape[-1]
    grid = pos[1:].reshape(1, grid0[0], grid0[1], width).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=grid_hw, mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(grid_hw[0] * grid_hw[1], width).to(pos.dtype)
    return torch.cat([pos[:1], grid], dim=0)


def _run_blocks(visual: VisionTransformer, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All blocks but the last as usual, then the value path on patch tokens; ln_post applied.

    Returns (patch outputs [B,L,W], the last block's input patch tokens [B,L,W]).
    """
    blocks = visual.transformer.resblocks
    batch_first = getattr(blocks[0].attn, "batch_first", False)
    x = tokens if batch_first else tokens.transpose(0, 1)
    for block in blocks[:-1]:
        x = block(x)
    x = x if batch_first else x.transpose(0, 1)
    patches = value_path_block(blocks[-1], x[:, 1:])
    return visual.ln_post(patches), x[:, 1:]


def value_path_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One residual block with query-key attention skipped: x + out(v(ln_1 x)), then the MLP."""
    attn: nn.MultiheadAttention = block.attn
    width = attn.embed_dim
    bias = attn.in_proj_bias[2 * width:] if attn.in_proj_bias is not None else None
    value = F.linear(block.ln_1(x), attn.in_proj_weight[2 * width:], bias)
    x = x + block.ls_1(attn.out_proj(value))
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def patch_keys(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Attention keys k = W_k ln_1(x) + b_k [B,L,W] of tokens x[B,L,W] (all heads, concatenated)."""
    attn: nn.MultiheadAttention = block.attn
    width = attn.embed_dim
    bias = attn.in_proj_bias[width:2 * width] if attn.in_proj_bias is not None else None
    return F.linear(block.ln_1(x), attn.in_proj_weight[width:2 * width], bias)


def smooth_by_keys(features: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """MaskCLIP key smoothing of patch features f[B,L,D] (L2-normalised) by patch keys k[B,L,W].

    f'_i = g_i / |g_i| with g_i = sum_j cos(k_i, k_j) f_j over all L patches of the image: the
    weights are the raw key cosine similarities (MaskCLIP's, not softmaxed nor row-normalised).
    Class scores are linear in the feature, <g_i, T_c> = sum_j cos(k_i, k_j) <f_j, T_c>, so
    smoothing the features before storage is the same as smoothing MaskCLIP's class scores
    (cosine logits), for any class set; the final re-normalisation scales each patch's scores
    by 1/|g_i| > 0, which keeps the patch's argmax and the stored features on the unit sphere
    (so confidences stay at CLIP's logit scale). MaskCLIP smooths softmax(100 s) instead, and
    only where the top probability is below `ks_thresh`; with its default 1.0 that is (almost)
    every patch, which is what this does. Computed in f32, autocast off.
    """
    with torch.autocast(features.device.type, enabled=False):
        k = F.normalize(keys.float(), dim=-1)
        weights = k @ k.transpose(-2, -1)
        return F.normalize(weights @ features.float(), dim=-1)
