"""LapSRN (Lai et al., CVPR 2017) and MS-LapSRN (Lai et al., TPAMI 2018).

A Laplacian pyramid: one level per prime step of the factor (x4 -> two x2 levels, a
per-axis (1, 1, 4) -> two (1, 1, 2) levels, x3 -> one x3 level). Each level embeds
features (convs + leaky ReLU), upsamples them with a transposed conv, predicts a
sub-band residual, and adds it to the image upsampled by a transposed conv initialised
to linear interpolation. ``forward`` returns the final HR image, ``forward_pyramid`` every
level's output (x2, x4, ...).

MS-LapSRN (preset ``ms``: ``recursive=True, depth=5, recursions=8``): the feature
embedding is a recursive block (shared weights, local skip from its input) shared across
levels, and the upsampling layers are shared between levels of equal factor.
"""

from __future__ import annotations

import torch
from torch import nn

from medsr.models.base import Scale, SRNet, require_same_channels
from medsr.models.blocks import ConvNormAct, ConvStack, RecursiveUnit, conv
from medsr.models.upsample import TransposedConvUpsample, prime_steps


class LapSRN(SRNet):
    def __init__(self, spatial_dims: int = 2, scale: Scale = 2, in_channels: int = 1,
                 out_channels: int = 1, features: int = 64, depth: int = 10,
                 recursive: bool = False, recursions: int = 1):
        super().__init__(spatial_dims, scale, in_channels, out_channels)
        require_same_channels(self, "lapsrn")
        self.steps = prime_steps(self.scale)
        act = "lrelu"
        self.head = ConvNormAct(spatial_dims, in_channels, features, act=act)

        def embed() -> nn.Module:
            stack = ConvStack(spatial_dims, [features] * (depth + 1), act=act, last_act=True)
            return RecursiveUnit(stack, recursions, shared_source=recursive)

        def level(step) -> nn.Module:
            return nn.ModuleDict({
                "feat_up": TransposedConvUpsample(spatial_dims, features, features, step,
                                                  act=act),
                "residual": conv(spatial_dims, features, out_channels),
                "img_up": TransposedConvUpsample(spatial_dims, out_channels, out_channels, step,
                                                 bias=False, linear_init=True)})

        shared_embed = embed() if recursive else None
        self.embed = nn.ModuleList(shared_embed or embed() for _ in self.steps)
        by_step: dict = {}
        self.levels = nn.ModuleList(
            by_step.setdefault(s, level(s)) if recursive else level(s) for s in self.steps)

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats, img, outs = self.head(x), x, []
        for embed, lvl in zip(self.embed, self.levels):
            feats = lvl["feat_up"](embed(feats))
            img = lvl["img_up"](img) + lvl["residual"](feats)
            outs.append(img)
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_pyramid(x)[-1] if self.steps else x
