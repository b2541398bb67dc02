"""Microscopy stacks: isotropic z with percentile normalisation, per channel and time point.

A stack read by :func:`medsr.io.tiff.read_tiff` is (Y, X, Z[, C]) with every other file
axis (channels, time points, samples) folded into C, and an affine in the file's unit
(``meta['unit']``, usually 'um'). Here:

- :func:`medsr.geometry.plan_isotropic` plans z only, to the lateral pixel size (in the
  file's unit);
- :func:`super_resolve_stack` normalises each channel / time point on its own to the
  1 / 99.8 percentiles (the CARE convention), runs a super-resolver on it, restores the
  intensities and casts back to the input dtype (8/16-bit rounded and clipped, float kept);
- :func:`default_model_for` names the shipped model that fits a plan (``microscopy-z<k>``
  for a stack, ``frames-x<k>`` for pictures, frames and video), or None;
- :func:`medsr.infer.isotropic_tiff` is the whole job for one file: TIFF in, ImageJ/OME
  TIFF out with the new z spacing;
- :func:`spacing_unit` names the unit of a volume's spacing for messages (µm, px, mm).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from medsr import pretrained
from medsr.geometry import OutputGrid
from medsr.io.dtype import cast_like
from medsr.volume import Volume

PERCENTILES = (1.0, 99.8)
FRAME_FORMATS = ("image", "frames", "video")
DEFAULT_FRAMES_SCALE = 4  # pictures / frames / video with no --scale: x4 in-plane


def percentile_normalise(x: np.ndarray, lower: float = PERCENTILES[0],
                         upper: float = PERCENTILES[1]) -> tuple[np.ndarray, float, float]:
    """(x - lo) / (hi - lo) as float32 with lo, hi the ``lower``/``upper`` percentiles."""
    from medsr.intensity import robust_range

    lo, hi = robust_range(x, lower, upper)
    y = (np.asarray(x, dtype=np.float32) - np.float32(lo)) / np.float32(hi - lo)
    return y, lo, hi


def spacing_unit(vol: Volume) -> str:
    """The unit of ``vol.spacing`` for messages: the file's ('µm', 'mm' ...) for TIFF
    stacks, 'px' for pictures, frames, video and TIFFs without one, 'mm' for scans."""
    unit = vol.meta.get("unit")
    if unit:
        return {"um": "µm", "micron": "µm"}.get(str(unit), str(unit))
    return "px" if vol.meta.get("format") in (*FRAME_FORMATS, "tiff") else "mm"


def kind_of(vol: Volume) -> str | None:
    """'frames' for pictures, frames folders, video and RGB(A) TIFFs (TIFF samples axis S),
    'stack' for other TIFFs (microscopy), None for everything else (scans)."""
    fmt = vol.meta.get("format")
    if fmt in FRAME_FORMATS:
        return "frames"
    if fmt == "tiff":
        rgb = "S" in (vol.meta.get("tiff_axes") or "") and vol.channels in (3, 4)
        return "frames" if rgb else "stack"
    return None


def default_model_for(vol: Volume, plan: OutputGrid) -> str | None:
    """The shipped model that realises ``plan`` for this kind of input, if installed.

    Stacks (:func:`kind_of`) with only z upsampled -> ``microscopy-z<K>``; frames (pictures,
    frames, video, RGB TIFF) with both in-plane axes upsampled equally -> ``frames-x<K>``
    (K the integer factor the network gives; a non-integer factor is finished by Lanczos
    resampling). Returns
    the registry name when :mod:`medsr.pretrained` knows it, else the weight file path
    when the file exists, else None.
    """
    K = pretrained.integer_factors(plan.factors)
    kind = kind_of(vol)
    name = None
    if kind == "stack" and K[0] == K[1] == 1 and K[2] > 1:
        name, file = f"microscopy-z{K[2]}", f"microscopy_z{K[2]}.safetensors"
    elif kind == "frames" and K[0] == K[1] > 1 and K[2] == 1:
        name, file = f"frames-x{K[0]}", f"frames_x{K[0]}.safetensors"
    if name is None:
        return None
    known = pretrained.PRETRAINED.get(name)
    if known is not None:
        return name if known.available else None
    path = pretrained.WEIGHTS_DIR / file
    return str(path) if path.is_file() else None


def super_resolve_stack(vol: Volume, plan: OutputGrid,
                        sr: Callable[[Volume, OutputGrid], Volume], *,
                        lower: float = PERCENTILES[0], upper: float = PERCENTILES[1],
                        normalise: bool = True) -> Volume:
    """Apply ``sr(single_channel_volume, plan)`` to each channel / time point separately.

    Each one is normalised to its own ``lower``/``upper`` percentiles before ``sr`` and
    restored after; the result has the input dtype and the plan's affine, and keeps the
    metadata (axes, unit) so the TIFF writer restores the file layout.
    """
    data = vol.data
    chans = [data] if data.ndim == 3 else [data[..., c] for c in range(data.shape[3])]
    outs = []
    for ch in chans:
        if normalise:
            x, lo, hi = percentile_normalise(ch, lower, upper)
        else:
            x, lo, hi = np.asarray(ch, dtype=np.float32), 0.0, 1.0
        y = np.asarray(sr(vol.with_data(x), plan).data, dtype=np.float32)
        if y.shape[:3] != tuple(plan.shape_out):
            raise RuntimeError(f"super-resolver returned {y.shape[:3]}, planned "
                               f"{tuple(plan.shape_out)}")
        y *= np.float32(hi - lo)
        y += np.float32(lo)
        outs.append(y)
    out = outs[0] if len(outs) == 1 else np.stack(outs, axis=-1)
    return vol.with_data(cast_like(out, vol.data.dtype), affine=plan.affine_out)
