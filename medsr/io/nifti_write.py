"""Writing NIfTI-1/2 (.nii, .nii.gz) and FreeSurfer MGH/MGZ through nibabel (reading:
:mod:`medsr.io.nifti`).

qform and sform both set (the source's codes when it had them, else 1 = scanner), xyz
units from ``meta['unit']`` (mm by default; micron and meter are NIfTI units, nm/cm are
converted to mm), zooms from the affine. Channels (I, J, K, C) are written as a vector
image (I, J, K, 1, C), intent 'vector', so they read back as one volume. The output
dtype is ``dtype`` or ``meta['dtype']`` or float32. Integers are rounded and clipped,
never wrapped (``cast_to_dtype``); the one exception is a source that was itself stored
with scl_slope/inter and no explicit ``dtype``: then nibabel computes a new
slope/intercept so no precision is lost to rounding.

Compressed files are written through :func:`medsr.io.deflate.gzip_open` (plain gzip,
one member, mtime 0, level 1: the same bytes for the same data).
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from medsr.errors import UserError
from medsr.io.deflate import gzip_open
from medsr.io.dtype import cast_to_dtype
from medsr.volume import Volume

_UNITS_OUT = {"mm": "mm", "um": "micron", "m": "meter"}
_TO_MM = {"nm": 1e-6, "cm": 10.0, "pixel": 1.0}
_MGH_DTYPES = (np.uint8, np.int16, np.int32, np.float32)


def output_dtype(vol: Volume, dtype: str | None) -> np.dtype:
    """``dtype`` if given, else the source's on-disk dtype, else float32."""
    if dtype is not None:
        try:
            return np.dtype(dtype)
        except TypeError as exc:
            raise UserError(f"unknown dtype {dtype!r}") from exc
    if vol.meta.get("dtype"):
        return np.dtype(vol.meta["dtype"])
    return np.dtype(np.float32)


def write_nifti(vol: Volume, path: str | os.PathLike, *, dtype: str | None = None,
                nifti_version: int | None = None, description: str | None = None) -> Path:
    """Write ``vol`` to ``path`` (.nii or .nii.gz) with qform/sform, zooms and units.

    ``nifti_version`` 1 or 2 (default: the source's, 2 when a dimension exceeds 32767);
    ``description`` goes to the 80-byte descrip field.
    """
    path = Path(path)
    out_dtype = output_dtype(vol, dtype)
    if out_dtype == np.bool_:
        out_dtype = np.dtype(np.uint8)
    version = nifti_version or vol.meta.get("nifti_version") or 1
    if version not in (1, 2):
        raise UserError(f"nifti_version must be 1 or 2, got {version}")
    if max(vol.data.shape) > 32767:
        version = 2
    klass = nib.Nifti2Image if version == 2 else nib.Nifti1Image
    data = vol.data
    rescale = (dtype is None and vol.meta.get("scl") and np.issubdtype(out_dtype, np.integer)
               and not np.issubdtype(data.dtype, np.integer))
    if rescale:
        # The source was scaled integers: let nibabel choose slope/inter again.
        data = np.nan_to_num(np.asarray(data, dtype=np.float64))
    elif np.issubdtype(out_dtype, np.integer):
        if not _cast_while_writing(data, out_dtype):  # else nibabel casts as it writes
            data = cast_to_dtype(data, out_dtype)
    else:
        data = cast_to_dtype(data, out_dtype)
    if data.ndim == 4:  # channels -> NIfTI vector dimension 5, so they read back as one volume
        data = data[:, :, :, None, :]
    affine, unit = vol.affine, vol.meta.get("unit") or "mm"
    if unit in _TO_MM:  # units NIfTI cannot name: convert the affine to mm
        affine, unit = np.diag([_TO_MM[unit]] * 3 + [1.0]) @ affine, "mm"
    img = klass(data, affine, dtype=out_dtype)
    if data.ndim == 5:
        img.header.set_intent("vector")
    qcode = int(vol.meta.get("qform_code") or 1)
    scode = int(vol.meta.get("sform_code") or 1)
    img.set_sform(affine, code=scode)
    img.set_qform(affine, code=qcode)
    img.header.set_xyzt_units(_UNITS_OUT.get(unit, "mm"), "sec")
    if not rescale:
        img.header.set_slope_inter(1.0, 0.0)
    if description is not None:
        img.header["descrip"] = description.encode("utf-8", "replace")[:79]
    _save(img, path)
    return path


def _save(img, path: Path) -> None:
    """``nib.save``, compressed files through :func:`gzip_open` (the fast deflate)."""
    if path.name.lower().endswith((".nii.gz", ".mgz")):
        with gzip_open(path, "wb") as f:
            img.to_stream(f)
    else:
        nib.save(img, path)


def _cast_while_writing(data: np.ndarray, dtype: np.dtype) -> bool:
    """Whether float ``data`` can go to nibabel as they are, with scaling fixed at (1, 0)
    and the integer ``dtype``: nibabel then rounds and casts plane by plane as it writes
    (the same bytes as :func:`cast_to_dtype`, NaN to 0 included, without a
    volume-sized integer copy). Not when a value would be clipped: cast_to_dtype's
    count of clipped voxels is wanted then."""
    if not np.issubdtype(data.dtype, np.floating) or data.size == 0:
        return False
    info = np.iinfo(dtype)
    lo, hi = np.nanmin(data), np.nanmax(data)  # NaN only where all are NaN
    return bool(np.isfinite(lo) and np.isfinite(hi) and np.rint(lo) >= info.min
                and np.rint(hi) <= info.max)


def write_mgh(vol: Volume, path: str | os.PathLike, *, dtype: str | None = None) -> Path:
    """Write ``vol`` as MGH/MGZ; dtypes MGH lacks are widened (uint16 -> int32) or float32."""
    path = Path(path)
    want = output_dtype(vol, dtype)
    if want in [np.dtype(t) for t in _MGH_DTYPES]:
        out = want
    elif want in (np.dtype(np.int8), np.dtype(np.bool_)):
        out = np.dtype(np.int16)
    elif want in (np.dtype(np.uint16), np.dtype(np.uint32), np.dtype(np.int64),
                  np.dtype(np.uint64)):
        out = np.dtype(np.int32)
    else:
        out = np.dtype(np.float32)
    data = cast_to_dtype(vol.data, out)
    _save(nib.MGHImage(data, vol.affine), path)
    return path
