"""DRRN (Tai et al., CVPR 2017): B recursive blocks, each a pair of pre-activation convs
applied U times with shared weights and a skip from the block's first layer
(default B1U25, 128 filters); residual over the interpolated input. Batch norm of the
original Caffe model is left out (``norm="batch"`` puts it back)."""

from __future__ import annotations

from torch import nn

from medsr.models.base import PreUpsampleNet, Scale, require_same_channels
from medsr.models.blocks import ConvNormAct, RecursiveUnit, conv
from medsr.models.upsample import Interpolate


class DRRN(PreUpsampleNet):
    def __init__(self, spatial_dims: int = 2, scale: Scale = 2, in_channels: int = 1,
                 out_channels: int = 1, features: int = 128, blocks: int = 1, units: int = 25,
                 norm: str | None = None, interpolation: str = "catmull-rom"):
        super().__init__(spatial_dims, scale, in_channels, out_channels)
        require_same_channels(self, "drrn")
        self.interp = Interpolate(self.scale, interpolation)

        def preact(cin: int, cout: int) -> nn.Module:
            return ConvNormAct(spatial_dims, cin, cout, norm=norm, preact=True)

        layers = []
        for b in range(blocks):
            layers.append(conv(spatial_dims, in_channels, features) if b == 0
                          else preact(features, features))
            unit = nn.Sequential(preact(features, features), preact(features, features))
            layers.append(RecursiveUnit(unit, units, shared_source=True))
        layers.append(preact(features, out_channels))
        self.body = nn.Sequential(*layers)
