"""Slice profiles / point-spread functions as 1D kernels on the HR voxel grid.

A kernel tap t is the integral of the continuous profile over the HR voxel
[t - 1/2, t + 1/2] (in voxel units), so narrow kernels keep their mass and width exactly
instead of being undersampled. Every kernel sums to 1 and is centred on tap 0 (the middle
element of an odd-length array), or, with ``centre=0.5``, half-way between its two middle
taps (an even-length array): the profile of a sample that falls between two HR voxels, as
the LR samples of an even factor k do (``medsr.degrade.downsample``: x_j = k j + (k-1)/2).
``medsr.degrade.blur.convolve_axis`` applies such an even kernel centred at j + 1/2.
:func:`integrated_taps` makes these taps for many widths at once (the profile estimate's
candidates); the single-width kernels are its rows, trimmed. No scipy: the Gaussian's
erf is :func:`math.erf`, so the estimate in ``medsr infer`` loads no scipy.special.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from medsr.errors import UserError

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
PROFILES = ("gaussian", "rect", "none", "kernel")


def _erf(x: np.ndarray) -> np.ndarray:
    """:func:`math.erf` elementwise, in float64 (numpy has no erf)."""
    return np.frompyfunc(math.erf, 1, 1)(x).astype(np.float64)


def integrated_taps(profile: str, widths, centre: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, taps) of a named profile for many widths at once: ``profile`` "gaussian"
    (width = FWHM) or "rect" (box of that total width), ``widths`` > 0 in voxels (1D);
    taps[i, n] is profile i integrated over the HR voxel [t - 1/2, t + 1/2] at offset
    t = offsets[n] from its centre (``centre`` 0: a voxel, odd length; 0.5: half-way
    between two, even length), on one grid that holds the widest, each row normalised to
    sum 1 (untrimmed: narrow profiles keep their empty outer taps)."""
    if centre not in (0.0, 0.5):
        raise ValueError(f"centre must be 0 or 0.5, got {centre}")
    w = np.asarray(widths, dtype=np.float64)
    if w.ndim != 1 or w.size == 0 or not np.all(w > 0):
        raise ValueError(f"widths must be a non-empty 1D array of values > 0, got {w!r}")
    w = w[:, None]
    if profile == "gaussian":
        sigma = w / FWHM_PER_SIGMA
        radius = int(math.ceil(4.0 * float(sigma.max()) + 1.0))

        def cdf(x):  # less 1/2: only differences are taken
            return 0.5 * _erf(x / (sigma * math.sqrt(2.0)))
    elif profile == "rect":
        radius = int(math.ceil(float(w.max()) / 2.0 + 0.5))

        def cdf(x):
            return np.clip(x + w / 2.0, 0.0, w)
    else:
        raise ValueError(f"integrated taps are for 'gaussian' or 'rect', got {profile!r}")
    t = np.arange(-radius, radius + 1 + (centre > 0), dtype=np.float64) - centre
    k = np.clip(cdf(t + 0.5) - cdf(t - 0.5), 0.0, None)
    return t, k / k.sum(axis=1, keepdims=True)


def _kernel(profile: str, width: float, centre: float) -> np.ndarray:
    """The taps of one width (:func:`integrated_taps`), trimmed of empty outer taps
    (symmetrically)."""
    k = integrated_taps(profile, [width], centre)[1][0]
    nz = np.nonzero(k > 1e-15)[0]
    r = min(nz[0], k.size - 1 - nz[-1])
    return k[r: k.size - r]


def gaussian_kernel(fwhm: float, centre: float = 0.0) -> np.ndarray:
    """Gaussian of full width at half maximum ``fwhm`` (voxels), integrated per voxel,
    centred on a voxel (``centre=0``) or half-way between two (``0.5``, even length)."""
    if fwhm < 0:
        raise UserError(f"FWHM must be >= 0, got {fwhm}")
    if fwhm == 0:
        return np.ones(1) if centre == 0 else np.full(2, 0.5)
    return _kernel("gaussian", fwhm, centre)


def rect_kernel(width: float, centre: float = 0.0) -> np.ndarray:
    """Box (rect) profile of total width ``width`` voxels, integrated per voxel, centred on
    a voxel (``centre=0``) or half-way between two (``0.5``: width 4 gives four taps 1/4)."""
    if width < 0:
        raise UserError(f"slice thickness must be >= 0, got {width}")
    if width == 0:
        return np.ones(1) if centre == 0 else np.full(2, 0.5)
    return _kernel("rect", width, centre)


def load_kernel(path: str | Path) -> np.ndarray:
    """A user kernel from a ``.npy`` file (1D profile or N-D PSF), normalised to sum 1."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"kernel file {p} does not exist")
    try:
        raw = np.load(p, allow_pickle=False)
        kind = raw.dtype.kind if isinstance(raw, np.ndarray) else "?"
        if kind not in "biuf":
            what = "complex" if kind == "c" else "not an array of real numbers"
            raise UserError(f"kernel {p} is {what}; give a real-valued .npy array")
        k = raw.astype(np.float64)
    except (ValueError, OSError, EOFError) as exc:
        raise UserError(f"cannot read kernel {p} as a .npy array: {exc}") from exc
    if k.size == 0 or not np.all(np.isfinite(k)):
        raise UserError(f"kernel {p} is empty or not finite")
    if not 1 <= k.ndim <= 3:
        raise UserError(f"kernel {p} has {k.ndim} dimensions; give a 1-D profile or a "
                        "2-D/3-D PSF")
    s = k.sum()
    if not s > 1e-12 * np.abs(k).sum():
        raise UserError(f"kernel {p} sums to {s:g}; a slice profile / PSF must sum to a "
                        "positive value")
    return k / s


def profile_kernel(profile: str, width: float) -> np.ndarray | None:
    """The 1D kernel of a named profile of width ``width`` voxels (None: no blur)."""
    if profile == "none" or width == 0:
        return None
    if profile == "gaussian":
        return gaussian_kernel(width)
    if profile == "rect":
        return rect_kernel(width)
    raise UserError(f"unknown slice profile {profile!r}; choose gaussian, rect, none or kernel")


def measured_fwhm(response: np.ndarray) -> float:
    """Full width at half maximum of a 1D single-peaked response (linear interpolation)."""
    r = np.asarray(response, dtype=np.float64)
    i = int(np.argmax(r))
    half = r[i] / 2.0
    lo = i
    while lo > 0 and r[lo - 1] > half:
        lo -= 1
    hi = i
    while hi < r.size - 1 and r[hi + 1] > half:
        hi += 1
    if lo == 0 or hi == r.size - 1:
        raise ValueError("response does not fall to half maximum inside the array")
    left = lo - 1 + (half - r[lo - 1]) / (r[lo] - r[lo - 1])
    right = hi + (r[hi] - half) / (r[hi] - r[hi + 1])
    return float(right - left)
