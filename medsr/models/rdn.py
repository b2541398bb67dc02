"""RDN (Zhang et al., CVPR 2018): residual dense network.

Shallow features (2 convs), D residual dense blocks (C conv layers of growth G each,
1x1 local fusion, local skip), global feature fusion (1x1 + 3x3 over all block outputs)
with a global skip from the first shallow conv, pixel-shuffle upsampler. Paper: D = 16,
C = 8, G = G0 = 64.
"""

from __future__ import annotations

import torch
from torch import nn

from medsr.models.base import PostUpsampleNet, Scale
from medsr.models.blocks import Residual, ResidualDenseBlock, conv
from medsr.models.upsample import make_upsampler


class DenseFeatureFusion(nn.Module):
    """conv -> D RDBs -> concat all block outputs -> 1x1 -> 3x3 (RDN's GFF)."""

    def __init__(self, spatial_dims: int, g0: int, blocks: nn.ModuleList):
        super().__init__()
        self.sfe2 = conv(spatial_dims, g0, g0)
        self.blocks = blocks
        self.fuse = nn.Sequential(conv(spatial_dims, len(blocks) * g0, g0, 1),
                                  conv(spatial_dims, g0, g0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, outs = self.sfe2(x), []
        for block in self.blocks:
            h = block(h)
            outs.append(h)
        return self.fuse(torch.cat(outs, 1))


class RDN(PostUpsampleNet):
    def __init__(self, spatial_dims: int = 2, scale: Scale = 2, in_channels: int = 1,
                 out_channels: int = 1, D: int = 16, C: int = 8, G: int = 64, G0: int = 64):
        super().__init__(spatial_dims, scale, in_channels, out_channels)
        d = spatial_dims
        blocks = nn.ModuleList(ResidualDenseBlock(d, G0, G, C) for _ in range(D))
        self.head = conv(d, in_channels, G0)
        self.body = Residual(DenseFeatureFusion(d, G0, blocks))
        self.upsample = make_upsampler(d, G0, self.scale)
        self.tail = conv(d, G0, out_channels)
