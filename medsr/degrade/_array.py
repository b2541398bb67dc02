"""Numpy / torch / MetaTensor in, the same out: every degradation step works on torch.

The work happens in float64 on CPU (float32 on accelerators) so that numpy users get
exact physics and GPU users keep their data on the device.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medsr.errors import UserError


def to_work(img: Any) -> torch.Tensor:
    """A plain floating tensor (float64 on CPU) holding ``img``; no metadata."""
    if isinstance(img, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(img, dtype=np.float64))
    if isinstance(img, torch.Tensor):
        t = img.as_tensor() if hasattr(img, "as_tensor") else img
        dtype = torch.float64 if t.device.type == "cpu" else torch.float32
        return t.detach().to(dtype)
    raise UserError(f"expected a numpy array or a torch tensor, got {type(img).__name__}")


def out_dtype(img: Any) -> Any:
    """The input's floating dtype (integers become float32)."""
    if isinstance(img, np.ndarray):
        return img.dtype if np.issubdtype(img.dtype, np.floating) else np.dtype(np.float32)
    return img.dtype if torch.is_floating_point(img) else torch.float32


def restore(out: torch.Tensor, like: Any) -> Any:
    """``out`` as the type, floating dtype and device of ``like`` (MetaTensor meta copied)."""
    dtype = out_dtype(like)
    if isinstance(like, np.ndarray):
        return out.detach().cpu().numpy().astype(dtype, copy=False)
    res = out.to(device=like.device, dtype=dtype)
    if hasattr(like, "as_tensor"):  # MetaTensor
        from monai.data import MetaTensor

        res = MetaTensor(res, meta=dict(like.meta),
                         applied_operations=list(like.applied_operations))
    return res


def check_channel_first(x: torch.Tensor) -> int:
    """Number of spatial dims of a channel-first image (C, *spatial), 2 or 3."""
    if x.ndim not in (3, 4):
        raise UserError(f"expected a channel-first image (C, H, W) or (C, H, W, D), "
                        f"got shape {tuple(x.shape)}")
    return x.ndim - 1


def apply_along(x: torch.Tensor, matrix: np.ndarray, axis: int) -> torch.Tensor:
    """y = M x along ``axis`` (M: (n_out, n_in)), all other axes untouched."""
    m = torch.as_tensor(matrix, dtype=x.dtype, device=x.device)
    moved = torch.movedim(x, axis, -1)
    return torch.movedim(moved @ m.T, -1, axis)
