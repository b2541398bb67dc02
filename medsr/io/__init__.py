"""Read any supported scan into a :class:`~medsr.volume.Volume` and write one back.

``read(path)`` picks the reader from :func:`detect_format`; ``write(vol, path)`` picks
the writer from the output path (:func:`output_format`). Conventions shared by every
format:

- ``Volume.data`` spatial index order matches ``Volume.affine`` (voxel index -> RAS+,
  voxel centres at integer indices). NIfTI/MGH as nibabel gives it; DICOM converted from
  LPS; TIFF stacks, pictures and frames as (row, column, z/frame), affine diag(spacing)
  in the file's unit (``meta['unit']``, None for pixels).
- ``meta`` always holds ``format``, ``path`` and ``dtype`` (the dtype on disk); each
  reader documents its other keys.
- Floating-point data with some NaN/Inf voxels: a warning, and they become 0. A volume
  that is all NaN/Inf, or has no voxels, is an :class:`~medsr.errors.InputError`.
- ``input_spacing`` replaces the voxel size along (i, j, k) (1, 2 or 3 values, in the
  file's unit), keeping the orientation and the position of voxel (0, 0, 0).
- Writes go through :func:`medsr.io.common.check_output` and
  :func:`~medsr.io.common.atomic_path`: the output appears complete or not at all, an
  existing output is kept unless ``overwrite``, and an input is never the output.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medsr.errors import InputError, UserError
from medsr.io.common import atomic_path, check_output
from medsr.io.formats import default_output_path, detect_format, output_format
from medsr.io.video import is_video, read_video, write_video
from medsr.volume import Volume

__all__ = ["read", "write", "detect_format", "output_format", "default_output_path"]


def _dicom():
    try:
        from medsr.io import dicom
    except ImportError as exc:
        raise UserError(f"DICOM support is not available ({exc})") from exc
    return dicom


def _sanitise(vol: Volume, path: Path) -> Volume:
    """Native byte order; no empty volume; NaN/Inf -> 0 with a warning, all NaN refused."""
    data = vol.data
    if not data.dtype.isnative:  # big-endian files: torch and MONAI need native order
        data = data.astype(data.dtype.newbyteorder("="))
        vol = vol.with_data(data)
    if data.size == 0:
        raise InputError(f"{path}: zero-sized image (shape {data.shape})")
    if np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.complexfloating):
        bad = ~np.isfinite(data)
        n_bad = int(np.count_nonzero(bad))
        if n_bad == data.size:
            raise InputError(f"{path}: every voxel is NaN or infinite")
        if n_bad:
            warnings.warn(f"{path}: {n_bad} of {data.size} voxels are NaN or infinite; "
                          "they are treated as 0", stacklevel=3)
            data = np.where(bad, 0, data).astype(data.dtype, copy=False)
            vol = vol.with_data(data)
    return vol


def _with_spacing(vol: Volume, spacing: Sequence[float]) -> Volume:
    s = np.asarray(spacing, dtype=np.float64).reshape(-1)
    if s.size == 1:
        s = np.repeat(s, 3)
    elif s.size == 2:
        s = np.append(s, vol.spacing[2])
    if s.size != 3 or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise UserError(f"--input-spacing needs 1 to 3 positive numbers, got {list(spacing)}")
    affine = vol.affine.copy()
    affine[:3, :3] = affine[:3, :3] / vol.spacing * s
    return vol.with_data(vol.data, affine=affine, input_spacing=tuple(s.tolist()))


def read(path: str | os.PathLike, *, volume: int | None = None, series: str | None = None,
         input_spacing: Sequence[float] | None = None,
         max_voxels: int | None = None) -> Volume:
    """Read a NIfTI/MGH file, DICOM series, TIFF stack, picture, frames folder or video.

    ``volume`` picks one volume of a 4D NIfTI/MGH (or a time point of a TIFF
    hyperstack), 0-based; ``series`` picks one SeriesInstanceUID of a DICOM directory.
    ``max_voxels`` refuses NIfTI/MGH, TIFF and pictures whose header declares more voxels,
    before their data are decoded.
    """
    path = Path(path)
    fmt = "video" if is_video(path) else detect_format(path)
    if series is not None and fmt != "dicom":
        raise UserError(f"--series applies to DICOM inputs; {path} is {fmt}")
    if volume is not None and fmt not in ("nifti", "mgh", "tiff"):
        raise UserError(f"--volume applies to 4D NIfTI/MGH or TIFF time series; {path} is {fmt}")
    if fmt in ("nifti", "mgh"):
        from medsr.io.nifti import read_nifti
        vol = read_nifti(path, volume=volume, max_voxels=max_voxels)
    elif fmt == "tiff":
        from medsr.io.tiff import read_tiff
        vol = read_tiff(path, volume=volume, max_voxels=max_voxels)
    elif fmt == "image":
        from medsr.io.image2d import read_image
        vol = read_image(path, max_voxels=max_voxels)
    elif fmt == "frames":
        from medsr.io.image2d import read_frames
        vol = read_frames(path, max_voxels=max_voxels)
    elif fmt == "video":
        vol = read_video(path)
    else:
        vol = _dicom().read_dicom(path, series=series)
    vol.meta.setdefault("format", fmt)
    vol.meta.setdefault("path", str(path))
    vol.meta.setdefault("dtype", vol.data.dtype.name)
    vol = _sanitise(vol, path)
    if input_spacing is not None:
        vol = _with_spacing(vol, input_spacing)
    return vol


def write(vol: Volume, path: str | os.PathLike, *, overwrite: bool = False,
          dtype: str | None = None, inputs: list[Path] | None = None,
          **format_options) -> Path:
    """Write ``vol`` in the format the path asks for; returns the path written.

    ``dtype`` overrides the source's on-disk dtype. ``format_options`` go to the writer:
    NIfTI ``nifti_version``, ``description`` (the descrip field); TIFF ``compression``;
    PNG/JPEG Pillow save options (e.g. ``quality``); DICOM ``description``, ``anonymize``.
    ``anonymize`` is accepted and ignored for formats that carry no patient data.
    A video suffix (.mp4, .avi ...) writes the slices as 8-bit frames.
    """
    fmt = "video" if is_video(path) else output_format(path, vol.meta.get("format"))
    if fmt == "video" and dtype not in (None, "uint8"):
        raise UserError(f"video frames are 8-bit; --dtype {dtype} is not possible")
    sources = list(inputs or [])
    if vol.meta.get("path"):
        sources.append(Path(vol.meta["path"]))
    out = check_output(path, overwrite, sources)
    if dtype is not None:
        try:
            dtype = np.dtype(dtype).name
        except TypeError as exc:
            raise UserError(f"unknown dtype {dtype!r}") from exc
    if fmt != "dicom":  # no patient data is written outside DICOM; descrip is NIfTI-only
        format_options.pop("anonymize", None)
        if fmt != "nifti":
            format_options.pop("description", None)
    with atomic_path(out) as tmp:
        if fmt == "nifti":
            from medsr.io.nifti_write import write_nifti
            write_nifti(vol, tmp, dtype=dtype, **format_options)
        elif fmt == "mgh":
            from medsr.io.nifti_write import write_mgh
            write_mgh(vol, tmp, dtype=dtype, **format_options)
        elif fmt == "tiff":
            from medsr.io.tiff import write_tiff
            write_tiff(vol, tmp, dtype=dtype, **format_options)
        elif fmt == "image":
            from medsr.io.image2d import write_image
            write_image(vol, tmp, dtype=dtype, **format_options)
        elif fmt == "frames":
            from medsr.io.image2d import write_frames
            write_frames(vol, tmp, dtype=dtype, **format_options)
        elif fmt == "video":
            write_video(vol, tmp)
        else:
            _dicom().write_dicom_series(vol, tmp, overwrite=True, dtype=dtype,
                                        **format_options)
    return out
