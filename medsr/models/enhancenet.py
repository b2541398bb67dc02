"""EnhanceNet (Sajjadi et al., ICCV 2017), the generator: 10 residual blocks on the LR
grid, nearest-neighbour + conv upsampling steps, two convs, added to the interpolated
input. The perceptual / texture / adversarial losses of EnhanceNet-PAT live in
medsr.training.losses, not here."""

from __future__ import annotations

from torch import nn

from medsr.models.base import PostUpsampleNet, Scale, require_same_channels
from medsr.models.blocks import ConvNormAct, ResBlock, conv
from medsr.models.upsample import Interpolate, make_upsampler


class EnhanceNet(PostUpsampleNet):
    def __init__(self, spatial_dims: int = 2, scale: Scale = 2, in_channels: int = 1,
                 out_channels: int = 1, n_blocks: int = 10, features: int = 64,
                 interpolation: str = "catmull-rom"):
        super().__init__(spatial_dims, scale, in_channels, out_channels)
        require_same_channels(self, "enhancenet")
        d, f = spatial_dims, features
        self.head = ConvNormAct(d, in_channels, f)
        self.body = nn.Sequential(*(ResBlock(d, f) for _ in range(n_blocks)))
        self.upsample = make_upsampler(d, f, self.scale, mode="resize_conv", act="relu")
        self.tail = nn.Sequential(ConvNormAct(d, f, f), conv(d, f, out_channels))
        self.skip = Interpolate(self.scale, interpolation)
