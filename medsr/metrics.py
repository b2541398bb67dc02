"""Per-volume image-quality metrics: PSNR, SSIM (3D or slice-wise 2D), NRMSE, masks.

Conventions (the same in every function):

- ``reference`` is the ground truth (HR), ``test`` the estimate (SR); same shape. Arrays
  are 2D or 3D spatial; a 4th axis is channels (SSIM is averaged over channels).
- ``crop`` removes that many voxels from both ends of every spatial axis longer than
  ``2 * crop`` (thin axes are kept whole) before anything is computed, the "shave
  border" of SR papers. The mask is cropped the same way.
- ``data_range`` defaults to ``reference.max() - reference.min()`` over the (cropped)
  reference; give it explicitly to compare across volumes or with papers. A constant
  reference then has no range and is an error.
- ``mask``: PSNR and NRMSE use the masked voxels only; SSIM is the mean of the SSIM map
  over masked voxels where the SSIM window is valid.

SSIM follows scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False)``: a Gaussian window (sigma 1.5 voxels, radius 5), K1 =
0.01, K2 = 0.03, 'reflect' boundaries, the map's border of the window radius excluded,
so values equal scikit-image's to float precision. Unlike scikit-image it works on thin
axes: along an axis of n < 11 voxels the window is truncated to radius (n - 1) // 2
(renormalised), and an axis of 1 or 2 voxels is not smoothed at all (so a 64x64x1
volume gets the 2D SSIM of its slice).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.ndimage as ndi

from medsr.errors import UserError

SIGMA = 1.5
RADIUS = 5  # int(3.5 * 1.5 + 0.5), scikit-image's window for sigma 1.5
K1, K2 = 0.01, 0.03
NRMSE_NORMALIZATIONS = ("euclidean", "min-max", "mean")


# ----------------------------------------------------------------------------- helpers
def _spatial_ndim(a: np.ndarray) -> int:
    if a.ndim not in (2, 3, 4):
        raise UserError(f"expected a 2D or 3D image (optionally with channels), "
                        f"got shape {a.shape}")
    return min(a.ndim, 3)


def _prepare(reference, test, mask=None, crop: int = 0):
    """Check shapes, cast to float64, crop the border; returns (ref, test, mask or None)."""
    ref = np.asarray(reference, dtype=np.float64)
    tst = np.asarray(test, dtype=np.float64)
    if ref.shape != tst.shape:
        raise UserError(f"reference shape {ref.shape} and test shape {tst.shape} differ")
    nsp = _spatial_ndim(ref)
    m = None
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != ref.shape[:nsp] and m.shape != ref.shape:
            raise UserError(f"mask shape {m.shape} does not match image shape {ref.shape}")
        m = m.astype(bool)
    crop = int(crop)
    if crop < 0:
        raise UserError(f"crop must be >= 0, got {crop}")
    if crop:
        sl = tuple(slice(crop, n - crop) if n > 2 * crop else slice(None)
                   for n in ref.shape[:nsp])
        ref, tst = ref[sl], tst[sl]
        m = None if m is None else m[sl]
    if m is not None and not m.any():
        raise UserError("the mask selects no voxels")
    return ref, tst, m


def _range(ref: np.ndarray, data_range: float | None) -> float:
    if data_range is None:
        data_range = float(ref.max() - ref.min())
        if data_range <= 0:
            raise UserError("the reference is constant; give data_range explicitly")
    elif not data_range > 0:
        raise UserError(f"data_range must be > 0, got {data_range}")
    return float(data_range)


def default_data_range(reference, crop: int = 0) -> float:
    """The data range every metric uses when none is given: reference max - min (cropped)."""
    ref = _prepare(reference, reference, None, crop)[0]
    return _range(ref, None)


def _masked(a: np.ndarray, m: np.ndarray | None) -> np.ndarray:
    if m is None:
        return a.ravel()
    if m.shape != a.shape:  # a spatial mask over channels
        m = np.broadcast_to(m.reshape(m.shape + (1,) * (a.ndim - m.ndim)), a.shape)
    return a[m]


# ----------------------------------------------------------------------------- metrics
def mse(reference, test, mask=None, crop: int = 0) -> float:
    ref, tst, m = _prepare(reference, test, mask, crop)
    d = _masked(ref, m) - _masked(tst, m)
    return float(np.mean(d * d))


def psnr(reference, test, data_range: float | None = None, mask=None, crop: int = 0) -> float:
    """10 log10(R^2 / MSE) in dB; inf for identical images."""
    ref, tst, m = _prepare(reference, test, mask, crop)
    r = _range(ref, data_range)
    d = _masked(ref, m) - _masked(tst, m)
    err = float(np.mean(d * d))
    return math.inf if err == 0 else 10.0 * math.log10(r * r / err)


def nrmse(reference, test, normalization: str = "euclidean", mask=None, crop: int = 0) -> float:
    """RMSE / norm; ``euclidean`` (default, as scikit-image): sqrt(mean(ref^2)),
    ``min-max``: ref.max() - ref.min(), ``mean``: ref.mean() (over the evaluated voxels)."""
    ref, tst, m = _prepare(reference, test, mask, crop)
    r, t = _masked(ref, m), _masked(tst, m)
    rmse = math.sqrt(float(np.mean((r - t) ** 2)))
    norm = normalization.lower().replace("_", "-")
    if norm == "euclidean":
        denom = math.sqrt(float(np.mean(r * r)))
    elif norm in ("min-max", "minmax"):
        denom = float(r.max() - r.min())
    elif norm == "mean":
        denom = float(r.mean())
    else:
        raise UserError(f"unknown NRMSE normalization {normalization!r}; "
                        f"choose from {', '.join(NRMSE_NORMALIZATIONS)}")
    if denom == 0:
        return 0.0 if rmse == 0 else math.inf
    return rmse / denom


def _window_radii(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(min(RADIUS, (int(n) - 1) // 2) for n in shape)


def ssim_map(reference: np.ndarray, test: np.ndarray, data_range: float) -> tuple[np.ndarray,
                                                                                 tuple[slice, ...]]:
    """The SSIM map of two single-channel arrays and the slices of its valid region."""
    radii = _window_radii(reference.shape)
    sigmas = [SIGMA if r > 0 else 0.0 for r in radii]
    rad = [max(r, 1) for r in radii]  # unused where sigma is 0

    def blur(a):
        return ndi.gaussian_filter(a, sigma=sigmas, radius=rad, mode="reflect")

    x, y = reference, test
    ux, uy = blur(x), blur(y)
    vx = blur(x * x) - ux * ux
    vy = blur(y * y) - uy * uy
    vxy = blur(x * y) - ux * uy
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    valid = tuple(slice(r, n - r) for r, n in zip(radii, reference.shape))
    return s, valid


def _ssim_single(ref: np.ndarray, tst: np.ndarray, r: float, m: np.ndarray | None) -> float:
    """Mean SSIM of one channel (2D or 3D) over the valid region (and mask); nan if empty."""
    s, valid = ssim_map(ref, tst, r)
    s = s[valid]
    if m is not None:
        s = s[m[valid]]
    return float(np.mean(s, dtype=np.float64)) if s.size else math.nan


def ssim(reference, test, data_range: float | None = None, mask=None, crop: int = 0,
         mode: str = "3d", axis: int = 2) -> float:
    """Structural similarity, 3D (``mode='3d'``) or the mean of 2D SSIM over the slices
    along ``axis`` (``mode='2d'``; slices without mask voxels are skipped)."""
    ref, tst, m = _prepare(reference, test, mask, crop)
    r = _range(ref, data_range)
    nsp = _spatial_ndim(ref)
    chans = [(ref, tst)] if ref.ndim == nsp else [(ref[..., c], tst[..., c])
                                                   for c in range(ref.shape[-1])]
    mode = mode.lower()
    if mode not in ("3d", "2d"):
        raise UserError(f"SSIM mode must be '3d' or '2d', got {mode!r}")
    values = []
    for a, b in chans:
        if mode == "3d" or nsp == 2:
            values.append(_ssim_single(a, b, r, m))
            continue
        if not -nsp <= axis < nsp:
            raise UserError(f"SSIM axis {axis} out of range for a {nsp}D image")
        per_slice = []
        for i in range(a.shape[axis]):
            mi = None if m is None else np.take(m, i, axis=axis)
            if mi is not None and not mi.any():
                continue
            per_slice.append(_ssim_single(np.take(a, i, axis=axis), np.take(b, i, axis=axis),
                                          r, mi))
        per_slice = [v for v in per_slice if not math.isnan(v)]
        values.append(float(np.mean(per_slice)) if per_slice else math.nan)
    values = [v for v in values if not math.isnan(v)]
    if not values:
        raise UserError("no voxel left for SSIM (mask outside the valid window region)")
    return float(np.mean(values))


# ----------------------------------------------------------------------------- masks
def foreground_mask(reference, sigma: float = 1.0) -> np.ndarray:
    """Automatic foreground: Otsu threshold of the smoothed image, the largest connected
    component, holes filled. For a scan in air (MRI head, CT body) this is the object."""
    from skimage.filters import threshold_otsu

    a = np.asarray(reference, dtype=np.float32)
    if a.ndim == 4:
        a = a.mean(axis=-1)
    sm = ndi.gaussian_filter(a, sigma)
    if not np.isfinite(sm).all() or sm.max() == sm.min():
        return np.ones(a.shape, dtype=bool)
    fg = sm > threshold_otsu(sm)
    labels, n = ndi.label(fg)
    if n > 1:
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        fg = labels == int(np.argmax(sizes))
    return ndi.binary_fill_holes(fg)


def evaluate(reference, test, *, data_range: float | None = None, mask=None, crop: int = 0,
             ssim_mode: str = "3d", ssim_axis: int = 2,
             nrmse_normalization: str = "euclidean") -> dict[str, float]:
    """PSNR (dB), SSIM and NRMSE of one volume pair, sharing one data range."""
    ref, tst, m = _prepare(reference, test, mask, crop)
    r = _range(ref, data_range)
    return {
        "psnr": psnr(ref, tst, r, m),
        "ssim": ssim(ref, tst, r, m, mode=ssim_mode, axis=ssim_axis),
        "nrmse": nrmse(ref, tst, nrmse_normalization, m),
    }
