"""The main job: read a scan, plan the output grid, super-resolve, write it back.

Every step is a library call so a Python user gets exactly what ``medsr infer`` does:

    >>> from medsr.infer import infer_file
    >>> result = infer_file("scan.nii.gz", spacing=1.0, method="cubic")
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsr import colour, geometry, io, microscopy, modes, pretrained
from medsr.errors import InputError, UserError
from medsr.geometry import DEFAULT_MAX_OUTPUT_VOXELS, OutputGrid, plan_grid, plan_isotropic
from medsr.interpolate import METHODS as INTERPOLATION_METHODS
from medsr.interpolate import resize
from medsr.io.common import check_output
from medsr.io.video import is_video
from medsr.progress import progress_bar
from medsr.provenance import selfsup_part  # issue 25
from medsr.volume import Volume

DEFAULT_BUDGET_S = 300.0  # --self-supervised --budget
WRITE_PER_READ = 3.0  # writing a voxel takes up to this many times reading one (gzip)
CLASSICAL_METHODS = (*INTERPOLATION_METHODS, "ibp")
AUTO_PROFILE = "auto"  # --slice-profile default: estimated from the scan (auto_slice_profile)


@dataclass
class InferResult:
    """What one run did, for the summary line and the cohort CSV."""

    input: Path
    output: Path
    method: str
    shape_in: tuple[int, ...]
    shape_out: tuple[int, ...]
    spacing_in: tuple[float, ...]
    spacing_out: tuple[float, ...]
    seconds: float
    notes: list[str] = field(default_factory=list)
    unit: str = "mm"  # of the spacings: "µm" / "px" for microscopy stacks and frames
    model: str = ""  # the network(s) or fitted model used; "" for classical methods
    tta: bool = False  # the flip self-ensemble (--tta) was applied
    provenance: dict[str, Any] = field(default_factory=dict)  # issue 25: medsr.provenance

    def summary(self) -> str:
        def fmt(v: Sequence[float]) -> str:
            return "x".join(f"{x:.4g}" for x in v)

        u = self.unit
        line = (f"{self.input.name}: {fmt(self.shape_in)} @ {fmt(self.spacing_in)} {u} -> "
                f"{fmt(self.shape_out)} @ {fmt(self.spacing_out)} {u}, {self.method}"
                f"{', tta' if self.tta else ''}, {self.seconds:.1f} s -> {self.output}")
        return "\n".join([line, *(f"  note: {n}" for n in self.notes)])


def _num(v: Any) -> str:
    """A number at 4 significant digits (3.9999999460600644 -> 4); other values as given."""
    return f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)


def super_resolve(vol: Volume, plan: OutputGrid, method: str = "cubic",
                  **options: Any) -> Volume:
    """Apply a classical method (interpolation or IBP) on the planned grid."""
    if method in INTERPOLATION_METHODS:
        data = vol.data
        # float64 values beyond float32's range stay float64 (resize computes in float64;
        # a non-finite result is refused before writing), others go to float32 as always
        if data.dtype != np.float64 or not data.size or \
                float(np.max(np.abs(data))) <= float(np.finfo(np.float32).max) / 1024:
            data = data.astype(np.float32, copy=False)
        data = resize(data, plan.factors, method=method, shape_out=plan.shape_out)
    elif method == "ibp":
        data = _ibp(vol, plan, **options)
    else:
        raise UserError(f"unknown method {method!r}; choose one of {', '.join(CLASSICAL_METHODS)}")
    return vol.with_data(data, affine=plan.affine_out)


def model_passes(plan: OutputGrid, model: str | Path | None, device: Any) -> list:
    """The network passes for ``plan``: a given model (name or path) or the shipped default
    that fits the factors; [] when no shipped model fits (the caller falls back to cubic)."""
    from medsr.inference.model_sr import Pass, load, pass_factors

    if model is None:
        passes = []
        for p, axes in pretrained.choose(plan.factors):
            net, info = load(p.name, device)
            passes.append(Pass(net, {**info, "name": p.name}, pass_factors(net, axes)))
        return passes
    model, _ = pretrained.resolve(model)  # a name served by a larger shipped model
    net, info = load(model, device)
    name = str(model) if str(model) in pretrained.PRETRAINED else None
    return net_passes(plan, net, info, name or Path(str(model)).name,
                      shipped=name is not None)


def net_passes(plan: OutputGrid, net: Any, info: dict[str, Any], name: str, *,
               shipped: bool = False) -> list:
    """The one network pass of a loaded ``net`` (with its checkpoint ``info``) that
    realises ``plan``: the axes a 2D network runs on follow from the factors; a
    UserError says what the network is for when it does not fit."""
    from medsr.inference.model_sr import Pass, pass_factors

    K = pretrained.integer_factors(plan.factors)

    def mismatch() -> UserError:  # what the model is for, what this scan needs, what fits
        what = pretrained.purpose(net.scale, net.spatial_dims, name if shipped else None)
        return UserError(f"{name} {what}; this scan needs "
                         f"{pretrained.describe_factors(K)}: "
                         f"{pretrained.suggestion(plan.factors)}")

    if net.spatial_dims == 3:
        axes = None
    else:
        up = [ax for ax in range(3) if K[ax] > 1]
        one_axis = min(int(s) for s in net.scale) == 1  # (1, k): thick slices / z
        if one_axis and len(up) == 1:
            axes = up[0]
        elif not one_axis and len(up) == 2:
            axes = (up[0], up[1])
        else:
            raise mismatch()
    f = pass_factors(net, axes)
    if any((fk < k) or (k == 1 and fk != 1) for fk, k in zip(f, K)):
        raise mismatch()
    return [Pass(net, info, f)]


def super_resolve_model(vol: Volume, plan: OutputGrid, passes: list, *, device: Any,
                        tta: bool = False, max_memory: float = 1.5e9,
                        progress: Any = None, **run_options: Any) -> Volume:
    """Networks realise the integer factors K >= k; Lanczos resamples to the exact grid.

    ``run_options`` (tile, batch, precision, compile_model, blend) go to
    :func:`medsr.inference.model_sr.run_passes`."""
    from medsr.inference.model_sr import run_passes

    K = np.ones(3)
    for p in passes:  # what the networks realise (>= the plan's factors, rounded up)
        K *= np.array(p.factors, dtype=float)
    chans = [vol.data] if vol.data.ndim == 3 else [vol.data[..., c]
                                                  for c in range(vol.data.shape[3])]
    outs = []
    for ch in chans:
        y = run_passes(ch, passes, device=device, tta=tta, max_memory=max_memory,
                       progress=progress, **run_options)
        if not np.allclose(K, plan.factors):
            y = resize(y, plan.factors / K, method="lanczos", shape_out=plan.shape_out)
        outs.append(y)
    data = outs[0] if len(outs) == 1 else np.stack(outs, axis=-1)
    return vol.with_data(data, affine=plan.affine_out)


def _per_channel(vol: Volume, plan: OutputGrid,
                 sr: Callable[[Volume, OutputGrid], Volume], kind: str) -> Volume:
    """Microscopy stacks: per channel / time point with 1/99.8 percentile normalisation;
    pictures, frames, video and RGB TIFFs: the SR on luma (Y), bicubic chroma."""
    if kind == "stack":
        return microscopy.super_resolve_stack(vol, plan, sr)
    return colour.super_resolve_colour(vol, plan, sr)


def _ibp(vol: Volume, plan: OutputGrid, **options: Any) -> np.ndarray:
    from medsr.degrade.ibp import iterative_back_projection

    if not geometry.is_integer_factors(plan.factors):
        raise UserError("--method ibp needs integer factors; use --scale with integers")
    factors = tuple(int(round(k)) for k in plan.factors)
    data = vol.data.astype(np.float32, copy=False)
    if data.ndim == 4:
        chans = [iterative_back_projection(data[..., c], factors, spacing=tuple(vol.spacing),
                                           **options) for c in range(data.shape[3])]
        return np.stack(chans, axis=-1)
    return iterative_back_projection(data, factors, spacing=tuple(vol.spacing), **options)


def infer_file(input_path: str | Path, output: str | Path | None = None, *,
               scale: float | Sequence[float] | None = None,
               spacing: float | Sequence[float] | None = None,
               method: str = "auto", model: str | Path | None = None, device: str = "auto",
               tta: bool = False, max_memory: float = 1.5e9,
               overwrite: bool = False, dtype: str | None = None,
               volume_index: int | None = None, series: str | None = None,
               input_spacing: Sequence[float] | None = None,
               max_output_voxels: int = DEFAULT_MAX_OUTPUT_VOXELS,
               anonymize: bool = False, progress: bool | None = None,
               self_supervised: bool = False, budget_s: float | None = None,
               slice_thickness: float | None = None, slice_profile: str | Path | None = None,
               save_model: str | Path | None = None, seed: int | None = None,
               steps: int | None = None, tile: Sequence[int] | None = None,
               batch: int | None = None,
               precision: str = "auto", compile_model: bool = False,
               blend: str = "crop", keep_overshoot: bool = False,
               budget_start: float | None = None) -> InferResult:
    """Read ``input_path``, super-resolve it and write the result atomically.

    ``method="auto"`` uses the shipped network that fits the factors (see
    :mod:`medsr.pretrained`) and cubic B-spline where none does; ``model`` (a shipped name
    or a checkpoint path) forces a network; any classical method name forces that method.
    ``self_supervised`` trains a network on the scan itself within ``budget_s`` seconds
    (``steps`` of them exactly, if given: reproducible bit for bit with ``seed``)
    (:mod:`medsr.selfsup`) and applies it through-plane; without it, ``slice_profile``
    ("gaussian", "rect" or a .npy kernel) projects the output onto the scan's slices
    (:func:`project_onto_slices`). ``slice_profile`` None or "auto" estimates the profile
    of a thick-slice scan (:func:`auto_slice_profile`): used for the self-supervised
    pairs, and for the projection of a one-axis integer upsampling of the thick axis,
    when the estimate is confident (a note says what was estimated and done). ``tile``,
    ``batch``,
    ``precision``, ``compile_model`` and ``blend`` tune how networks run
    (:func:`medsr.inference.model_sr.run_passes`). The output of a non-negative input is
    clipped at 0 unless ``keep_overshoot`` (:func:`clip_overshoot`).
    Options that do not apply to the mode the flags select are refused or noted by
    :func:`medsr.modes.check_options`; ``budget_s`` (default 300 s) counts from
    ``budget_start`` (a ``time.perf_counter()`` value; default: this call).
    """
    t0 = time.perf_counter()
    input_path = Path(input_path)
    auto_profile = slice_profile is None or str(slice_profile) == AUTO_PROFILE
    if auto_profile:
        slice_profile = None  # estimated from the scan where it applies (auto_slice_profile)
    flag_notes, model = check_options(
        model, method=method, self_supervised=self_supervised, scale=scale, spacing=spacing,
        tta=tta, budget_s=budget_s, steps=steps, seed=seed, save_model=save_model,
        slice_thickness=slice_thickness, slice_profile=slice_profile, device=device,
        max_memory=max_memory, tile=tile, batch=batch, precision=precision,
        compile_model=compile_model, blend=blend)
    video = is_video(input_path)
    fmt = "video" if video else io.detect_format(input_path)
    if output is not None:
        out_path = Path(output)
    elif video:
        out_path = input_path.with_name(f"{input_path.stem}_sr{input_path.suffix}")
    else:
        out_path = io.default_output_path(input_path, fmt)
    check_output(out_path, overwrite, inputs=[input_path])  # fail before any expensive work
    if save_model:  # the fit's checkpoint and its JSON follow the same rules as -o
        fit = Path(save_model)
        fit = fit if fit.suffix == ".safetensors" else fit.with_name(fit.name + ".safetensors")
        for path in (fit, fit.with_suffix(".json")):
            check_output(path, overwrite, inputs=[input_path, out_path])
    t_read = time.perf_counter()
    vol = io.read(input_path, volume=volume_index, series=series,
                  input_spacing=input_spacing, max_voxels=max_output_voxels)
    read_s = time.perf_counter() - t_read
    if dtype is not None and not video and io.output_format(out_path, fmt) == "dicom":
        from medsr.io.dicom.pixels import dicom_dtype

        dicom_dtype(dtype)  # a --dtype DICOM cannot store fails before any work
    if self_supervised:
        return _noted(flag_notes, _infer_self_supervised(
            vol, input_path, out_path, t0, read_s, tta=tta, budget_start=budget_start,
            device=device, budget_s=budget_s, slice_thickness=slice_thickness,
            slice_profile=slice_profile, save_model=save_model, seed=seed, steps=steps,
            progress=progress, overwrite=overwrite, dtype=dtype, anonymize=anonymize,
            keep_overshoot=keep_overshoot, auto_profile=auto_profile))
    fitted = _saved_fit(model)
    if fitted is not None:
        return _noted(flag_notes, _infer_saved_fit(
            vol, fitted, input_path, out_path, t0, device=device, overwrite=overwrite,
            dtype=dtype, anonymize=anonymize, keep_overshoot=keep_overshoot))
    kind = microscopy.kind_of(vol)  # "frames" | "stack" (microscopy TIFF) | None (scans)
    if kind == "frames" and spacing is None:
        # pictures, frames and video: upsample in-plane only, never along the frame axis
        if scale is None:
            scale = microscopy.DEFAULT_FRAMES_SCALE
        if np.ndim(scale) == 0:
            scale = (float(scale), float(scale), 1.0)
    if slice_profile is not None and kind is not None:
        raise UserError("--slice-profile projects a scan's output onto its slices; it does "
                        "not apply to pictures, frames or microscopy stacks")
    grid = plan_grid(vol, scale=scale, spacing=spacing, max_output_voxels=max_output_voxels)
    sr = super_resolve_volume(
        vol, grid, method=method, model=model, device=device, tta=tta, max_memory=max_memory,
        tile=tile, batch=batch, precision=precision, compile_model=compile_model,
        blend=blend, slice_profile=slice_profile, slice_thickness=slice_thickness,
        auto_profile=auto_profile, keep_overshoot=keep_overshoot, progress=progress,
        label=input_path.name)
    result = _write_result(vol, sr.volume, input_path, out_path, t0, method=sr.method,
                           notes=[*flag_notes, *sr.notes], overwrite=overwrite, dtype=dtype,
                           anonymize=anonymize, keep_overshoot=True)  # clipped above
    result.model, result.tta = sr.model, sr.tta
    return result


@dataclass
class Resolved:
    """What :func:`super_resolve_volume` made, and how."""

    volume: Volume
    notes: list[str]
    method: str  # what ran: the network(s) or the classical method
    model: str = ""  # the network(s); "" for classical methods
    tta: bool = False  # the flip self-ensemble ran


def super_resolve_volume(vol: Volume, grid: OutputGrid, *, method: str = "auto",
                         model: str | Path | None = None, passes: list | None = None,
                         device: Any = "auto", tta: bool = False,
                         max_memory: float = 1.5e9, tile: Sequence[int] | None = None,
                         batch: int | None = None, precision: str = "auto",
                         compile_model: bool = False, blend: str = "crop",
                         slice_profile: str | Path | None = None,
                         slice_thickness: float | None = None, auto_profile: bool = False,
                         keep_overshoot: bool = False, progress: bool | None = None,
                         label: str = "volume") -> Resolved:
    """The one runner of ``medsr infer`` and ``medsr eval --model``: ``vol`` super-resolved
    onto ``grid``, in memory.

    A network (``passes`` already loaded, ``model`` a shipped name or checkpoint, or with
    ``method="auto"`` the shipped default that fits; microscopy-z / frames-x for stacks
    and frames) runs tiled, fused over planes, with flips (``tta``) and the exact-grid
    finish (:func:`super_resolve_model`); a classical ``method`` otherwise. Stacks go per
    channel with percentile normalisation, pictures and frames through luma
    (:mod:`medsr.microscopy`, :mod:`medsr.colour`). Then the optional projection onto the
    slices (``slice_profile``, or the confident estimate with ``auto_profile``) and the
    clipping of a non-negative input's output at 0 unless ``keep_overshoot``.
    """
    kind = microscopy.kind_of(vol)  # "frames" | "stack" (microscopy TIFF) | None (scans)
    frames_like = kind == "frames"
    notes: list[str] = []
    out = None
    out_model: str | None = None  # the network(s) that made ``out``
    used = method
    if passes is None and model is None and method == "auto" and kind is not None:
        # microscopy-z<k> / frames-x<k> when installed; the MRI models do not apply here
        model = microscopy.default_model_for(vol, grid)
        if model is None:
            used = "catmull-rom" if frames_like else "cubic"
            if np.any(grid.factors > 1):
                notes.append(f"no shipped {'frames' if frames_like else 'microscopy'} model "
                             f"for factors {np.round(grid.factors, 3).tolist()}; used {used}")
    per_channel = kind is not None
    if passes is not None or model is not None or used == "auto":
        from medsr import multiframe
        from medsr.devices import select_device
        from medsr.inference.model_sr import use_all_cores

        dev = select_device(device)
        use_all_cores()
        if passes is None:
            passes = model_passes(grid, model, dev)
        if passes:
            used = " + ".join(str(p.info.get("name") or model or p.info["architecture"])
                              for p in passes)
            out_model = used
            with progress_bar(f"{label}: super-resolving", progress) as update:
                def net(v: Volume, p: OutputGrid) -> Volume:
                    if multiframe.is_multiframe(passes):  # 2r+1 frames in
                        return multiframe.multiframe_sr(v, p, passes[0].model, passes[0].info,
                                                        device=dev, tta=tta,
                                                        max_memory=max_memory)
                    return super_resolve_model(v, p, passes, device=dev, tta=tta,
                                               max_memory=max_memory, progress=update,
                                               tile=tile, batch=batch, precision=precision,
                                               compile_model=compile_model, blend=blend)

                out = _per_channel(vol, grid, net, kind) if per_channel else net(vol, grid)
        else:
            used = "cubic"
            if np.any(grid.factors > 1):
                notes.append(f"no shipped model for factors {np.round(grid.factors, 3).tolist()}"
                             "; used cubic B-spline")
    if out is None:
        def classical(v: Volume, p: OutputGrid) -> Volume:
            return super_resolve(v, p, method=used)

        out = _per_channel(vol, grid, classical, kind) if per_channel else classical(vol, grid)
    if slice_profile is not None:
        out, note = project_onto_slices(vol, out, grid, slice_profile, slice_thickness)
        notes.append(note)
    elif auto_profile and kind is None and _thick_axis_upsampled(vol, grid):
        est = auto_slice_profile(vol)
        if est is not None and est.confident:
            out, _ = project_onto_slices(vol, out, grid, est.family, est.width_mm)
            notes.append(f"slice profile: {est.describe()}: projected onto the scan's "
                         "slices (--slice-profile gaussian|rect|FILE.npy sets it)")
        elif est is not None:
            notes.append(f"slice profile: {est.describe()}: not projected onto the scan's "
                         "slices (--slice-profile gaussian|rect|FILE.npy projects)")
    networks = out_model is not None
    if tta and not networks:
        notes.append(f"--tta applies to networks; {used} did not use it")
    if not keep_overshoot:
        out, note = clip_overshoot(vol, out)
        if note:
            notes.append(note)
    return Resolved(out, notes, used, out_model or "", bool(tta and networks))


def auto_slice_profile(vol: Volume) -> Any:
    """The slice profile of ``vol``'s thick axis estimated from the scan
    (:func:`medsr.selfsup.profile_estimate.estimate_profile`), None without a thick axis."""
    from medsr.selfsup.profile_estimate import estimate_profile

    return estimate_profile(vol)


def _thick_axis_upsampled(vol: Volume, plan: OutputGrid) -> bool:
    """Whether ``plan`` upsamples only ``vol``'s thick axis, by an integer factor (what
    the projection onto the slices needs)."""
    from medsr.selfsup.profile_estimate import thick_axis

    axes = thick_axis(vol)
    up = [a for a in range(3) if plan.factors[a] > 1 + 1e-6]
    if axes is None or len(up) != 1 or up[0] != axes[0] or np.any(plan.factors < 1 - 1e-6):
        return False
    f = float(plan.factors[up[0]])
    return abs(f - round(f)) <= 1e-6


def read_slice_profile(arg: str | Path | None) -> tuple[str, np.ndarray | None]:
    """``--slice-profile`` as ``medsr.selfsup`` takes it: ("gaussian" | "rect", None) for a
    named profile (None: Gaussian), ("gaussian", taps) for a 1D kernel in a .npy file
    (the taps win over the name)."""
    if arg is None or str(arg) in ("gaussian", "rect"):
        return str(arg or "gaussian"), None
    try:
        kernel = np.load(arg, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"--slice-profile is gaussian, rect or a .npy kernel; cannot read "
                        f"{arg}: {exc}") from exc
    if kernel.ndim != 1 or kernel.size < 1 or not np.all(np.isfinite(kernel)):
        raise UserError(f"the slice profile {arg} must be a finite 1D array")
    return "gaussian", kernel


def project_onto_slices(vol: Volume, out: Volume, plan: OutputGrid,
                        slice_profile: str | Path,
                        slice_thickness: float | None = None) -> tuple[Volume, str]:
    """``out`` made to re-acquire ``vol``'s slices under the slice profile
    (:mod:`medsr.selfsup.consistency`): for a one-axis integer upsampling of a thick-slice
    scan along its thick axis. Gains 0.3-0.9 dB over the shipped default when the
    profile is right, loses up to 1.6 dB when it is wrong (docs/self-supervised.md)."""
    from medsr.selfsup import scan_profile
    from medsr.selfsup.consistency import project

    name, taps = read_slice_profile(slice_profile)
    tp, kernel, mm, source = scan_profile(vol, name, slice_thickness, taps)
    up = [a for a in range(3) if plan.factors[a] > 1 + 1e-6]
    k = int(round(float(plan.factors[up[0]]))) if len(up) == 1 else 0
    if (len(up) != 1 or up[0] != tp.axis or abs(plan.factors[up[0]] - k) > 1e-6
            or np.any(plan.factors < 1 - 1e-6)):
        raise UserError("--slice-profile needs the thick axis upsampled by an integer factor "
                        f"and nothing else (the plan is {np.round(plan.factors, 3).tolist()})")
    data = project(out.data, vol.data, tp.axis, kernel, k)
    what = "a kernel from file" if taps is not None else f"{name} profile"
    return out.with_data(data), (f"projected onto the scan's slices ({what}, "
                                 f"thickness {mm:g} mm from {source})")


def clip_overshoot(vol: Volume, out: Volume) -> tuple[Volume, str | None]:
    """``out`` clipped at 0 when the input ``vol`` is non-negative (interpolation and
    networks overshoot below 0 at sharp edges), with a note that counts the clipped
    voxels (None when none was)."""
    data = out.data
    if not np.issubdtype(data.dtype, np.floating) and not np.issubdtype(data.dtype,
                                                                        np.signedinteger):
        return out, None
    if vol.data.size == 0 or vol.data.min() < 0:
        return out, None
    n = int(np.count_nonzero(data < 0))
    if n == 0:
        return out, None
    if data.flags.writeable and not np.may_share_memory(data, vol.data):
        np.maximum(data, 0, out=data)
    else:
        out = out.with_data(np.maximum(data, 0))
    return out, (f"clipped {n:,} voxels ({100.0 * n / data.size:.3g}%) below 0 to 0 (the "
                 "input is non-negative; --keep-overshoot keeps them)")


def _write_result(vol: Volume, out: Volume, input_path: Path, out_path: Path, t0: float, *,
                  method: str, notes: list[str], overwrite: bool, dtype: str | None,
                  anonymize: bool, keep_overshoot: bool = False) -> InferResult:
    """Write ``out`` in the format ``out_path`` names (video by its suffix) and report;
    a non-negative input's output is clipped at 0 unless ``keep_overshoot``."""
    if np.issubdtype(out.data.dtype, np.inexact) and not np.all(np.isfinite(out.data)):
        raise InputError(f"{input_path}: {method} produced non-finite values (the input's "
                         "range overflows the arithmetic); rescale the image")
    if not keep_overshoot:
        out, note = clip_overshoot(vol, out)
        if note:
            notes = [*notes, note]
    options: dict[str, Any] = {"anonymize": True} if anonymize else {}
    written = io.write(out, out_path, overwrite=overwrite, dtype=dtype, inputs=[input_path],
                       **options)
    return InferResult(input=input_path, output=Path(written), method=method,
                       shape_in=vol.spatial_shape, shape_out=out.spatial_shape,
                       spacing_in=tuple(float(s) for s in vol.spacing),
                       spacing_out=tuple(float(s) for s in out.spacing),
                       seconds=time.perf_counter() - t0, notes=notes,
                       unit=microscopy.spacing_unit(vol),
                       provenance={"affine_out": out.affine.tolist()})  # issue 25


def check_options(model: Any, **options: Any) -> tuple[list[str], Any]:
    """(notes, the model to load): the flag rules of :func:`medsr.modes.check_options`,
    then a shipped name resolved (:func:`medsr.pretrained.resolve`), before any work."""
    fitted = _saved_fit(model)
    _, notes = modes.check_options(model=model, saved_fit=fitted is not None, **options)
    if model is not None and fitted is None:
        model, note = pretrained.resolve(model)
        if note:
            notes.append(note)
    return notes, model


def _noted(notes: list[str], result: InferResult) -> InferResult:
    """``result`` with ``notes`` (the flag notes) first."""
    result.notes[:0] = notes
    return result


def _saved_fit(model: Any) -> Path | None:
    """``model`` when it is a network fitted by ``--self-supervised --save-model`` (its
    checkpoint has a ``selfsup`` block), else None."""
    if model is None:
        return None
    path = Path(str(model))
    if path.suffix != ".safetensors" or not path.is_file():
        return None
    from medsr.models.checkpoint import read_info

    try:
        info = read_info(path)  # metadata only: the weights are read once, where used
    except UserError:
        return None  # not readable as one: the model path reports it
    return path if "selfsup" in info else None


def _infer_saved_fit(vol: Volume, fitted: Path, input_path: Path, out_path: Path, t0: float,
                     *, device: str, overwrite: bool, dtype: str | None, anonymize: bool,
                     keep_overshoot: bool = False) -> InferResult:
    """``--model FIT`` with a saved self-supervised fit: applied as the fitting run applied
    it (both orientations, test-time flips, projected onto this scan's slices under the
    profile it was fitted for; :func:`medsr.selfsup.apply_saved`)."""
    from medsr.selfsup import apply_saved

    out = apply_saved(vol, fitted, device=device)
    notes = [f"self-supervised fit {fitted.name}: test-time flips, projected onto the "
             "scan's slices"]
    result = _write_result(vol, out, input_path, out_path, t0,
                           method="self-supervised (saved fit)", notes=notes,
                           overwrite=overwrite, dtype=dtype, anonymize=anonymize,
                           keep_overshoot=keep_overshoot)
    result.model, result.tta = str(fitted), True
    return result


def self_supervised_budget(budget_s: float, spent_s: float, read_s: float,
                           factor: float) -> float:
    """Seconds left to :func:`medsr.selfsup.super_resolve_self_supervised` of a command's
    ``budget_s``: less what is spent (``spent_s``: reading the scan and, from the command
    line, starting Python) and the writing still to come, estimated as WRITE_PER_READ
    times the read time (``read_s``) per voxel, ``factor`` times as many voxels."""
    return budget_s - spent_s - WRITE_PER_READ * read_s * max(1.0, factor)


def _infer_self_supervised(vol: Volume, input_path: Path, out_path: Path, t0: float,
                           read_s: float, *,
                           device: str, budget_s: float | None, tta: bool,
                           budget_start: float | None, slice_thickness: float | None,
                           slice_profile: str | Path | None, save_model: str | Path | None,
                           seed: int | None, steps: int | None, progress: bool | None,
                           overwrite: bool, dtype: str | None, anonymize: bool,
                           keep_overshoot: bool = False,
                           auto_profile: bool = False) -> InferResult:
    """``--self-supervised``: the plan is the scan's own (its thick axis to the in-plane
    spacing); the budget covers the whole command from ``budget_start`` (default ``t0``)
    to the written output. The flag rules are :func:`medsr.modes.check_options`'.
    ``auto_profile``: the slice profile of the training pairs is estimated from the scan
    (used when confident; otherwise Gaussian, as with no estimate)."""
    from medsr.selfsup import FEW_STEPS, super_resolve_self_supervised
    from medsr.selfsup.api import BudgetTooShort

    budget_s = DEFAULT_BUDGET_S if budget_s is None else budget_s
    name, kernel = read_slice_profile(slice_profile)
    profile_note, estimated_mm = None, False
    if auto_profile:
        est = auto_slice_profile(vol)
        if est is not None and est.confident:
            name = est.family
            if slice_thickness is None:
                slice_thickness, estimated_mm = est.width_mm, True
            profile_note = (f"slice profile: {est.describe()}: used for the training pairs "
                            "(--slice-profile gaussian|rect|FILE.npy sets it)")
        elif est is not None:
            profile_note = (f"slice profile: {est.describe()}: assumed Gaussian (FWHM = "
                            "thickness) as without an estimate (--slice-profile "
                            "gaussian|rect|FILE.npy sets it)")
    now = time.perf_counter()  # the budget counts the imports and the estimate above
    sp = np.sort(np.asarray(vol.spacing, dtype=float))
    spent = now - (t0 if budget_start is None else budget_start)
    inner = self_supervised_budget(budget_s, spent, read_s, float(sp[-1] / max(sp[0], 1e-12)))
    if inner <= 0:
        raise UserError(f"the {budget_s:g} s budget is too short: starting and reading the "
                        f"scan took {spent:.1f} s and writing the output will take about "
                        f"{budget_s - spent - inner:.1f} s, leaving no time to train; give at "
                        f"least --budget {math.ceil(4 * (budget_s - inner))}s")
    try:
        out, report = super_resolve_self_supervised(
            vol, budget_s=inner, slice_thickness=slice_thickness, slice_profile=kernel,
            profile=name, seed=0 if seed is None else seed, steps=steps, device=device,
            tta=True if tta else None,
            save_model=Path(save_model) if save_model else None,
            progress=bool(progress) if progress is not None else None)
    except BudgetTooShort as short:  # said of the command's budget, not the inner one
        raise short.around(budget_s, spent, budget_s - spent - inner) from None
    tr = report.get("train", {})
    notes = [f"self-supervised: {tr.get('steps', '?')} training steps in "
             f"{tr.get('seconds', 0.0):.0f} s (stopped by {tr.get('stopped_by') or '?'}; "
             f"budget {budget_s:g} s), slice thickness "
             f"{_num(report.get('slice_thickness_mm'))} mm from "
             f"{'the estimate' if estimated_mm else report.get('slice_thickness_source')}"]
    if profile_note:
        notes.append(profile_note)
    if steps is not None and tr.get("steps") != steps:
        notes.append(f"the budget stopped training before --steps {steps}: this run is not "
                     "reproducible bit for bit; give a longer --budget")
    elif tr.get("stopped_by") == "budget" and tr.get("seconds", 0.0) < 0.25 * budget_s:
        notes.append(f"training had {tr.get('seconds', 0.0):.1f} s of the {budget_s:g} s "
                     "budget (set-up and inference took the rest): a longer --budget "
                     "trains more")
    if inner < 0.1 * budget_s:
        notes.append(f"reading the scan, starting up and writing the output take about "
                     f"{budget_s - inner:.1f} s of the {budget_s:g} s budget: a longer "
                     "--budget trains more")
    if report.get("few_steps"):
        notes.append(f"{tr.get('steps')} training steps is few (under {FEW_STEPS:,}): the "
                     "result is likely worse than the shipped default (medsr infer without "
                     "--self-supervised); a longer --budget trains more")
    if report.get("saved_model"):
        notes.append(f"fitted model saved to {report['saved_model']}")
    result = _write_result(vol, out, input_path, out_path, t0, method="self-supervised",
                           notes=notes, overwrite=overwrite, dtype=dtype, anonymize=anonymize,
                           keep_overshoot=keep_overshoot)
    result.model = str(report.get("saved_model") or report.get("architecture") or "")
    result.provenance.update(  # issue 25: the slice profile for the sidecar
        selfsup_part(report, name, estimated_mm, profile_note, auto_profile))
    result.tta = int(report.get("test_time_flips", 1)) > 1
    took = time.perf_counter() - (t0 if budget_start is None else budget_start)
    if took > 1.05 * budget_s:
        result.notes.append(f"the run took {took:.1f} s, over the {budget_s:g} s budget: "
                            f"set-up ({report.get('setup_s', 0.0):.1f} s), one training step "
                            "and inference need more; give a longer --budget")
    return result


def make_sr(method: str = "auto", model: str | Path | None = None,
            plan: OutputGrid | None = None, vol: Volume | None = None, device: str = "cpu",
            tta: bool = False) -> tuple[Callable[[Volume, OutputGrid], Volume], str]:
    """A single-channel super-resolver and its name: a network (``model``, or with
    ``method='auto'`` the default for ``vol``/``plan``), else a classical method
    (``auto`` without a fitting model -> catmull-rom bicubic). A multi-frame model
    (neighbouring frames as channels) runs through :func:`medsr.multiframe.multiframe_sr`."""
    if model is None and method == "auto" and vol is not None and plan is not None:
        model = microscopy.default_model_for(vol, plan)
    if model is not None:
        from medsr.devices import select_device
        from medsr.multiframe import is_multiframe, multiframe_sr

        dev = select_device(device)
        passes = model_passes(plan, model, dev)
        if is_multiframe(passes):
            mf = passes[0]

            def net(v: Volume, p: OutputGrid) -> Volume:
                return multiframe_sr(v, p, mf.model, mf.info, device=dev, tta=tta)
        else:
            def net(v: Volume, p: OutputGrid) -> Volume:
                return super_resolve_model(v, p, passes, device=dev, tta=tta)

        return net, Path(str(model)).stem if Path(str(model)).suffix else str(model)
    classical = "catmull-rom" if method == "auto" else method

    def interp(v: Volume, p: OutputGrid) -> Volume:
        return super_resolve(v, p, method=classical)

    return interp, classical


def infer_frames(input_path: str | Path, output: str | Path, *, scale: float = 4,
                 method: str = "auto", model: str | Path | None = None, device: str = "cpu",
                 tta: bool = False, overwrite: bool = False) -> Volume:
    """A picture, frames folder, multi-page TIFF or video in -> x``scale`` in-plane out, in
    the same form (frame count, order and names kept), colour through Y.

    ``method='auto'`` uses the shipped frames model when it fits (see
    :func:`medsr.microscopy.default_model_for`), else Catmull-Rom bicubic.
    """
    input_path = Path(input_path)
    vol = io.read(input_path)
    plan = plan_grid(vol, scale=(scale, scale, 1))
    if model is None and method == "auto" and vol.meta.get("format") == "tiff":
        # a multi-page TIFF of frames
        model = microscopy.default_model_for(vol.with_data(vol.data, format="frames"), plan)
    sr, _ = make_sr(method, model, plan, vol, device, tta)
    out = colour.super_resolve_colour(vol, plan, sr)
    io.write(out, output, overwrite=overwrite, inputs=[input_path])
    return out


def isotropic_tiff(input_path: str | Path, output: str | Path, *,
                   spacing: float | None = None, scale: float | Sequence[float] | None = None,
                   method: str = "auto", model: str | Path | None = None,
                   input_spacing: Sequence[float] | None = None, device: str = "cpu",
                   lower: float = microscopy.PERCENTILES[0],
                   upper: float = microscopy.PERCENTILES[1],
                   overwrite: bool = False) -> Volume:
    """TIFF stack in -> z-isotropic (or ``scale``d) stack out, dtype and layout kept.

    ``spacing`` is the target z step in the file's unit (default the lateral pixel size).
    Returns the written Volume.
    """
    vol = io.read(input_path, input_spacing=input_spacing)
    if vol.meta.get("format") != "tiff":
        raise UserError(f"{input_path}: not a TIFF stack")
    plan = plan_grid(vol, scale=scale) if scale is not None else plan_isotropic(vol, spacing)
    sr, _ = make_sr(method, model, plan, vol, device)
    out = microscopy.super_resolve_stack(vol, plan, sr, lower=lower, upper=upper)
    io.write(out, output, overwrite=overwrite, inputs=[Path(input_path)])
    return out
