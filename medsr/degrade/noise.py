"""N(.): Gaussian, Rician (magnitude MRI) and Poisson-Gaussian (microscopy) noise.

Gaussian and Rician noise are MONAI's ``RandGaussianNoise`` / ``RandRicianNoise`` (fixed
std, probability 1), seeded per call; Poisson-Gaussian is ours (MONAI has none):
y = gain * Poisson(max(x, 0) / gain) + N(0, sigma^2), gain in intensity units per photon.
With ``relative`` sigma and gain are fractions of each channel's robust range
(1st-99th percentile).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import RandGaussianNoise, Randomizable, RandRicianNoise, Transform

from medsr.degrade import _array
from medsr.errors import UserError

NOISES = ("none", "gaussian", "rician", "poisson-gaussian")


def robust_range(x: torch.Tensor) -> float:
    """99th minus 1st percentile of one channel (1.0 if the channel is flat)."""
    flat = x.reshape(-1)
    if flat.numel() > 2_000_000:  # a strided subsample is plenty for two percentiles
        flat = flat[:: flat.numel() // 1_000_000]
    lo, hi = torch.quantile(flat.to(torch.float64), torch.tensor([0.01, 0.99], dtype=torch.float64,
                                                               device=flat.device)).tolist()
    return hi - lo if hi > lo else 1.0


def _per_channel(value: Any, c: int, name: str) -> list[float]:
    vals = [float(value)] * c if np.ndim(value) == 0 else [float(v) for v in value]
    if len(vals) == 1:
        vals = vals * c
    if len(vals) != c:
        raise UserError(f"{name} needs 1 or {c} values (one per channel), got {len(vals)}")
    return vals


MAX_PHOTONS = 1.0e15  # numpy's Poisson sampler refuses lam near 1e19


def absolute_levels(x: torch.Tensor, sigma: Any, gain: Any, relative: bool
                    ) -> tuple[list[float], list[float]]:
    """Per-channel absolute (sigma, gain) in intensity units."""
    c = x.shape[0]
    s = _per_channel(sigma, c, "sigma")
    g = _per_channel(1.0 if gain is None else gain, c, "gain")
    if any(v < 0 for v in s):
        raise UserError(f"noise sigma must be >= 0, got {s}")
    if any(v <= 0 for v in g):
        raise UserError(f"Poisson gain must be > 0, got {g}")
    if relative:
        r = [robust_range(x[i]) for i in range(c)]
        s = [v * ri for v, ri in zip(s, r)]
        g = [v * ri for v, ri in zip(g, r)]
    return s, g


def add_noise(x: torch.Tensor, kind: str, sigma: Sequence[float], gain: Sequence[float],
              seed: int) -> torch.Tensor:
    """Noise of ``kind`` with absolute per-channel levels, drawn from ``seed``."""
    if kind == "none":
        return x
    if kind not in NOISES:
        raise UserError(f"unknown noise {kind!r}; choose one of {', '.join(NOISES)}")
    rs = np.random.RandomState(seed % (2**32))
    out = []
    for i in range(x.shape[0]):
        ch = x[i: i + 1]
        if kind == "gaussian":
            t = RandGaussianNoise(prob=1.0, std=sigma[i], dtype=None, sample_std=False)
            t.set_random_state(state=rs)
            out.append(torch.as_tensor(t(ch)))
        elif kind == "rician":
            t = RandRicianNoise(prob=1.0, std=sigma[i], sample_std=False, dtype=None)
            t.set_random_state(state=rs)
            out.append(torch.as_tensor(t(ch)))
        else:
            lam = np.clip(ch.cpu().numpy(), 0, None) / gain[i]
            if lam.size and not float(lam.max()) <= MAX_PHOTONS:
                raise UserError(f"Poisson gain {gain[i]:g} is too small for intensities up "
                                f"to {float(lam.max()) * gain[i]:g} (over {MAX_PHOTONS:g} "
                                "photons per voxel)")
            counts = rs.poisson(lam).astype(np.float64) * gain[i]
            counts += rs.normal(0.0, sigma[i], size=counts.shape) if sigma[i] > 0 else 0.0
            out.append(torch.as_tensor(counts, dtype=x.dtype, device=x.device))
    res = torch.cat([o.as_tensor() if hasattr(o, "as_tensor") else o for o in out], 0)
    return res.to(device=x.device, dtype=x.dtype)


class RandNoise(Randomizable, Transform):
    """Add Gaussian / Rician / Poisson-Gaussian noise (MONAI array form, seeded per call).

    ``last_params`` holds the seed and absolute levels used, so a call can be replayed.
    """

    def __init__(self, kind: str = "gaussian", sigma: Any = 0.01, relative: bool = False,
                 gain: Any = None) -> None:
        self.kind, self.sigma, self.relative, self.gain = kind, sigma, relative, gain
        self.last_params: dict[str, Any] = {}

    def randomize(self, data: Any = None) -> int:
        return int(self.R.randint(2**31))

    def __call__(self, img: Any, seed: int | None = None) -> Any:
        x = _array.to_work(img)
        seed = self.randomize() if seed is None else int(seed)
        s, g = absolute_levels(x, self.sigma, self.gain, self.relative)
        self.last_params = {"seed": seed, "sigma_abs": s, "gain_abs": g}
        return _array.restore(add_noise(x, self.kind, s, g, seed), img)
