"""Which format a path holds (for reading) or asks for (for writing), and default outputs.

Format names: ``'nifti'`` (.nii, .nii.gz), ``'mgh'`` (.mgh, .mgz), ``'dicom'`` (a
directory of DICOM files or one DICOM file), ``'tiff'`` (.tif/.tiff stack), ``'image'``
(.png/.jpg/.jpeg/.bmp, one 2D image) and ``'frames'`` (a directory of 2D images with one
common extension). Detection trusts a known suffix and otherwise sniffs magic bytes, so a
file named without an extension still opens.
"""

from __future__ import annotations

import contextlib
import logging
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

# Voxel sizes (in the file's unit) outside this range are refused wherever they enter
# (headers, --spacing, --input-spacing): no scan has them, and the grids they imply overflow.
VOXEL_SIZE_RANGE = (1e-6, 1e6)

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


# Formats whose magic bytes identify them: a suffix that disagrees is refused.
_SNIFFABLE = ("tiff", "image", "dicom", "nifti")
_KIND_NAMES = {"tiff": "TIFF", "image": "PNG/JPEG/BMP", "dicom": "DICOM", "nifti": "NIfTI"}


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
    entries = [p for p in d.iterdir() if not p.name.startswith(".")]
    for p in entries:  # a FIFO would block, a device never ends: refuse, do not skip
        if p.is_fifo() or p.is_socket() or p.is_block_device() or p.is_char_device():
            raise InputError(f"{p}: not a regular file (a FIFO, socket or device) in the "
                             f"input directory {d}; remove it")
    files = [p for p in entries if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES]
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
    if not p.is_file():  # a FIFO would block forever, a device never ends
        raise InputError(f"{p}: not a regular file (a FIFO, socket or device); give an image "
                         "file or a directory")
    named, sniffed = suffix_format(p), _sniff(p)
    if named in _SNIFFABLE and sniffed in _SNIFFABLE and named != sniffed:
        raise InputError(f"{p}: named {_suffix(p)} but holds {_KIND_NAMES[sniffed]} data; "
                         "rename it to match its content")
    fmt = named or sniffed
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


def check_voxel_size(path: str | os.PathLike, spacing, what: str = "voxel size") -> None:
    """Refuse a voxel size that is not finite or lies outside :data:`VOXEL_SIZE_RANGE`."""
    import math

    values = [float(v) for v in spacing]
    lo, hi = VOXEL_SIZE_RANGE
    if not all(math.isfinite(v) and lo <= v <= hi for v in values):
        shown = ", ".join(f"{v:g}" for v in values)
        raise InputError(f"{path}: invalid {what} [{shown}] (must be finite, from {lo:g} to "
                         f"{hi:g})")


def check_declared_size(path: str | os.PathLike, n_voxels: int, limit: int | None) -> None:
    """Refuse a file whose header declares more than ``limit`` voxels, before decoding.

    The limit is ``medsr infer``'s ``--max-output-voxels``: an output is never smaller than
    its input, so a larger input could not be processed anyway.
    """
    if limit is not None and n_voxels > limit:
        raise InputError(f"{path}: the header declares {n_voxels:,} voxels, above the limit "
                         f"of {limit:,}; raise it with --max-output-voxels")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.WARNING:
            return
        text = " ".join(record.getMessage().split())
        if text not in self.messages:
            self.messages.append(text)


@contextlib.contextmanager
def captured_logs(*names: str):
    """Hold what third-party readers log (nibabel, tifffile, pydicom) instead of printing it.

    Their records would otherwise print as stray ``medsr: error:`` lines beside medsr's
    own one line (or on a run that succeeds). Yields the list of WARNING+ messages; the
    caller reports them (as warnings when the read succeeds) or drops them (when it fails
    with its own error line).
    """
    handler = _Collect()
    saved = []
    for name in names:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.propagate))
        logger.handlers = [handler]
        logger.propagate = False
    try:
        yield handler.messages
    finally:
        for logger, handlers, propagate in saved:
            logger.handlers = handlers
            logger.propagate = propagate
