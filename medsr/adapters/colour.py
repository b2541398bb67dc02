"""Colour images and frames: the network on luma (Y), chroma by bicubic, back to RGB.

The convention of the SR literature (SRCNN onwards, MATLAB ``rgb2ycbcr``): ITU-R BT.601
"studio swing" YCbCr, for 8-bit data Y in [16, 235] and Cb/Cr in [16, 240]. Other
integer depths scale with their maximum (uint16: x 65535/255); float RGB is taken to
lie in [0, 1]. PSNR/SSIM "on the Y channel" use :func:`luma` of the 8-bit images.

:func:`super_resolve_colour` takes any luma super-resolver ``luma_sr(vol, plan)`` (a
network, interpolation, IBP ...) and applies it to Y only; Cb/Cr and alpha are resampled
with Catmull-Rom bicubic (:mod:`medsr.interpolate`). Grey volumes (no channel axis, or
one channel) go to ``luma_sr`` as they are (:func:`medsr.adapters.channels.per_channel`);
grey + alpha keeps grey as luma. The output dtype is the input dtype (integers rounded
and clipped, :func:`medsr.io.dtype.cast_like`).
No I/O here: video and pictures are read and written by :mod:`medsr.io`.
"""

from __future__ import annotations

import numpy as np

from medsr.adapters.channels import SR, per_channel
from medsr.errors import UserError
from medsr.geometry import OutputGrid
from medsr.interpolate import resize
from medsr.io.dtype import cast_like
from medsr.volume import Volume

# MATLAB rgb2ycbcr for RGB in [0, 1]: offsets in 8-bit units, then / 255.
_M = np.array([[65.481, 128.553, 24.966],
               [-37.797, -74.203, 112.0],
               [112.0, -93.786, -18.214]], dtype=np.float64)
_OFFSET = np.array([16.0, 128.0, 128.0])
_M_INV = np.linalg.inv(_M)
CHROMA_METHOD = "catmull-rom"


def _unit_scale(dtype: np.dtype) -> float:
    """The value of full-scale white for ``dtype`` (1 for floats)."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).max)
    return 1.0


def rgb_to_ycbcr(rgb: np.ndarray, white: float | None = None) -> np.ndarray:
    """(..., 3) RGB -> (..., 3) YCbCr in 8-bit units (Y 16..235), float64.

    ``white`` is the value of full-scale white (default: from the dtype, 1.0 for floats).
    """
    rgb = np.asarray(rgb)
    if rgb.shape[-1] != 3:
        raise UserError(f"RGB data needs 3 channels in the last axis, got {rgb.shape[-1]}")
    w = _unit_scale(rgb.dtype) if white is None else float(white)
    x = rgb.astype(np.float64) / w
    return x @ _M.T + _OFFSET


def ycbcr_to_rgb(ycc: np.ndarray, white: float = 1.0) -> np.ndarray:
    """(..., 3) YCbCr in 8-bit units -> RGB in [0, ``white``] units (float64, unclipped)."""
    ycc = np.asarray(ycc, dtype=np.float64)
    return ((ycc - _OFFSET) @ _M_INV.T) * float(white)


def luma(rgb: np.ndarray, white: float | None = None) -> np.ndarray:
    """The Y channel (16..235 for full-range 8-bit input) of RGB data; grey passes through
    scaled to the same 8-bit units (so metrics compare like with like)."""
    rgb = np.asarray(rgb)
    if rgb.shape[-1] == 3:
        return rgb_to_ycbcr(rgb, white)[..., 0]
    w = _unit_scale(rgb.dtype) if white is None else float(white)
    return rgb.astype(np.float64) * (255.0 / w)


def is_colour(vol: Volume) -> bool:
    """True for RGB (3 channels) or RGBA (4) volumes."""
    return vol.data.ndim == 4 and vol.data.shape[3] in (3, 4)


def super_resolve_colour(vol: Volume, plan: OutputGrid, luma_sr: SR) -> Volume:
    """Super-resolve ``vol`` on ``plan``: Y by ``luma_sr``, Cb/Cr (and alpha) by bicubic;
    grey volumes go to ``luma_sr`` directly.

    ``luma_sr`` receives a single-channel float32 Volume (Y in 8-bit units 16..235, or
    the grey values as they are) and must return a Volume on ``plan``'s grid.
    """
    dtype = np.dtype(vol.data.dtype)
    data = vol.data
    if data.ndim == 3 or data.shape[3] == 1:
        out = per_channel(vol, plan, luma_sr)
        return out.with_data(cast_like(out.data, dtype))
    n_c = data.shape[3]
    if n_c == 2:  # grey + alpha
        grey = luma_sr(vol.with_data(data[..., 0].astype(np.float32)), plan).data
        alpha = resize(data[..., 1].astype(np.float32), plan.factors, CHROMA_METHOD,
                       shape_out=plan.shape_out)
        stacked = np.stack([grey, alpha], axis=-1)
        return vol.with_data(cast_like(stacked, dtype), affine=plan.affine_out)
    if n_c not in (3, 4):
        raise UserError(f"colour super-resolution needs 1-4 channels (grey, grey+alpha, RGB, "
                        f"RGBA), got {n_c}")
    white = _unit_scale(dtype)
    ycc = rgb_to_ycbcr(data[..., :3], white).astype(np.float32)
    y = luma_sr(vol.with_data(np.ascontiguousarray(ycc[..., 0])), plan).data
    chroma = resize(ycc[..., 1:], plan.factors, CHROMA_METHOD, shape_out=plan.shape_out)
    rgb = ycbcr_to_rgb(np.concatenate([y[..., None], chroma], axis=-1), white)
    rgb = np.clip(rgb, 0.0, white) if np.issubdtype(dtype, np.integer) else rgb
    parts = [rgb]
    if n_c == 4:
        alpha = resize(data[..., 3].astype(np.float32), plan.factors, CHROMA_METHOD,
                       shape_out=plan.shape_out)
        parts.append(alpha[..., None])
    out = np.concatenate(parts, axis=-1)
    return vol.with_data(cast_like(out, dtype), affine=plan.affine_out)
