"""JPEG compression artefacts (video / web images) through Pillow, slice by slice."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from medsr.errors import UserError


def _roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    mode = "RGB" if img.ndim == 3 else "L"
    buf = io.BytesIO()
    Image.fromarray(img, mode=mode).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf).convert(mode))


def jpeg(x: torch.Tensor, quality: int) -> tuple[torch.Tensor, list[float]]:
    """JPEG-compress channel-first ``x`` (C, H, W[, D]) per 2D slice (H, W).

    Intensities are mapped linearly from [min, max] to 0..255 and back; three channels are
    compressed as one RGB image, any other count channel by channel. Returns the result and
    the [min, max] used.
    """
    if not 1 <= quality <= 100:
        raise UserError(f"JPEG quality must be in 1..100, got {quality}")
    a = x.detach().cpu().numpy()
    lo, hi = float(a.min()), float(a.max())
    scale = 255.0 / (hi - lo) if hi > lo else 1.0
    u8 = np.clip(np.rint((a - lo) * scale), 0, 255).astype(np.uint8)
    vol = u8 if u8.ndim == 4 else u8[..., None]
    out = np.empty_like(vol)
    for z in range(vol.shape[3]):
        if vol.shape[0] == 3:
            out[:, :, :, z] = np.moveaxis(_roundtrip(np.moveaxis(vol[:, :, :, z], 0, -1), quality),
                                          -1, 0)
        else:
            for c in range(vol.shape[0]):
                out[c, :, :, z] = _roundtrip(vol[c, :, :, z], quality)
    out = out if u8.ndim == 4 else out[..., 0]
    res = out.astype(np.float64) / scale + lo
    return torch.as_tensor(res, dtype=x.dtype, device=x.device), [lo, hi]
