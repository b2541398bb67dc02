"""CARN and CARN-M (Ahn et al., ECCV 2018): cascading residual network.

Three cascading blocks (each three residual units, outputs concatenated and fused by 1x1
convs) inside a global cascade of the same shape, then a pixel-shuffle upsampler with
ReLU. CARN-M uses efficient residual units (grouped 3x3 convs + 1x1, groups = 4) shared
within each block (recursive) and a grouped upsampler.
"""

from __future__ import annotations

from medsr.models.base import PostUpsampleNet, Scale
from medsr.models.blocks import CascadingBlock, ResBlock, conv
from medsr.models.upsample import make_upsampler


class CARN(PostUpsampleNet):
    def __init__(self, spatial_dims: int = 2, scale: Scale = 2, in_channels: int = 1,
                 out_channels: int = 1, features: int = 64, blocks: int = 3, units: int = 3,
                 groups: int = 1, shared: bool = False):
        super().__init__(spatial_dims, scale, in_channels, out_channels)

        def unit():
            return ResBlock(spatial_dims, features, post_act="relu", groups=groups,
                            pointwise=groups > 1)

        def block():
            one = unit()
            return CascadingBlock(spatial_dims, features,
                                  [one] * units if shared else [unit() for _ in range(units)])

        self.head = conv(spatial_dims, in_channels, features)
        self.body = CascadingBlock(spatial_dims, features, [block() for _ in range(blocks)])
        self.upsample = make_upsampler(spatial_dims, features, self.scale, act="relu",
                                       groups=groups)
        self.tail = conv(spatial_dims, features, out_channels)


class CARNM(CARN):
    def __init__(self, spatial_dims: int = 2, scale: Scale = 2, in_channels: int = 1,
                 out_channels: int = 1, features: int = 64, blocks: int = 3, units: int = 3,
                 groups: int = 4, shared: bool = True):
        super().__init__(spatial_dims, scale, in_channels, out_channels, features, blocks,
                         units, groups, shared)
