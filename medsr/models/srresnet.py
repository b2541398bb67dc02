"""SRResNet (Ledig et al., CVPR 2017; the SRGAN generator): 9x9 head with PReLU, 16
residual blocks with batch norm and PReLU, conv + BN with a global skip, pixel-shuffle
steps with PReLU, 9x9 tail."""

from __future__ import annotations

from torch import nn

from medsr.models.base import PostUpsampleNet, Scale
from medsr.models.blocks import ConvNormAct, ResBlock, Residual, conv
from medsr.models.upsample import make_upsampler


class SRResNet(PostUpsampleNet):
    def __init__(self, spatial_dims: int = 2, scale: Scale = 2, in_channels: int = 1,
                 out_channels: int = 1, n_blocks: int = 16, features: int = 64,
                 norm: str | None = "batch"):
        super().__init__(spatial_dims, scale, in_channels, out_channels)
        d, f = spatial_dims, features
        self.head = ConvNormAct(d, in_channels, f, 9, act="prelu")
        blocks = [ResBlock(d, f, act="prelu", norm=norm) for _ in range(n_blocks)]
        self.body = Residual(nn.Sequential(*blocks, ConvNormAct(d, f, f, act=None, norm=norm)))
        self.upsample = make_upsampler(d, f, self.scale, act="prelu")
        self.tail = conv(d, f, out_channels, 9)
