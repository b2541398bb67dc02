"""Fixtures shared by the robustness test files."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def checkpoint_parts():
    """(state dict as numpy, info) of a tiny 2D x2 zoo network (srcnn)."""
    import torch

    from medsr.models.registry import create

    torch.manual_seed(0)
    net = create("srcnn", spatial_dims=2, scale=2, channels=[4, 2])
    state = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
    hp = {k: v for k, v in net.hparams.items()
          if k not in ("spatial_dims", "scale", "in_channels", "out_channels")}
    info = {"format": "medsr-checkpoint-1", "architecture": "srcnn", "hparams": hp,
            "scale": [2, 2], "spatial_dims": 2, "in_channels": 1, "out_channels": 1}
    return state, info
