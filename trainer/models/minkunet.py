"""MinkUNet on MinkowskiEngine as a table: one generic UNet, variants differ only in PLANES/LAYERS.

Layout as in MinkowskiEngine's examples (MinkUNetBase): a 5x5x5 stem, four 2x2x2 stride-2
down stages with residual blocks, four transposed-conv up stages that concatenate the skip of
the same resolution, and the last stage's PLANES[7]-d features as output (no classifier: the
head to the CLIP width lives in `trainer.models.PointEncoder`).
"""
from __future__ import annotations

import torch.nn as nn

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

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.relu(out + residual)


class MinkUNetBase(nn.Module):
    """Generic sparse UNet; subclasses set the table `BLOCK`, `PLANES`, `LAYERS`, `INIT_DIM`."""

    BLOCK = BasicBlock
    PLANES: tuple[int, ...] = (32, 64, 128, 256, 256, 128, 96, 96)
    LAYERS: tuple[int, ...] = (2, 2, 2, 2, 2, 2, 2, 2)
    INIT_DIM = 32

    def __init__(self, in_channels: int, dimension: int = 3):
        super().__init__()
        self.dimension = dimension
        planes, layers, expansion = self.PLANES, self.LAYERS, self.BLOCK.expansion

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

        self.stem = conv(in_channels, self.INIT_DIM, 5)
        self.down = nn.ModuleList()
        self.down_blocks = nn.ModuleList()
        width = self.INIT_DIM
        skips = [self.INIT_DIM]
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
        mods = [self.BLOCK(inplanes, planes, self.dimension)]
        mods += [self.BLOCK(planes * self.BLOCK.expansion, planes, self.dimension)
                 for _ in range(blocks - 1)]
        return nn.Sequential(*mods)

    def forward(self, x):
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


class MinkUNet14(MinkUNetBase):
    """One residual block per stage."""

    LAYERS = (1, 1, 1, 1, 1, 1, 1, 1)


class MinkUNet14A(MinkUNet14):
    """The 3D model of CLIP2Scene/this paper on ScanNet (Sec. 4.1): 96-d output."""

    PLANES = (32, 64, 128, 256, 128, 128, 96, 96)


BACKBONES = {"MinkUNet14A": MinkUNet14A}
