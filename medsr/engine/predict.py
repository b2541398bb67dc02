"""Apply a trained network to a whole volume: a thin call into the one runner,
:func:`medsr.pipeline.run.super_resolve_volume` (what ``medsr infer --model`` runs).

A 2D network's axes follow from :func:`volume_factors` (the slice normal ``axis``, default
the first it was trained on); 3D networks see the whole volume.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from medsr.errors import UserError
from medsr.geometry import plan_grid
from medsr.inference.resolvers import net_passes
from medsr.pipeline.run import super_resolve_volume
from medsr.volume import Volume


def volume_factors(info: dict[str, Any], axis: int | None = None) -> tuple[int, int, int]:
    """Per-volume-axis factors the model realises (1 along the slice normal in 2D)."""
    scale = [int(k) for k in info["scale"]]
    if int(info["spatial_dims"]) == 3:
        return tuple(scale)  # type: ignore[return-value]
    normal = default_axis(info) if axis is None else int(axis)
    out = [1, 1, 1]
    for ax, k in zip([a for a in range(3) if a != normal], scale):
        out[ax] = k
    return tuple(out)  # type: ignore[return-value]


def default_axis(info: dict[str, Any]) -> int:
    """The first slice normal the model was trained on (2 when unknown)."""
    axes = (info.get("sampling") or {}).get("axes") or [2]
    return int(axes[0])


def predict_volume(model: nn.Module, volume: Volume | np.ndarray, info: dict[str, Any], *,
                   axis: int | None = None, batch_size: int | None = None,
                   device: str | torch.device = "cpu", tta: bool = False) -> np.ndarray:
    """The super-resolved array, shape = input shape x :func:`volume_factors` (channels last
    kept), float32 in the input's intensity units: what ``medsr infer --model`` makes
    (:func:`medsr.pipeline.run.super_resolve_volume`: tiled, fused over planes, exact grid,
    clipped at 0 for a non-negative input)."""
    vol = volume if isinstance(volume, Volume) else Volume(np.asarray(volume), np.eye(4), {})
    if vol.data.ndim not in (3, 4):
        raise UserError(f"expected a (I, J, K[, C]) volume, got shape {vol.data.shape}")
    grid = plan_grid(vol, scale=volume_factors(info, axis))
    passes = net_passes(grid, model, info, str(info.get("architecture") or "the network"))
    out = super_resolve_volume(vol, grid, passes=passes, device=device, tta=tta,
                               batch=batch_size, progress=False)
    return np.asarray(out.volume.data, dtype=np.float32)
