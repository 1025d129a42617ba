"""The 3D backbones as a table: each row a MinkUNet variant of MinkowskiEngine's examples.

A row gives the residual block, the output width of the eight stages (four down, four up) and
the blocks per stage; `trainer.models.minkunet.MinkUNet` builds any row. A config's `backbone`
names the row. Plain data, so that configs are checked without importing MinkowskiEngine.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UNetTable:
    """One MinkUNet variant."""

    block: str                # residual block, a key of trainer.models.minkunet.BLOCKS
    planes: tuple[int, ...]   # output width of each of the 8 stages
    layers: tuple[int, ...]   # residual blocks in each of the 8 stages
    init_dim: int = 32        # width of the 5x5x5 stem


BACKBONES: dict[str, UNetTable] = {
    # The 3D model of CLIP2Scene and of this paper on ScanNet (Sec. 4.1).
    "MinkUNet14A": UNetTable("basic", (32, 64, 128, 256, 128, 128, 96, 96), (1, 1, 1, 1, 1, 1, 1, 1)),
    "MinkUNet18A": UNetTable("basic", (32, 64, 128, 256, 128, 128, 96, 96), (2, 2, 2, 2, 2, 2, 2, 2)),
    "MinkUNet34C": UNetTable("basic", (32, 64, 128, 256, 256, 128, 96, 96), (2, 3, 4, 6, 2, 2, 2, 2)),
}
