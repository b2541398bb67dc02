"""down_k: per-axis HR -> LR resampling on the grid that ``medsr.geometry`` upsamples back.

Grid (the A @ S convention). LR voxel j sits at HR index position x_j = k j + o:
  - integer k:     n_lr = n // k, o = (k - 1) / 2   (affine A @ S^-1; if k does not
                   divide n the last n mod k HR voxels are not covered)
  - non-integer k: n_lr = round(n / k), o = (n - 1) / 2 - k (n_lr - 1) / 2 (centre of the
                   field of view kept, as in ``geometry.source_coordinates``).

Every mode is a linear map per axis (an (n_lr, n) matrix), exact for any k:
  - decimate: the signal sampled at x_j; where x_j falls between HR samples (even k) it is
    linearly interpolated from the two neighbours (i.e. the mean of the two middle samples).
  - area:     mean over the LR voxel footprint [x_j - k/2, x_j + k/2] (HR voxels weighted
    by overlap; block mean of k voxels for integer k).
  - kspace:   k-space truncation: the band-limited (periodic) interpolant keeping
    |f| < n / (2k) cycles per field of view (half weight on the cut-off bin), optionally
    Hann / Tukey windowed, evaluated at x_j (the half-voxel phase shift for even k).
  - bicubic:  antialiased Keys cubic (a = -0.5) widened by k, rows normalised, symmetric
    borders: MATLAB ``imresize`` / PIL ``BICUBIC`` on this grid.
``zero_filled`` (kspace only) returns the truncated spectrum on the HR grid instead.

``acquire`` (integer k; :func:`acquire`) is blur and sampling in one: the slice profile
centred at x_j itself and integrated over each HR voxel, as a 2D multi-slice acquisition
records a slice. Blur then ``decimate`` centres the profile on HR voxels and, for even k,
interpolates between two of them: one more [1/2, 1/2] blur (a box of k voxels becomes
k + 1 voxels of trapezoid), so ``acquire`` is what the profile alone gives.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import Transform

from medsr import geometry
from medsr.degrade import _array
from medsr.degrade.profiles import integrated_taps
from medsr.errors import UserError

MODES = ("decimate", "area", "kspace", "bicubic", "acquire")
WINDOWS = (None, "none", "hann", "tukey")


def _as_int(k: float) -> int | None:
    r = round(k)
    return int(r) if abs(k - r) < 1e-9 else None


def lr_grid(n: int, k: float) -> tuple[int, float]:
    """(n_lr, o): LR voxel j sits at HR index k j + o."""
    if not (k >= 1.0 and math.isfinite(k)):
        raise UserError(f"downsampling factors must be >= 1, got {k}")
    ki = _as_int(k)
    if ki is not None:
        m = n // ki
        if m < 1:
            raise UserError(f"an axis of {n} voxels cannot be downsampled by {ki}")
        return m, (ki - 1) / 2.0
    m = geometry.output_shape((n,), (1.0 / k,))[0]
    return m, (n - 1) / 2.0 - k * (m - 1) / 2.0


def lr_shape(shape: Sequence[int], factors: Sequence[float]) -> tuple[int, ...]:
    return tuple(lr_grid(int(n), float(k))[0] for n, k in zip(shape, factors))


def lr_index_transform(shape: Sequence[int], factors: Sequence[float]) -> np.ndarray:
    """M with HR index = M @ LR index (homogeneous, len(shape) + 1 square)."""
    nd = len(shape)
    M = np.eye(nd + 1)
    for ax, (n, k) in enumerate(zip(shape, factors)):
        _, o = lr_grid(int(n), float(k))
        M[ax, ax] = float(k)
        M[ax, nd] = o
    return M


def lr_affine(affine: np.ndarray, shape: Sequence[int], factors: Sequence[float]) -> np.ndarray:
    """The LR affine A_hr @ M (= ``geometry.downsampled_affine`` for integer factors).

    ``affine`` may be 4x4 for 2 or 3 spatial dims, or (nd+1)x(nd+1).
    """
    affine = np.asarray(affine, dtype=np.float64)
    nd = len(shape)
    size = affine.shape[0] - 1
    shape = list(shape) + [1] * (size - nd)
    factors = list(factors) + [1.0] * (size - nd)
    return affine @ lr_index_transform(shape, factors)


def _reflect(i: np.ndarray, n: int) -> np.ndarray:
    i = np.mod(i, 2 * n)
    return np.where(i >= n, 2 * n - 1 - i, i)


def _keys(t: np.ndarray, a: float = -0.5) -> np.ndarray:
    t = np.abs(t)
    return np.where(t <= 1, (a + 2) * t**3 - (a + 3) * t**2 + 1,
                    np.where(t < 2, a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a, 0.0))


def _window(f: np.ndarray, fc: float, window: str | None, alpha: float) -> np.ndarray:
    r = np.abs(f) / fc
    if window in (None, "none"):
        return np.ones_like(r)
    if window == "hann":
        return 0.5 * (1.0 + np.cos(np.pi * np.clip(r, 0, 1)))
    if window == "tukey":
        if not 0 <= alpha <= 1:
            raise UserError(f"window_alpha must be in [0, 1], got {alpha}")
        if alpha == 0:
            return np.ones_like(r)
        flat = 1.0 - alpha
        return np.where(r <= flat, 1.0,
                        0.5 * (1.0 + np.cos(np.pi * (np.clip(r, flat, 1) - flat) / alpha)))
    raise UserError(f"unknown k-space window {window!r}; choose none, hann or tukey")


def kspace_matrix(n: int, k: float, positions: np.ndarray, window: str | None = None,
                  alpha: float = 0.5) -> np.ndarray:
    """Band-limited interpolant of an n-periodic signal, cut-off n/(2k), at ``positions``."""
    fc = n / (2.0 * k)
    f = np.fft.fftfreq(n, d=1.0 / n)  # integer frequencies, cycles per field of view
    c = np.where(np.abs(f) < fc - 1e-9, 1.0, np.where(np.abs(f) <= fc + 1e-9, 0.5, 0.0))
    if n % 2 == 0 and abs(abs(f[n // 2]) - fc) < 1e-9:
        c[n // 2] = 1.0  # k == 1: the single Nyquist bin is kept whole
    c = c * _window(f, fc, window, alpha)
    keep = c > 0
    phase = 2.0 * np.pi * np.outer(positions, f[keep]) / n  # (n_out, F)
    i = np.arange(n)
    # T[j, i] = (1/n) sum_f c_f cos(2 pi f (x_j - i) / n)
    cos_i = np.cos(2.0 * np.pi * np.outer(f[keep], i) / n)
    sin_i = np.sin(2.0 * np.pi * np.outer(f[keep], i) / n)
    return (np.cos(phase) * c[keep]) @ cos_i / n + (np.sin(phase) * c[keep]) @ sin_i / n


@functools.lru_cache(maxsize=64)
def axis_matrix(n: int, k: float, mode: str, window: str | None = None,
                alpha: float = 0.5, zero_filled: bool = False) -> np.ndarray:
    """The (n_lr, n) matrix of one axis (or (n, n) for zero-filled k-space)."""
    if mode not in MODES:
        raise UserError(f"unknown downsampling {mode!r}; choose one of {', '.join(MODES)}")
    if zero_filled:
        if mode != "kspace":
            raise UserError("zero_filled applies to downsample: kspace only")
        return kspace_matrix(n, k, np.arange(n, dtype=np.float64), window, alpha)
    m, o = lr_grid(n, k)
    x = k * np.arange(m) + o
    T = np.zeros((m, n))
    rows = np.arange(m)
    if mode in ("decimate", "acquire"):  # acquire without a profile: point sampling
        xc = np.clip(x, 0, n - 1)
        i0 = np.floor(xc).astype(int)
        i1 = np.minimum(i0 + 1, n - 1)
        w1 = xc - i0
        np.add.at(T, (rows, i0), 1.0 - w1)
        np.add.at(T, (rows, i1), w1)
    elif mode == "area":
        i = np.arange(n)
        lo = np.maximum(i[None, :] - 0.5, (x - k / 2.0)[:, None])
        hi = np.minimum(i[None, :] + 0.5, (x + k / 2.0)[:, None])
        T = np.clip(hi - lo, 0.0, None)
    elif mode == "kspace":
        return kspace_matrix(n, k, x, window, alpha)
    else:  # bicubic, antialiased
        s = max(k, 1.0)
        span = int(math.ceil(2.0 * s)) + 1
        for d in range(-span, span + 1):
            i = np.round(x).astype(int) + d
            w = _keys((i - x) / s)
            np.add.at(T, (rows, _reflect(i, n)), w)
    return T / T.sum(axis=1, keepdims=True)


@functools.lru_cache(maxsize=256)
def acquisition_matrix(n: int, k: int, profile: str, width: float) -> np.ndarray:
    """The (n // k, n) matrix of an exact acquisition along one axis: LR sample j is the
    profile (``gaussian`` of FWHM ``width`` or ``rect`` of that width, in HR voxels; no
    blur: ``decimate``) centred at x_j = k j + (k - 1) / 2 and integrated over each HR voxel
    [i - 1/2, i + 1/2] (``profiles.integrated_taps``), weight past a border mirrored back
    in (half-sample symmetric), rows summing to 1. A box of width k is exactly the mean of
    each block of k voxels."""
    if profile == "none" or width <= 0:
        return axis_matrix(n, float(k), "decimate")
    m, o = lr_grid(n, float(k))
    offsets, taps = integrated_taps(profile, [float(width)], centre=o % 1.0)
    x = k * np.arange(m) + o
    idx = np.rint(x[:, None] + offsets[None, :]).astype(int)  # HR voxel of each tap
    T = np.zeros((m, n))
    np.add.at(T, (np.repeat(np.arange(m), offsets.size), _reflect(idx, n).ravel()),
              np.tile(taps[0], m))
    return T / T.sum(axis=1, keepdims=True)


def acquire(x: torch.Tensor, factors: Sequence[float], profile: str,
            widths: Sequence[float]) -> torch.Tensor:
    """Channel-first ``x`` acquired along every axis with k > 1 by
    :func:`acquisition_matrix` (a named profile of ``widths[axis]`` HR voxels); axes with
    k == 1 are left as they are (blur them first where asked)."""
    if profile not in ("gaussian", "rect", "none"):
        raise UserError(f"downsample 'acquire' needs a named profile (gaussian, rect or "
                        f"none), not {profile!r}; use decimate after the kernel")
    for ax, k in enumerate(factors):
        if k == 1.0:
            continue
        ki = _as_int(k)
        if ki is None:
            raise UserError(f"downsample 'acquire' needs integer factors, got {k:g}; use "
                            "decimate or area")
        n = int(x.shape[ax + 1])
        lr_grid(n, float(ki))  # refuses an axis shorter than k
        _warn_uncovered(ax, n, ki)
        T = acquisition_matrix(n, ki, profile, float(widths[ax]))
        x = _array.apply_along(x, T, ax + 1)
    return x


def _warn_uncovered(ax: int, n: int, k: int) -> None:
    """Warn (at the caller's caller) when the LR grid leaves the last n mod k voxels out."""
    if n % k:
        warnings.warn(f"axis {ax}: {n} voxels is not a multiple of {k}; the last "
                      f"{n % k} are not covered by the LR grid", stacklevel=4)


def resolve_factors(scale: Any, spatial_shape: Sequence[int]) -> list[float]:
    """Per-axis factors: a scalar applies to every axis longer than one voxel."""
    nd = len(spatial_shape)
    if np.ndim(scale) == 0:
        k = float(scale)
        f = [k if n > 1 else 1.0 for n in spatial_shape]
    else:
        f = [float(v) for v in scale]
        if len(f) == 3 and nd == 2 and f[2] == 1.0:
            f = f[:2]
        if len(f) != nd:
            raise UserError(f"scale needs 1 or {nd} factors for this image, got {len(f)}")
    for k in f:
        if not (math.isfinite(k) and k >= 1.0):
            raise UserError(f"downsampling factors must be >= 1 (HR -> LR), got {f}")
    return f


def downsample(x: torch.Tensor, factors: Sequence[float], mode: str = "area",
               window: str | None = None, alpha: float = 0.5,
               zero_filled: bool = False) -> torch.Tensor:
    """down_k of channel-first ``x`` (axes with k == 1 untouched)."""
    for ax, k in enumerate(factors):  # refuse an impossible factor before any warning
        if k != 1.0 and not zero_filled:
            lr_grid(int(x.shape[ax + 1]), float(k))
    for ax, k in enumerate(factors):
        n = x.shape[ax + 1]
        if k == 1.0 and not (zero_filled and mode == "kspace"):
            continue
        ki = _as_int(k)
        if ki is not None and not zero_filled:
            _warn_uncovered(ax, n, ki)
        T = axis_matrix(int(n), float(k), mode, window, float(alpha), bool(zero_filled))
        x = _array.apply_along(x, T, ax + 1)
    return x


class Downsample(Transform):
    """HR -> LR by per-axis factors (MONAI array form); MetaTensor affine -> A @ S^-1."""

    def __init__(self, scale: Any = 2, mode: str = "area", window: str | None = None,
                 window_alpha: float = 0.5, zero_filled: bool = False) -> None:
        self.scale, self.mode, self.window = scale, mode, window
        self.window_alpha, self.zero_filled = window_alpha, zero_filled

    def __call__(self, img: Any) -> Any:
        x = _array.to_work(img)
        _array.check_channel_first(x)
        shape = tuple(x.shape[1:])
        f = resolve_factors(self.scale, shape)
        y = downsample(x, f, self.mode, self.window, self.window_alpha, self.zero_filled)
        out = _array.restore(y, img)
        if hasattr(out, "affine") and not self.zero_filled:
            out.affine = torch.as_tensor(lr_affine(np.asarray(img.affine), shape, f))
        return out
