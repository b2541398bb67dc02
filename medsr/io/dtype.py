"""The one cast: grey values (float SR output, usually) to the dtype a writer stores.

Every writer (NIfTI/MGH, TIFF, pictures and frames, video, DICOM) and every adapter that
hands data back in the input's dtype goes through :func:`cast_to_dtype`, so integers are
rounded and clipped the same way everywhere (never wrapped, NaN -> 0) and clipping is
reported by one warning that counts the clipped voxels. :func:`cast_like` is the same
cast with the warning off, for SR overshoot that is expected.
"""

from __future__ import annotations

import warnings

import numpy as np


def cast_to_dtype(data: np.ndarray, dtype: np.dtype | str,
                  bounds: tuple[int, int] | None = None, what: str | None = None,
                  warn: bool = True) -> np.ndarray:
    """Round and clip to an integer dtype's range (never wrap); plain cast for floats.

    ``bounds`` narrows the integer range (e.g. a DICOM BitsStored of 12), ``what`` names
    it in the warning that counts the clipped voxels (none with ``warn=False``). Bool is
    ``data > 0.5``; a float dtype is a cast without a copy where none is needed."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        lo, hi = int(np.iinfo(dtype).min), int(np.iinfo(dtype).max)
        if bounds is not None:
            lo, hi = max(lo, int(bounds[0])), min(hi, int(bounds[1]))
        out = np.empty(data.shape, dtype=dtype)
        n_clip = 0
        # in slabs along the first axis: the temporaries stay small whatever the volume
        step = max(1, (1 << 24) // max(1, int(np.prod(data.shape[1:]))))
        for a in range(0, max(1, data.shape[0]), step):
            rounded = np.rint(np.nan_to_num(np.asarray(data[a:a + step]), nan=0.0))
            n_clip += int(np.count_nonzero((rounded < lo) | (rounded > hi)))
            out[a:a + step] = np.clip(rounded, lo, hi)
        if n_clip and warn:
            pct = f"{100.0 * n_clip / max(1, data.size):.3g}%"
            warnings.warn(f"{n_clip} voxels outside the {what or dtype} range were clipped "
                          f"to [{lo}, {hi}] ({pct} of the voxels)", stacklevel=2)
        return out
    if dtype == np.bool_:
        return data > 0.5
    return np.asarray(data).astype(dtype, copy=False)


def cast_like(data: np.ndarray, dtype: np.dtype | str) -> np.ndarray:
    """:func:`cast_to_dtype` without the warning (SR overshoot is expected): integers
    rounded and clipped silently, floats cast without a copy where none is needed."""
    return cast_to_dtype(data, dtype, warn=False)
