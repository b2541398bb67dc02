"""Robust percentile intensity normalisation, recorded so it can be undone exactly.

x' = (x - lo) / (hi - lo) with lo, hi the ``lower`` / ``upper`` percentiles of the
volume (inside a mask when given). Nothing is clipped: real intensities outside the
window stay representable and :meth:`medsr.intensity.Normalisation.invert` undoes it.
These are the MONAI transform forms (array and dictionary) of that one normaliser.
"""

from __future__ import annotations

import numpy as np
from monai.transforms import MapTransform, Transform

# the ranges and the one normaliser live in medsr.intensity (shared with inference)
from medsr.intensity import Normalisation, robust_range


class RobustNormalise(Transform):
    """Array transform: returns the normalised array and remembers ``(lo, hi)``."""

    def __init__(self, lower: float = 0.5, upper: float = 99.5) -> None:
        self.lower, self.upper = float(lower), float(upper)
        self.last_range: tuple[float, float] | None = None

    def __call__(self, data: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        self.last_range = robust_range(data, self.lower, self.upper, mask)
        return Normalisation(*self.last_range).apply(data)


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
        norm = Normalisation.fit(d[keys[0]], (self.lower, self.upper), mask)
        for k in keys:
            d[k] = norm.apply(d[k])
        d["norm"] = (norm.lo, norm.hi)
        return d
