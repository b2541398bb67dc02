"""Video files (.mp4, .avi, .mov, .mkv, .webm ...) through imageio and its ffmpeg plugin.

Optional: ``pip install 'medsr[video]'`` (imageio + imageio-ffmpeg, which ships an ffmpeg
binary). Without it, reading or writing a video is a :class:`~medsr.errors.UserError`
that gives that command; folders of frames and multi-page TIFFs work without it.

Axis convention as for frames folders: ``Volume.data`` is (rows, cols, n_frames, 3) uint8
RGB (ffmpeg decodes to rgb24), affine the identity (1 pixel, ``meta['unit']`` None).
meta: ``format`` 'video', ``path``, ``dtype``, ``fps``, ``codec`` (of the source),
``pix_fmt``. Writing keeps the fps; the codec follows the container (H.264 for .mp4,
.mkv, .mov and .avi, VP9 for .webm), ``quality`` 0..10 (imageio's scale, default 8).
Grey data are written as RGB. Lossy codecs change pixel values slightly; use a frames
folder or TIFF where exact values matter.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medsr.errors import InputError, OutputError, UserError
from medsr.io.dtype import cast_like
from medsr.volume import Volume

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv")
INSTALL_HINT = "pip install 'medsr[video]'  (imageio + imageio-ffmpeg)"
_CODECS = {".webm": "libvpx-vp9"}


def is_video(path: str | os.PathLike) -> bool:
    """True when the suffix names a video container."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _iio():
    """imageio.v3 with a working ffmpeg, or a UserError with the install command."""
    try:
        import imageio.v3 as iio
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        raise UserError(f"video files need the optional video extra: {INSTALL_HINT} "
                        f"({exc}); or convert the video to a folder of frames") from exc
    return iio


def read_video(path: str | os.PathLike) -> Volume:
    """Every frame of a video as a (rows, cols, n_frames, 3) uint8 Volume."""
    path = Path(path)
    iio = _iio()
    if not path.is_file():
        raise InputError(f"{path}: no such video file")
    try:
        meta = iio.immeta(path, plugin="FFMPEG")
        frames = iio.imread(path, plugin="FFMPEG")
    except (OSError, RuntimeError, ValueError, StopIteration) as exc:
        raise InputError(f"{path}: not a readable video ({str(exc).splitlines()[0]})") from exc
    frames = np.asarray(frames)
    if frames.ndim == 3:  # a single frame
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise InputError(f"{path}: no video frames decoded (shape {frames.shape})")
    data = np.ascontiguousarray(np.moveaxis(frames, 0, 2))  # (rows, cols, n, C)
    info = {"format": "video", "path": str(path), "dtype": data.dtype.name, "unit": None,
            "fps": float(meta.get("fps") or 25.0), "codec": meta.get("codec"),
            "pix_fmt": meta.get("pix_fmt")}
    return Volume(data, np.eye(4), info)


def write_video(vol: Volume, path: str | os.PathLike, *, fps: float | None = None,
                codec: str | None = None, quality: float | None = 8,
                dtype: str | None = None) -> None:
    """Write the k slices of ``vol`` as the frames of a video at ``fps`` (default: the
    source's, else 25). Values are rounded and clipped to uint8."""
    path = Path(path)
    iio = _iio()
    if dtype not in (None, "uint8"):
        raise UserError(f"video frames are 8-bit; --dtype {dtype} is not possible, write "
                        "a frames folder or .tif")
    data = vol.data if vol.data.ndim == 4 else vol.data[..., None]
    n_c = data.shape[3]
    if n_c == 1:
        data = np.repeat(data, 3, axis=3)
    elif n_c == 4:
        data = data[..., :3]
    elif n_c != 3:
        raise UserError(f"{path.name}: {n_c} channels cannot be a video (grey, RGB or RGBA)")
    frames = np.moveaxis(cast_like(data, np.dtype("uint8")), 2, 0)
    rate = float(fps or vol.meta.get("fps") or 25.0)
    suffix = path.suffix.lower()
    codec = codec or _CODECS.get(suffix, "libx264")
    try:
        iio.imwrite(path, np.ascontiguousarray(frames), plugin="FFMPEG", fps=rate,
                    codec=codec, quality=quality, macro_block_size=1,
                    pixelformat="yuv444p" if codec == "libx264" else "yuv420p",
                    extension=suffix if suffix else None)
    except (OSError, RuntimeError, ValueError, TypeError) as exc:
        raise OutputError(f"cannot write {path}: {str(exc).splitlines()[0]}") from exc
