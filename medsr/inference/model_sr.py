"""Super-resolve a volume with trained networks: load, normalise, apply (tiled), restore.

Integer factors are realised by the networks; a non-integer factor is realised by SR to
the next integer followed by band-limited (Lanczos-3, antialiased) resampling onto the
exact target grid, whose centre and spacing follow :mod:`medsr.geometry`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medsr import pretrained
from medsr.errors import UserError
from medsr.inference.apply import apply_2d, apply_3d
from medsr.intensity import Normalisation, all_finite, input_range


def use_all_cores() -> None:
    """Intra-op threads = the cores this process may use (not more)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    torch.set_num_threads(max(1, n))


class FlipEnsemble(nn.Module):
    """Self-ensemble: average the network over flips of every spatial axis (2^d passes)."""

    receptive_field_from = "net"  # flips do not change the field (receptive_field.receptive_halo)

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.scale = net.scale
        self.spatial_dims = net.spatial_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = list(range(2, x.dim()))
        out = None
        n = 0
        for mask in range(2 ** len(dims)):
            flip = [d for i, d in enumerate(dims) if mask >> i & 1]
            xi = torch.flip(x, flip) if flip else x
            yi = self.net(xi)
            yi = torch.flip(yi, flip) if flip else yi
            out = yi if out is None else out + yi
            n += 1
        return out / n


@dataclass
class Pass:
    """One network pass: a model and the per-volume-axis factors it realises."""

    model: nn.Module
    info: dict[str, Any]
    factors: tuple[int, int, int]
    # inference copies of ``model`` (fused / channels-last / compiled), by settings
    prepared: dict = field(default_factory=dict, repr=False, compare=False)

    def runnable(self, device: torch.device, channels_last: bool, compile_model: bool,
                 tta: bool, precision: str = "fp32") -> nn.Module:
        """The model made fast for ``device`` (:func:`medsr.inference.accelerate.prepare`),
        built once per setting: channels and time points reuse it (and its compilation)."""
        from medsr.inference.accelerate import prepare

        key = (str(device), channels_last, compile_model, tta, precision)
        if key not in self.prepared:  # fused kernels are fp32: autocast needs plain convs
            net = prepare(self.model, device, channels_last=channels_last,
                          compile_model=compile_model, fuse=precision == "fp32")
            self.prepared[key] = FlipEnsemble(net) if tta else net
        return self.prepared[key]


def load(ref: str | Path, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """A shipped model by name (see medsr.pretrained) or a checkpoint path; never unpickles."""
    from medsr.models.checkpoint import load_model

    if str(ref) in pretrained.PRETRAINED:
        p = pretrained.PRETRAINED[str(ref)]
        if not p.available:
            raise UserError(f"pretrained model {ref!r} is not installed ({p.path} missing)")
        ref = p.path
    from medsr.inference.receptive_field import remember_receptive_field

    net, info = load_model(ref, device=device)
    remember_receptive_field(net, info)  # stored with the weights: no probe on this run
    return net, info


def pass_factors(model: nn.Module, axes: int | tuple[int, int] | None) -> tuple[int, int, int]:
    """Volume factors of a model pass: through-plane along ``axes`` or in-plane on a pair."""
    scale = tuple(int(s) for s in model.scale)
    if model.spatial_dims == 3:
        return scale  # type: ignore[return-value]
    f = [1, 1, 1]
    if isinstance(axes, int):
        f[axes] = max(scale)
    elif axes is not None:
        f[axes[0]], f[axes[1]] = scale
    else:
        raise UserError("a 2D model needs to know which axes it upsamples")
    return tuple(f)  # type: ignore[return-value]


def run_settings(device: torch.device, channels_last: bool | None = None,
                 precision: str = "auto") -> tuple[bool, str]:
    """The layout and precision :func:`run_passes` uses on ``device`` (channels-last by
    default on the CPU; ``precision`` resolved), which also key :meth:`Pass.runnable`."""
    from medsr.inference.accelerate import resolve_precision

    if channels_last is None:
        channels_last = torch.device(device).type == "cpu"
    return bool(channels_last), resolve_precision(precision, device)


def run_passes(data: np.ndarray, passes: Sequence[Pass], *, device: torch.device,
               tta: bool = False, fuse: bool = True, max_memory: float = 1.5e9,
               tile: Sequence[int] | None = None, batch: int | None = None,
               progress: Callable[[int, int], None] | None = None,
               channels_last: bool | None = None, precision: str = "auto",
               compile_model: bool = False, blend: str = "crop") -> np.ndarray:
    """Apply the passes in order to one channel (I, J, K), intensities restored.

    Speed settings (:mod:`medsr.inference.accelerate`): ``channels_last`` (default: on
    the CPU) and conv + activation fusion (CPU) change nothing but float rounding;
    ``precision`` (``auto``: fp16 autocast on CUDA, fp32 elsewhere) and
    ``compile_model`` (``torch.compile``) are opt-in trade-offs. ``tile`` / ``batch``
    default to a device-specific choice; ``blend`` is the tile blending
    (:func:`medsr.inference.tiling.tiled_forward`).
    """
    from medsr.inference.accelerate import autocast

    dev = torch.device(device)
    channels_last, precision = run_settings(dev, channels_last, precision)
    out = data
    for p in passes:
        norm = p.info.get("normalisation") or {}
        f32 = np.asarray(out, dtype=np.float32)
        scale = Normalisation(*input_range(f32, float(norm.get("lower", 0.5)),
                                           float(norm.get("upper", 99.5))))
        net = p.runnable(dev, channels_last, compile_model, tta, precision)
        with torch.inference_mode(), autocast(dev, precision):
            if p.model.spatial_dims == 2:
                del f32  # apply_2d normalises slab by slab: no volume-sized copy
                y = apply_2d(net, out, p.factors, device=dev,
                             batch=batch, max_memory=max_memory, tile=tile, fuse=fuse,
                             progress=progress, channels_last=channels_last, blend=blend,
                             normalise=scale)
            else:
                # normalised in place in a float32 copy of our own (never the caller's)
                x = f32 if f32 is not out and f32.base is None else f32.copy()
                del f32
                y = apply_3d(net, scale.apply_(x), p.factors, device=dev,
                             max_memory=max_memory, tile=tile, progress=progress,
                             channels_last=channels_last, blend=blend)
                del x
        if not all_finite(y):  # damaged weights or overflow: never write NaN
            name = p.info.get("name") or p.info.get("architecture") or "the network"
            raise UserError(f"network {name} produced NaN or infinite values (damaged "
                            "weights, or intensities far outside its training range); "
                            "nothing was written")
        out = scale.invert_(y)
    return out
