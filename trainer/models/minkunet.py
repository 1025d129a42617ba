"""MinkUNet on MinkowskiEngine: one generic sparse UNet that builds any row of the backbone table.

Layout as in MinkowskiEngine's examples (MinkUNetBase): a 5x5x5 stem, four 2x2x2 stride-2
down stages with residual blocks, four transposed-conv up stages that concatenate the skip of
the same resolution, and the last stage's planes[7]-d features as output (no classifier: the
head to the CLIP width lives in `trainer.models.PointEncoder`). The variants (MinkUNet14A,
18A, 34C) differ only in their row of `trainer.backbones.BACKBONES`.
"""
from __future__ import annotations

import torch.nn as nn

from trainer.backbones import UNetTable
from trainer.me_compat import ME


class BasicBlock(nn.Module):
    """Two 3x3x3 sparse convs with batch norm and a residual (1x1x1 projection if widths differ)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, dimension: int = 3):
        super().__init__()
        self.conv1 = ME.MinkowskiConvolution(inplanes, planes, kernel_size=3, dimension=dimension)
        self.norm1 = ME.MinkowskiBatchNorm(planes)
        self.conv2 = ME.MinkowskiConvolution(planes, planes, kernel_size=3, dimension=dimension)
        self.norm2 = ME.MinkowskiBatchNorm(planes)
        self.relu = ME.MinkowskiReLU(inplace=True)
        self.downsample = None
        if inplanes != planes:
            self.downsample = nn.Sequential(
                ME.MinkowskiConvolution(inplanes, planes, kernel_size=1, dimension=dimension),
                ME.MinkowskiBatchNorm(planes),
            )

    def forward(self, x: ME.SparseTensor) -> ME.SparseTensor:
        """relu(norm(conv(relu(norm(conv(x))))) + x), x projected when the widths differ."""
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.relu(out + residual)


BLOCKS: dict[str, type[nn.Module]] = {"basic": BasicBlock}  # residual blocks by table name


class MinkUNet(nn.Module):
    """Generic sparse UNet built from a backbone table row (block, planes, layers, stem width)."""

    def __init__(self, in_channels: int, table: UNetTable, dimension: int = 3):
        super().__init__()
        self.dimension = dimension
        self.block_type = BLOCKS[table.block]
        planes, layers, init_dim = table.planes, table.layers, table.init_dim
        expansion = self.block_type.expansion

        def conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Module:
            return nn.Sequential(
                ME.MinkowskiConvolution(cin, cout, kernel_size=kernel, stride=stride,
                                        dimension=dimension),
                ME.MinkowskiBatchNorm(cout), ME.MinkowskiReLU(inplace=True))

        def up(cin: int, cout: int) -> nn.Module:
            return nn.Sequential(
                ME.MinkowskiConvolutionTranspose(cin, cout, kernel_size=2, stride=2,
                                                 dimension=dimension),
                ME.MinkowskiBatchNorm(cout), ME.MinkowskiReLU(inplace=True))

        self.stem = conv(in_channels, init_dim, 5)
        self.down = nn.ModuleList()
        self.down_blocks = nn.ModuleList()
        width = init_dim
        skips = [init_dim]
        for stage in range(4):
            self.down.append(conv(width, width, 2, 2))
            self.down_blocks.append(self._stage(width, planes[stage], layers[stage]))
            width = planes[stage] * expansion
            skips.append(width)
        self.up = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for stage in range(4, 8):
            self.up.append(up(width, planes[stage]))
            skip = skips[7 - stage]
            self.up_blocks.append(self._stage(planes[stage] + skip, planes[stage], layers[stage]))
            width = planes[stage] * expansion
        self.out_channels = width

    def _stage(self, inplanes: int, planes: int, blocks: int) -> nn.Sequential:
        """`blocks` residual blocks, the first one changing the width to `planes`."""
        mods = [self.block_type(inplanes, planes, self.dimension)]
        mods += [self.block_type(planes * self.block_type.expansion, planes, self.dimension)
                 for _ in range(blocks - 1)]
        return nn.Sequential(*mods)

    def forward(self, x: ME.SparseTensor) -> ME.SparseTensor:
        """Sparse tensor in, sparse tensor of `out_channels` features at stride 1 out."""
        out = self.stem(x)
        skips = [out]
        for down, block in zip(self.down, self.down_blocks, strict=True):
            out = block(down(out))
            skips.append(out)
        skips.pop()  # the bottleneck is not a skip
        for up, block in zip(self.up, self.up_blocks, strict=True):
            out = block(ME.cat(up(out), skips.pop()))
        return out
