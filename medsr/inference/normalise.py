"""Robust intensity normalisation, remembered so it can be undone on output."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Normalisation:
    """x -> (x - lo) / (hi - lo), with lo/hi robust percentiles of the input."""

    lo: float
    hi: float

    @classmethod
    def fit(cls, data: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5),
            sample: int = 2_000_000) -> Normalisation:
        flat = np.asarray(data).reshape(-1)
        if flat.size > sample:  # a strided sample is enough for percentiles and keeps it fast
            flat = flat[:: flat.size // sample]
        lo, hi = np.percentile(flat, percentiles)
        if not hi > lo:
            lo, hi = float(flat.min()), float(flat.max())
        if not hi > lo:
            hi = lo + 1.0
        return cls(float(lo), float(hi))

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
