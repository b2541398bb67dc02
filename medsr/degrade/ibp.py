"""Iterative back-projection (Irani & Peleg 1991): classical SR that knows the forward model.

x_0 = U(y);  x_{n+1} = x_n + step * U(y - D(x_n)),  D = down_k(h * .) without noise,
U = cubic upsampling onto the HR grid of ``medsr.geometry`` (A @ S).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from medsr import geometry
from medsr.degrade.compose import Degradation
from medsr.errors import UserError
from medsr.interpolate import resize


def _upsample(x: np.ndarray, factors: Sequence[float], shape_out: Sequence[int]) -> np.ndarray:
    """Cubic upsampling of the leading spatial axes onto ``shape_out`` (A @ S grid)."""
    return np.asarray(resize(x, factors, method="cubic", shape_out=tuple(shape_out)))


def iterative_back_projection(lr: np.ndarray, factors: float | Sequence[float],
                              profile: str = "gaussian", n_iter: int = 10,
                              spacing: Sequence[float] | None = None, *,
                              fwhm: Any = None, thickness: Any = None, units: str = "voxel",
                              downsample: str = "area", step: float = 1.0,
                              degradation: Degradation | None = None) -> np.ndarray:
    """Super-resolve ``lr`` (spatial axes first, len(factors) of them; extra trailing axes
    are channels) by ``factors`` under the forward model blur(profile) + ``downsample``.

    Integer factors give shape k * n (the grid ``medsr infer`` writes). ``degradation``
    (noise ignored) overrides the profile / downsampling arguments.
    """
    lr = np.asarray(lr)
    f = np.atleast_1d(np.asarray(factors, dtype=np.float64))
    nd = f.size if f.size > 1 else min(lr.ndim, 3)
    f = geometry.as_factors(f, nd)
    if np.any(f < 1):
        raise UserError(f"IBP upsamples: factors must be >= 1, got {f.tolist()}")
    if n_iter < 0:
        raise UserError(f"n_iter must be >= 0, got {n_iter}")
    params = dict(degradation.to_dict()) if degradation is not None else {
        "profile": profile, "fwhm": fwhm, "thickness": thickness, "units": units,
        "downsample": downsample}
    params.update(scale=[float(k) for k in f], noise="none", jpeg_quality=None, artefacts=[])
    D = Degradation.from_dict(params)
    D.set_random_state(0)
    shape_out = geometry.output_shape(lr.shape[:nd], f)
    chan_shape = lr.shape[nd:]
    y = lr.astype(np.float64).reshape(*lr.shape[:nd], -1)

    def forward(x: np.ndarray) -> np.ndarray:
        out = D(np.moveaxis(x, -1, 0), spacing=spacing)
        return np.moveaxis(out, 0, -1)

    x = _upsample(y, f, shape_out)
    if forward(x).shape != y.shape:
        raise UserError(f"IBP: the HR grid {shape_out} does not degrade back to "
                        f"{lr.shape[:nd]} with factors {f.tolist()}")
    for _ in range(n_iter):
        x = x + step * _upsample(y - forward(x), f, shape_out)
    out = x.reshape(*shape_out, *chan_shape)
    return out.astype(lr.dtype if np.issubdtype(lr.dtype, np.floating) else np.float32)
