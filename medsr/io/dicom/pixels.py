"""DICOM pixel values: decoding and rescale when reading, encoding when writing.

Reading: the pixel data are decoded by pydicom (a missing decoder is one line naming the
pip command that installs it), RescaleSlope/Intercept are applied per frame, and the
Volume's dtype is the smallest that holds the rescaled values exactly.

Writing: pixels are stored as the source stored them (PixelRepresentation,
BitsAllocated/BitsStored, RescaleSlope/Intercept kept; values beyond that range clipped
and counted by :func:`medsr.io.dtype.cast_to_dtype`) unless ``--dtype`` asks for another
integer type, or for "float": 16-bit integers with a rescale fitted to the values
(:func:`encode_intensities`), which loses nothing to clipping.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from medsr.errors import InputError, UserError
from medsr.io.dicom.frames import Frame
from medsr.io.dicom.header import CT_IMAGE, MR_IMAGE, PET_IMAGE, ds_str
from medsr.io.dtype import cast_to_dtype
from medsr.io.formats import captured_logs
from medsr.volume import Volume

# ---------------------------------------------------------------------------- reading

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


def decoder_hint(transfer_syntax: str) -> str:
    """The pip command that installs a pydicom decoder for ``transfer_syntax``."""
    for prefix, hint in _DECODER_HINTS.items():
        if str(transfer_syntax).startswith(prefix):
            return hint
    return _DEFAULT_HINT


def decode_pixels(ds: Dataset, path: Path) -> np.ndarray:
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


def _dtype_for(stored: np.dtype, frames: list[Frame], lo: float, hi: float) -> np.dtype:
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


def rescale(stack: np.ndarray, frames: list[Frame], samples_per_pixel: int
            ) -> tuple[np.ndarray, np.dtype]:
    """Apply each frame's RescaleSlope/Intercept to the stored ``stack`` (K, rows, cols[,
    samples]), ``frames`` in the same order; returns (values, dtype). Colour, and an
    identity rescale, keep the stored array and dtype."""
    stored = stack.dtype
    slopes = np.array([fr.slope for fr in frames])
    inters = np.array([fr.intercept for fr in frames])
    identity = np.all(slopes == 1.0) and np.all(inters == 0.0)
    if samples_per_pixel != 1 or identity:
        return stack, stored
    s = slopes[:, None, None]
    b = inters[:, None, None]
    lo = float(np.min(stack.min(axis=(1, 2)) * slopes + inters)) if stack.size else 0.0
    hi = float(np.max(stack.max(axis=(1, 2)) * slopes + inters)) if stack.size else 0.0
    lo, hi = min(lo, hi), max(lo, hi)
    dtype = _dtype_for(stored, frames, lo, hi)
    calc = np.float64 if dtype.itemsize >= 8 or np.issubdtype(dtype, np.integer) \
        else np.float32
    data = stack.astype(calc) * s.astype(calc) + b.astype(calc)
    data = np.rint(data).astype(dtype) if np.issubdtype(dtype, np.integer) \
        else data.astype(dtype)
    return data, dtype


# ---------------------------------------------------------------------------- writing

INTEGER_DTYPES = ("uint8", "int8", "uint16", "int16")  # what --dtype may ask of DICOM


def encode_intensities(data: np.ndarray) -> tuple[np.ndarray, str, str]:
    """Integer pixels and (slope, intercept) Decimal Strings with
    stored * slope + intercept == data up to quantisation; nothing is clipped.

    Integer-valued data that fits int16 (or uint16) is stored exactly with slope 1;
    anything else is spread over the int16 range.
    """
    data = np.asarray(data)
    if np.issubdtype(data.dtype, np.floating):
        bad = ~np.isfinite(data)
        if bad.any():
            warnings.warn(f"{int(bad.sum())} non-finite voxels written as 0", stacklevel=3)
            data = np.where(bad, 0, data)
    if data.size == 0:
        return data.astype(np.int16), "1", "0"
    lo, hi = float(data.min()), float(data.max())
    integral = (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.bool_)
                or bool(np.all(data == np.rint(data))))
    if integral:
        if -32768 <= lo and hi <= 32767:
            return np.rint(data).astype(np.int16), "1", "0"
        if 0 <= lo and hi <= 65535:
            return np.rint(data).astype(np.uint16), "1", "0"
    if hi == lo:
        inter = ds_str(lo)
        return np.zeros(data.shape, np.int16), "1", inter
    # The DS string keeps >= 10 significant digits: the 1e-9 margin keeps it >= the exact
    # slope, so [lo, hi] fits the int16 range; the clip only absorbs rounding.
    slope_s = ds_str((hi - lo) / 65534.0 * (1 + 1e-9))
    s = float(slope_s)
    inter_s = ds_str(lo + 32767.0 * s)
    b = float(inter_s)
    stored = cast_to_dtype((data.astype(np.float64) - b) / s, np.int16, warn=False)
    return stored, slope_s, inter_s


def dicom_dtype(dtype: str | None) -> str | None:
    """``--dtype`` for DICOM output: an integer pixel type of :data:`INTEGER_DTYPES`,
    ``"float"`` for any float dtype (a 16-bit integer with a rescale that keeps precision)
    or None (the source's representation); anything else is a one-line UserError."""
    if dtype is None:
        return None
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = ""
    if name in INTEGER_DTYPES:
        return name
    if name.startswith("float"):
        return "float"
    raise UserError(f"DICOM output stores {', '.join(INTEGER_DTYPES[:-1])} or "
                    f"{INTEGER_DTYPES[-1]} pixels, or a float dtype (as 16-bit integers with a "
                    f"rescale that keeps precision); --dtype {dtype} is not possible")


def source_encoding(vol: Volume) -> tuple[np.dtype, int, float, float] | None:
    """(pixel dtype, BitsStored, slope, intercept) of the DICOM series ``vol`` came from;
    None when there is none to keep (not DICOM, float or colour pixels, or a rescale that
    differs between slices)."""
    info = vol.meta.get("dicom")
    src = info.get("template") if isinstance(info, dict) else None
    if src is None:
        return None
    stored = vol.meta.get("stored_dtype")
    if stored is not None and not np.issubdtype(np.dtype(stored), np.integer):
        return None
    try:
        alloc = int(src.get("BitsAllocated"))
        bits = int(src.get("BitsStored", alloc))
        signed = int(src.get("PixelRepresentation", 0))
        samples = int(src.get("SamplesPerPixel", 1) or 1)
    except (TypeError, ValueError):
        return None
    if alloc not in (8, 16, 32) or not 1 < bits <= alloc or signed not in (0, 1) \
            or samples != 1:
        return None
    if "rescale" in info:
        if info["rescale"] is None:
            return None
        slope, inter = (float(v) for v in info["rescale"])
    else:
        try:
            slope = float(src.get("RescaleSlope", 1) or 1)
            inter = float(src.get("RescaleIntercept", 0) or 0)
        except (TypeError, ValueError):
            return None
    return np.dtype(f"{'i' if signed else 'u'}{alloc // 8}"), bits, slope, inter


def encode_pixels(data: np.ndarray, dtype: str | None = None,
                  source: tuple[np.dtype, int, float, float] | None = None
                  ) -> tuple[np.ndarray, str, str, int]:
    """Grey values -> (stored integers, slope, intercept Decimal Strings, BitsStored).

    ``dtype`` None keeps the ``source`` encoding (:func:`source_encoding`); an integer
    ``dtype`` stores that type with the source's rescale (1, 0 without a source); "float"
    (or None without a source) fits a rescale to the values (:func:`encode_intensities`).
    Values outside the stored range after rescale are clipped, with a warning that counts
    them."""
    kind = dicom_dtype(dtype)
    if kind == "float" or (kind is None and source is None):
        stored, slope_s, inter_s = encode_intensities(data)
        return stored, slope_s, inter_s, stored.dtype.itemsize * 8
    if kind is None:
        pix, bits, slope, inter = source  # type: ignore[misc]
    else:
        pix = np.dtype(kind)
        bits = pix.itemsize * 8
        slope, inter = (source[2], source[3]) if source is not None else (1.0, 0.0)
    signed = np.issubdtype(pix, np.signedinteger)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    slope_s, inter_s = ds_str(slope), ds_str(inter)
    s, b = float(slope_s), float(inter_s)
    values = np.asarray(data)
    if (s, b) != (1.0, 0.0):
        values = (values.astype(np.float64) - b) / s
    vlo, vhi = sorted((lo * s + b, hi * s + b))
    what = (f"DICOM {bits}-bit {'signed' if signed else 'unsigned'} pixel (RescaleSlope "
            f"{slope_s}, RescaleIntercept {inter_s}: values {vlo:g} to {vhi:g})")
    return cast_to_dtype(values, pix, bounds=(lo, hi), what=what), slope_s, inter_s, bits


def pixel_module(ds: Dataset, stored: np.ndarray, rgb: bool, slope: str, inter: str,
                 photometric: str, bits_stored: int | None = None) -> None:
    """Set the Image Pixel module of one slice's header for its ``stored`` pixels: samples,
    photometric interpretation, rescale (grey only) and the bit layout."""
    ds.SamplesPerPixel = 3 if rgb else 1
    if rgb:
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
    else:
        ds.PhotometricInterpretation = photometric
        ds.RescaleIntercept = inter
        ds.RescaleSlope = slope
        if "RescaleType" not in ds and str(ds.SOPClassUID) not in (CT_IMAGE, MR_IMAGE,
                                                                    PET_IMAGE):
            ds.RescaleType = "US"
    bits = stored.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = bits_stored or bits
    ds.HighBit = (bits_stored or bits) - 1
    ds.PixelRepresentation = 1 if np.issubdtype(stored.dtype, np.signedinteger) else 0
