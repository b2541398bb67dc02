"""Classical super-resolution on a planned grid: interpolation kernels and IBP."""

from __future__ import annotations

from typing import Any

import numpy as np

from medsr import geometry
from medsr.errors import UserError
from medsr.geometry import OutputGrid
from medsr.interpolate import METHODS as INTERPOLATION_METHODS
from medsr.interpolate import resize
from medsr.volume import Volume

CLASSICAL_METHODS = (*INTERPOLATION_METHODS, "ibp")


def super_resolve(vol: Volume, plan: OutputGrid, method: str = "cubic",
                  **options: Any) -> Volume:
    """Apply a classical method (interpolation or IBP) on the planned grid. IBP takes one
    channel (:func:`medsr.adapters.channels.per_channel` loops over channels)."""
    if method in INTERPOLATION_METHODS:
        data = vol.data
        # float64 values beyond float32's range stay float64 (resize computes in float64;
        # a non-finite result is refused before writing), others go to float32 as always
        if data.dtype != np.float64 or not data.size or \
                float(np.max(np.abs(data))) <= float(np.finfo(np.float32).max) / 1024:
            data = data.astype(np.float32, copy=False)
        data = resize(data, plan.factors, method=method, shape_out=plan.shape_out)
    elif method == "ibp":
        data = _ibp(vol, plan, **options)
    else:
        raise UserError(f"unknown method {method!r}; choose one of {', '.join(CLASSICAL_METHODS)}")
    return vol.with_data(data, affine=plan.affine_out)


def _ibp(vol: Volume, plan: OutputGrid, **options: Any) -> np.ndarray:
    from medsr.degrade.ibp import iterative_back_projection  # medsr.degrade is lazy (MONAI)

    if not geometry.is_integer_factors(plan.factors):
        raise UserError("--method ibp needs integer factors; use --scale with integers")
    if vol.data.ndim != 3:
        raise UserError("IBP takes one channel at a time")
    factors = tuple(int(round(k)) for k in plan.factors)
    data = vol.data.astype(np.float32, copy=False)
    return iterative_back_projection(data, factors, spacing=tuple(vol.spacing), **options)
