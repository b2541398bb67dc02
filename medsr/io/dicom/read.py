"""Read a DICOM series (single-frame files) or one multi-frame object into a Volume.

The files are found (:mod:`.discover`), each image's header values read
(:mod:`.frames`), ordered along the slice normal into an LPS affine (:mod:`.geometry`),
decoded and rescaled (:mod:`.pixels`); the Volume carries the RAS affine
(``ras_to_lps`` flips both ways).

meta keys: ``format`` ("dicom"), ``path``, ``dtype`` (a dtype holding the rescaled values
without loss), ``stored_dtype``, and ``dicom`` (what the series writer needs; see
:func:`medsr.io.dicom.header.source_meta`, plus ``affine_lps``). Patient identifiers live
only in ``meta["dicom"]["template"]``: never print it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from medsr.errors import InputError
from medsr.geometry import ras_to_lps
from medsr.io.dicom.discover import (
    choose_series,
    group_series,
    has_pixels,
    is_multiframe,
    read_header,
    sop_name,
)
from medsr.io.dicom.frames import Frame, multi_frames, single_frame
from medsr.io.dicom.geometry import stack_geometry
from medsr.io.dicom.header import source_meta
from medsr.io.dicom.pixels import decode_pixels, rescale
from medsr.volume import Volume


def _assemble(frames: list[Frame], datasets: dict[Path, Dataset], what: str,
              header: Dataset | None, path: Path) -> Volume:
    """Order, decode, rescale and stack the frames; ``header`` None means the dataset of
    the first slice along the normal (the writer's template)."""
    order, A_lps, has_geometry = stack_geometry(frames, what)
    if header is None:
        header = datasets[frames[order[0]].file]
    multi: dict[Path, np.ndarray] = {}  # decoded multi-frame arrays, decoded once
    slices = []
    for i in order:
        fr = frames[i]
        ds = datasets[fr.file]
        if is_multiframe(ds):
            if fr.file not in multi:
                arr = decode_pixels(ds, fr.file)
                spp = int(ds.get("SamplesPerPixel", 1) or 1)
                if arr.ndim == (3 if spp > 1 else 2):  # NumberOfFrames = 1
                    arr = arr[None]
                multi[fr.file] = arr
            slices.append(multi[fr.file][fr.index])
        else:
            slices.append(decode_pixels(ds, fr.file))
    shapes = {s.shape for s in slices}
    if len(shapes) > 1:
        raise InputError(f"{what}: slices have different sizes {sorted(shapes)}")
    stack = np.stack(slices)  # (K, rows, cols[, samples])
    ordered = [frames[i] for i in order]
    data, dtype = rescale(stack, ordered, int(header.get("SamplesPerPixel", 1) or 1))
    # (K, rows, cols[, C]) -> (cols, rows, K[, C]) = (I, J, K[, C])
    data = np.ascontiguousarray(np.moveaxis(data, (0, 1, 2), (2, 1, 0)))
    meta = {
        "format": "dicom",
        "path": str(path),
        "dtype": str(np.dtype(dtype)),
        "stored_dtype": str(np.dtype(stack.dtype)),
        "dicom": source_meta(header, ordered, has_geometry),
    }
    meta["dicom"]["affine_lps"] = A_lps
    return Volume(data=data, affine=ras_to_lps(A_lps), meta=meta)


def _read_file(path: Path) -> Volume:
    ds = read_header(path)
    if ds is None:
        raise InputError(f"{path} is not a DICOM file")
    if not has_pixels(ds):
        raise InputError(f"{path}: DICOM object without pixel data "
                         f"(SOP class {sop_name(ds)}); not an image")
    frames = multi_frames(ds, path) if is_multiframe(ds) else [single_frame(ds, path)]
    return _assemble(frames, {path: ds}, str(path), ds, path)


def _read_dir(root: Path, series: str | None) -> Volume:
    groups, skipped = group_series(root)
    if skipped:
        shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more"
                                          if len(skipped) > 5 else "")
        warnings.warn(f"{root}: skipped {len(skipped)} DICOM object(s) without pixel data: "
                      f"{shown}", stacklevel=3)
    if not groups:
        raise InputError(f"{root}: no DICOM image found (empty directory, or only non-image "
                         "DICOM objects)")
    uid = choose_series(root, groups, series)
    items = groups[uid]
    what = f"{root} series {uid}"
    multi = [f for f, ds in items if is_multiframe(ds)]
    if multi:
        if len(items) > 1:
            raise InputError(f"{what}: {len(items)} files including multi-frame objects; "
                             f"read one multi-frame file at a time (e.g. {multi[0]})")
        f, ds = items[0]
        return _assemble(multi_frames(ds, f), {f: ds}, what, ds, root)
    frames = [single_frame(ds, f) for f, ds in items]
    return _assemble(frames, {f: ds for f, ds in items}, what, None, root)


def read_dicom(path: str | os.PathLike, series: str | None = None) -> Volume:
    """Read a DICOM directory (one series, or the one chosen by ``series``: a
    SeriesInstanceUID or a unique SeriesNumber) or one (multi-frame) DICOM file.

    Raises InputError with one line for everything a user can get wrong: no images,
    mixed series, missing or duplicate slices, a missing decoder, corrupt files.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p} does not exist")
    if p.is_dir():
        return _read_dir(p, series)
    return _read_file(p)
