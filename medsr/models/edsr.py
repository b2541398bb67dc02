"""EDSR and MDSR (Lim et al., CVPRW 2017).

EDSR: head conv, B residual blocks without batch norm (residual scaling), a global skip,
pixel-shuffle upsampler, tail conv. Defaults are the paper's full model (32 blocks, 256
features, res-scale 0.1); preset ``baseline`` is EDSR-baseline (16, 64, 1.0).

MDSR: one shared body (80 blocks, 64 features) with scale-specific pre-processing (two
5x5 residual blocks) and scale-specific upsampler + tail. ``create("mdsr", scale=(2, 3,
4))`` in 2D or ``scales=[2, 3, 4]`` (any dims; in 3D a 3-tuple ``scale`` is one
anisotropic factor) builds the branches; ``forward(x, scale=3)`` picks one (default: the
first scale, also ``model.scale``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medsr.errors import UserError
from medsr.models.base import PostUpsampleNet, Scale, SRNet, as_scale, interpolation_skip
from medsr.models.blocks import ResBlock, Residual, conv
from medsr.models.upsample import make_upsampler


def residual_trunk(spatial_dims: int, features: int, n_blocks: int, res_scale: float = 1.0,
                   kernel_size: int = 3) -> nn.Module:
    """B residual blocks + conv, wrapped in a skip (the EDSR/MDSR body)."""
    blocks = [ResBlock(spatial_dims, features, kernel_size, res_scale=res_scale)
              for _ in range(n_blocks)]
    return Residual(nn.Sequential(*blocks, conv(spatial_dims, features, features, kernel_size)))


class EDSR(PostUpsampleNet):
    def __init__(self, spatial_dims: int = 2, scale: Scale = 2, in_channels: int = 1,
                 out_channels: int = 1, n_blocks: int = 32, features: int = 256,
                 res_scale: float = 0.1, interpolation: str | None = None):
        super().__init__(spatial_dims, scale, in_channels, out_channels)
        self.head = conv(spatial_dims, in_channels, features)
        self.body = residual_trunk(spatial_dims, features, n_blocks, res_scale)
        self.upsample = make_upsampler(spatial_dims, features, self.scale)
        self.tail = conv(spatial_dims, features, out_channels)
        self.skip = interpolation_skip(self, interpolation)


def _scale_list(scale, scales, spatial_dims: int) -> list[tuple[int, ...]]:
    if scales is None:
        multi = (not isinstance(scale, int) and len(scale) not in (1, spatial_dims)) or (
            not isinstance(scale, int) and any(not isinstance(s, int) for s in scale))
        scales = list(scale) if multi else [scale]
    return [as_scale(s, spatial_dims) for s in scales]


def _key(scale: tuple[int, ...]) -> str:
    return "x".join(map(str, scale))


class MDSR(SRNet):
    def __init__(self, spatial_dims: int = 2, scale: Scale | Sequence[Scale] = 2,
                 in_channels: int = 1, out_channels: int = 1, n_blocks: int = 80,
                 features: int = 64, scales: Sequence[Scale] | None = None):
        all_scales = _scale_list(scale, scales, spatial_dims)
        super().__init__(spatial_dims, all_scales[0], in_channels, out_channels)
        self.scales = all_scales
        self.head = conv(spatial_dims, in_channels, features)
        self.pre = nn.ModuleDict({_key(s): nn.Sequential(
            *(ResBlock(spatial_dims, features, 5) for _ in range(2))) for s in all_scales})
        self.body = residual_trunk(spatial_dims, features, n_blocks)
        self.tails = nn.ModuleDict({_key(s): nn.Sequential(
            make_upsampler(spatial_dims, features, s),
            conv(spatial_dims, features, out_channels)) for s in all_scales})

    def forward(self, x: torch.Tensor, scale: Scale | None = None) -> torch.Tensor:
        key = _key(self.scale if scale is None else as_scale(scale, self.spatial_dims))
        if key not in self.tails:
            raise UserError(f"this MDSR serves scales {[list(s) for s in self.scales]}, "
                            f"not {scale!r}")
        return self.tails[key](self.body(self.pre[key](self.head(x))))
