"""SelNet (Choi & Kim, CVPRW 2017): 22 convs, each followed by a selection unit
(ReLU gated by a learned sigmoid switch), residual over the interpolated input."""

from __future__ import annotations

from torch import nn

from medsr.models.base import PreUpsampleNet, Scale, require_same_channels
from medsr.models.blocks import SelectionUnit, conv
from medsr.models.upsample import Interpolate


class SelNet(PreUpsampleNet):
    def __init__(self, spatial_dims: int = 2, scale: Scale = 2, in_channels: int = 1,
                 out_channels: int = 1, depth: int = 22, features: int = 64,
                 interpolation: str = "catmull-rom"):
        super().__init__(spatial_dims, scale, in_channels, out_channels)
        require_same_channels(self, "selnet")
        self.interp = Interpolate(self.scale, interpolation)
        layers = []
        for i in range(depth - 1):
            layers += [conv(spatial_dims, in_channels if i == 0 else features, features),
                       SelectionUnit(spatial_dims, features)]
        self.body = nn.Sequential(*layers, conv(spatial_dims, features, out_channels))
