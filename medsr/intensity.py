"""Robust intensity ranges: the percentiles every network's input is normalised by.

numpy and scipy only, so that inference need not import training
(:mod:`medsr.training.data`, whose package imports MONAI's datasets). Training's
:mod:`medsr.training.data.normalise` uses these same functions.
"""

from __future__ import annotations

import numpy as np


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
