"""Robust percentile intensity normalisation, recorded so it can be undone exactly.

x' = (x - lo) / (hi - lo) with lo, hi the ``lower`` / ``upper`` percentiles of the
volume (inside a mask when given). Nothing is clipped: real intensities outside the
window stay representable and :func:`denormalise` is the exact inverse.
"""

from __future__ import annotations

import numpy as np
from monai.transforms import MapTransform, Transform


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
    from scipy.ndimage import gaussian_filter

    smooth = gaussian_filter(np.asarray(data, dtype=np.float32), sigma=sigma, mode="nearest")
    finite = smooth[np.isfinite(smooth)]
    return float(np.percentile(finite, lower)) if finite.size else 0.0


def input_range(data: np.ndarray, lower: float = 0.5, upper: float = 99.5) -> tuple[float, float]:
    """(lo, hi) for a network's low-resolution input: hi the ``upper`` percentile, lo the
    background level (:func:`background_level`), the scale the network was trained on."""
    lo, hi = robust_range(data, lower, upper)
    return min(background_level(data, lower), hi - 1e-6 * abs(hi) - 1e-12), hi


def normalise(data: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map [lo, hi] to [0, 1] (float32)."""
    return ((np.asarray(data, dtype=np.float64) - lo) / (hi - lo)).astype(np.float32)


def denormalise(data: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Inverse of :func:`normalise` (float32)."""
    return (np.asarray(data, dtype=np.float64) * (hi - lo) + lo).astype(np.float32)


class RobustNormalise(Transform):
    """Array transform: returns the normalised array and remembers ``(lo, hi)``."""

    def __init__(self, lower: float = 0.5, upper: float = 99.5) -> None:
        self.lower, self.upper = float(lower), float(upper)
        self.last_range: tuple[float, float] | None = None

    def __call__(self, data: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        self.last_range = robust_range(data, self.lower, self.upper, mask)
        return normalise(data, *self.last_range)


class RobustNormalised(MapTransform):
    """Dictionary form: normalises ``keys`` with the range of the first key.

    The range is stored under ``"norm"`` so a paired LR image gets the same mapping.
    """

    def __init__(self, keys, lower: float = 0.5, upper: float = 99.5, mask_key: str = "mask",
                 allow_missing_keys: bool = True) -> None:
        super().__init__(keys, allow_missing_keys)
        self.lower, self.upper, self.mask_key = float(lower), float(upper), mask_key

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        keys = [k for k in self.key_iterator(d)]
        mask = d.get(self.mask_key)
        lo, hi = robust_range(d[keys[0]], self.lower, self.upper, mask)
        for k in keys:
            d[k] = normalise(d[k], lo, hi)
        d["norm"] = (lo, hi)
        return d
