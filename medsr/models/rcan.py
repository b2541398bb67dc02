"""RCAN (Zhang et al., ECCV 2018): residual in residual with channel attention.

10 residual groups x 20 residual channel-attention blocks (64 features, reduction 16),
a conv closing each group and the trunk, long and short skips, pixel-shuffle upsampler.
``interpolation`` (off by default) adds a fixed interpolation of the input, as in EDSR.
"""

from __future__ import annotations

from torch import nn

from medsr.models.base import PostUpsampleNet, Scale, interpolation_skip
from medsr.models.blocks import ResBlock, Residual, conv
from medsr.models.upsample import make_upsampler


class RCAN(PostUpsampleNet):
    def __init__(self, spatial_dims: int = 2, scale: Scale = 2, in_channels: int = 1,
                 out_channels: int = 1, n_groups: int = 10, n_blocks: int = 20,
                 features: int = 64, reduction: int = 16, res_scale: float = 1.0,
                 interpolation: str | None = None):
        super().__init__(spatial_dims, scale, in_channels, out_channels)
        d, f = spatial_dims, features

        def group() -> nn.Module:
            blocks = [ResBlock(d, f, reduction=reduction, res_scale=res_scale)
                      for _ in range(n_blocks)]
            return Residual(nn.Sequential(*blocks, conv(d, f, f)))

        self.head = conv(d, in_channels, f)
        self.body = Residual(nn.Sequential(*(group() for _ in range(n_groups)), conv(d, f, f)))
        self.upsample = make_upsampler(d, f, self.scale)
        self.tail = conv(d, f, out_channels)
        self.skip = interpolation_skip(self, interpolation)
