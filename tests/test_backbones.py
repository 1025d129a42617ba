"""The backbone table: every row builds and runs on the CPU, deeper rows are larger, and
MinkUNet14A keeps the state_dict layout of the checkpoints written before the table existed."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from trainer.backbones import BACKBONES
from trainer.config import load_config
from trainer.me_compat import ME
from trainer.models import PointEncoder, signature
from trainer.models.minkunet import BLOCKS, MinkUNet

# sha256 of the sorted "key:shape" lines of PointEncoder(3, 16).state_dict() with MinkUNet14A,
# as written by the trainer before backbones became a table (194 entries).
MINKUNET14A_LAYOUT = "288d9008e973bdf32d8296b8bbb70677527d23061fdc6f27936f83face890283"


def layout_digest(state: dict[str, torch.Tensor]) -> str:
    lines = "\n".join(f"{key}:{tuple(value.shape)}" for key, value in sorted(state.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def tiny_cloud(num_points: int = 300, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched voxel coordinates i32[V, 4] of two small scenes and f32[V, 3] features."""
    rng = np.random.default_rng(seed)
    scenes = [np.unique(rng.integers(0, 24, (num_points, 3)), axis=0) for _ in range(2)]
    coords = ME.utils.batched_coordinates([torch.from_numpy(c.astype(np.int32)) for c in scenes],
                                          dtype=torch.int32)
    return coords, torch.from_numpy(rng.normal(size=(len(coords), 3)).astype(np.float32))


def parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_the_table_is_well_formed():
    assert {"MinkUNet14A", "MinkUNet18A", "MinkUNet34C"} <= set(BACKBONES)
    for name, table in BACKBONES.items():
        assert table.block in BLOCKS, name
        assert len(table.planes) == len(table.layers) == 8 and min(table.layers) >= 1, name


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_runs_a_forward_pass_on_the_cpu(name):
    coords, feats = tiny_cloud()
    torch.manual_seed(0)
    net = MinkUNet(3, BACKBONES[name]).train()
    out = net(ME.SparseTensor(feats, coordinates=coords))
    assert out.F.shape == (len(coords), BACKBONES[name].planes[7]) == (len(coords), net.out_channels)
    assert torch.isfinite(out.F).all()
    out.F.square().mean().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_parameter_counts_grow_with_the_table():
    counts = {name: parameters(MinkUNet(3, BACKBONES[name])) for name in ("MinkUNet14A", "MinkUNet18A", "MinkUNet34C")}
    assert counts["MinkUNet14A"] < counts["MinkUNet18A"] < counts["MinkUNet34C"]
    # 18A repeats every one of 14A's blocks once more: same width, so the extra blocks are
    # (planes -> planes) BasicBlocks of two 27-tap convs and two batch norms each
    extra = sum(2 * (27 * p * p + 2 * p) for p in BACKBONES["MinkUNet14A"].planes)
    assert counts["MinkUNet18A"] - counts["MinkUNet14A"] == extra


def test_minkunet14a_keeps_its_state_dict_layout():
    encoder = PointEncoder(3, 16)
    state = encoder.state_dict()
    assert len(state) == 194 and layout_digest(state) == MINKUNET14A_LAYOUT
    other = PointEncoder(3, 16, "MinkUNet18A")
    assert set(state) < set(other.state_dict())  # 18A adds blocks, renames none


def test_the_config_picks_the_backbone_and_the_signature_names_it():
    cfg = load_config("scannet", ["backbone=MinkUNet18A"])
    assert signature(cfg, 16, 5)["backbone"] == "MinkUNet18A"
    assert signature(load_config("scannet"), 16, 5)["backbone"] == "MinkUNet14A"
    coords, feats = tiny_cloud(100, seed=1)
    encoder = PointEncoder(3, 16, cfg.backbone).eval()
    assert encoder(coords, feats).shape == (len(coords), 16)
