"""RRDBNet (Wang et al., ECCVW 2018; the ESRGAN generator).

23 residual-in-residual dense blocks (3 residual dense blocks of 5 convs each, growth 32,
residual scaling 0.2) on 64 features with a trunk skip, nearest-neighbour + conv
upsampling steps with leaky ReLU, an HR conv and the output conv.
"""

from __future__ import annotations

from torch import nn

from medsr.models.base import PostUpsampleNet, Scale
from medsr.models.blocks import ConvNormAct, Residual, ResidualDenseBlock, conv
from medsr.models.upsample import make_upsampler


class RRDBNet(PostUpsampleNet):
    def __init__(self, spatial_dims: int = 2, scale: Scale = 2, in_channels: int = 1,
                 out_channels: int = 1, n_blocks: int = 23, features: int = 64,
                 growth: int = 32, res_scale: float = 0.2):
        super().__init__(spatial_dims, scale, in_channels, out_channels)
        d, f = spatial_dims, features

        def rrdb() -> nn.Module:
            rdbs = [ResidualDenseBlock(d, f, growth, 4, act="lrelu", fusion_kernel=3,
                                       res_scale=res_scale) for _ in range(3)]
            return Residual(nn.Sequential(*rdbs), res_scale)

        self.head = conv(d, in_channels, f)
        self.body = Residual(nn.Sequential(*(rrdb() for _ in range(n_blocks)), conv(d, f, f)))
        self.upsample = make_upsampler(d, f, self.scale, mode="resize_conv", act="lrelu")
        self.tail = nn.Sequential(ConvNormAct(d, f, f, act="lrelu"), conv(d, f, out_channels))
