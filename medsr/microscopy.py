"""Microscopy stacks: isotropic z with percentile normalisation, per channel and time point.

A stack read by :func:`medsr.io.tiff.read_tiff` is (Y, X, Z[, C]) with every other file
axis (channels, time points, samples) folded into C, and an affine in the file's unit
(``meta['unit']``, usually 'um'). Here:

- :func:`plan_isotropic` plans z only, to the lateral pixel size (in the file's unit);
- :func:`super_resolve_stack` normalises each channel / time point on its own to the
  1 / 99.8 percentiles (the CARE convention), runs a super-resolver on it, restores the
  intensities and casts back to the input dtype (8/16-bit rounded and clipped, float kept);
- :func:`default_model_for` names the shipped model that fits a plan (``microscopy-z<k>``
  for a stack, ``frames-x<k>`` for pictures, frames and video), or None;
- :func:`isotropic_tiff` is the whole job for one file: TIFF in, ImageJ/OME TIFF out with
  the new z spacing;
- :func:`spacing_unit` names the unit of a volume's spacing for messages (µm, px, mm).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medsr.colour import cast_like
from medsr.errors import UserError
from medsr.volume import Volume

PERCENTILES = (1.0, 99.8)
FRAME_FORMATS = ("image", "frames", "video")
DEFAULT_FRAMES_SCALE = 4  # pictures / frames / video with no --scale: x4 in-plane


def percentile_normalise(x: np.ndarray, lower: float = PERCENTILES[0],
                         upper: float = PERCENTILES[1]) -> tuple[np.ndarray, float, float]:
    """(x - lo) / (hi - lo) as float32 with lo, hi the ``lower``/``upper`` percentiles."""
    from medsr.data.normalise import robust_range

    lo, hi = robust_range(x, lower, upper)
    y = (np.asarray(x, dtype=np.float32) - np.float32(lo)) / np.float32(hi - lo)
    return y, lo, hi


def plan_isotropic(vol: Volume, spacing: float | None = None, **plan_options: Any):
    """Plan z (axis 2) to ``spacing`` (default: the finer lateral spacing), in the file's
    unit; the lateral axes stay as they are. Returns a :class:`medsr.infer.Plan`."""
    from medsr.infer import plan_grid

    dy, dx, dz = (float(s) for s in vol.spacing)
    target = min(dy, dx) if spacing is None else float(spacing)
    if not np.isfinite(target) or target <= 0:
        raise UserError(f"target z spacing must be a positive number, got {spacing}")
    if dz < target * (1 - 1e-6):
        unit = vol.meta.get("unit") or "pixel"
        raise UserError(f"z spacing {dz:g} {unit} is already finer than {target:g} {unit}; "
                        "nothing to make isotropic (give --spacing or --input-spacing)")
    return plan_grid(vol, scale=(1.0, 1.0, dz / target), **plan_options)


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


def default_model_for(vol: Volume, plan: Any) -> str | None:
    """The shipped model that realises ``plan`` for this kind of input, if installed.

    Stacks (:func:`kind_of`) with only z upsampled -> ``microscopy-z<K>``; frames (pictures,
    frames, video, RGB TIFF) with both in-plane axes upsampled equally -> ``frames-x<K>``
    (K the integer factor the network gives; a non-integer factor is finished by Lanczos
    resampling). Returns
    the registry name when :mod:`medsr.pretrained` knows it, else the weight file path
    when the file exists, else None.
    """
    from medsr import pretrained

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


def super_resolve_stack(vol: Volume, plan: Any, sr: Callable[[Volume, Any], Volume], *,
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


def make_sr(method: str = "auto", model: str | Path | None = None, plan: Any = None,
            vol: Volume | None = None, device: str = "cpu",
            tta: bool = False) -> tuple[Callable[[Volume, Any], Volume], str]:
    """A single-channel super-resolver and its name: a network (``model``, or with
    ``method='auto'`` the default for ``vol``/``plan``), else a classical method
    (``auto`` without a fitting model -> catmull-rom bicubic). A multi-frame model
    (neighbouring frames as channels) runs through :func:`medsr.multiframe.multiframe_sr`."""
    from medsr.infer import model_passes, super_resolve, super_resolve_model

    if model is None and method == "auto" and vol is not None and plan is not None:
        model = default_model_for(vol, plan)
    if model is not None:
        from medsr.devices import select_device
        from medsr.multiframe import is_multiframe, multiframe_sr

        dev = select_device(device)
        passes = model_passes(plan, model, dev)
        if is_multiframe(passes):
            mf = passes[0]

            def net(v: Volume, p: Any) -> Volume:
                return multiframe_sr(v, p, mf.model, mf.info, device=dev, tta=tta)
        else:
            def net(v: Volume, p: Any) -> Volume:
                return super_resolve_model(v, p, passes, device=dev, tta=tta)

        return net, Path(str(model)).stem if Path(str(model)).suffix else str(model)
    classical = "catmull-rom" if method == "auto" else method

    def interp(v: Volume, p: Any) -> Volume:
        return super_resolve(v, p, method=classical)

    return interp, classical


def isotropic_tiff(input_path: str | Path, output: str | Path, *,
                   spacing: float | None = None, scale: float | Sequence[float] | None = None,
                   method: str = "auto", model: str | Path | None = None,
                   input_spacing: Sequence[float] | None = None, device: str = "cpu",
                   lower: float = PERCENTILES[0], upper: float = PERCENTILES[1],
                   overwrite: bool = False) -> Volume:
    """TIFF stack in -> z-isotropic (or ``scale``d) stack out, dtype and layout kept.

    ``spacing`` is the target z step in the file's unit (default the lateral pixel size).
    Returns the written Volume.
    """
    from medsr import io
    from medsr.infer import plan_grid

    vol = io.read(input_path, input_spacing=input_spacing)
    if vol.meta.get("format") != "tiff":
        raise UserError(f"{input_path}: not a TIFF stack")
    plan = plan_grid(vol, scale=scale) if scale is not None else plan_isotropic(vol, spacing)
    sr, _ = make_sr(method, model, plan, vol, device)
    out = super_resolve_stack(vol, plan, sr, lower=lower, upper=upper)
    io.write(out, output, overwrite=overwrite, inputs=[Path(input_path)])
    return out
