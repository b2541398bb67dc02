"""The network the scan trains, where it starts from, and how a fitted one is kept.

The network is a small zoo model with scale (1, k) (chosen by measurement, see
docs/self-supervised.md). It starts from scratch (``init="scratch"``) or fine-tunes the
shipped through-plane model for factor k (``"default"``, ``thick_slice_x{k}.safetensors``
in ``medsr/weights``). ``"auto"`` is the start that measured better in the 5-minute
benchmark (``AUTO_START``: scratch, which tied or beat fine-tuning on every case, see
docs/self-supervised.md "Where training starts"). A fitted model is an ordinary medsr
checkpoint (``medsr.engine.checkpoint``: safetensors + JSON), with a ``selfsup`` block
recording the task it was fitted for, so ``medsr.engine.checkpoint.load_model`` rebuilds
it like any other.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medsr import models
from medsr.engine.checkpoint import load_model, save_model
from medsr.errors import UserError

ARCHITECTURE = "sp_vdsr"
HPARAMS: dict[str, Any] = {"depth": 6, "features": 32, "interpolation": "lanczos"}
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
INITS = ("auto", "scratch", "default")
AUTO_START = "scratch"  # measured: docs/self-supervised.md, "Where training starts"
RESIDUAL_INIT_SCALE = 0.1
# shipped through-plane models, by factor (pipelines/train_default.py names them so)
DEFAULT_NAMES = ("thick_slice_x{k}.safetensors", "through_plane_x{k}.safetensors")


def build(k: int, architecture: str = ARCHITECTURE, **hparams: Any) -> nn.Module:
    """A fresh 2D network with scale (1, k) (seed torch first for a reproducible init)."""
    hp = {**(HPARAMS if architecture == ARCHITECTURE else {}), **hparams}
    model = models.create(architecture, spatial_dims=2, scale=(1, int(k)), **hp)
    if architecture == "sp_vdsr":
        # shrink the residual's last conv: untrained, the network is close to its Lanczos
        # interpolation (a budget allowing few steps does not do worse than that), yet the
        # body still gets gradients from the first step (zero init learned 5x slower)
        last = [m for m in model.upsample.modules() if isinstance(m, nn.Conv2d)][-1]
        with torch.no_grad():
            last.weight.mul_(RESIDUAL_INIT_SCALE)
            if last.bias is not None:
                last.bias.mul_(RESIDUAL_INIT_SCALE)
    return model


def default_weights(k: int) -> Path | None:
    """The shipped through-plane model for factor k, if there is one."""
    root = Path(os.environ.get("MEDSR_WEIGHTS", WEIGHTS_DIR))
    for name in DEFAULT_NAMES:
        path = root / name.format(k=k)
        if path.is_file():
            return path
    return None


def initial_model(k: int, init: str = "auto") -> tuple[nn.Module, str]:
    """(network, what it started from): a fresh network, or the shipped default for
    factor k to fine-tune (``init="default"``; an error when there is none or it is not
    a 2D (1, k) model). ``auto`` is ``AUTO_START``."""
    if init not in INITS:
        raise UserError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    if init == "auto":
        init = AUTO_START
    if init == "scratch":
        return build(k), "scratch"
    path = default_weights(k)
    if path is None:
        raise UserError(f"no shipped through-plane model for factor {k} (looked for "
                        f"{' or '.join(n.format(k=k) for n in DEFAULT_NAMES)} in "
                        f"{WEIGHTS_DIR}); use init='scratch' or 'auto'")
    model, _ = load_model(path)
    if tuple(model.scale) != (1, k) or getattr(model, "spatial_dims", 2) != 2:
        raise UserError(f"{path} has scale {tuple(model.scale)}, not a 2D (1, {k}) model")
    return model.train(), f"default:{path.name}"


def save_fitted(path: str | os.PathLike, model: nn.Module, selfsup: dict[str, Any]) -> Path:
    """Write the fitted network as a medsr checkpoint (safetensors + JSON sidecar)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    if not path.parent.is_dir():
        raise UserError(f"cannot save the model: directory {path.parent} does not exist")
    info = {"architecture": architecture_of(model),
            "hparams": {k: v for k, v in model.hparams.items()
                        if k not in ("spatial_dims", "scale", "in_channels", "out_channels")},
            "scale": list(model.scale), "spatial_dims": 2,
            "in_channels": model.in_channels, "out_channels": model.out_channels,
            "task": "self-supervised through-plane", "selfsup": selfsup}
    return save_model(path, model.state_dict(), info)


def architecture_of(model: nn.Module) -> str:
    for name, cls in models.NETWORKS.items():
        if type(model) is cls:
            return name
    raise UserError(f"{type(model).__name__} is not a zoo network; cannot save it")


def load_fitted(path: str | os.PathLike, device: str | torch.device = "cpu"
                ) -> tuple[nn.Module, dict[str, Any]]:
    """(network in eval mode, checkpoint info) of a model saved by :func:`save_fitted`."""
    model, info = load_model(path, device=device)
    if tuple(model.scale)[0] != 1 or getattr(model, "spatial_dims", 2) != 2:
        raise UserError(f"{path} is not a through-plane 2D model (scale {tuple(model.scale)})")
    return model, info
