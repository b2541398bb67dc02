"""Robust intensity ranges and the one normaliser every network's input goes through.

:func:`robust_range` / :func:`input_range` give the percentiles; :class:`Normalisation`
maps them to [0, 1] and back, in float32, for training, inference (on the host or, in
place, on a device tensor) and self-supervised SR alike.

numpy and scipy only, so that inference need not import training
(:mod:`medsr.training.data`, whose package imports MONAI's datasets). Training's
:mod:`medsr.training.data.normalise` uses these same functions.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

# Above this many voxels scipy's filter (3x faster than smooth_nearest) repays its import.
_SCIPY_FROM = 1 << 22


def robust_range(data: np.ndarray, lower: float = 0.5, upper: float = 99.5,
                 mask: np.ndarray | None = None) -> tuple[float, float]:
    """(lo, hi) percentiles of ``data`` (of the voxels in ``mask``); hi > lo always."""
    values = np.asarray(data)
    if mask is not None:
        m = np.asarray(mask).astype(bool)
        if m.shape != values.shape:
            m = np.broadcast_to(m, values.shape)
        if m.any():
            values = values[m]
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, [lower, upper]))
    if not hi > lo:
        hi = lo + 1.0
    return lo, hi


def background_level(data: np.ndarray, lower: float = 0.5, sigma: float = 1.0) -> float:
    """The ``lower`` percentile of the input smoothed by a Gaussian of ``sigma`` voxels.

    Training normalises clean HR volumes by their 0.5th percentile (the background level:
    0 for MRI magnitude, -1000 for CT air). A low-resolution input carries ringing
    (k-space truncation) and noise around that level, which pull its raw 0.5th percentile
    below it, and the network then paints the background at the wrong level. Ringing and
    noise are high-frequency; after a light smoothing the percentile is the level itself.
    """
    data = np.asarray(data, dtype=np.float32)
    if data.size > _SCIPY_FROM or "scipy.ndimage" in sys.modules:
        from scipy.ndimage import gaussian_filter

        smooth = gaussian_filter(data, sigma=sigma, mode="nearest")
    else:  # the same bits without scipy.ndimage's import (0.7 s, more than small inputs take)
        smooth = smooth_nearest(data, sigma)
    finite = smooth[np.isfinite(smooth)]
    return float(np.percentile(finite, lower)) if finite.size else 0.0


def input_range(data: np.ndarray, lower: float = 0.5, upper: float = 99.5) -> tuple[float, float]:
    """(lo, hi) for a network's low-resolution input: hi the ``upper`` percentile, lo the
    background level (:func:`background_level`), the scale the network was trained on."""
    lo, hi = robust_range(data, lower, upper)
    return min(background_level(data, lower), hi - 1e-6 * abs(hi) - 1e-12), hi


_CHUNK = 1 << 21  # voxels per chunk of the separable smoothing (float64 temporaries)


def smooth_nearest(data: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """scipy.ndimage.gaussian_filter(float32 data, sigma, mode="nearest") bit for bit,
    numpy only: per axis the same float64 kernel (truncate 4), the same summation order
    (centre, then the symmetric pairs from the outside in) and a float32 result."""
    out = np.array(data, dtype=np.float32)
    radius = int(4.0 * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (float(sigma) * float(sigma)) * x.astype(np.float64) ** 2)
    w = phi / phi.sum()
    for ax in range(out.ndim):
        n = out.shape[ax]
        if n == 0:
            continue
        other = next((a for a in range(out.ndim) if a != ax), None)
        if other is None:
            chunks = [slice(None)]
        else:
            step = max(1, _CHUNK // max(1, out.size // max(out.shape[other], 1)))
            chunks = [slice(a, a + step) for a in range(0, out.shape[other], step)]
        for sl in chunks:
            index = [slice(None)] * out.ndim
            if other is not None:
                index[other] = sl
            part = out[tuple(index)]
            pad = [(0, 0)] * out.ndim
            pad[ax] = (radius, radius)
            p = np.pad(part.astype(np.float64), pad, mode="edge")
            acc = _shifted(p, ax, radius, n, 0) * w[radius]
            for j in range(radius, 0, -1):
                acc += (_shifted(p, ax, radius, n, -j) + _shifted(p, ax, radius, n, j)) * w[
                    radius - j]
            out[tuple(index)] = acc
    return out


def _shifted(p: np.ndarray, ax: int, radius: int, n: int, off: int) -> np.ndarray:
    s = [slice(None)] * p.ndim
    s[ax] = slice(radius + off, radius + off + n)
    return p[tuple(s)]


def all_finite(a: np.ndarray) -> bool:
    """Whether ``a`` holds no NaN or infinity, without a volume-sized boolean temporary
    (min and max propagate NaN and show infinities)."""
    return a.size == 0 or bool(np.isfinite(a.min()) and np.isfinite(a.max()))


def count_below(a: np.ndarray, value: float) -> int:
    """How many elements of ``a`` are below ``value``, counted slab by slab along the first
    axis (no volume-sized boolean temporary)."""
    step = max(1, (1 << 22) // max(1, int(np.prod(a.shape[1:]))))
    return sum(int(np.count_nonzero(a[i:i + step] < value))
               for i in range(0, max(1, a.shape[0]), step))


@dataclass(frozen=True)
class Normalisation:
    """x -> (x - lo) / (hi - lo) and back, in float32: the one normaliser.

    ``apply_`` / ``invert_`` work in place on a float32 numpy array or a torch tensor (on
    any device); ``apply`` / ``invert`` take any array. The arithmetic is the same
    float32 subtraction and division everywhere, so training, the host runner, the device
    runner and self-supervised SR see the same values for the same input."""

    lo: float
    hi: float

    @classmethod
    def fit(cls, data: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5),
            mask: np.ndarray | None = None) -> Normalisation:
        """The normaliser of ``data``'s robust range (:func:`robust_range`)."""
        return cls(*robust_range(np.asarray(data), *percentiles, mask=mask))

    def apply(self, data: Any) -> np.ndarray:
        """A normalised float32 copy of ``data``."""
        return self.apply_(np.array(data, dtype=np.float32))

    def apply_(self, x: Any) -> Any:
        """Normalise ``x`` (float32 numpy or torch) in place; returns it."""
        x -= self.lo
        if isinstance(x, np.ndarray):
            x /= self.hi - self.lo
        else:  # a 0-d tensor divisor keeps true division on a GPU (a host scalar may
            x /= x.new_tensor(self.hi - self.lo)  # become a multiply by its reciprocal)
        return x

    def invert(self, data: Any) -> np.ndarray:
        """Back to the input's units, float32 (in place when ``data`` is float32 already)."""
        return self.invert_(np.asarray(data, dtype=np.float32))

    def invert_(self, y: Any) -> Any:
        """Back to the input's units in place (float32 numpy or torch); returns it."""
        y *= self.hi - self.lo
        y += self.lo
        return y

    def to_dict(self) -> dict[str, float]:
        return {"lo": self.lo, "hi": self.hi}
