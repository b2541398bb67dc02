"""FSRCNN (Dong et al., ECCV 2016): LR feature extraction, shrinking, m mapping layers,
expanding, then one transposed conv (9x9, stride = the per-axis factors)."""

from __future__ import annotations

from medsr.models.base import Scale, SRNet
from medsr.models.blocks import ConvStack
from medsr.models.upsample import TransposedConvUpsample


class FSRCNN(SRNet):
    def __init__(self, spatial_dims: int = 2, scale: Scale = 2, in_channels: int = 1,
                 out_channels: int = 1, d: int = 56, s: int = 12, m: int = 4,
                 deconv_kernel: int = 9):
        super().__init__(spatial_dims, scale, in_channels, out_channels)
        self.body = ConvStack(spatial_dims, [in_channels, d, *([s] * (m + 1)), d],
                              [5, 1, *([3] * m), 1], act="prelu", last_act=True)
        self.upsample = TransposedConvUpsample(spatial_dims, d, out_channels, self.scale,
                                               deconv_kernel)

    def forward(self, x):
        return self.upsample(self.body(x))
