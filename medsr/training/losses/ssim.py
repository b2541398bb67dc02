"""Differentiable SSIM (Wang et al. 2004) in 2D and 3D, Gaussian window, as a loss.

Agrees with scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=...)`` on the valid region (tested). The window
shrinks (anisotropically) along axes shorter than 11 voxels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _gauss(size: int, sigma: float, dtype) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).to(dtype)


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, win_size: int = 11,
         sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Mean SSIM of (N, C, *sp) tensors over the valid (unpadded) region."""
    dims = x.ndim - 2
    conv = F.conv2d if dims == 2 else F.conv3d
    c = x.shape[1]

    def filt(t: torch.Tensor) -> torch.Tensor:
        for ax in range(dims):
            size = min(win_size, t.shape[2 + ax])
            size -= 1 - size % 2  # odd
            shape = [1] * dims
            shape[ax] = size
            k = _gauss(size, sigma, t.dtype).to(t.device).reshape(1, 1, *shape)
            t = conv(t, k.expand(c, 1, *shape).contiguous(), groups=c)
        return t

    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mx, my = filt(x), filt(y)
    sxx = filt(x * x) - mx * mx
    syy = filt(y * y) - my * my
    sxy = filt(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean()


class SSIMLoss(nn.Module):
    """1 - SSIM (data range 1: inputs are normalised intensities)."""

    def __init__(self, data_range: float = 1.0, win_size: int = 11) -> None:
        super().__init__()
        self.data_range, self.win_size = float(data_range), int(win_size)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return 1.0 - ssim(sr, hr, self.data_range, self.win_size)
