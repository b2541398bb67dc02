"""Multi-frame super-resolution: neighbouring frames as input channels.

A multi-frame model is a 2D network trained in the 2.5D setting (``sampling.mode: 2.5d``,
``sampling.axes: [2]`` on frame stacks, ``context: r``): its input is the 2r+1 frames
t-r .. t+r of a (rows, cols, frames) stack as channels and its output the centre frame t
at x k in-plane. Across a stack every frame is predicted from its own window; at the first
and last frames the missing neighbours are the edge frame repeated (the same rule the
training sampler uses, :func:`medsr.training.data.sampling.draw`).

:func:`multiframe_sr` applies such a model to one single-channel stack (luma, or grey),
tiled with the receptive-field halo of :mod:`medsr.inference.tiling`, with the same input
normalisation as single-frame inference; :func:`medsr.inference.resolvers.choose_resolver`
picks it when the model says it is multi-frame, so ``medsr infer`` (colour via Y,
:mod:`medsr.adapters.colour`) serves both kinds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from medsr.errors import UserError
from medsr.geometry import OutputGrid
from medsr.inference.model_sr import FlipEnsemble
from medsr.inference.receptive_field import receptive_halo
from medsr.inference.tiling import tile_for_memory, tiled_forward
from medsr.intensity import input_range
from medsr.interpolate import resize
from medsr.volume import Volume


def frame_context(info: dict[str, Any]) -> int:
    """r of a model that reads 2r+1 frames (0 for a single-frame model)."""
    cin, cout = int(info.get("in_channels", 1)), int(info.get("out_channels", 1))
    if cin == cout:
        return 0
    frames, rest = divmod(cin, cout)
    if rest or frames % 2 == 0:
        raise UserError(f"model has {cin} input and {cout} output channels: not 2r+1 frames")
    return frames // 2


def is_multiframe(passes: list) -> bool:
    """True for one network pass (:class:`medsr.inference.model_sr.Pass`) whose model
    reads 2r+1 > 1 frames; such a pass must go through :func:`multiframe_sr`."""
    return len(passes) == 1 and frame_context(passes[0].info) > 0


def neighbour_stack(frames: np.ndarray, index: np.ndarray, r: int) -> np.ndarray:
    """(rows, cols, T) -> (len(index), 2r+1, rows, cols): frames t-r..t+r of each t in
    ``index``, the first / last frame repeated beyond the ends."""
    n = frames.shape[2]
    idx = np.clip(np.asarray(index)[:, None] + np.arange(-r, r + 1)[None, :], 0, n - 1)
    return np.ascontiguousarray(np.moveaxis(frames[:, :, idx], (2, 3), (0, 1)))


def multiframe_sr(vol: Volume, plan: OutputGrid, model: nn.Module, info: dict[str, Any], *,
                  device: torch.device | str = "cpu", tta: bool = False, batch: int = 4,
                  max_memory: float = 1.5e9) -> Volume:
    """Super-resolve every frame of a single-channel stack (rows, cols, T) in-plane with a
    multi-frame ``model`` (see the module doc) onto ``plan``'s grid.

    The network realises its integer factor; a non-integer plan factor is finished by
    Lanczos resampling, as for single-frame models.
    """
    r = frame_context(info)
    data = np.asarray(vol.data, dtype=np.float32)
    if data.ndim != 3:
        raise UserError("multi-frame super-resolution takes one channel (luma or grey) at a "
                        "time")
    if int(model.spatial_dims) != 2:
        raise UserError("a multi-frame model must be a 2D network")
    k = tuple(int(s) for s in model.scale)
    K = np.array([k[0], k[1], 1], dtype=float)
    factors = np.asarray(plan.factors, dtype=float)
    if abs(factors[2] - 1) > 1e-6 or np.any(factors[:2] > K[:2] + 1e-6):
        raise UserError(f"a multi-frame x{k[0]} model upsamples the frames in-plane by up to "
                        f"{k[0]}, not by {np.round(factors, 3).tolist()}")
    norm = info.get("normalisation") or {}
    lo, hi = input_range(data, float(norm.get("lower", 0.5)), float(norm.get("upper", 99.5)))
    x = (data - np.float32(lo)) / np.float32(hi - lo)
    halo = receptive_halo(model)
    tile = tile_for_memory(x.shape[:2], k, (halo, halo), 64, max_memory, batch)
    net = FlipEnsemble(model) if tta else model
    dev = torch.device(device)
    n = x.shape[2]
    out = np.empty((x.shape[0] * k[0], x.shape[1] * k[1], n), dtype=np.float32)
    model.eval()
    with torch.inference_mode():
        for a in range(0, n, batch):
            idx = np.arange(a, min(a + batch, n))
            inp = torch.from_numpy(neighbour_stack(x, idx, r))
            y = tiled_forward(net, inp, k, tile, (halo, halo), device=dev)
            out[:, :, a:a + len(idx)] = np.moveaxis(y[:, 0].numpy(), 0, 2)
    out *= np.float32(hi - lo)
    out += np.float32(lo)
    if not np.allclose(K, factors):
        out = resize(out, factors / K, method="lanczos", shape_out=plan.shape_out)
    return vol.with_data(out, affine=plan.affine_out)
