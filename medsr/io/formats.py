"""Which format a path holds (for reading) or asks for (for writing), and default outputs.

Format names: ``'nifti'`` (.nii, .nii.gz), ``'mgh'`` (.mgh, .mgz), ``'dicom'`` (a
directory of DICOM files or one DICOM file), ``'tiff'`` (.tif/.tiff stack), ``'image'``
(.png/.jpg/.jpeg/.bmp, one 2D image) and ``'frames'`` (a directory of 2D images with one
common extension). Detection trusts a known suffix and otherwise sniffs magic bytes, so a
file named without an extension still opens.
"""

from __future__ import annotations

import os
from pathlib import Path

from medsr.errors import InputError, UserError

FORMATS = ("nifti", "mgh", "dicom", "tiff", "image", "frames")

NIFTI_SUFFIXES = (".nii.gz", ".nii")
MGH_SUFFIXES = (".mgz", ".mgh")
TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
FRAME_SUFFIXES = IMAGE_SUFFIXES + TIFF_SUFFIXES
_JPEG_FAMILY = {".jpeg": ".jpg"}

OUTPUT_SUFFIXES = ".nii, .nii.gz, .mgz, .mgh, .tif, .tiff, .png, .jpg, .bmp"


def _suffix(path: Path) -> str:
    """Lower-case suffix, with ``.nii.gz`` kept whole."""
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return path.suffix.lower()


def suffix_format(path: str | os.PathLike) -> str | None:
    """The format a file name's suffix announces, or None."""
    suf = _suffix(Path(path))
    if suf in NIFTI_SUFFIXES:
        return "nifti"
    if suf in MGH_SUFFIXES:
        return "mgh"
    if suf in TIFF_SUFFIXES:
        return "tiff"
    if suf in IMAGE_SUFFIXES:
        return "image"
    if suf == ".dcm":
        return "dicom"
    return None


def _sniff(path: Path) -> str | None:
    """Format from the first bytes of a file (for names without a known suffix)."""
    try:
        with open(path, "rb") as f:
            head = f.read(544)
    except OSError:
        return None
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:8] == b"\x89PNG\r\n\x1a\n" or head[:3] == b"\xff\xd8\xff" or head[:2] == b"BM":
        return "image"
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
        return "nifti"
    if len(head) >= 8 and head[4:8] in (b"n+2\x00", b"ni2\x00"):
        return "nifti"
    return None


def natural_key(name: str) -> list:
    """Sort key putting frame2 before frame10 (digit runs compare as numbers)."""
    import re

    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def frame_files(directory: str | os.PathLike) -> list[Path]:
    """The image files of a frames folder in natural order (empty if it holds none).

    Hidden files and files without an image suffix (notes, Thumbs.db) are ignored; images
    with different extensions in one folder are an error (.jpg and .jpeg count as one).
    """
    d = Path(directory)
    files = [p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")
             and p.suffix.lower() in FRAME_SUFFIXES]
    kinds = {_JPEG_FAMILY.get(p.suffix.lower(), p.suffix.lower()) for p in files}
    if len(kinds) > 1:
        raise InputError(f"{d} mixes image types ({', '.join(sorted(kinds))}); "
                         "a frames folder needs one common extension")
    return sorted(files, key=lambda p: natural_key(p.name))


def _is_dicom_dir(d: Path) -> bool:
    try:
        from medsr.io.dicom import is_dicom_dir
    except ImportError:  # the DICOM module is optional at import time
        return any(_sniff(p) == "dicom" for p in d.rglob("*") if p.is_file())
    return bool(is_dicom_dir(d))


def detect_format(path: str | os.PathLike) -> str:
    """'nifti' | 'mgh' | 'dicom' | 'tiff' | 'image' | 'frames' for an existing input.

    Raises InputError for a missing path, an empty or image-less directory, or a file
    whose suffix and content match no supported format.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"input {p} does not exist")
    if p.is_dir():
        if not os.access(p, os.R_OK | os.X_OK):
            raise InputError(f"cannot read directory {p} (permission denied)")
        if not any(True for _ in p.iterdir()):
            raise InputError(f"input directory {p} is empty")
        frames = frame_files(p)
        others = [q for q in p.iterdir() if not q.name.startswith(".") and q not in frames]
        if frames and not others:
            return "frames"
        if _is_dicom_dir(p):  # DICOM files (perhaps beside a stray thumbnail.jpg)
            return "dicom"
        if frames:
            return "frames"
        raise InputError(f"{p} holds neither DICOM files nor image frames "
                         f"({', '.join(FRAME_SUFFIXES)})")
    fmt = suffix_format(p) or _sniff(p)
    if fmt is None:
        raise InputError(f"{p}: unknown image format; supported: .nii, .nii.gz, .mgz, .mgh, "
                         ".tif, .tiff, .png, .jpg, .bmp, DICOM files or directories, "
                         "folders of frames")
    return fmt


def output_format(path: str | os.PathLike, source_format: str | None) -> str:
    """The format :func:`medsr.io.write` produces for ``path``.

    The suffix decides; a path without a suffix is a DICOM series when the source was
    DICOM and a frames folder when the source was frames, otherwise a UserError.
    """
    p = Path(path)
    fmt = suffix_format(p)
    if fmt == "dicom":
        raise UserError(f"{p}: a DICOM output is a directory; give a path without a suffix")
    if fmt is not None:
        return fmt
    if p.suffix == "" or p.is_dir():
        if source_format == "dicom":
            return "dicom"
        if source_format == "frames":
            return "frames"
        raise UserError(f"output {p} has no image suffix; use one of {OUTPUT_SUFFIXES} "
                        "(a directory is allowed for DICOM and frames inputs only)")
    raise UserError(f"output {p}: unknown suffix {p.suffix!r}; use one of {OUTPUT_SUFFIXES}")


def _stem(path: Path) -> str:
    name = path.name
    low = name.lower()
    for suf in (".ome.tiff", ".ome.tif", ".nii.gz"):
        if low.endswith(suf):
            return name[: -len(suf)]
    return path.stem


def default_output_path(input_path: str | os.PathLike, source_format: str) -> Path:
    """Where ``medsr infer`` writes when no -o is given: beside the input, ``_sr`` added.

    nifti -> <stem>_sr.nii.gz, mgh -> <stem>_sr.mgz, tiff -> <stem>_sr.tif,
    image -> <stem>_sr.png, dicom or frames directory -> <dir>_sr/ (a single DICOM file
    -> <stem>_sr/).
    """
    p = Path(input_path)
    if p.is_dir() or source_format in ("dicom", "frames"):
        base = p.resolve() if p.name in ("", ".", "..") else p
        stem = base.name if base.is_dir() or source_format == "frames" else _stem(base)
        return base.parent / f"{stem}_sr"
    suffix = {"nifti": ".nii.gz", "mgh": ".mgz", "tiff": ".tif", "image": ".png"}.get(source_format)
    if suffix is None:
        raise UserError(f"unknown source format {source_format!r}")
    return p.parent / f"{_stem(p)}_sr{suffix}"
