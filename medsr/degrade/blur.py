"""Blur h * I: per-axis slice profiles (Gaussian / rect) or a user kernel, reflect borders.

Borders are half-sample symmetric ("reflect" in scipy.ndimage: d c b a | a b c d), so a
constant image stays constant and no intensity leaks in from outside.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import Transform

from medsr.degrade import _array
from medsr.degrade.profiles import load_kernel, profile_kernel
from medsr.errors import UserError


def reflect_indices(n: int, pad_lo: int, pad_hi: int) -> np.ndarray:
    """Indices of an axis of length n padded half-sample symmetrically (any pad size)."""
    idx = np.arange(-pad_lo, n + pad_hi)
    period = 2 * n
    idx = np.mod(idx, period)
    return np.where(idx >= n, period - 1 - idx, idx)


def _pad_reflect(x: torch.Tensor, axis: int, pad_lo: int, pad_hi: int) -> torch.Tensor:
    idx = torch.as_tensor(reflect_indices(x.shape[axis], pad_lo, pad_hi), device=x.device)
    return torch.index_select(x, axis, idx)


def convolve_axis(x: torch.Tensor, kernel: np.ndarray, axis: int) -> torch.Tensor:
    """Convolve ``x`` along ``axis`` with an odd-length 1D kernel centred on its middle."""
    kernel = np.asarray(kernel, dtype=np.float64).reshape(-1)
    if kernel.size == 1:
        return x * float(kernel[0])
    if kernel.size % 2 == 0:
        kernel = np.append(kernel, 0.0)  # even length: centre between the two middle taps
    r = kernel.size // 2
    xp = _pad_reflect(x, axis, r, r)
    moved = torch.movedim(xp, axis, -1)
    shape = moved.shape
    flat = moved.reshape(-1, 1, shape[-1])
    w = torch.as_tensor(kernel[::-1].copy(), dtype=x.dtype, device=x.device).view(1, 1, -1)
    out = F.conv1d(flat, w).reshape(*shape[:-1], shape[-1] - 2 * r)
    return torch.movedim(out, -1, axis)


def convolve_nd(x: torch.Tensor, kernel: np.ndarray) -> torch.Tensor:
    """Convolve every channel of channel-first ``x`` with an N-D PSF (N = spatial dims)."""
    nd = x.ndim - 1
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != nd:
        raise UserError(f"a {k.ndim}-D kernel cannot blur an image with {nd} spatial dims")
    k = np.pad(k, [(0, 1 - s % 2) for s in k.shape])  # make every side odd
    xp = x
    for ax, s in enumerate(k.shape):
        xp = _pad_reflect(xp, ax + 1, s // 2, s // 2)
    w = torch.as_tensor(np.flip(k).copy(), dtype=x.dtype, device=x.device)[None, None]
    conv = F.conv2d if nd == 2 else F.conv3d
    return conv(xp[:, None], w)[:, 0]


UNITS = ("voxel", "mm", "lr")


def _per_axis(value: Any, nd: int, name: str) -> list:
    if value is None:
        return [None] * nd
    if np.ndim(value) == 0:
        return [value] * nd
    vals = list(value)
    if len(vals) == 3 and nd == 2 and vals[2] in (None, 0, 1):
        vals = vals[:2]  # a 3-axis setting applied to a 2D image: drop the unused z entry
    if len(vals) != nd:
        raise UserError(f"{name} needs 1 or {nd} values, got {len(vals)}")
    return vals


def blur_widths(profile: str, fwhm: Any, thickness: Any, units: str, factors: Sequence[float],
                spacing: Sequence[float] | None) -> list[float]:
    """Profile width per axis in HR voxels.

    Gaussian: FWHM (or, if only a thickness is given, FWHM = thickness). Rect: thickness.
    An unset axis gets width k (slice thickness = slice spacing) where k > 1, else no blur.
    ``units`` is "voxel" (HR voxels), "mm" (divided by ``spacing``) or "lr" (multiples of
    the LR spacing k: 1.0 means thickness = slice spacing, 1.5 overlap, 0.7 a gap).
    """
    nd = len(factors)
    fw = _per_axis(fwhm, nd, "fwhm")
    th = _per_axis(thickness, nd, "thickness")
    if units not in UNITS:
        raise UserError(f"units must be one of {', '.join(UNITS)}, got {units!r}")
    widths = []
    for ax in range(nd):
        given = (fw[ax] if fw[ax] is not None else th[ax]) if profile == "gaussian" else (
            th[ax] if th[ax] is not None else fw[ax])
        if given is None:
            widths.append(float(factors[ax]) if factors[ax] > 1 else 0.0)
            continue
        given = float(given)
        if given < 0:
            raise UserError(f"profile width must be >= 0, got {given}")
        if units == "mm" and given > 0:
            if spacing is None:
                raise UserError("FWHM/thickness in mm needs the voxel spacing "
                                "(pass spacing=..., a MetaTensor, or use units: voxel)")
            sp = _per_axis(spacing, nd, "spacing")
            given = given / float(sp[ax])
        elif units == "lr":
            given = given * float(factors[ax])
        widths.append(given)
    return widths


def blur(x: torch.Tensor, profile: str, widths: Sequence[float],
         kernel: str | np.ndarray | None = None) -> torch.Tensor:
    """h * x for channel-first ``x``: a named profile per axis, or a user kernel.

    A 1D user kernel is the slice profile along every axis whose width is non-zero; an
    N-D user kernel is the full PSF.
    """
    if profile == "none":
        return x
    if profile == "kernel":
        if kernel is None:
            raise UserError("profile 'kernel' needs a kernel (.npy path or array)")
        k = load_kernel(kernel) if isinstance(kernel, str) else np.asarray(kernel, float)
        if k.ndim > 1:
            return convolve_nd(x, k / k.sum())
        for ax, w in enumerate(widths):
            if w > 0:
                x = convolve_axis(x, k / k.sum(), ax + 1)
        return x
    for ax, w in enumerate(widths):
        k = profile_kernel(profile, w)
        if k is not None:
            x = convolve_axis(x, k, ax + 1)
    return x


class SliceProfileBlur(Transform):
    """Blur a channel-first image with a slice profile / PSF per axis (MONAI array form).

    Args:
        profile: "gaussian", "rect", "none" or "kernel" (then ``kernel`` is a .npy path).
        fwhm: Gaussian FWHM, scalar or per axis (None entries: no blur on that axis).
        thickness: rect width (slice thickness), scalar or per axis.
        units: "voxel" or "mm" (mm needs ``spacing`` in the call or a MetaTensor).
    """

    def __init__(self, profile: str = "gaussian", fwhm: Any = None, thickness: Any = None,
                 units: str = "voxel", kernel: str | None = None) -> None:
        self.profile, self.fwhm, self.thickness = profile, fwhm, thickness
        self.units, self.kernel = units, kernel

    def __call__(self, img: Any, spacing: Sequence[float] | None = None) -> Any:
        x = _array.to_work(img)
        nd = _array.check_channel_first(x)
        if spacing is None and hasattr(img, "pixdim"):
            spacing = [float(s) for s in img.pixdim[:nd]]
        widths = blur_widths(self.profile, self.fwhm, self.thickness, self.units,
                             [1.0] * nd, spacing)
        if self.profile == "kernel":
            widths = [1.0] * nd if self.fwhm is None and self.thickness is None else widths
        return _array.restore(blur(x, self.profile, widths, self.kernel), img)
