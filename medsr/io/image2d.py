"""2D pictures (PNG/JPEG/BMP) and folders of frames, through Pillow (and tifffile).

Axis convention: i = row, j = column, k = frame. One picture is (rows, cols, 1), or
(rows, cols, 1, C) with its colour kept (C = 2 grey+alpha, 3 RGB, 4 RGBA; palette images
become RGB/RGBA; the JPEG EXIF orientation is applied, as viewers show it). A frames
folder holds pictures with one common extension, stacked along k in natural order of
their names (frame2 before frame10): (rows, cols, n_frames[, C]). The affine is the
identity (spacing 1 pixel, ``meta['unit']`` None).

meta keys: ``format`` ('image' or 'frames'), ``path``, ``dtype`` (uint8, uint16 ...),
``frame_names`` and ``frame_suffix`` (frames only).

Writing is the inverse: PNG keeps 8 and 16 bit (16-bit only for grey), JPEG and BMP are
8-bit; a float volume needs an explicit integer ``dtype`` (values are rounded and
clipped, not rescaled). A frames folder is written with the input's file names when the
frame count is unchanged, else ``frame_0000.png``...
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from medsr.errors import InputError, OutputError, UserError
from medsr.io.dtype import cast_to_dtype
from medsr.io.formats import check_declared_size, frame_files
from medsr.volume import Volume

_KEEP_MODES = ("L", "LA", "RGB", "RGBA", "I;16", "I", "F")
_CHANNEL_MODES = {2: "LA", 3: "RGB", 4: "RGBA"}


@contextlib.contextmanager
def _pillow_limit(checked: bool):
    """Pillow's own decompression-bomb limit, lifted where medsr checked the size itself."""
    saved = Image.MAX_IMAGE_PIXELS
    if checked:
        Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def declared_pixels(path: str | os.PathLike) -> int:
    """Pixels (times samples/pages) a picture's header declares, without decoding it."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            with tifffile.TiffFile(path) as tif:
                if not tif.series:
                    raise InputError(f"{path}: TIFF file without images")
                return math.prod(tif.series[0].shape)
        with _pillow_limit(True), Image.open(path) as img:
            return int(img.width) * int(img.height)
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError,
            tifffile.TiffFileError) as exc:
        raise InputError(f"{path}: not a readable image ({str(exc).splitlines()[0]})") from exc


_SUFFIX_CONTENT = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP"}


def _check_content(path: Path, found: str | None) -> None:
    """A picture's content must match its suffix, as for .tif/.nii (formats.detect_format)."""
    want = _SUFFIX_CONTENT.get(path.suffix.lower())
    if want is not None and found != want:
        raise InputError(f"{path}: named {path.suffix} but holds {found or 'unknown'} data; "
                         "rename it to match its content")


def _picture(path: Path, checked: bool = False) -> np.ndarray:
    """One picture as (rows, cols) or (rows, cols, C); InputError if unreadable.

    ``checked``: the caller checked the declared size, so Pillow's own limit is lifted.
    """
    if ImageFile.LOAD_TRUNCATED_IMAGES:  # set by another library: medsr wants it off
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            arr = tifffile.imread(path)
            if arr.ndim not in (2, 3):
                raise InputError(f"{path}: a frame must be a single 2D picture, got shape "
                                 f"{arr.shape}")
            return arr
        with _pillow_limit(checked), Image.open(path) as img:
            _check_content(path, img.format)
            if img.format == "PNG":  # chunk CRCs and IEND: a cut file is refused, not padded
                with Image.open(path) as whole:
                    whole.verify()
            img.load()  # the full decode (ImageFile.LOAD_TRUNCATED_IMAGES stays off)
            img = ImageOps.exif_transpose(img)
            if img.mode == "1":
                img = img.convert("L")
            elif img.mode in ("P", "PA"):
                img = img.convert("RGBA" if "transparency" in img.info or img.mode == "PA"
                                  else "RGB")
            elif img.mode not in _KEEP_MODES and not img.mode.startswith("I;16"):
                img = img.convert("RGB")
            arr = np.asarray(img)
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        raise InputError(f"{path}: the header declares more pixels than Pillow decodes "
                         f"unchecked ({str(exc).splitlines()[0]})") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError,
            tifffile.TiffFileError) as exc:
        raise InputError(f"{path}: not a readable image ({str(exc).splitlines()[0]})") from exc
    if arr.size == 0:
        raise InputError(f"{path}: empty image")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def read_image(path: str | os.PathLike, max_voxels: int | None = None) -> Volume:
    """One PNG/JPEG/BMP picture as a (rows, cols, 1[, C]) Volume.

    ``max_voxels`` refuses a header declaring more pixels, before decoding.
    """
    path = Path(path)
    if max_voxels is not None:
        check_declared_size(path, declared_pixels(path), max_voxels)
    arr = _picture(path, checked=max_voxels is not None)
    data = arr[:, :, None] if arr.ndim == 2 else arr[:, :, None, :]
    meta = {"format": "image", "path": str(path), "dtype": arr.dtype.name, "unit": None}
    return Volume(np.ascontiguousarray(data), np.eye(4), meta)


def read_frames(path: str | os.PathLike, max_voxels: int | None = None) -> Volume:
    """A folder of pictures with one extension, stacked along k in natural name order.

    ``max_voxels`` refuses frames declaring more pixels in all, before decoding.
    """
    path = Path(path)
    files = frame_files(path)  # natural order; mixed extensions are an InputError
    if not files:
        raise InputError(f"{path}: no image frames found")
    if max_voxels is not None:
        for f in files:
            check_declared_size(f, declared_pixels(f) * len(files), max_voxels)
    frames = []
    for f in files:
        arr = _picture(f, checked=max_voxels is not None)
        if frames and (arr.shape != frames[0].shape or arr.dtype != frames[0].dtype):
            raise InputError(f"{path}: frame {f.name} is {arr.shape} {arr.dtype} but "
                             f"{files[0].name} is {frames[0].shape} {frames[0].dtype}")
        frames.append(arr)
    data = np.stack(frames, axis=2)
    meta = {"format": "frames", "path": str(path), "dtype": frames[0].dtype.name,
            "frame_names": [f.name for f in files], "frame_suffix": files[0].suffix.lower(),
            "unit": None}
    return Volume(data, np.eye(4), meta)


def _frame_dtype(vol: Volume, dtype: str | None, suffix: str) -> np.dtype:
    out = np.dtype(dtype or vol.meta.get("dtype") or "uint8")
    if suffix in (".tif", ".tiff"):
        return out
    allowed = ("uint8", "uint16") if suffix == ".png" and vol.channels == 1 else ("uint8",)
    if out.name not in allowed:
        raise UserError(f"{suffix} stores {' or '.join(allowed)} pixels but the data is "
                        f"{out.name}: pass --dtype {allowed[0]} (values are rounded and "
                        "clipped) or write .tif")
    return out


def _save_picture(arr: np.ndarray, path: Path, **options) -> None:
    """Save one (rows, cols[, C]) array; the format follows the suffix."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            tifffile.imwrite(path, arr, photometric="rgb" if arr.ndim == 3 else "minisblack")
            return
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim == 3 and arr.shape[2] not in _CHANNEL_MODES:
            raise UserError(f"{path}: {arr.shape[2]} channels cannot be stored in {suffix} "
                            "(1, 2, 3 or 4); write .tif")
        if suffix in (".jpg", ".jpeg") and arr.ndim == 3 and arr.shape[2] in (2, 4):
            raise UserError(f"{path}: JPEG has no alpha channel; write .png")
        img = Image.fromarray(np.ascontiguousarray(arr))
        if suffix in (".jpg", ".jpeg"):
            options.setdefault("quality", 95)
        img.save(path, **options)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise OutputError(f"cannot write {path}: {str(exc).splitlines()[0]}") from exc


def write_image(vol: Volume, path: str | os.PathLike, *, dtype: str | None = None,
                **options) -> None:
    """Write a one-slice Volume to exactly ``path`` (.png, .jpg, .bmp)."""
    path = Path(path)
    if vol.data.shape[2] != 1:
        raise UserError(f"{path.name}: a volume of {vol.data.shape[2]} slices cannot be one "
                        f"picture; write .tif, or a directory for a frames input")
    data = cast_to_dtype(vol.data, _frame_dtype(vol, dtype, path.suffix.lower()))
    _save_picture(data[:, :, 0], path, **options)


def write_frames(vol: Volume, path: str | os.PathLike, *, dtype: str | None = None,
                 **options) -> None:
    """Write every k slice as one picture into the new directory ``path``."""
    path = Path(path)
    n = vol.data.shape[2]
    names = vol.meta.get("frame_names") or []
    suffix = vol.meta.get("frame_suffix") or ".png"
    if len(names) != n:
        width = max(4, len(str(n - 1)))
        names = [f"frame_{i:0{width}d}{suffix}" for i in range(n)]
    data = cast_to_dtype(vol.data, _frame_dtype(vol, dtype, suffix))
    try:
        path.mkdir()
    except OSError as exc:
        raise OutputError(f"cannot create {path}: {exc.strerror or exc}") from exc
    for k, name in enumerate(names):
        _save_picture(data[:, :, k], path / name, **options)
