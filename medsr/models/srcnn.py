"""SRCNN (Dong et al., ECCV 2014 / TPAMI 2016): three convs on the interpolated image.

Paper 9-1-5 with 64 and 32 filters; 'same' padding here (the paper used valid
convolutions and a cropped target) so the output is k x the input.
"""

from __future__ import annotations

from collections.abc import Sequence

from medsr.models.base import PreUpsampleNet, Scale
from medsr.models.blocks import ConvStack
from medsr.models.upsample import Interpolate


class SRCNN(PreUpsampleNet):
    residual = False

    def __init__(self, spatial_dims: int = 2, scale: Scale = 2, in_channels: int = 1,
                 out_channels: int = 1, channels: Sequence[int] = (64, 32),
                 kernel_sizes: Sequence[int] = (9, 1, 5), interpolation: str = "catmull-rom"):
        super().__init__(spatial_dims, scale, in_channels, out_channels)
        self.interp = Interpolate(self.scale, interpolation)
        self.body = ConvStack(spatial_dims, [in_channels, *channels, out_channels],
                              list(kernel_sizes), act="relu")
