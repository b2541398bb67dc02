"""Apply a trained network to a whole volume (simple, untiled; tiling lives elsewhere).

2D networks run slice by slice perpendicular to ``axis`` (2.5D ones see the neighbouring
slices as channels, edges replicated); 3D networks see the whole volume. Intensities are
normalised with the robust percentiles the checkpoint names, and mapped back afterwards.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from medsr.data.normalise import denormalise, input_range, normalise
from medsr.errors import UserError
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


@torch.inference_mode()
def predict_volume(model: nn.Module, volume: Volume | np.ndarray, info: dict[str, Any], *,
                   axis: int | None = None, batch_size: int = 8,
                   device: str | torch.device = "cpu") -> np.ndarray:
    """The super-resolved array, shape = input shape x :func:`volume_factors` (channels last
    kept), float32 in the input's intensity units."""
    data = volume.data if isinstance(volume, Volume) else np.asarray(volume)
    if data.ndim not in (3, 4):
        raise UserError(f"expected a (I, J, K[, C]) volume, got shape {data.shape}")
    chw = (data[None] if data.ndim == 3 else np.moveaxis(data, -1, 0)).astype(np.float32)
    norm = info.get("normalisation") or {"lower": 0.5, "upper": 99.5}
    lo, hi = input_range(chw, float(norm.get("lower", 0.5)), float(norm.get("upper", 99.5)))
    x = normalise(chw, lo, hi)
    device = torch.device(device)
    model = model.to(device).eval()
    mode = (info.get("sampling") or {}).get("mode", "3d" if info["spatial_dims"] == 3 else "2d")
    if int(info["spatial_dims"]) == 3:
        out = _run(model, torch.from_numpy(x)[None], device)[0].numpy()
    else:
        normal = default_axis(info) if axis is None else int(axis)
        context = int((info.get("sampling") or {}).get("context", 1)) if mode == "2.5d" else 0
        out = _slicewise(model, x, normal, context, batch_size, device)
    if out.shape[0] != chw.shape[0] and mode != "2.5d":
        raise UserError(f"model returns {out.shape[0]} channels for a "
                        f"{chw.shape[0]}-channel volume")
    out = denormalise(out, lo, hi)
    return out[0] if data.ndim == 3 else np.moveaxis(out, 0, -1)


def _run(model: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    y = model(x.to(device))
    if isinstance(y, (list, tuple)):  # multi-scale networks (LapSRN): the finest output
        y = y[-1]
    return y.float().cpu()


def _slicewise(model: nn.Module, x: np.ndarray, normal: int, context: int, batch: int,
               device: torch.device) -> np.ndarray:
    """(C, I, J, K) -> (C_out, I', J', K') running a 2D model on slices along ``normal``."""
    xs = np.moveaxis(x, 1 + normal, 0)          # (n, C, a, b)
    n = xs.shape[0]
    outs = []
    for a in range(0, n, batch):
        idx = np.arange(a, min(a + batch, n))
        if context:
            stack = [xs[np.clip(idx + d, 0, n - 1), 0] for d in range(-context, context + 1)]
            inp = np.stack(stack, axis=1)       # (b, 2c+1, a, b)
        else:
            inp = xs[idx]
        outs.append(_run(model, torch.from_numpy(np.ascontiguousarray(inp)), device).numpy())
    y = np.concatenate(outs, axis=0)            # (n, C_out, a', b')
    return np.moveaxis(y, 0, 1 + normal)
