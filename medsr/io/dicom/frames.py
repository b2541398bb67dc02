"""One 2D image of a series, as its header describes it: a :class:`Frame`.

Single-frame files give one Frame each; a multi-frame object gives one per frame, with
position, orientation, pixel spacing and rescale from its per-frame functional groups
(then the shared ones), or, for classic multi-frame objects, from the top-level Image
Plane attributes with positions stepped along the normal. Every number is checked as it
is read: a present but invalid value (NaN, infinite, wrong count, out of range) is an
InputError naming the attribute, never a silent identity affine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from medsr.errors import InputError


@dataclass
class Frame:
    """One 2D image: where it sits and how to fetch its pixels."""

    position: np.ndarray | None     # IPP (LPS mm)
    orientation: np.ndarray | None  # IOP (6,)
    pixel_spacing: np.ndarray | None  # [row spacing, column spacing]
    slope: float
    intercept: float
    thickness: float | None
    spacing_between: float | None
    source: tuple[str, str, int | None]  # (SOPClassUID, SOPInstanceUID, frame number)
    file: Path
    index: int  # frame index inside the file's pixel array (0 for single-frame)


def _floats(value: Any, n: int | None = None) -> np.ndarray | None:
    """A DS/IS value (single or multi-valued) as finite floats, or None."""
    if value is None:
        return None
    if isinstance(value, str | bytes) or not hasattr(value, "__len__"):
        value = [value]
    try:
        arr = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if (n is not None and arr.size != n) or not np.all(np.isfinite(arr)):
        return None
    return arr


def _float(value: Any) -> float | None:
    a = _floats(value, 1)
    return None if a is None else float(a[0])


def _absent(value: Any) -> bool:
    if value is None:
        return True
    value = getattr(value, "value", value)  # a DataElement
    return value is None or (hasattr(value, "__len__") and len(value) == 0)


def _valid(ds: Dataset, keyword: str, n: int, where: Any,
           positive: bool = False, bound: float = 1e6) -> np.ndarray | None:
    """``keyword`` as ``n`` finite floats, None when absent; present but invalid (NaN,
    infinite, wrong count, not positive where it must be, beyond ``bound`` in magnitude or,
    if positive, below 1/``bound``: 1e6 mm is a kilometre) is an InputError naming it."""
    value = ds.get(keyword)
    if _absent(value):
        return None
    arr = _floats(value, n)
    if arr is None or (positive and np.any(arr < 1.0 / bound)) or np.any(np.abs(arr) > bound):
        raise InputError(f"{where}: invalid {keyword} {_shown(value)} (must be {n} finite"
                         f"{' positive' if positive else ''} number{'s' if n > 1 else ''}"
                         f" of magnitude {'1e-6 to ' if positive else 'up to '}{bound:g})")
    return arr


def _shown(value: Any) -> str:
    text = str(getattr(value, "value", value))
    return text[:80]


def _slope_intercept(ds: Dataset, where: Any = "?") -> tuple[float, float]:
    # up to 1e30: a 16-bit value times the slope still fits float32
    _valid(ds, "RescaleSlope", 1, where, bound=1e30)
    _valid(ds, "RescaleIntercept", 1, where, bound=1e30)
    slope = _float(ds.get("RescaleSlope"))
    inter = _float(ds.get("RescaleIntercept"))
    return (1.0 if slope is None or slope == 0 else slope), (0.0 if inter is None else inter)


def single_frame(ds: Dataset, path: Path) -> Frame:
    """The Frame of a single-frame file, its values checked."""
    slope, inter = _slope_intercept(ds, path)
    return Frame(
        position=_valid(ds, "ImagePositionPatient", 3, path),
        orientation=_valid(ds, "ImageOrientationPatient", 6, path),
        pixel_spacing=_valid(ds, "PixelSpacing", 2, path, positive=True),
        slope=slope, intercept=inter,
        thickness=_float(ds.get("SliceThickness")),
        spacing_between=_float(ds.get("SpacingBetweenSlices")),
        source=(str(ds.get("SOPClassUID", "")), str(ds.get("SOPInstanceUID", "")), None),
        file=path, index=0,
    )


def _fg_item(ds: Dataset, per_frame: Dataset | None, seq: str) -> Dataset | None:
    """The first item of functional group ``seq``: per-frame first, then shared."""
    for holder in (per_frame, _first(ds.get("SharedFunctionalGroupsSequence"))):
        if holder is not None and seq in holder:
            item = _first(holder[seq].value)
            if item is not None:
                return item
    return None


def _first(seq: Any) -> Dataset | None:
    try:
        return seq[0] if seq is not None and len(seq) else None
    except (TypeError, IndexError):
        return None


#: more frames than any acquisition has: a header declaring more is refused before any
#: per-frame work (a declared 2**31 frames would otherwise loop for hours)
MAX_FRAMES = 1_000_000


def _frame_count(ds: Dataset, path: Path) -> int:
    """NumberOfFrames, checked: 1..MAX_FRAMES, and for native (uncompressed) pixel data no
    more frames than the file's pixel bytes hold (read from the element's length, no
    decoding)."""
    try:
        n = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: NumberOfFrames is not a whole number") from exc
    if not 1 <= n <= MAX_FRAMES:
        raise InputError(f"{path}: NumberOfFrames {n} is out of range (1 to {MAX_FRAMES:,})")
    try:
        elem = ds.get_item("PixelData") if "PixelData" in ds else None
        length = getattr(elem, "length", None)
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        spp = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.get("BitsAllocated", 0) or 0)
    except (TypeError, ValueError):
        return n  # the pixel module's own checks report it
    if length is not None and 0 < length < 0xFFFFFFFF and bits >= 8:
        need = rows * cols * spp * (bits // 8) * n
        if need > length:
            raise InputError(f"{path}: NumberOfFrames {n:,} needs {need:,} bytes of pixel "
                             f"data; the file holds {length:,} (corrupt header)")
    return n


def multi_frames(ds: Dataset, path: Path) -> list[Frame]:
    """Frames of a multi-frame object, geometry from the functional groups (enhanced) or
    from the top-level Image Plane attributes (classic multi-frame)."""
    n = _frame_count(ds, path)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) != n:
        raise InputError(f"{path}: {len(per_frame)} per-frame functional groups for "
                         f"{n} frames")
    top_slope, top_inter = _slope_intercept(ds, path)
    top_pos = _valid(ds, "ImagePositionPatient", 3, path)
    frames = []
    sop = (str(ds.get("SOPClassUID", "")), str(ds.get("SOPInstanceUID", "")))
    for f in range(n):
        pf = per_frame[f] if per_frame is not None else None
        pos_item = _fg_item(ds, pf, "PlanePositionSequence")
        ori_item = _fg_item(ds, pf, "PlaneOrientationSequence")
        pm_item = _fg_item(ds, pf, "PixelMeasuresSequence")
        pv_item = _fg_item(ds, pf, "PixelValueTransformationSequence")
        where = f"{path} frame {f + 1}"
        position = _valid(pos_item, "ImagePositionPatient", 3, where) if pos_item else None
        orientation = _valid(ori_item if ori_item else ds, "ImageOrientationPatient", 6,
                             where)
        pm = pm_item if pm_item is not None else ds
        slope, inter = (_slope_intercept(pv_item, where) if pv_item is not None
                        else (top_slope, top_inter))
        if position is None and top_pos is not None and n == 1:
            position = top_pos
        frames.append(Frame(
            position=position, orientation=orientation,
            pixel_spacing=_valid(pm, "PixelSpacing", 2, where, positive=True),
            slope=slope, intercept=inter,
            thickness=_float(pm.get("SliceThickness")),
            spacing_between=_float(pm.get("SpacingBetweenSlices",
                                          ds.get("SpacingBetweenSlices"))),
            source=(sop[0], sop[1], f + 1), file=path, index=f,
        ))
    if per_frame is None and n > 1 and top_pos is not None:
        # Classic multi-frame (e.g. NM, old MR): frames are a regular stack from IPP along
        # the normal at SpacingBetweenSlices (or SliceThickness).
        step = frames[0].spacing_between or frames[0].thickness
        ori = frames[0].orientation
        if step and ori is not None:
            normal = np.cross(ori[:3], ori[3:])
            for f, fr in enumerate(frames):
                fr.position = top_pos + f * step * normal
    return frames
