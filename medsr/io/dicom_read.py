"""Read a DICOM series (single-frame files) or one multi-frame object into a Volume.

Slices are ordered by ImagePositionPatient projected on the slice normal
n = row_cos x col_cos, never by InstanceNumber (which scanners and anonymisers scramble).
Geometry, in LPS, with i = column, j = row, k = slice:

    A_lps = [row_cos * column_spacing, col_cos * row_spacing, step, IPP_first]

where PixelSpacing = [row spacing, column spacing] and step = n * slice spacing (or the
measured step between positions when the stack is sheared, e.g. CT gantry tilt). The
Volume carries the RAS affine (``ras_to_lps`` flips both ways).

meta keys: ``format`` ("dicom"), ``path``, ``dtype`` (a dtype holding the rescaled values
without loss), ``stored_dtype``, and ``dicom`` (what the series writer needs; see
:func:`_dicom_meta`). Patient identifiers live only in ``meta["dicom"]["template"]``:
never print it.
"""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from medsr.errors import InputError
from medsr.geometry import ras_to_lps
from medsr.io.formats import captured_logs
from medsr.volume import Volume

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

# Transfer syntax UID prefix -> what to install when pydicom has no working decoder.
_DECODER_HINTS = {
    "1.2.840.10008.1.2.4.5": "pip install pylibjpeg pylibjpeg-libjpeg",       # JPEG baseline
    "1.2.840.10008.1.2.4.7": "pip install pylibjpeg pylibjpeg-libjpeg",       # JPEG lossless
    "1.2.840.10008.1.2.4.8": "pip install pylibjpeg pylibjpeg-libjpeg",       # JPEG-LS
    "1.2.840.10008.1.2.4.9": "pip install pylibjpeg pylibjpeg-openjpeg",      # JPEG 2000
    "1.2.840.10008.1.2.4.20": "pip install pylibjpeg pylibjpeg-openjpeg",     # HTJ2K
    "1.2.840.10008.1.2.5": "pip install pylibjpeg pylibjpeg-rle",             # RLE
}
_DEFAULT_HINT = "pip install python-gdcm"

# Relative tolerances of the geometry checks.
_ORIENT_TOL = 1e-4     # direction cosines
_SPACING_RTOL = 0.01   # slice spacing: 1 % of the median step


def decoder_hint(transfer_syntax: str) -> str:
    """The pip command that installs a pydicom decoder for ``transfer_syntax``."""
    for prefix, hint in _DECODER_HINTS.items():
        if str(transfer_syntax).startswith(prefix):
            return hint
    return _DEFAULT_HINT


def _has_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def is_dicom_file(path: str | os.PathLike) -> bool:
    """True for a file with the DICOM preamble ('DICM' at byte 128), or a bare dataset
    (no preamble, as some old scanners write) whose first elements carry a SOP Class UID."""
    p = Path(path)
    if not p.is_file():
        return False
    if _has_preamble(p):
        return True
    if p.suffix.lower() not in (".dcm", ".dicom", ".ima", ""):
        return False
    try:
        ds = pydicom.dcmread(p, stop_before_pixels=True, force=True,
                             specific_tags=["SOPClassUID"])
        uid = str(ds.get("SOPClassUID", ""))
    except Exception:
        return False
    return bool(uid) and all(c.isdigit() or c == "." for c in uid)


def _iter_files(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
    return out


def is_dicom_dir(path: str | os.PathLike) -> bool:
    """True for a directory (searched recursively) holding at least one DICOM file."""
    p = Path(path)
    if not p.is_dir():
        return False
    return any(is_dicom_file(f) for f in _iter_files(p))


# ---------------------------------------------------------------------------- headers


def _dcmread(path: Path) -> Dataset | None:
    """The dataset with pixel data deferred (read on access); None for a non-DICOM file."""
    if not is_dicom_file(path):
        return None
    try:
        return pydicom.dcmread(path, defer_size="4 KB", force=not _has_preamble(path))
    except (InvalidDicomError, EOFError, ValueError, OSError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: corrupt or truncated DICOM file ({type(exc).__name__})") \
            from exc


def _has_pixels(ds: Dataset) -> bool:
    return any(k in ds for k in PIXEL_KEYWORDS)


def _is_multiframe(ds: Dataset) -> bool:
    return "PerFrameFunctionalGroupsSequence" in ds or int(ds.get("NumberOfFrames", 1) or 1) > 1


@dataclass
class _Frame:
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


def _single_frame(ds: Dataset, path: Path) -> _Frame:
    slope, inter = _slope_intercept(ds, path)
    return _Frame(
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


def _multi_frames(ds: Dataset, path: Path) -> list[_Frame]:
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
        frames.append(_Frame(
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


# ---------------------------------------------------------------------------- geometry


def _describe(ds: Dataset) -> str:
    return (f"{ds.get('SeriesInstanceUID', '?')} '{ds.get('SeriesDescription', '')}' "
            f"(series number {ds.get('SeriesNumber', '?')})")


def _is_frame_of_many(fr: _Frame, frames: list[_Frame]) -> bool:
    return sum(1 for other in frames if other.file == fr.file) > 1


def _geometry(frames: list[_Frame], what: str) -> tuple[list[int], np.ndarray, bool]:
    """Order of the frames along the normal and the LPS affine. Returns (order, A_lps,
    has_geometry)."""
    f0 = frames[0]
    ps = f0.pixel_spacing  # present ones were checked finite and positive when read
    if ps is None:
        ps = np.array([1.0, 1.0])
    for fr in frames[1:]:
        if fr.pixel_spacing is not None and not np.allclose(fr.pixel_spacing, ps, rtol=1e-4):
            raise InputError(f"{what}: slices have different PixelSpacing "
                             f"({ps.tolist()} and {fr.pixel_spacing.tolist()})")
    has_geometry = all(fr.position is not None and fr.orientation is not None
                       for fr in frames)
    partial = [fr for fr in frames if fr.position is None or fr.orientation is None]
    if not has_geometry and len(partial) < len(frames):
        fr = partial[0]
        name = fr.file.name + (f" frame {fr.index + 1}" if _is_frame_of_many(fr, frames)
                               else "")
        lacks = "ImagePositionPatient" if fr.position is None else "ImageOrientationPatient"
        raise InputError(f"{what}: slice {name} has no {lacks} while "
                         f"{len(frames) - len(partial)} other slice(s) have one; its place "
                         "in the volume is unknown")
    if not has_geometry:
        if len(frames) > 1:
            warnings.warn(f"{what}: no ImagePositionPatient/ImageOrientationPatient; "
                          "slices kept in file/frame order (no patient geometry)", stacklevel=3)
        step = f0.spacing_between or f0.thickness or 1.0
        A = np.diag([ps[1], ps[0], step, 1.0])
        order = sorted(range(len(frames)), key=lambda i: (str(frames[i].file),
                                                          frames[i].index))
        return order, A, False

    iop = f0.orientation
    row_cos, col_cos = iop[:3], iop[3:]
    nr, nc = np.linalg.norm(row_cos), np.linalg.norm(col_cos)
    if nr < 0.5 or nc < 0.5 or abs(np.dot(row_cos, col_cos)) > 1e-3 * nr * nc:
        raise InputError(f"{what}: invalid ImageOrientationPatient {iop.tolist()}")
    row_cos, col_cos = row_cos / nr, col_cos / nc
    for fr in frames[1:]:
        if not np.allclose(fr.orientation, iop, atol=_ORIENT_TOL):
            raise InputError(f"{what}: slices have different orientations "
                             f"(ImageOrientationPatient {iop.tolist()} and "
                             f"{fr.orientation.tolist()}); it is not one volume")
    normal = np.cross(row_cos, col_cos)
    pos = np.array([fr.position for fr in frames])
    dist = pos @ normal
    order = sorted(range(len(frames)), key=lambda i: dist[i])
    d = dist[order]
    A = np.eye(4)
    A[:3, 0] = row_cos * ps[1]
    A[:3, 1] = col_cos * ps[0]
    A[:3, 3] = pos[order[0]]
    if len(frames) == 1:
        step = f0.spacing_between or f0.thickness or 1.0
        A[:3, 2] = normal * abs(step)
        return order, A, True

    diffs = np.diff(d)
    scale = max(float(np.median(np.abs(diffs))), 1e-6)
    dup = np.flatnonzero(diffs < 1e-3 * max(scale, 1.0) + 1e-4)
    if dup.size:
        at = ", ".join(f"{d[i]:.4g}" for i in dup[:5])
        raise InputError(f"{what}: {dup.size} duplicate slice position(s) along the normal "
                         f"(at {at} mm): several stacks, echoes or time points in one "
                         "series cannot be read as one volume")
    spacing = float(np.median(diffs))
    if np.any(np.abs(diffs - spacing) > _SPACING_RTOL * spacing + 1e-4):
        ratio = diffs / spacing
        if np.allclose(ratio, np.round(ratio), atol=0.05) and np.all(np.round(ratio) >= 1):
            missing = [d[i] + m * spacing for i, r in enumerate(np.round(ratio).astype(int))
                       for m in range(1, r)]
            shown = ", ".join(f"{x:.4g}" for x in missing[:8])
            more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
            raise InputError(f"{what}: {len(missing)} slice(s) missing at {shown}{more} mm "
                             f"along the normal (spacing {spacing:.4g} mm); "
                             "the series is incomplete")
        raise InputError(f"{what}: uneven slice spacing ({diffs.min():.4g} to "
                         f"{diffs.max():.4g} mm); cannot be read as one regular volume")
    # Step between slices: the fitted line through the positions. It equals normal*spacing
    # unless the stack is sheared (gantry tilt), in which case the measured step is the
    # truth and the affine is not orthogonal.
    k = np.arange(len(order))
    P = pos[order]
    step_vec = np.polyfit(k, P, 1)[0]
    in_plane = step_vec - normal * np.dot(step_vec, normal)
    if np.linalg.norm(in_plane) > 1e-3 * spacing + 1e-4:
        warnings.warn(f"{what}: slice positions are sheared relative to the slice normal "
                      "(gantry tilt?); the affine keeps the measured step", stacklevel=3)
        A[:3, 2] = step_vec
    else:
        A[:3, 2] = normal * spacing
    return order, A, True


# ---------------------------------------------------------------------------- pixels


def _pixels(ds: Dataset, path: Path) -> np.ndarray:
    """The decoded pixel array of one file, or an InputError naming the missing decoder."""
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    try:
        with captured_logs("pydicom"):  # decoder failures are logged too: one line only
            return np.asarray(ds.pixel_array)
    except (RuntimeError, NotImplementedError, ImportError) as exc:
        msg = str(exc)
        name = pydicom.uid.UID(ts).name if ts else "this transfer syntax"
        if "exceptions were raised" in msg:  # decoders are installed; every one failed
            lines = [ln.strip() for ln in msg.splitlines()[1:] if ln.strip()] or [msg]
            raise InputError(f"{path}: corrupt '{name}' pixel data (the installed decoders "
                             f"fail: {lines[0][:200]})") from exc
        if ("missing dependencies" in msg or "No pixel data decoders" in msg
                or isinstance(exc, NotImplementedError | ImportError)):
            raise InputError(f"{path}: no decoder installed for '{name}' pixel data; "
                             f"install one with: {decoder_hint(ts)}") from exc
        first = msg.splitlines()[0] if msg else type(exc).__name__
        raise InputError(f"{path}: cannot decode pixel data ({first})") from exc
    except (ValueError, AttributeError, KeyError, EOFError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: cannot decode pixel data ({first})") from exc


def _dtype_for(stored: np.dtype, frames: list[_Frame], lo: float, hi: float) -> np.dtype:
    """The smallest sensible dtype that holds the rescaled values exactly."""
    if np.issubdtype(stored, np.floating):
        return np.dtype(np.float32) if stored.itemsize <= 4 else np.dtype(np.float64)
    integral = all(float(fr.slope).is_integer() and float(fr.intercept).is_integer()
                   for fr in frames)
    if not integral:
        return np.dtype(np.float32)
    for cand in (stored, np.dtype(np.int16), np.dtype(np.int32)):
        info = np.iinfo(cand)
        if info.min <= lo and hi <= info.max:
            return np.dtype(cand)
    return np.dtype(np.float64)


def _assemble(frames: list[_Frame], datasets: dict[Path, Dataset], what: str,
              header: Dataset | None, path: Path) -> Volume:
    """Order, decode, rescale and stack the frames; ``header`` None means the dataset of
    the first slice along the normal (the writer's template)."""
    order, A_lps, has_geometry = _geometry(frames, what)
    if header is None:
        header = datasets[frames[order[0]].file]
    multi: dict[Path, np.ndarray] = {}  # decoded multi-frame arrays, decoded once
    slices = []
    for i in order:
        fr = frames[i]
        ds = datasets[fr.file]
        if _is_multiframe(ds):
            if fr.file not in multi:
                arr = _pixels(ds, fr.file)
                spp = int(ds.get("SamplesPerPixel", 1) or 1)
                if arr.ndim == (3 if spp > 1 else 2):  # NumberOfFrames = 1
                    arr = arr[None]
                multi[fr.file] = arr
            slices.append(multi[fr.file][fr.index])
        else:
            slices.append(_pixels(ds, fr.file))
    shapes = {s.shape for s in slices}
    if len(shapes) > 1:
        raise InputError(f"{what}: slices have different sizes {sorted(shapes)}")
    stack = np.stack(slices)  # (K, rows, cols[, samples])
    stored = stack.dtype
    slopes = np.array([frames[i].slope for i in order])
    inters = np.array([frames[i].intercept for i in order])
    spp = int(header.get("SamplesPerPixel", 1) or 1)
    identity = np.all(slopes == 1.0) and np.all(inters == 0.0)
    if spp == 1 and not identity:
        s = slopes[:, None, None]
        b = inters[:, None, None]
        lo = float(np.min(stack.min(axis=(1, 2)) * slopes + inters)) if stack.size else 0.0
        hi = float(np.max(stack.max(axis=(1, 2)) * slopes + inters)) if stack.size else 0.0
        lo, hi = min(lo, hi), max(lo, hi)
        dtype = _dtype_for(stored, [frames[i] for i in order], lo, hi)
        calc = np.float64 if dtype.itemsize >= 8 or np.issubdtype(dtype, np.integer) \
            else np.float32
        data = stack.astype(calc) * s.astype(calc) + b.astype(calc)
        data = np.rint(data).astype(dtype) if np.issubdtype(dtype, np.integer) \
            else data.astype(dtype)
    else:
        dtype = stored
        data = stack
    # (K, rows, cols[, C]) -> (cols, rows, K[, C]) = (I, J, K[, C])
    data = np.ascontiguousarray(np.moveaxis(data, (0, 1, 2), (2, 1, 0)))
    meta = {
        "format": "dicom",
        "path": str(path),
        "dtype": str(np.dtype(dtype)),
        "stored_dtype": str(np.dtype(stored)),
        "dicom": _dicom_meta(header, [frames[i] for i in order], has_geometry),
    }
    meta["dicom"]["affine_lps"] = A_lps
    return Volume(data=data, affine=ras_to_lps(A_lps), meta=meta)


# ---------------------------------------------------------------------------- meta


_MULTIFRAME_ONLY = (
    "PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence",
    "DimensionIndexSequence", "DimensionOrganizationSequence", "DimensionOrganizationType",
    "NumberOfFrames", "FrameIncrementPointer", "ConcatenationUID",
    "ConcatenationFrameOffsetNumber", "InConcatenationNumber", "InConcatenationTotalNumber",
    "SOPInstanceUIDOfConcatenationSource", "RepresentativeFrameNumber",
)


def _dicom_meta(header: Dataset, frames: list[_Frame], has_geometry: bool) -> dict[str, Any]:
    """What a derived-series writer needs: a pixel-free header template (the first slice,
    multi-frame structure removed), the source SOP instances in slice order, and the
    series identity."""
    template = Dataset()
    for elem in header:
        if elem.keyword in PIXEL_KEYWORDS or elem.keyword in _MULTIFRAME_ONLY:
            continue
        template.add(copy.deepcopy(elem))
    if hasattr(header, "file_meta"):
        template.file_meta = copy.deepcopy(header.file_meta)
    return {
        "template": template,
        "sources": [fr.source for fr in frames],
        "files": sorted({str(fr.file) for fr in frames}),
        "multiframe": _is_multiframe(header),
        "has_geometry": has_geometry,
        "sop_class_uid": str(header.get("SOPClassUID", "")),
        "series_instance_uid": str(header.get("SeriesInstanceUID", "")),
        "study_instance_uid": str(header.get("StudyInstanceUID", "")),
        "frame_of_reference_uid": str(header.get("FrameOfReferenceUID", "")),
        "series_number": header.get("SeriesNumber"),
        "series_description": str(header.get("SeriesDescription", "")),
        "modality": str(header.get("Modality", "")),
        "slice_thickness": frames[0].thickness,
        # (slope, intercept) shared by every frame, None when they differ (e.g. PET)
        "rescale": ((frames[0].slope, frames[0].intercept)
                    if len({(fr.slope, fr.intercept) for fr in frames}) == 1 else None),
        "transfer_syntax": str(getattr(getattr(header, "file_meta", None),
                                       "TransferSyntaxUID", "") or ""),
    }


# ---------------------------------------------------------------------------- entry points


def _read_file(path: Path) -> Volume:
    ds = _dcmread(path)
    if ds is None:
        raise InputError(f"{path} is not a DICOM file")
    if not _has_pixels(ds):
        raise InputError(f"{path}: DICOM object without pixel data "
                         f"(SOP class {_sop_name(ds)}); not an image")
    frames = _multi_frames(ds, path) if _is_multiframe(ds) else [_single_frame(ds, path)]
    return _assemble(frames, {path: ds}, str(path), ds, path)


def _sop_name(ds: Dataset) -> str:
    uid = ds.get("SOPClassUID") or ds.get("MediaStorageSOPClassUID") or getattr(
        getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", None)
    if not uid:
        return "unknown"
    try:
        return str(pydicom.uid.UID(str(uid)).name)
    except Exception:
        return str(uid)


def _read_dir(root: Path, series: str | None) -> Volume:
    groups: dict[str, list[tuple[Path, Dataset]]] = {}
    skipped: list[str] = []
    for f in _iter_files(root):
        ds = _dcmread(f)
        if ds is None:
            continue  # not DICOM: ignored
        if not _has_pixels(ds):
            skipped.append(f"{f.name} ({_sop_name(ds)})")
            continue
        groups.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((f, ds))
    if skipped:
        shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more"
                                          if len(skipped) > 5 else "")
        warnings.warn(f"{root}: skipped {len(skipped)} DICOM object(s) without pixel data: "
                      f"{shown}", stacklevel=3)
    if not groups:
        raise InputError(f"{root}: no DICOM image found (empty directory, or only non-image "
                         "DICOM objects)")

    def listing() -> str:
        return "; ".join(f"{uid or '(no UID)'} '{items[0][1].get('SeriesDescription', '')}' "
                         f"({_n_slices(items)} slices)" for uid, items in groups.items())

    if series is not None:
        chosen = [u for u in groups if u == series]
        if not chosen:
            chosen = [u for u, items in groups.items()
                      if str(items[0][1].get("SeriesNumber", "")) == str(series)]
        if len(chosen) != 1:
            raise InputError(f"{root}: no series '{series}' (by SeriesInstanceUID or unique "
                             f"SeriesNumber); the directory holds: {listing()}")
        uid = chosen[0]
    elif len(groups) > 1:
        raise InputError(f"{root} holds {len(groups)} series; pick one with --series UID: "
                         f"{listing()}")
    else:
        uid = next(iter(groups))
    items = groups[uid]
    what = f"{root} series {uid}"
    multi = [f for f, ds in items if _is_multiframe(ds)]
    if multi:
        if len(items) > 1:
            raise InputError(f"{what}: {len(items)} files including multi-frame objects; "
                             f"read one multi-frame file at a time (e.g. {multi[0]})")
        f, ds = items[0]
        return _assemble(_multi_frames(ds, f), {f: ds}, what, ds, root)
    frames = [_single_frame(ds, f) for f, ds in items]
    return _assemble(frames, {f: ds for f, ds in items}, what, None, root)


def _n_slices(items: list[tuple[Path, Dataset]]) -> int:
    return sum(int(ds.get("NumberOfFrames", 1) or 1) for _, ds in items)


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
