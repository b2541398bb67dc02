"""DRCN (Kim et al., CVPR 2016): one 3x3 conv applied recursively (shared weights).

Embedding net (2 convs) -> inference net (one conv recursed D = 16 times) -> a shared
reconstruction net on every recursion's output, each plus the interpolated input (skip);
the output is the learned weighted sum of the D predictions. ``forward_recursions``
returns the D intermediate predictions for recursive supervision.
"""

from __future__ import annotations

import torch
from torch import nn

from medsr.models.base import Scale, SRNet, require_same_channels
from medsr.models.blocks import ConvNormAct, ConvStack, RecursiveUnit
from medsr.models.upsample import Interpolate


class DRCN(SRNet):
    def __init__(self, spatial_dims: int = 2, scale: Scale = 2, in_channels: int = 1,
                 out_channels: int = 1, features: int = 256, recursions: int = 16,
                 interpolation: str = "catmull-rom"):
        super().__init__(spatial_dims, scale, in_channels, out_channels)
        require_same_channels(self, "drcn")
        self.interp = Interpolate(self.scale, interpolation)
        self.embed = ConvStack(spatial_dims, [in_channels, features, features], last_act=True)
        self.infer = RecursiveUnit(ConvNormAct(spatial_dims, features, features), recursions)
        self.reconstruct = ConvStack(spatial_dims, [features, features, out_channels])
        self.weights = nn.Parameter(torch.full((recursions,), 1.0 / recursions))

    def forward_recursions(self, x: torch.Tensor) -> list[torch.Tensor]:
        up = self.interp(x)
        return [self.reconstruct(h) + up for h in self.infer(self.embed(up), return_all=True)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        preds = self.forward_recursions(x)
        return sum(w * p for w, p in zip(self.weights, preds))
