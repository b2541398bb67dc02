"""Finding DICOM: which files are DICOM, their headers, and the series of a directory.

A file is DICOM when it has the preamble ('DICM' at byte 128) or, without one (old
scanners), its first elements carry a SOP Class UID. A directory is searched recursively
(hidden entries skipped, names in sorted order); its image files are grouped by
SeriesInstanceUID, and a directory of several series is read only when one is chosen.
Headers are read with the pixel data deferred, so nothing here decodes an image.
"""

from __future__ import annotations

import os
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from medsr.errors import InputError

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

#: image files of one directory by SeriesInstanceUID: (path, header) in file name order
SeriesGroups = dict[str, list[tuple[Path, Dataset]]]


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


def read_header(path: Path) -> Dataset | None:
    """The dataset with pixel data deferred (read on access); None for a non-DICOM file."""
    if not is_dicom_file(path):
        return None
    try:
        return pydicom.dcmread(path, defer_size="4 KB", force=not _has_preamble(path))
    except (InvalidDicomError, EOFError, ValueError, OSError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: corrupt or truncated DICOM file ({type(exc).__name__})") \
            from exc


def has_pixels(ds: Dataset) -> bool:
    """True for an image: the dataset has (integer, float or double) pixel data."""
    return any(k in ds for k in PIXEL_KEYWORDS)


def is_multiframe(ds: Dataset) -> bool:
    """True for an enhanced (functional groups) or classic multi-frame object."""
    return "PerFrameFunctionalGroupsSequence" in ds or int(ds.get("NumberOfFrames", 1) or 1) > 1


def sop_name(ds: Dataset) -> str:
    """The SOP class's name (its UID when pydicom does not know it) for messages."""
    uid = ds.get("SOPClassUID") or ds.get("MediaStorageSOPClassUID") or getattr(
        getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", None)
    if not uid:
        return "unknown"
    try:
        return str(pydicom.uid.UID(str(uid)).name)
    except Exception:
        return str(uid)


def group_series(root: Path) -> tuple[SeriesGroups, list[str]]:
    """The DICOM image files below ``root`` grouped by SeriesInstanceUID, and the DICOM
    objects without pixel data that were left out ("name (SOP class)"). Files that are not
    DICOM are ignored; a corrupt DICOM file is an InputError."""
    groups: SeriesGroups = {}
    skipped: list[str] = []
    for f in _iter_files(root):
        ds = read_header(f)
        if ds is None:
            continue  # not DICOM: ignored
        if not has_pixels(ds):
            skipped.append(f"{f.name} ({sop_name(ds)})")
            continue
        groups.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((f, ds))
    return groups, skipped


def choose_series(root: Path, groups: SeriesGroups, series: str | None) -> str:
    """The SeriesInstanceUID to read: the one ``series`` names (a SeriesInstanceUID or a
    unique SeriesNumber), or the only one; otherwise an InputError listing the series."""

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
        return chosen[0]
    if len(groups) > 1:
        raise InputError(f"{root} holds {len(groups)} series; pick one with --series UID: "
                         f"{listing()}")
    return next(iter(groups))


def _n_slices(items: list[tuple[Path, Dataset]]) -> int:
    return sum(int(ds.get("NumberOfFrames", 1) or 1) for _, ds in items)
