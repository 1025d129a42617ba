"""MaskCLIP dense features and CLIP loading, checked against an explicit matrix computation."""
from __future__ import annotations

import copy
import math
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.clip.maskclip import dense_features
from pipeline.clip.model import TINY_CONFIG, _load_cached, load_clip, pick_device
from pipeline.clip.stages import features_stage
from pipeline.errors import PipelineError, SceneError
from pipeline.stages import stage_params

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711])
TINY_PARAMS = {"model_name": "tiny", "pretrained": "none", "model_config": TINY_CONFIG, "device": "cpu"}
# Layer scales on, so the hand computation also checks where ls_1 / ls_2 apply.
LS_CONFIG = {**TINY_CONFIG, "vision_cfg": {**TINY_CONFIG["vision_cfg"], "ls_init_value": 0.5}}


@pytest.fixture(scope="module")
def perturbed_model():
    """The tiny random CLIP with every parameter (biases, norms, scales) moved off its init."""
    model, _ = load_clip("tiny", pretrained="none", model_config=LS_CONFIG)
    model = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn(param.shape, generator=gen))
    return model


def _layer_norm(x: torch.Tensor, ln) -> torch.Tensor:
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + ln.eps) * ln.weight.double() + ln.bias.double()


def _gelu(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _scale(ls) -> torch.Tensor | float:
    return ls.gamma.double() if hasattr(ls, "gamma") else 1.0


def _mlp(block, x: torch.Tensor) -> torch.Tensor:
    assert isinstance(block.mlp.gelu, torch.nn.GELU)
    hidden = _gelu(x @ block.mlp.c_fc.weight.double().T + block.mlp.c_fc.bias.double())
    return hidden @ block.mlp.c_proj.weight.double().T + block.mlp.c_proj.bias.double()


def _full_block(block, x: torch.Tensor) -> torch.Tensor:
    """A standard pre-LN block on one image's tokens x[L,W] with multi-head softmax attention."""
    attn = block.attn
    width, heads = attn.embed_dim, attn.num_heads
    qkv = _layer_norm(x, block.ln_1) @ attn.in_proj_weight.double().T + attn.in_proj_bias.double()
    q, k, v = qkv[:, :width], qkv[:, width:2 * width], qkv[:, 2 * width:]
    dh = width // heads
    outs = []
    for h in range(heads):
        sl = slice(h * dh, (h + 1) * dh)
        weights = torch.softmax(q[:, sl] @ k[:, sl].T / math.sqrt(dh), dim=-1)
        outs.append(weights @ v[:, sl])
    mixed = torch.cat(outs, dim=1) @ attn.out_proj.weight.double().T + attn.out_proj.bias.double()
    x = x + _scale(block.ls_1) * mixed
    return x + _scale(block.ls_2) * _mlp(block, _layer_norm(x, block.ln_2))


def _hand_forward(model, image: np.ndarray, key_smoothing: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(global embedding [D], MaskCLIP features [h,w,D]) of one normalised image [3,H,W], in f64.

    key_smoothing: f'_i = g_i / |g_i|, g_i = sum_j cos(k_i, k_j) f_j with the last block's keys
    k_j = W_k ln_1(x_j) + b_k of the patch tokens entering it.
    """
    visual = model.visual
    img = torch.from_numpy(image).double()
    weight = visual.conv1.weight.double()
    width, _, ph, pw = weight.shape
    h, w = img.shape[1] // ph, img.shape[2] // pw
    patches = torch.stack([
        img[:, i * ph:(i + 1) * ph, j * pw:(j + 1) * pw].reshape(-1)
        for i in range(h) for j in range(w)
    ])
    x = torch.cat([visual.class_embedding.double()[None], patches @ weight.reshape(width, -1).T])
    pos = visual.positional_embedding.double()
    gh, gw = visual.grid_size
    if (gh, gw) != (h, w):
        grid = pos[1:].T.reshape(1, width, gh, gw)
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
        pos = torch.cat([pos[:1], grid.reshape(width, h * w).T])
    x = _layer_norm(x + pos, visual.ln_pre)
    blocks = visual.transformer.resblocks
    for block in blocks[:-1]:
        x = _full_block(block, x)
    proj = visual.proj.double()
    global_emb = _layer_norm(_full_block(blocks[-1], x)[0], visual.ln_post) @ proj
    last, attn = blocks[-1], blocks[-1].attn
    w_v = attn.in_proj_weight.double()[2 * width:]
    b_v = attn.in_proj_bias.double()[2 * width:]
    dense = []
    for token in x[1:]:  # patch tokens one by one: no attention between them
        value = w_v @ _layer_norm(token, last.ln_1) + b_v
        y = token + _scale(last.ls_1) * (attn.out_proj.weight.double() @ value + attn.out_proj.bias.double())
        y = y + _scale(last.ls_2) * _mlp(last, _layer_norm(y, last.ln_2))
        z = _layer_norm(y, visual.ln_post) @ proj
        dense.append(z / torch.sqrt((z * z).sum()))
    if key_smoothing:
        w_k = attn.in_proj_weight.double()[width:2 * width]
        b_k = attn.in_proj_bias.double()[width:2 * width]
        keys = [w_k @ _layer_norm(token, last.ln_1) + b_k for token in x[1:]]
        smoothed = []
        for k_i in keys:
            g = sum(float(k_i @ k_j / (k_i.norm() * k_j.norm())) * f_j for k_j, f_j in zip(keys, dense, strict=True))
            smoothed.append(g / g.norm())
        dense = smoothed
    return global_emb.numpy(), torch.stack(dense).reshape(h, w, -1).numpy()


def _normalise(color: np.ndarray) -> np.ndarray:
    """u8[K,H,W,3] -> CLIP-normalised f32[K,3,H,W]."""
    return ((color / 255.0 - CLIP_MEAN) / CLIP_STD).transpose(0, 3, 1, 2).astype(np.float32)


@pytest.mark.parametrize("hw", [(32, 32), (40, 48)])
def test_dense_features_equal_hand_value_path(perturbed_model, hw):
    rng = np.random.default_rng(0)
    images = _normalise(rng.integers(0, 256, size=(2, *hw, 3), dtype=np.uint8))
    dense = dense_features(perturbed_model, images)
    assert isinstance(dense, np.ndarray) and dense.dtype == np.float32
    assert dense.shape == (2, hw[0] // 8, hw[1] // 8, 32)
    for b in range(2):
        global_emb, hand = _hand_forward(perturbed_model, images[b])
        np.testing.assert_allclose(dense[b], hand, atol=2e-5)
        if hw == (32, 32):  # the hand transformer reproduces the model's own forward
            with torch.no_grad():
                own = perturbed_model.encode_image(torch.from_numpy(images[b:b + 1]))[0].numpy()
            np.testing.assert_allclose(own, global_emb, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(dense, axis=-1), 1.0, atol=1e-5)


def test_dense_features_tensor_in_tensor_out(perturbed_model):
    images = _normalise(np.random.default_rng(1).integers(0, 256, size=(1, 32, 40, 3), dtype=np.uint8))
    out = dense_features(perturbed_model, torch.from_numpy(images))
    assert isinstance(out, torch.Tensor) and out.shape == (1, 4, 5, 32)
    np.testing.assert_allclose(out.numpy(), dense_features(perturbed_model, images), atol=1e-6)


@pytest.mark.parametrize("hw", [(32, 32), (40, 48)])
def test_key_smoothing_equals_hand_computation(perturbed_model, hw):
    images = _normalise(np.random.default_rng(3).integers(0, 256, size=(2, *hw, 3), dtype=np.uint8))
    smoothed = dense_features(perturbed_model, images, key_smoothing=True)
    plain = dense_features(perturbed_model, images)
    assert smoothed.dtype == np.float32 and smoothed.shape == plain.shape
    for b in range(2):
        np.testing.assert_allclose(smoothed[b], _hand_forward(perturbed_model, images[b], True)[1], atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(smoothed, axis=-1), 1.0, atol=1e-5)
    assert np.abs(smoothed - plain).max() > 0.05  # the smoothing does something here
    tensor_out = dense_features(perturbed_model, torch.from_numpy(images), key_smoothing=True)
    np.testing.assert_allclose(tensor_out.numpy(), smoothed, atol=1e-6)


def test_smoothing_off_is_the_plain_value_path(perturbed_model):
    images = _normalise(np.random.default_rng(4).integers(0, 256, size=(2, 40, 48, 3), dtype=np.uint8))
    off = dense_features(perturbed_model, images, key_smoothing=False)
    np.testing.assert_array_equal(off, dense_features(perturbed_model, images))
    for b in range(2):
        np.testing.assert_allclose(off[b], _hand_forward(perturbed_model, images[b])[1], atol=2e-5)


@pytest.mark.parametrize("key_smoothing", [None, False, True])
def test_features_stage_key_smoothing_param(perturbed_model, tmp_path, key_smoothing):
    path = tmp_path / "tiny.pt"
    torch.save(perturbed_model.state_dict(), path)
    overrides = {"model_name": "tiny", "pretrained": "none", "checkpoint": str(path),
                 "model_config": LS_CONFIG, "device": "cpu", "batch_size": 2}
    if key_smoothing is not None:
        overrides["key_smoothing"] = key_smoothing
    params = stage_params("features", overrides)
    color = np.random.default_rng(5).integers(0, 256, size=(3, 33, 41, 3), dtype=np.uint8)
    feats = features_stage({"scenes": {"color": color}}, params)["features"]
    assert feats.dtype == np.float16 and feats.shape == (3, 4, 5, 32)
    images = _normalise(color)
    for k in range(3):
        hand = _hand_forward(perturbed_model, images[k], bool(key_smoothing))[1]
        np.testing.assert_allclose(feats[k].astype(np.float64), hand, atol=2e-3)


def test_features_stage_matches_hand_and_leaves_model_intact(perturbed_model, tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(perturbed_model.state_dict(), path)
    params = stage_params("features", {"model_name": "tiny", "pretrained": "none", "checkpoint": str(path),
                                       "model_config": LS_CONFIG, "device": "cpu", "batch_size": 2})
    model, _ = load_clip("tiny", "none", str(path), "cpu", LS_CONFIG)
    probe = torch.from_numpy(_normalise(np.full((1, 32, 32, 3), 100, dtype=np.uint8)))
    with torch.no_grad():
        before = model.encode_image(probe).clone()
    color = np.random.default_rng(2).integers(0, 256, size=(3, 42, 59, 3), dtype=np.uint8)
    out = features_stage({"scenes": {"color": color}}, params)
    feats = out["features"]
    assert feats.dtype == np.float16 and feats.shape == (3, 5, 7, 32)
    assert out["patch_size"] == [8, 8]
    images = _normalise(color)
    for k in range(3):
        np.testing.assert_allclose(feats[k].astype(np.float64), _hand_forward(perturbed_model, images[k])[1],
                                   atol=2e-3)
    with torch.no_grad():
        after = model.encode_image(probe)
    assert torch.equal(before, after)
    assert "forward" not in vars(model.visual)  # no patched method left on the instance


def test_features_stage_handles_no_frames():
    params = stage_params("features", TINY_PARAMS)
    out = features_stage({"scenes": {"color": np.zeros((0, 40, 48, 3), np.uint8)}}, params)
    assert out["features"].shape == (0, 5, 6, 32)


@pytest.mark.parametrize("color", [np.zeros((2, 32, 32, 3), np.float32), np.zeros((2, 32, 32), np.uint8),
                                   np.zeros((2, 4, 32, 3), np.uint8)])
def test_features_stage_rejects_bad_frames(color):
    params = stage_params("features", TINY_PARAMS)
    with pytest.raises(SceneError):
        features_stage({"scenes": {"color": color}}, params)


def test_unsupported_tower_is_a_clear_error():
    with pytest.raises(PipelineError, match="ViT image tower"):
        dense_features(types.SimpleNamespace(visual=torch.nn.Identity()), np.zeros((1, 3, 32, 32), np.float32))


def test_model_is_cached_and_random_init_is_reproducible():
    a, _ = load_clip("tiny", pretrained="none", model_config=TINY_CONFIG)
    assert load_clip("tiny", pretrained="none", model_config=TINY_CONFIG)[0] is a
    assert load_clip("tiny", pretrained="none", model_config={**TINY_CONFIG, "embed_dim": 16})[0] is not a
    _load_cached.cache_clear()  # a new process builds the same random weights
    fresh, _ = load_clip("tiny", pretrained="none", model_config=TINY_CONFIG)
    assert fresh is not a
    for p, q in zip(a.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(p, q)


def test_missing_checkpoint_names_path_and_options(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(PipelineError) as err:
        load_clip("ViT-B-16", checkpoint=str(missing))
    msg = str(err.value)
    assert str(missing) in msg and "openai" in msg and "checkpoint: /path/to/file" in msg


def test_unknown_tag_names_the_known_tags():
    with pytest.raises(PipelineError) as err:
        load_clip("ViT-B-16", pretrained="no-such-tag")
    msg = str(err.value)
    assert "no-such-tag" in msg and "openai" in msg and "laion2b" in msg and "checkpoint: /path/to/file" in msg


def test_unknown_model_and_bad_checkpoint(tmp_path):
    with pytest.raises(PipelineError, match="ViT-B-16"):
        load_clip("ViT-Nope", pretrained="none")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(PipelineError, match="cannot load CLIP checkpoint"):
        load_clip("tiny", checkpoint=str(junk), model_config=TINY_CONFIG)
    with pytest.raises(PipelineError, match="pretrained: none"):
        load_clip("tiny", pretrained="openai", model_config=TINY_CONFIG)


def test_pick_device():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(PipelineError, match="auto, cpu, cuda"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(PipelineError, match="no CUDA"):
            pick_device("cuda")
