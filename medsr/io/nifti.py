"""Reading NIfTI-1/2 (.nii, .nii.gz) and FreeSurfer MGH/MGZ through nibabel.

Reading: ``Volume.data`` is indexed exactly as nibabel gives it, and ``Volume.affine`` is
nibabel's affine (sform or qform, as nibabel chooses; RAS+ for MGH too), so data index
order and affine always agree. scl_slope/scl_inter are applied (the data become float);
without scaling the on-disk integer type is kept. A 4D file is refused unless
``volume`` picks one of its volumes (0-based); a vector image (I, J, K, 1, C) (NIfTI's
layout for colour or other per-voxel vectors) becomes C channels; other 5D+ is refused.

Bad files raise :class:`~medsr.errors.InputError` with one line: random bytes, zero or
negative pixdim, a NaN/singular affine, header dimensions larger than the file can hold
(checked before anything is loaded), truncated or corrupt gzip streams.

meta keys: ``format`` ('nifti' | 'mgh'), ``path``, ``dtype`` (on-disk dtype name),
``scl`` ([slope, inter], only when scaling was applied), ``nifti_version`` (1 | 2),
``qform_code``, ``sform_code``, ``unit`` ('mm' | 'um' | 'm'), ``original_shape``,
``volume_index`` (when a 4D file was sliced).

Writing: :mod:`medsr.io.nifti_write`.

Compressed files (.nii.gz, .mgz) go through the fastest deflate installed
(:func:`medsr.io.deflate.gzip_backend`: ISA-L's igzip (``isal``, a core dependency),
else zlib-ng, else Python's gzip; ``MEDSR_GZIP=isal|zlib-ng|gzip`` picks one). A 3D
NIfTI is read in one pass: decompressed slab by slab straight into the C-ordered array
(no second full copy), and the stream's CRC is checked at its end (no second
decompression).
"""

from __future__ import annotations

import gzip
import io
import math
import os
import struct
import warnings
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from medsr.errors import InputError, UserError
from medsr.io.deflate import SLAB_BYTES, backend_errors, gzip_open, stream_3d
from medsr.io.formats import captured_logs, check_declared_size, check_voxel_size
from medsr.volume import Volume

# Exceptions nibabel, zlib and gzip raise on broken files.
_BROKEN = (ImageFileError, HeaderDataError, EOFError, zlib.error, gzip.BadGzipFile, OSError,
           ValueError, KeyError, IndexError, struct.error, MemoryError, *backend_errors())
# Deflate cannot compress better than about 1032:1; a header asking for more is lying.
_MAX_DEFLATE_RATIO = 1100
_UNITS_IN = {"mm": "mm", "micron": "um", "meter": "m"}


def _dtype_name(dt: np.dtype) -> str:
    """Native-endian name of a dtype ('int16' for '>i2')."""
    return np.dtype(dt).newbyteorder("=").name


def _raw_nifti_header(path: Path) -> nib.Nifti1Header:
    """The header as stored on disk (nibabel silently 'fixes' bad pixdim on load)."""
    from nibabel.openers import ImageOpener

    try:
        with ImageOpener(path) as f:
            head = f.read(540)
    except _BROKEN as exc:
        raise InputError(f"{path}: not a readable NIfTI file ({_reason(exc)})") from exc
    if len(head) < 348:
        raise InputError(f"{path}: not a NIfTI file (only {len(head)} header bytes)")
    sizes = {struct.unpack("<i", head[:4])[0], struct.unpack(">i", head[:4])[0]}
    if 540 in sizes and len(head) >= 540:
        klass = nib.Nifti2Header
    elif 348 in sizes:
        klass = nib.Nifti1Header
    else:
        raise InputError(f"{path}: not a NIfTI file (bad header size field)")
    try:
        return klass.from_fileobj(io.BytesIO(head), check=False)
    except _BROKEN as exc:
        raise InputError(f"{path}: corrupt NIfTI header ({_reason(exc)})") from exc


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def _check_nifti_header(path: Path, hdr: nib.Nifti1Header) -> None:
    ndim = int(hdr["dim"][0])
    if not 1 <= ndim <= 7:
        raise InputError(f"{path}: corrupt NIfTI header (dim[0] = {ndim})")
    dims = [int(d) for d in hdr["dim"][1:ndim + 1]]
    if any(d <= 0 for d in dims):
        raise InputError(f"{path}: zero-size image (dimensions {dims})")
    pix = np.asarray(hdr["pixdim"][1:min(ndim, 3) + 1], dtype=np.float64)
    if not np.all(np.isfinite(pix)) or np.any(pix <= 0):
        raise InputError(f"{path}: invalid voxel size pixdim = {pix.tolist()} "
                         "(must be positive)")
    check_voxel_size(path, pix, "voxel size pixdim")
    slope, inter = float(hdr["scl_slope"]), float(hdr["scl_inter"])
    if np.isfinite(slope) and slope != 0 and not np.isfinite(inter) or np.isinf(slope):
        # slope 0 or NaN means "no scaling" (NIfTI-1); an infinite one is no scaling at all
        raise InputError(f"{path}: invalid intensity scaling scl_slope = {slope:g}, "
                         f"scl_inter = {inter:g} (must be finite)")
    code = int(hdr["datatype"])
    try:
        disk = hdr.get_data_dtype()
    except _BROKEN:
        raise InputError(f"{path}: unknown NIfTI datatype code {code}") from None
    if disk.kind == "V" and not disk.names:
        raise InputError(f"{path}: unknown NIfTI datatype code {code}")
    bitpix = int(hdr["bitpix"])
    if bitpix != disk.itemsize * 8:
        raise InputError(f"{path}: corrupt NIfTI header (datatype {code} "
                         f"({_dtype_name(disk)}) has {disk.itemsize * 8} bits per voxel, "
                         f"bitpix says {bitpix})")
    offset = float(hdr["vox_offset"])
    if not (np.isfinite(offset) and 0 <= offset < 2**40):
        raise InputError(f"{path}: corrupt NIfTI header (vox_offset = {offset:g})")
    if disk.kind == "c":
        raise InputError(f"{path}: complex-valued data ({_dtype_name(disk)}); medsr "
                         "super-resolves real images: save the magnitude (or the real and "
                         "imaginary parts as separate files) and give that")
    if int(hdr["sform_code"]) > 0:
        srow = np.stack([hdr["srow_x"], hdr["srow_y"], hdr["srow_z"]]).astype(np.float64)
        if not np.all(np.isfinite(srow)):
            raise InputError(f"{path}: the sform affine contains NaN or infinity")
    if int(hdr["qform_code"]) > 0:
        q = np.asarray([hdr[k] for k in ("quatern_b", "quatern_c", "quatern_d",
                                         "qoffset_x", "qoffset_y", "qoffset_z")], float)
        if not np.all(np.isfinite(q)):
            raise InputError(f"{path}: the qform contains NaN or infinity")


def _check_size(path: Path, shape: tuple[int, ...], dtype: np.dtype, offset: int) -> None:
    """Refuse headers that claim more voxels than the file can possibly hold."""
    need = int(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize
    have = path.stat().st_size
    compressed = path.name.lower().endswith((".gz", ".mgz"))
    if compressed:
        if need > have * _MAX_DEFLATE_RATIO + (1 << 20):
            raise InputError(f"{path}: header dimensions {list(shape)} need {need} bytes, far "
                             f"more than a {have}-byte compressed file can hold (corrupt header)")
    elif offset + need > have:
        raise InputError(f"{path}: truncated; header dimensions {list(shape)} need "
                         f"{offset + need} bytes, the file has {have}")


def _select_volume(path: Path, shape: tuple[int, ...], volume: int | None) -> tuple:
    """Index tuple picking a 3D volume; also the errors for 4D/5D inputs."""
    if len(shape) <= 3:
        if volume not in (None, 0):
            raise UserError(f"{path} is {len(shape)}D; --volume applies to 4D inputs only")
        return ()
    extra = shape[3:]
    if len(shape) >= 5 and shape[3] == 1 and all(n == 1 for n in shape[5:]):
        # (I, J, K, 1, C): one volume of C-vectors (NIfTI intent 'vector', e.g. colour).
        if volume not in (None, 0):
            raise UserError(f"{path} holds one volume of {shape[4]}-vectors; "
                            "--volume does not apply")
        channels = slice(None) if shape[4] > 1 else 0
        return (slice(None),) * 3 + (0, channels) + (0,) * (len(shape) - 5)
    if len(shape) >= 5:
        raise InputError(f"{path} is {len(shape)}D (shape {list(shape)}); only 3D images, "
                        "4D series (one volume picked with --volume) and vector images "
                        "(I, J, K, 1, C) are supported")
    n = int(extra[0])
    if n == 1 and volume in (None, 0):
        return (slice(None),) * 3 + (0,) * len(extra)
    if volume is None:
        raise UserError(f"{path} is 4D with {n} volumes; pick one with --volume N "
                        f"(0-based, 0..{n - 1})")
    if not 0 <= int(volume) < n:
        raise UserError(f"--volume {volume} is out of range: {path} has {n} volumes "
                        f"(0..{n - 1})")
    return (slice(None),) * 3 + (int(volume),) + (0,) * (len(extra) - 1)


def read_nifti(path: str | os.PathLike, volume: int | None = None,
               max_voxels: int | None = None) -> Volume:
    """Read a NIfTI-1/2 or MGH/MGZ file into a Volume (see the module docstring).

    ``max_voxels`` refuses a header declaring more spatial voxels, before loading.
    """
    path = Path(path)
    low = path.name.lower()
    is_mgh = low.endswith((".mgz", ".mgh"))
    if is_mgh and path.is_file() and path.stat().st_size == 0:
        raise InputError(f"{path}: empty file (not an MGH/MGZ image)")
    klass = nib.MGHImage
    if not is_mgh:
        hdr = _raw_nifti_header(path)
        _check_nifti_header(path, hdr)
        klass = nib.Nifti2Image if isinstance(hdr, nib.Nifti2Header) else nib.Nifti1Image
    with captured_logs("nibabel", "nibabel.global") as messages:
        if low.endswith((".nii.gz", ".mgz")):
            try:
                with gzip_open(path) as stream:
                    vol = _read_nifti(path, is_mgh, volume, max_voxels, stream, klass)
            except InputError:
                raise
            except _BROKEN as exc:
                raise InputError(f"{path}: truncated or corrupt compressed data "
                                 f"({_reason(exc)})") from exc
        else:
            vol = _read_nifti(path, is_mgh, volume, max_voxels)
    for text in messages:
        warnings.warn(f"{path}: {text}", stacklevel=2)
    return vol


def _verify_gzip(path: Path) -> None:
    """Read a gzip stream to its end: its CRC catches corruption nibabel would not see."""
    try:
        with gzip.open(path, "rb") as f:
            while f.read(1 << 24):
                pass
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
        raise InputError(f"{path}: truncated or corrupt compressed data "
                         f"({_reason(exc)})") from exc


def _read_nifti(path: Path, is_mgh: bool, volume: int | None,
                max_voxels: int | None, stream: gzip.GzipFile | None = None,
                klass: type | None = None) -> Volume:
    """``stream``: the decompressing reader of a compressed ``path`` (its image class
    ``klass``), read once to its end (the CRC check); None: nibabel opens ``path``."""
    try:
        if stream is None:
            img = nib.load(path)
        else:
            img = klass.from_stream(stream)  # header now, data below
    except (*_BROKEN, TypeError) as exc:  # TypeError: nibabel on a header cut short
        raise InputError(f"{path}: cannot read ({_reason(exc)})") from exc
    if getattr(img, "affine", None) is None or not hasattr(img, "dataobj"):
        raise InputError(f"{path}: not a volume image ({type(img).__name__})")
    shape = tuple(int(n) for n in img.shape)
    if any(n <= 0 for n in shape) or not shape:
        raise InputError(f"{path}: zero-size image (shape {list(shape)})")
    disk_dtype = img.get_data_dtype()
    if disk_dtype.kind == "c":  # MGH cannot hold complex data; NIfTI is checked above
        raise InputError(f"{path}: complex-valued data; medsr super-resolves real images")
    check_declared_size(path, math.prod(shape[:3]), max_voxels)
    offset = int(getattr(img.dataobj, "offset", 0))
    _check_size(path, shape, disk_dtype, offset)
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(f"{path}: invalid affine (NaN, infinite or zero voxel size)")
    check_voxel_size(path, np.linalg.norm(affine[:3, :3], axis=0), "voxel size (affine)")
    index = _select_volume(path, shape, volume)
    try:
        data = stream_3d(img, stream) if stream is not None and not index else None
        if data is None:
            data = np.asanyarray(img.dataobj[index] if index else img.dataobj)
        if stream is not None:
            while stream.read(SLAB_BYTES):  # to the end: the gzip CRC and length checks
                pass
    except _BROKEN as exc:
        raise InputError(f"{path}: truncated or corrupt data ({_reason(exc)})") from exc
    if stream is None and path.name.lower().endswith((".gz", ".mgz")):
        _verify_gzip(path)
    if data.dtype.names:  # RGB24 / RGBA32 NIfTI: fields become channels
        data = np.stack([data[name] for name in data.dtype.names], axis=-1)
        if data.ndim == 3:
            data = data[:, :, None, :]
    if data.ndim > 4:  # e.g. an RGB vector image with several components per voxel
        raise InputError(f"{path}: {data.ndim}D data (shape {list(data.shape)}) after "
                         "unpacking its channels; not one 3D volume")
    while data.ndim < 3:
        data = data[..., None]
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    if data.dtype == np.float64 and disk_dtype.itemsize <= 2 and not disk_dtype.names:
        data = data.astype(np.float32)  # scaled 8/16-bit integers: float32 is exact enough
    meta: dict = {"format": "mgh" if is_mgh else "nifti", "path": str(path),
                  "dtype": _dtype_name(disk_dtype if not disk_dtype.names
                                       else disk_dtype[0]),
                  "original_shape": list(shape)}
    slope = getattr(img.dataobj, "slope", 1.0)
    inter = getattr(img.dataobj, "inter", 0.0)
    if (slope, inter) != (1.0, 0.0):
        meta["scl"] = [float(slope), float(inter)]
    if index and len(shape) >= 4 and shape[3] > 1:
        meta["volume_index"] = int(volume)  # type: ignore[arg-type]
    if not is_mgh:
        hdr = img.header
        meta["nifti_version"] = 2 if isinstance(hdr, nib.Nifti2Header) else 1
        meta["qform_code"] = int(hdr["qform_code"])
        meta["sform_code"] = int(hdr["sform_code"])
        meta["unit"] = _UNITS_IN.get(hdr.get_xyzt_units()[0], "mm")
    else:
        meta["unit"] = "mm"
    return Volume(data=np.ascontiguousarray(data), affine=affine, meta=meta)
