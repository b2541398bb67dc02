"""TIFF stacks through tifffile: plain multi-page, ImageJ hyperstacks and OME-TIFF.

Axis convention (the same as 2D images): ``Volume.data`` is (Y, X, Z) = (row, column,
slice), i.e. i = row, j = column, k = z; every other axis of the file (C channels,
S samples such as RGB, T time points, anything else) is folded, in file order, into the
last axis C. Plain multi-page files (tifffile axes I or Q) are z stacks. meta records
``tiff_axes`` and ``tiff_shape`` (as in the file) so the writer restores them.

Spacing and unit: ImageJ metadata (``spacing`` = z step, XResolution/YResolution =
pixels per ``unit``), else OME ``PhysicalSizeX/Y/Z`` (unit default micrometre), else a
TIFF ResolutionUnit of centimetre or inch (converted to mm), else 1 with ``unit`` None.
The affine is diag(dy, dx, dz) **in the file's unit** (``meta['unit']``: 'um', 'mm',
'nm', ...): microscopists think in micrometres, and a target spacing is given in the
same unit. ``input_spacing`` (see :func:`medsr.io.read`) is in that unit too, in Volume
axis order (y, x, z).

Writing: an ImageJ hyperstack (axes TZCYX / ZYXS, ``spacing``, ``unit`` and the
resolution tags), so Fiji opens it with the right voxel size, for uint8/uint16/float32
data; other dtypes (int16, int32, float64 ...) go to OME-TIFF with PhysicalSize
metadata, which keeps the dtype. ``meta['time']`` picks a time point when reading with
``volume=``.
"""

from __future__ import annotations

import math
import os
import struct
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import tifffile

from medsr.errors import InputError, OutputError, UserError
from medsr.io.dtype import cast_to_dtype
from medsr.io.formats import captured_logs, check_declared_size, check_voxel_size
from medsr.volume import Volume

_IMAGEJ_DTYPES = ("uint8", "uint16", "float32")
_UNIT_ALIASES = {"micron": "um", "µm": "um", "\\u00B5m": "um", "um": "um", "μm": "um",
                 "micrometer": "um", "nm": "nm", "nanometer": "nm", "mm": "mm",
                 "millimeter": "mm", "cm": "cm", "m": "m", "pixel": None, "": None}


def _unit(text) -> str | None:
    if text is None:
        return None
    return _UNIT_ALIASES.get(str(text).strip().lower(), str(text).strip())


def _resolution_spacing(page) -> tuple[float | None, float | None]:
    """(dy, dx) from the Y/XResolution tags (pixels per unit), None where absent."""
    out = []
    for tag in ("YResolution", "XResolution"):
        t = page.tags.get(tag)
        if t is None:
            out.append(None)
            continue
        num, den = t.value if isinstance(t.value, tuple) else (t.value, 1)
        out.append(den / num if num else None)
    return out[0], out[1]


def _ome_spacing(xml: str) -> tuple[list[float | None], str | None]:
    """[dy, dx, dz] and the unit from OME-XML PhysicalSize attributes."""
    pixels = next((el for el in ET.fromstring(xml).iter() if el.tag.endswith("Pixels")), None)
    if pixels is None:
        return [None, None, None], None
    size = [pixels.get(f"PhysicalSize{a}") for a in "YXZ"]
    unit = pixels.get("PhysicalSizeXUnit") or pixels.get("PhysicalSizeYUnit") or "µm"
    return [float(s) if s is not None else None for s in size], _unit(unit)


def _spacing(tif: tifffile.TiffFile) -> tuple[list[float], str | None]:
    """Voxel size (dy, dx, dz) and its unit from ImageJ, OME or TIFF resolution tags."""
    page = tif.pages.first
    if tif.is_imagej:
        ij = tif.imagej_metadata or {}
        dy, dx = _resolution_spacing(page)
        dz = ij.get("spacing")
        return [dy or 1.0, dx or 1.0, float(dz) if dz else 1.0], _unit(ij.get("unit"))
    if tif.is_ome and tif.ome_metadata:
        try:
            (dy, dx, dz), unit = _ome_spacing(tif.ome_metadata)
        except ET.ParseError:
            dy = dx = dz = unit = None
        if any(v is not None for v in (dy, dx, dz)):
            return [dy or 1.0, dx or 1.0, dz or 1.0], unit
    res_unit = page.tags.get("ResolutionUnit")
    scale = {2: 25.4, 3: 10.0}.get(int(res_unit.value) if res_unit is not None else 1)
    dy, dx = _resolution_spacing(page)
    if scale and dy and dx:
        return [dy * scale, dx * scale, 1.0], "mm"
    return [1.0, 1.0, 1.0], None


def _to_volume_array(arr: np.ndarray, axes: str) -> np.ndarray:
    """File array with ``axes`` -> (Y, X, Z) or (Y, X, Z, C), other axes folded into C."""
    axes = axes.replace("I", "Z").replace("Q", "Z")
    if axes.count("Z") > 1:  # e.g. pages of a shaped file: fold extra Z-like axes into C
        first = axes.index("Z")
        axes = axes[:first + 1] + axes[first + 1:].replace("Z", "C")
    if "Z" not in axes:
        arr, axes = arr[..., None], axes + "Z"
    others = [i for i, a in enumerate(axes) if a not in "YXZ"]
    order = [axes.index("Y"), axes.index("X"), axes.index("Z")] + others
    out = np.transpose(arr, order)
    n_c = int(np.prod([arr.shape[i] for i in others], dtype=np.int64)) if others else 1
    out = out.reshape(out.shape[:3] + ((n_c,) if others else ()))
    if out.ndim == 4 and out.shape[3] == 1:
        out = out[..., 0]
    return out


def read_tiff(path: str | os.PathLike, *, volume: int | None = None,
              max_voxels: int | None = None) -> Volume:
    """Read a TIFF stack (see the module docstring); ``volume`` picks a time point.

    ``max_voxels`` refuses a file declaring more voxels (per time point), before decoding.
    What tifffile logs about a damaged file becomes one warning line each when the data
    still read, and is left out of the one error line when they do not.
    """
    path = Path(path)
    try:
        with captured_logs("tifffile") as messages, tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise InputError(f"{path}: TIFF file without images")
            series = tif.series[0]
            axes = series.axes
            if series.dtype is not None and np.dtype(series.dtype).kind == "c":
                raise InputError(f"{path}: complex-valued data ({series.dtype}); medsr "
                                 "super-resolves real images: save the magnitude first")
            check_declared_size(path, math.prod(n for a, n in zip(axes, series.shape)
                                                if a != "T"), max_voxels)
            arr = series.asarray()
            spacing, unit = _spacing(tif)
    except InputError:
        raise
    except (tifffile.TiffFileError, ValueError, TypeError, OSError, EOFError, IndexError,
            KeyError, struct.error, ZeroDivisionError, OverflowError) as exc:
        raise InputError(f"{path}: not a readable TIFF file ({str(exc).splitlines()[0]})"
                         ) from exc
    for text in messages:
        warnings.warn(f"{path}: {text}", stacklevel=2)
    check_voxel_size(path, spacing, "voxel size in the TIFF metadata")
    if "Y" not in axes or "X" not in axes:
        raise InputError(f"{path}: TIFF series without Y and X axes (axes {axes})")
    meta: dict = {"format": "tiff", "path": str(path), "dtype": arr.dtype.name,
                  "tiff_axes": axes, "tiff_shape": tuple(int(n) for n in arr.shape),
                  "unit": unit}
    if volume is not None:
        if "T" not in axes:
            raise UserError(f"--volume {volume}: {path} has no time axis (axes {axes})")
        n_t = arr.shape[axes.index("T")]
        if not 0 <= volume < n_t:
            raise UserError(f"--volume {volume} is out of range: {path} has {n_t} time "
                            f"points (0..{n_t - 1})")
        arr = np.take(arr, volume, axis=axes.index("T"))
        axes = axes.replace("T", "")
        meta.update(tiff_axes=axes, tiff_shape=tuple(int(n) for n in arr.shape), time=volume)
    data = _to_volume_array(arr, axes)
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    affine = np.diag([*spacing, 1.0])
    return Volume(np.ascontiguousarray(data), affine, meta)


def _file_layout(vol: Volume) -> tuple[np.ndarray, str]:
    """The array in file axis order (ImageJ order TZCYXS), from the Volume and meta."""
    data = vol.data if vol.data.ndim == 4 else vol.data[..., None]
    n_y, n_x, n_z, n_c = data.shape
    axes = vol.meta.get("tiff_axes") or ""
    shape = vol.meta.get("tiff_shape") or ()
    axes = axes.replace("I", "Z").replace("Q", "Z")
    extra = [(a, n) for a, n in zip(axes, shape) if a not in "YXZ"]
    if not extra or int(np.prod([n for _, n in extra])) != n_c or \
            any(a not in "TCS" for a, _ in extra) or len({a for a, _ in extra}) != len(extra):
        extra = [("C", n_c)] if n_c > 1 else []
    if ("S", 3) in extra or ("S", 4) in extra:
        if data.dtype != np.uint8 or len(extra) > 1:  # ImageJ RGB is 8-bit only
            extra = [("C" if a == "S" else a, n) for a, n in extra]
    # data axes now: Y X Z + extra (in file order); reorder to T Z C Y X S
    arr = data.reshape(n_y, n_x, n_z, *[n for _, n in extra])
    cur = ["Y", "X", "Z"] + [a for a, _ in extra]
    want = [a for a in "TZCYXS" if a in cur]
    return np.transpose(arr, [cur.index(a) for a in want]), "".join(want)


def write_tiff(vol: Volume, path: str | os.PathLike, *, dtype: str | None = None,
               compression: str | None = None) -> None:
    """Write ``vol`` to exactly ``path`` as an ImageJ hyperstack (or OME-TIFF, see above)."""
    out = np.dtype(dtype or vol.meta.get("dtype") or "float32")
    if out == np.bool_:
        out = np.dtype("uint8")
    arr, axes = _file_layout(vol.with_data(cast_to_dtype(vol.data, out)))
    dy, dx, dz = (float(s) for s in vol.spacing)
    unit = vol.meta.get("unit") or ("mm" if vol.meta.get("format") in ("nifti", "mgh", "dicom")
                                    else None)
    try:
        if out.name in _IMAGEJ_DTYPES:
            md: dict = {"axes": axes, "spacing": dz}
            if unit:
                md["unit"] = {"um": "micron"}.get(unit, unit)
            tifffile.imwrite(path, arr, imagej=True, resolution=(1.0 / dx, 1.0 / dy),
                             metadata=md, compression=compression,
                             photometric="rgb" if axes.endswith("S") else "minisblack")
        else:
            md = {"axes": axes, "PhysicalSizeX": dx, "PhysicalSizeY": dy, "PhysicalSizeZ": dz}
            if unit:
                md.update({f"PhysicalSize{a}Unit": {"um": "µm"}.get(unit, unit) for a in "XYZ"})
            tifffile.imwrite(path, arr, ome=True, metadata=md, compression=compression,
                             photometric="rgb" if axes.endswith("S") else "minisblack")
    except (ValueError, TypeError) as exc:
        raise OutputError(f"cannot write {path} as TIFF: {str(exc).splitlines()[0]}") from exc
