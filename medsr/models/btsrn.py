"""BTSRN (Fan et al., CVPRW 2017): balanced two-stage residual network.

A low-resolution stage (6 residual blocks), an upsampling layer that sums a transposed
conv and nearest-neighbour upsampling of the features (one per prime step), and a
high-resolution stage (4 residual blocks). Simplified: the paper's projected (1x1
bottleneck) residual blocks are plain residual blocks here.
"""

from __future__ import annotations

import torch
from torch import nn

from medsr.models.base import PostUpsampleNet, Scale
from medsr.models.blocks import ResBlock, conv
from medsr.models.upsample import Interpolate, TransposedConvUpsample, prime_steps


class DeconvPlusNearest(nn.Module):
    """One step: transposed conv + nearest-neighbour upsampling, summed."""

    def __init__(self, spatial_dims: int, channels: int, factors):
        super().__init__()
        self.deconv = TransposedConvUpsample(spatial_dims, channels, channels, factors)
        self.nearest = Interpolate(factors, "nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deconv(x) + self.nearest(x)


class BTSRN(PostUpsampleNet):
    def __init__(self, spatial_dims: int = 2, scale: Scale = 2, in_channels: int = 1,
                 out_channels: int = 1, features: int = 64, lr_blocks: int = 6,
                 hr_blocks: int = 4):
        super().__init__(spatial_dims, scale, in_channels, out_channels)
        self.head = conv(spatial_dims, in_channels, features)
        self.body = nn.Sequential(*(ResBlock(spatial_dims, features) for _ in range(lr_blocks)))
        self.upsample = nn.Sequential(
            *(DeconvPlusNearest(spatial_dims, features, s) for s in prime_steps(self.scale)))
        self.tail = nn.Sequential(*(ResBlock(spatial_dims, features) for _ in range(hr_blocks)),
                                  conv(spatial_dims, features, out_channels))
