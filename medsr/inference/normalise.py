"""Robust intensity normalisation as a small value object, remembered so it can be undone.

The percentiles are computed by :func:`medsr.intensity.robust_range`, the same ranges
training uses (:mod:`medsr.training.data.normalise`), so a network sees the same intensity
scale at inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medsr.intensity import robust_range


@dataclass(frozen=True)
class Normalisation:
    """x -> (x - lo) / (hi - lo), with lo/hi robust percentiles of the input."""

    lo: float
    hi: float

    @classmethod
    def fit(cls, data: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5)
            ) -> Normalisation:
        lo, hi = robust_range(np.asarray(data), *percentiles)
        return cls(lo, hi)

    def apply(self, data: np.ndarray) -> np.ndarray:
        return ((np.asarray(data, dtype=np.float32) - self.lo) / (self.hi - self.lo)).astype(
            np.float32, copy=False)

    def invert(self, data: np.ndarray) -> np.ndarray:
        out = np.asarray(data, dtype=np.float32)
        out *= self.hi - self.lo
        out += self.lo
        return out

    def to_dict(self) -> dict[str, float]:
        return {"lo": self.lo, "hi": self.hi}
