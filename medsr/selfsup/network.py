"""The network the scan trains, where it starts from, and how a fitted one is kept.

The network is a small zoo model with scale (1, k) (chosen by measurement, see
docs/self-supervised.md). It starts from scratch (``init="scratch"``) or fine-tunes the
shipped through-plane model for factor k (``"default"``, ``thick_slice_x{k}.safetensors``
in ``medsr/weights``). ``"auto"`` decides per scan (:func:`choose_start`): it fine-tunes
the shipped default when one ships for k and its error on the scan's own training pairs
is not far above Lanczos interpolation's (its prior fits this scan), else it starts from scratch
(measured: docs/self-supervised.md "Where training starts"). A fitted model is an ordinary medsr
checkpoint (``medsr.models.checkpoint``: safetensors + JSON), with a ``selfsup`` block
recording the task it was fitted for, so ``medsr.models.checkpoint.load_model`` rebuilds
it like any other.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medsr import models
from medsr.errors import UserError
from medsr.models.checkpoint import load_model, save_model
from medsr.models.upsample import Interpolate

ARCHITECTURE = "sp_vdsr"
HPARAMS: dict[str, Any] = {"depth": 6, "features": 32, "interpolation": "lanczos"}
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
INITS = ("auto", "scratch", "default")
AUTO_PROBE_BATCHES = 8     # batches of pairs on which "auto" compares default and Lanczos
AUTO_PROBE_STREAM = 7      # their own random stream: the training pairs are unchanged
AUTO_MAX_RATIO = 2.0       # fine-tune the default unless its probe error exceeds Lanczos' x this
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


def initial_model(k: int, init: str) -> tuple[nn.Module, str]:
    """(network, what it started from): a fresh network, or the shipped default for
    factor k to fine-tune (``init="default"``; an error when there is none or it is not
    a 2D (1, k) model). ``auto`` is decided by :func:`choose_start`."""
    if init not in INITS:
        raise UserError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    if init == "auto":
        raise ValueError("init='auto' is decided by choose_start (it needs the scan's pairs)")
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


def choose_start(k: int, sampler: Any, seed: int, device: torch.device | str = "cpu",
                 batch: int = 16) -> tuple[nn.Module, str, dict[str, Any]]:
    """``init="auto"``: (network, what it started from, the evidence).

    The shipped default for factor k is fine-tuned unless its mean squared error on
    AUTO_PROBE_BATCHES batches of the scan's own pairs (drawn from a stream of their own,
    so training sees the same pairs either way) exceeds AUTO_MAX_RATIO times that of
    Lanczos interpolation; then, or when no default ships for k, a fresh network starts.
    A default trained on brains is a good start for another brain (fine-tuning it gains
    0.0-1.2 dB over scratch in five minutes; its probe error is 0.4-1.6x Lanczos') and a
    bad one for a microscopy image (-1.9 to -5.2 dB; 6.8-14.4x), which the ratio tells apart
    (docs/self-supervised.md, "Where training starts").
    """
    rng_state = torch.get_rng_state()  # loading the default draws an init it then replaces

    def scratch() -> nn.Module:  # the very network init="scratch" would start from
        torch.set_rng_state(rng_state)
        return build(k)

    path = default_weights(k)
    if path is None:
        return scratch(), "scratch", {"auto": "no shipped default for this factor"}
    try:
        model, started = initial_model(k, "default")
    except UserError as exc:  # e.g. a user's MEDSR_WEIGHTS file of another kind
        return scratch(), "scratch", {"auto": f"default not usable: {exc}"}
    interp = Interpolate((1, int(k)), "lanczos")
    rng = np.random.default_rng([seed, AUTO_PROBE_STREAM])
    err_model = err_interp = 0.0
    model.to(device).eval()
    with torch.no_grad():
        for _ in range(AUTO_PROBE_BATCHES):
            lo, hi = (t.to(device) for t in sampler.sample(rng, batch))
            err_model += float(torch.mean((model(lo) - hi) ** 2))
            err_interp += float(torch.mean((interp(lo) - hi) ** 2))
    evidence = {"auto_probe_mse_default": err_model / AUTO_PROBE_BATCHES,
                "auto_probe_mse_lanczos": err_interp / AUTO_PROBE_BATCHES}
    if err_model < AUTO_MAX_RATIO * err_interp:
        return model.train(), started, evidence
    return scratch(), "scratch", evidence


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
