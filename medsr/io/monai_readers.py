"""MONAI ``ImageReader`` front ends over :func:`medsr.io.read`.

``LoadImage(reader=MedsrReader(), image_only=True)`` (or ``LoadImaged``) then loads
NIfTI/MGH, DICOM series (sorted by position, not InstanceNumber), TIFF stacks, pictures
and frames folders into MetaTensors whose ``.affine`` is exactly ``Volume.affine``.

What MONAI is told, and why: ``affine`` and ``original_affine`` are the Volume's RAS
affine and ``space`` is 'RAS', so no reader-side flip or LPS conversion happens (LoadImage
itself never re-orients); ``spatial_shape`` is the Volume's (I, J, K) and
``original_channel_dim`` is -1 for multi-channel data (colour, TIFF channels) and NaN
('no_channel') otherwise, so ``EnsureChannelFirst`` adds or moves the channel axis
correctly. Of medsr's own meta only ``format``, ``dtype``, ``unit`` and ``path`` are
passed (as strings, '' when unknown): every file then has the same keys, so batches
collate; the rest (DICOM header template, TIFF axes) stays with :func:`medsr.io.read`.

Several file names given at once are stacked as channels (MONAI's convention); their
affines and spatial shapes must agree.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import ImageReader
from monai.utils import ensure_tuple

from medsr.errors import InputError
from medsr.io import read
from medsr.io.formats import FORMATS, _sniff, suffix_format
from medsr.volume import Volume

# medsr meta passed on to MONAI: the same keys for every file, plain strings, so that
# batches collate (MONAI's collate fails on keys present in some files only or on None).
PASSED_KEYS = ("format", "dtype", "unit", "path")


def volume_meta(vol: Volume) -> dict[str, Any]:
    """The MONAI meta dict for ``vol`` (see the module docstring)."""
    meta: dict[str, Any] = {key: str(vol.meta.get(key) or "") for key in PASSED_KEYS}
    meta.update({
        "affine": vol.affine.copy(),
        "original_affine": vol.affine.copy(),
        "spatial_shape": np.asarray(vol.spatial_shape, dtype=np.int64),
        "original_channel_dim": -1 if vol.data.ndim == 4 else math.nan,
        "space": "RAS",
    })
    return meta


class MedsrReader(ImageReader):
    """Read any medsr format through :func:`medsr.io.read` (a MONAI ``ImageReader``).

    ``formats`` restricts what :meth:`verify_suffix` accepts (default: all of
    ``'nifti', 'mgh', 'dicom', 'tiff', 'image', 'frames'``); ``volume``, ``series`` and
    ``input_spacing`` are passed to :func:`medsr.io.read` for every file.
    """

    formats: tuple[str, ...] = FORMATS

    def __init__(self, formats: Sequence[str] | None = None, *, volume: int | None = None,
                 series: str | None = None, input_spacing: Sequence[float] | None = None
                 ) -> None:
        super().__init__()
        if formats is not None:
            unknown = set(formats) - set(FORMATS)
            if unknown:
                raise ValueError(f"unknown formats {sorted(unknown)}; choose from {FORMATS}")
            self.formats = tuple(formats)
        self.volume, self.series, self.input_spacing = volume, series, input_spacing

    def verify_suffix(self, filename: Sequence[os.PathLike | str] | os.PathLike | str) -> bool:
        """True when every name is a file of an accepted format or a directory
        (DICOM series or frames folder) and those are accepted."""
        for name in ensure_tuple(filename):
            p = Path(name)
            if p.is_dir():
                if not {"dicom", "frames"} & set(self.formats):
                    return False
            elif (suffix_format(p) or (_sniff(p) if p.is_file() else None)) not in self.formats:
                return False
        return True

    def read(self, data: Sequence[os.PathLike | str] | os.PathLike | str, **kwargs
             ) -> Volume | list[Volume]:
        """Read each name into a Volume (one Volume for one name)."""
        options = {"volume": self.volume, "series": self.series,
                   "input_spacing": self.input_spacing, **kwargs}
        vols = [read(name, **options) for name in ensure_tuple(data)]
        return vols[0] if len(vols) == 1 else vols

    def get_data(self, img: Volume | Sequence[Volume]) -> tuple[np.ndarray, dict]:
        """(array, meta) for MONAI; several Volumes are stacked as channels."""
        vols = [img] if isinstance(img, Volume) else list(img)
        arrays, metas = [], []
        for vol in vols:
            arrays.append(vol.data)
            metas.append(volume_meta(vol))
        meta = metas[0]
        if len(vols) == 1:
            return arrays[0], meta
        for other, vol in zip(metas[1:], vols[1:]):
            if not np.allclose(other["affine"], meta["affine"]) or \
                    vol.spatial_shape != vols[0].spatial_shape:
                raise InputError(f"{vol.meta.get('path')}: affine or shape differs from "
                                 f"{vols[0].meta.get('path')}; cannot stack as channels")
        if all(a.ndim == 4 for a in arrays):
            return np.concatenate(arrays, axis=-1), meta
        if any(a.ndim == 4 for a in arrays):
            arrays = [a if a.ndim == 4 else a[..., None] for a in arrays]
            return np.concatenate(arrays, axis=-1), {**meta, "original_channel_dim": -1}
        return np.stack(arrays, axis=0), {**meta, "original_channel_dim": 0}


class NiftiMedsrReader(MedsrReader):
    """NIfTI-1/2 and MGH/MGZ only."""

    formats = ("nifti", "mgh")


class DicomMedsrReader(MedsrReader):
    """DICOM series directories and DICOM files only."""

    formats = ("dicom",)


class TiffMedsrReader(MedsrReader):
    """TIFF stacks only."""

    formats = ("tiff",)


class FramesMedsrReader(MedsrReader):
    """2D pictures and frames folders only."""

    formats = ("image", "frames")
