"""Compressed files at disk speed: gzip through the fastest deflate installed (ISA-L
igzip, zlib-ng, Python's gzip as the fallback) and a NIfTI reader that decompresses a
volume once, slab by slab, into its final array (no second full copy).

Written streams carry mtime 0 and no file name, as nibabel's, so equal data give equal
bytes; every backend writes plain gzip that nibabel and SimpleITK read.
"""

from __future__ import annotations

import gzip
import os

import numpy as np
from nibabel.arrayproxy import ArrayProxy
from nibabel.volumeutils import apply_read_scaling

from medsr.errors import UserError

GZIP_BACKENDS = ("isal", "zlib-ng", "gzip")
GZIP_LEVEL = 1  # nibabel's default (nibabel.openers.Opener.default_compresslevel)
SLAB_BYTES = 1 << 20  # decompressed bytes per read of the streaming reader


def backend_errors() -> tuple[type[BaseException], ...]:
    """The exceptions the installed fast backends raise on broken streams."""
    errors: list[type[BaseException]] = []
    try:
        from isal import isal_zlib
        errors.append(isal_zlib.error)
    except ImportError:
        pass
    try:
        from zlib_ng import zlib_ng
        errors.append(zlib_ng.error)
    except ImportError:
        pass
    return tuple(errors)


def gzip_backend(prefer: str | None = None) -> str:
    """The deflate implementation compressed files are read and written with: ``prefer``
    (or ``$MEDSR_GZIP``) when installed, else the first installed of
    :data:`GZIP_BACKENDS` (ISA-L igzip: 2x zlib's decompression and ~6x its level-1
    compression on one core, with a slightly smaller output; zlib-ng; Python's gzip)."""
    want = prefer or os.environ.get("MEDSR_GZIP") or None
    if want is not None and want not in GZIP_BACKENDS:
        raise UserError(f"MEDSR_GZIP must be one of {', '.join(GZIP_BACKENDS)}, not {want!r}")
    for name in ([want] if want else []) + list(GZIP_BACKENDS):
        if name == "gzip":
            return name
        try:
            __import__("isal.igzip" if name == "isal" else "zlib_ng.gzip_ng")
        except ImportError:
            continue
        return name
    return "gzip"


def _gzip_class(backend: str) -> type[gzip.GzipFile]:
    if backend == "isal":
        from isal import igzip
        return igzip.IGzipFile
    if backend == "zlib-ng":
        from zlib_ng import gzip_ng
        return gzip_ng.GzipNGFile
    return gzip.GzipFile


def gzip_open(path: str | os.PathLike, mode: str = "rb", backend: str | None = None,
              compresslevel: int = GZIP_LEVEL) -> gzip.GzipFile:
    """A gzip file object on ``path`` from :func:`gzip_backend` (binary modes). Written
    streams carry mtime 0 and no file name, as nibabel's, so equal data give equal bytes."""
    klass = _gzip_class(gzip_backend(backend))
    raw = open(path, mode)  # noqa: SIM115 - closed with the gzip object (myfileobj)
    try:
        if "r" in mode:
            f = klass(fileobj=raw, mode=mode)
        else:
            f = klass(filename="", fileobj=raw, mode=mode, compresslevel=compresslevel,
                      mtime=0)
    except BaseException:
        raw.close()
        raise
    f.myfileobj = raw  # GzipFile closes the file it opened itself
    return f


def stream_3d(img, stream: gzip.GzipFile) -> np.ndarray | None:
    """The 3D (or 4D with one volume) data of ``img`` read from ``stream`` slab by slab into
    a C-ordered array, scaled as nibabel's ArrayProxy scales (the same values and dtype;
    scaled 8/16-bit integers to float32 as :func:`medsr.io.nifti.read_nifti` does), so
    only the result and one slab are held. None where this does not apply (other layouts, structured
    dtypes, MGH): nibabel reads then."""
    proxy = img.dataobj
    shape = tuple(int(n) for n in proxy.shape)
    if (type(proxy) is not ArrayProxy or proxy.order != "F" or proxy.dtype.names
            or not (len(shape) == 3 or len(shape) == 4 and shape[3] == 1)):
        return None
    disk = proxy.dtype
    ni, nj, nk = shape[:3]
    slope = np.asanyarray(proxy._slope)
    inter = np.asanyarray(proxy._inter)
    if np.can_cast(slope, slope.dtype):  # nibabel's ArrayProxy._get_scaled, dtype None
        slope = slope.astype(slope.dtype)
    if np.can_cast(inter, slope.dtype):
        inter = inter.astype(slope.dtype)
    plane = ni * nj * disk.itemsize
    per = max(1, SLAB_BYTES // max(plane, 1))
    stream.seek(int(proxy.offset))
    out = None
    for k0 in range(0, nk, per):
        k1 = min(nk, k0 + per)
        buf = bytearray((k1 - k0) * plane)
        if stream.readinto(buf) != len(buf):
            raise EOFError("the compressed stream ends before the image data")
        chunk = np.ndarray((ni, nj, k1 - k0), dtype=disk, buffer=buf, order="F")
        if not chunk.dtype.isnative:
            chunk = chunk.astype(chunk.dtype.newbyteorder("="))
        chunk = apply_read_scaling(chunk, slope, inter)
        if chunk.dtype == np.float64 and disk.itemsize <= 2:
            chunk = chunk.astype(np.float32)
        if out is None:
            out = np.empty((ni, nj, nk), dtype=chunk.dtype)
        out[:, :, k0:k1] = chunk
    assert out is not None
    return out
