"""Edge losses by Sobel derivatives, and total variation; 2D and 3D by tensor rank."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def sobel_kernels(spatial_dims: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(spatial_dims, 1, 3, ...) separable Sobel kernels, one per axis (derivative along it)."""
    smooth = torch.tensor([1.0, 2.0, 1.0], dtype=dtype) / 4.0
    deriv = torch.tensor([-1.0, 0.0, 1.0], dtype=dtype) / 2.0
    kernels = []
    for axis in range(spatial_dims):
        k = torch.ones((1,) * spatial_dims, dtype=dtype)
        for ax in range(spatial_dims):
            v = deriv if ax == axis else smooth
            shape = [1] * spatial_dims
            shape[ax] = 3
            k = k * v.reshape(shape)
        kernels.append(k)
    return torch.stack(kernels)[:, None]


def sobel(x: torch.Tensor) -> torch.Tensor:
    """Sobel derivatives of (N, C, *sp): (N, C * dims, *sp), replicate padding."""
    dims = x.ndim - 2
    n, c = x.shape[:2]
    k = sobel_kernels(dims, x.dtype).to(x.device)
    conv = F.conv2d if dims == 2 else F.conv3d
    xp = F.pad(x.reshape(n * c, 1, *x.shape[2:]), (1, 1) * dims, mode="replicate")
    return conv(xp, k).reshape(n, c * dims, *x.shape[2:])


class GradientLoss(nn.Module):
    """L1 between Sobel derivatives of SR and HR; ``edge_weight`` > 0 also adds an L1
    pixel term weighted by (1 + edge_weight * |grad HR| / max), favouring edges."""

    def __init__(self, edge_weight: float = 0.0) -> None:
        super().__init__()
        self.edge_weight = float(edge_weight)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        gs, gh = sobel(sr), sobel(hr)
        loss = (gs - gh).abs().mean()
        if self.edge_weight > 0:
            mag = gh.detach().pow(2).sum(1, keepdim=True).sqrt()
            w = 1.0 + self.edge_weight * mag / mag.amax().clamp_min(1e-8)
            loss = loss + (w * (sr - hr).abs()).mean()
        return loss


class TVLoss(nn.Module):
    """Anisotropic total variation of SR: mean |x_{i+1} - x_i| over every spatial axis."""

    def forward(self, sr: torch.Tensor, hr: torch.Tensor | None = None) -> torch.Tensor:
        total = sr.new_zeros(())
        for ax in range(2, sr.ndim):
            total = total + torch.diff(sr, dim=ax).abs().mean()
        return total
