"""CMSC (Hu et al., 2018, arXiv:1802.08808): cascaded multi-scale cross network.

Works on the interpolated image. Feature extraction (2 convs), then S cascaded
subnetworks; each stacks M multi-scale cross (MSC) modules -- two branches of 3x3 and
5x5 convs whose inputs are merged (averaged) and fed to both after every stage
(merge-and-run) -- and learns a feature residual (residual-features learning). A shared
reconstruction net turns each subnetwork's features into a prediction (plus the
interpolated input); the output is their learned weighted sum (``forward_cascade`` gives
the intermediate predictions for cascaded supervision). Widths and depths are our
choice (S = 4, M = 3, 64 features); the paper's parameter count is not reproduced.
"""

from __future__ import annotations

import torch
from torch import nn

from medsr.models.base import Scale, SRNet, require_same_channels
from medsr.models.blocks import ConvNormAct, ConvStack, Residual
from medsr.models.upsample import Interpolate


class MultiScaleCross(nn.Module):
    """Two branches (3x3 and 5x5), each stage's output plus the mean of both inputs."""

    def __init__(self, spatial_dims: int, channels: int, stages: int = 2):
        super().__init__()
        self.small = nn.ModuleList(ConvNormAct(spatial_dims, channels, channels, 3)
                                   for _ in range(stages))
        self.large = nn.ModuleList(ConvNormAct(spatial_dims, channels, channels, 5)
                                   for _ in range(stages))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = b = x
        for small, large in zip(self.small, self.large):
            mean = 0.5 * (a + b)
            a, b = small(a) + mean, large(b) + mean
        return 0.5 * (a + b)


class CMSC(SRNet):
    def __init__(self, spatial_dims: int = 2, scale: Scale = 2, in_channels: int = 1,
                 out_channels: int = 1, features: int = 64, subnets: int = 4, modules: int = 3,
                 interpolation: str = "catmull-rom"):
        super().__init__(spatial_dims, scale, in_channels, out_channels)
        require_same_channels(self, "cmsc")
        self.interp = Interpolate(self.scale, interpolation)
        self.extract = ConvStack(spatial_dims, [in_channels, features, features], last_act=True)
        self.subnets = nn.ModuleList(
            Residual(nn.Sequential(*(MultiScaleCross(spatial_dims, features)
                                     for _ in range(modules))))
            for _ in range(subnets))
        self.reconstruct = ConvStack(spatial_dims, [features, features, out_channels])
        self.weights = nn.Parameter(torch.full((subnets,), 1.0 / subnets))

    def forward_cascade(self, x: torch.Tensor) -> list[torch.Tensor]:
        up = self.interp(x)
        h, preds = self.extract(up), []
        for subnet in self.subnets:
            h = subnet(h)
            preds.append(self.reconstruct(h) + up)
        return preds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(w * p for w, p in zip(self.weights, self.forward_cascade(x)))
