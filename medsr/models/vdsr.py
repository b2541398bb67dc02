"""VDSR (Kim et al., CVPR 2016) and SP-VDSR.

VDSR: 20 3x3 convs (64 filters) learning the residual over the interpolated image.
SP-VDSR: a shallow VDSR on the LR grid that learns the residual over a Lanczos-3
upsampled input and produces it with a sub-pixel (N-d pixel shuffle) output layer. It also
takes a stack of 2r+1 neighbouring frames or slices as input channels (``in_channels =
(2r+1) * out_channels``, the 2.5D / multi-frame setting): the skip is then the upsampled
centre frame and the body sees all of them.
"""

from __future__ import annotations

from medsr.errors import UserError
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
        frames, rest = divmod(in_channels, out_channels)
        if rest or frames % 2 == 0:
            raise UserError(f"sp_vdsr adds the upsampled input (or the centre of 2r+1 stacked "
                            f"frames) to its output: in_channels ({in_channels}) must be an odd "
                            f"multiple of out_channels ({out_channels})")
        self.centre = slice((frames // 2) * out_channels, (frames // 2 + 1) * out_channels)
        self.interp = Interpolate(self.scale, interpolation)
        self.body = ConvStack(spatial_dims, [in_channels, *([features] * depth)],
                              last_act=True)
        self.upsample = make_upsampler(spatial_dims, features, self.scale,
                                       out_channels=out_channels, decompose=False)

    def forward(self, x):
        skip = x if self.in_channels == self.out_channels else x[:, self.centre]
        return self.interp(skip) + self.upsample(self.body(x))
