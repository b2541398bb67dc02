"""VGG-style discriminators of SRGAN (Ledig et al. 2017) and ESRGAN (Wang et al. 2018),
2D and 3D. Each stage: a 3x3 conv and a strided conv (3x3 in SRGAN, 4x4 in ESRGAN), batch
norm (not on the first conv) and leaky ReLU 0.2; then two dense layers to one logit.
The relativistic (ESRGAN) formulation lives in the loss, not here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from medsr.errors import UserError
from medsr.models.blocks import ConvNormAct

VARIANTS: dict[str, dict] = {
    "srgan": {"stages": 4, "down_kernel": 3, "dense": 1024, "patch_size": 96},
    "esrgan": {"stages": 5, "down_kernel": 4, "dense": 100, "patch_size": 128},
}
VARIANTS["vgg"] = VARIANTS["srgan"]


class VGGDiscriminator(nn.Module):
    """(N, C, *patch_size) -> (N, 1) logits; patch sides must be divisible by 2**stages."""

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1,
                 patch_size: int | Sequence[int] = 96, features: int = 64, stages: int = 4,
                 down_kernel: int = 3, dense: int = 1024, norm: str | None = "batch"):
        super().__init__()
        patch = ((patch_size,) * spatial_dims if isinstance(patch_size, int)
                 else tuple(patch_size))
        if len(patch) != spatial_dims or any(p % 2 ** stages for p in patch):
            raise UserError(f"discriminator patch size {patch_size!r} must have {spatial_dims} "
                            f"sides divisible by {2 ** stages}")
        d, act = spatial_dims, "lrelu"
        widths = [features * 2 ** min(i, 3) for i in range(stages)]
        layers = [ConvNormAct(d, in_channels, widths[0], act=act)]
        for i, w in enumerate(widths):
            if i:
                layers.append(ConvNormAct(d, widths[i - 1], w, act=act, norm=norm))
            layers.append(ConvNormAct(d, w, w, down_kernel, act=act, norm=norm, stride=2))
        self.features = nn.Sequential(*layers)
        n_in = widths[-1] * math.prod(p // 2 ** stages for p in patch)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(n_in, dense), nn.LeakyReLU(0.2),
                                        nn.Linear(dense, 1))
        self.spatial_dims, self.in_channels, self.patch_size = d, in_channels, patch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != self.patch_size:
            raise UserError(f"discriminator built for patches {self.patch_size}, "
                            f"got {tuple(x.shape[2:])}")
        return self.classifier(self.features(x))
