"""Pixel losses: L1, L2 and Charbonnier (a smooth L1, LapSRN / EDSR-style)."""

from __future__ import annotations

import torch
from torch import nn


class L1Loss(nn.Module):
    """Mean absolute error."""

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return (sr - hr).abs().mean()


class L2Loss(nn.Module):
    """Mean squared error."""

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return (sr - hr).pow(2).mean()


class CharbonnierLoss(nn.Module):
    """mean(sqrt((sr - hr)^2 + eps^2)): L1-like, differentiable at 0."""

    def __init__(self, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = float(eps)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((sr - hr).pow(2) + self.eps**2).mean()
