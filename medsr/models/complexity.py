"""Parameter counts and MACs per output voxel.

MACs come from PyTorch's own ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2),
counting learned layers only (convolutions, transposed convolutions, linear layers);
fixed interpolation (dense matmuls in ``medsr.interpolate.resize_torch``) is left out.
Models are built on the ``meta`` device, so even 3D paper-width networks cost nothing.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from medsr.models.base import Scale
from medsr.models.registry import PRESETS, available, create

LEARNED_OPS = ("convolution", "addmm")


def count_parameters(model: nn.Module) -> int:
    """Number of distinct parameters (shared weights counted once)."""
    return sum(p.numel() for p in model.parameters())


def model_macs(model: nn.Module, x: torch.Tensor) -> tuple[float, torch.Size]:
    """(MACs of learned layers for one forward pass on ``x``, output shape)."""
    with FlopCounterMode(display=False) as counter:
        y = model(x)
    flops = sum(v for op, v in counter.get_flop_counts()["Global"].items()
                if any(name in str(op) for name in LEARNED_OPS))
    return flops / 2, y.shape


def macs_per_output_voxel(name: str, spatial_dims: int = 2, scale: Scale = 2,
                          in_channels: int = 1, out_channels: int = 1,
                          lr_size: int | None = None, **hyperparameters) -> float:
    """MACs of network ``name`` per output voxel (per spatial position, all channels)."""

    lr_size = lr_size or (32 if spatial_dims == 2 else 16)
    with torch.device("meta"):
        model = create(name, spatial_dims, scale, in_channels, out_channels, **hyperparameters)
        x = torch.empty(1, in_channels, *([lr_size] * spatial_dims))
        macs, shape = model_macs(model, x)
    return macs / math.prod(shape[2:])


def parameters_of(name: str, spatial_dims: int = 2, scale: Scale = 2, in_channels: int = 1,
                  out_channels: int = 1, **hyperparameters) -> int:
    """Parameter count of network ``name`` without allocating its weights."""

    with torch.device("meta"):
        return count_parameters(create(name, spatial_dims, scale, in_channels, out_channels,
                                       **hyperparameters))


def zoo_table(scale: int = 2, spatial_dims: tuple[int, ...] = (2, 3),
              preset: str | None = None) -> list[dict]:
    """One row per network: parameters and MACs per output voxel for each of
    ``spatial_dims`` (``preset`` applied where the network defines it)."""

    rows = []
    for name in available():
        hp = {"preset": preset} if preset in PRESETS.get(name, {}) else {}
        row: dict = {"name": name, "preset": hp.get("preset")}
        for d in spatial_dims:
            row[f"params_{d}d"] = parameters_of(name, d, scale, **hp)
            row[f"macs_{d}d"] = macs_per_output_voxel(name, d, scale, **hp)
        rows.append(row)
    return rows
