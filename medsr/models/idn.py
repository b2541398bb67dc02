"""IDN (Hui et al., CVPR 2018): information distillation network.

Feature extraction (2 convs), 4 distillation blocks (an enhancement unit of two
3-conv stacks, grouped middle convs; 16 channels of the first stack's output are kept
and concatenated with the block input, the rest refined by the second stack; a 1x1
compression), then one 17x17 transposed conv to the HR grid plus the interpolated input.
Leaky ReLU slope 0.05 as in the paper.
"""

from __future__ import annotations

import torch
from torch import nn

from medsr.models.base import PostUpsampleNet, Scale, require_same_channels
from medsr.models.blocks import ConvNormAct, ConvStack
from medsr.models.upsample import Interpolate, TransposedConvUpsample

ACT = "lrelu:0.05"


class DistillationBlock(nn.Module):
    def __init__(self, spatial_dims: int, features: int = 64, distill: int = 16,
                 groups: int = 4, step: int = 16):
        super().__init__()
        d, s = spatial_dims, step
        self.distill = distill
        self.upper = nn.Sequential(
            ConvNormAct(d, features, features - s, act=ACT),
            ConvNormAct(d, features - s, features - 2 * s, act=ACT, groups=groups),
            ConvNormAct(d, features - 2 * s, features, act=ACT))
        self.lower = nn.Sequential(
            ConvNormAct(d, features - distill, features, act=ACT),
            ConvNormAct(d, features, features - s, act=ACT, groups=groups),
            ConvNormAct(d, features - s, features + distill, act=ACT))
        self.compress = ConvNormAct(d, features + distill, features, 1, act=ACT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.upper(x)
        kept, rest = u[:, : self.distill], u[:, self.distill:]
        return self.compress(self.lower(rest) + torch.cat([x, kept], 1))


class IDN(PostUpsampleNet):
    def __init__(self, spatial_dims: int = 2, scale: Scale = 2, in_channels: int = 1,
                 out_channels: int = 1, features: int = 64, blocks: int = 4, distill: int = 16,
                 groups: int = 4, deconv_kernel: int = 17,
                 interpolation: str = "catmull-rom"):
        super().__init__(spatial_dims, scale, in_channels, out_channels)
        require_same_channels(self, "idn")
        self.head = ConvStack(spatial_dims, [in_channels, features, features], act=ACT,
                              last_act=True)
        self.body = nn.Sequential(*(DistillationBlock(spatial_dims, features, distill, groups,
                                                      features // 4) for _ in range(blocks)))
        self.upsample = TransposedConvUpsample(spatial_dims, features, out_channels,
                                               self.scale, deconv_kernel)
        self.tail = nn.Identity()
        self.skip = Interpolate(self.scale, interpolation)
