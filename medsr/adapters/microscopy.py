"""Microscopy stacks: percentile normalisation per channel and time point (no I/O).

A stack read by :func:`medsr.io.tiff.read_tiff` is (Y, X, Z[, C]) with every other file
axis (channels, time points, samples) folded into C, and an affine in the file's unit
(``meta['unit']``, usually 'um'). :func:`medsr.geometry.plan_isotropic` plans z only, to
the lateral pixel size; :func:`super_resolve_stack` normalises each channel / time point
on its own to the 1 / 99.8 percentiles (the CARE convention), runs a super-resolver on it
(through the one channel loop, :func:`medsr.adapters.channels.per_channel`), restores the
intensities and casts back to the input dtype (8/16-bit rounded and clipped, float kept).
Which shipped model fits a stack is :func:`medsr.inference.resolvers.default_model_for`.
"""

from __future__ import annotations

import numpy as np

from medsr.adapters.channels import SR, per_channel
from medsr.geometry import OutputGrid
from medsr.intensity import robust_range
from medsr.io.dtype import cast_like
from medsr.volume import Volume

PERCENTILES = (1.0, 99.8)


def percentile_normalise(x: np.ndarray, lower: float = PERCENTILES[0],
                         upper: float = PERCENTILES[1]) -> tuple[np.ndarray, float, float]:
    """(x - lo) / (hi - lo) as float32 with lo, hi the ``lower``/``upper`` percentiles."""
    lo, hi = robust_range(x, lower, upper)
    y = (np.asarray(x, dtype=np.float32) - np.float32(lo)) / np.float32(hi - lo)
    return y, lo, hi


def super_resolve_stack(vol: Volume, plan: OutputGrid, sr: SR, *,
                        lower: float = PERCENTILES[0], upper: float = PERCENTILES[1],
                        normalise: bool = True) -> Volume:
    """Apply ``sr(single_channel_volume, plan)`` to each channel / time point separately.

    Each one is normalised to its own ``lower``/``upper`` percentiles before ``sr`` and
    restored after; the result has the input dtype and the plan's affine, and keeps the
    metadata (axes, unit) so the TIFF writer restores the file layout.
    """
    def one(ch: Volume, p: OutputGrid) -> Volume:
        if normalise:
            x, lo, hi = percentile_normalise(ch.data, lower, upper)
        else:
            x, lo, hi = np.asarray(ch.data, dtype=np.float32), 0.0, 1.0
        y = np.asarray(sr(ch.with_data(x), p).data, dtype=np.float32)
        if y.shape[:3] != tuple(p.shape_out):
            raise RuntimeError(f"super-resolver returned {y.shape[:3]}, planned "
                               f"{tuple(p.shape_out)}")
        y *= np.float32(hi - lo)
        y += np.float32(lo)
        return ch.with_data(y, affine=p.affine_out)

    out = per_channel(vol, plan, one)
    return vol.with_data(cast_like(out.data, vol.data.dtype), affine=plan.affine_out)
