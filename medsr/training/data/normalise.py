"""Robust percentile intensity normalisation, recorded so it can be undone exactly.

x' = (x - lo) / (hi - lo) with lo, hi the ``lower`` / ``upper`` percentiles of the
volume (inside a mask when given). Nothing is clipped: real intensities outside the
window stay representable and :func:`denormalise` is the exact inverse.
"""

from __future__ import annotations

import numpy as np
from monai.transforms import MapTransform, Transform

# the ranges live in medsr.intensity (numpy only, shared with inference); re-exported here
from medsr.intensity import background_level, input_range, robust_range  # noqa: F401


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
