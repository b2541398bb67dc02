"""ESPCN (Shi et al., CVPR 2016): two tanh convs on the LR grid, then one sub-pixel conv
to the whole factor (one N-d pixel shuffle step, per-axis factors)."""

from __future__ import annotations

from medsr.models.base import Scale, SRNet
from medsr.models.blocks import ConvStack
from medsr.models.upsample import make_upsampler


class ESPCN(SRNet):
    def __init__(self, spatial_dims: int = 2, scale: Scale = 2, in_channels: int = 1,
                 out_channels: int = 1, features: int = 64, features2: int = 32):
        super().__init__(spatial_dims, scale, in_channels, out_channels)
        self.body = ConvStack(spatial_dims, [in_channels, features, features2], [5, 3],
                              act="tanh", last_act=True)
        self.upsample = make_upsampler(spatial_dims, features2, self.scale,
                                       out_channels=out_channels, decompose=False)

    def forward(self, x):
        return self.upsample(self.body(x))
