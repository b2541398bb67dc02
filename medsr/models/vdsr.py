"""VDSR (Kim et al., CVPR 2016) and SP-VDSR.

VDSR: 20 3x3 convs (64 filters) learning the residual over the interpolated image.
SP-VDSR: a shallow VDSR on the LR grid that learns the residual over a Lanczos-3
upsampled input and produces it with a sub-pixel (N-d pixel shuffle) output layer.
"""

from __future__ import annotations

from medsr.models.base import PreUpsampleNet, Scale, SRNet, require_same_channels
from medsr.models.blocks import ConvStack
from medsr.models.upsample import Interpolate, make_upsampler


class VDSR(PreUpsampleNet):
    def __init__(self, spatial_dims: int = 2, scale: Scale = 2, in_channels: int = 1,
                 out_channels: int = 1, depth: int = 20, features: int = 64,
                 interpolation: str = "catmull-rom"):
        super().__init__(spatial_dims, scale, in_channels, out_channels)
        require_same_channels(self, "vdsr")
        self.interp = Interpolate(self.scale, interpolation)
        self.body = ConvStack(spatial_dims,
                              [in_channels, *([features] * (depth - 1)), out_channels])


class SPVDSR(SRNet):
    def __init__(self, spatial_dims: int = 2, scale: Scale = 2, in_channels: int = 1,
                 out_channels: int = 1, depth: int = 8, features: int = 64,
                 interpolation: str = "lanczos"):
        super().__init__(spatial_dims, scale, in_channels, out_channels)
        require_same_channels(self, "sp_vdsr")
        self.interp = Interpolate(self.scale, interpolation)
        self.body = ConvStack(spatial_dims, [in_channels, *([features] * depth)],
                              last_act=True)
        self.upsample = make_upsampler(spatial_dims, features, self.scale,
                                       out_channels=out_channels, decompose=False)

    def forward(self, x):
        return self.interp(x) + self.upsample(self.body(x))
