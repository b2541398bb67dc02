"""The main job: read a file, plan the output grid, super-resolve, write it back.

Every step is a library call, so a Python user gets exactly what ``medsr infer`` does:

    >>> from medsr.pipeline import infer_file
    >>> result = infer_file("scan.nii.gz", spacing=1.0, method="cubic")
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from medsr import io
from medsr.adapters import DEFAULT_FRAMES_SCALE, kind_of
from medsr.errors import UserError
from medsr.geometry import OutputGrid, default_factors, plan_grid
from medsr.inference.resolvers import plan_by_model
from medsr.io.common import check_output
from medsr.io.video import is_video
from medsr.options import GridRequest, InferOptions, RunOptions
from medsr.pipeline import modes
from medsr.pipeline.result import InferResult, write_result
from medsr.pipeline.run import super_resolve_volume
from medsr.pipeline.selfsup_run import run_saved_fit, run_self_supervised
from medsr.provenance import run_with_sidecar
from medsr.volume import Volume


def infer_file(input_path: str | Path, output: str | Path | None = None,
               options: InferOptions | None = None, **kwargs: Any) -> InferResult:
    """Read ``input_path``, super-resolve it and write the result atomically.

    ``options`` (or the flat keywords of :meth:`InferOptions.from_kwargs`: ``scale``,
    ``spacing``, ``method``, ``model``, ``self_supervised``, ...) say what to do; the modes
    and which options combine are :mod:`medsr.pipeline.modes`'. ``method="auto"`` uses
    the shipped network that fits the factors and cubic B-spline where none does;
    ``model`` (a shipped name or a checkpoint) forces a network and, without ``scale``
    or ``spacing``, plans the grid by its own factors; a classical method name forces
    that method; ``self_supervised`` fits a network to the scan within the budget.
    """
    if options is None:
        options = InferOptions.from_kwargs(**kwargs)
    elif kwargs:
        raise TypeError("give the options as `options` or as keywords, not both")
    t0 = time.perf_counter()
    input_path = Path(input_path)
    mode, notes, model = modes.check(options)
    out_path, fmt = _output_path(input_path, output, options)
    t_read = time.perf_counter()
    r = options.read
    vol = io.read(input_path, volume=r.volume, series=r.series,
                  input_spacing=r.input_spacing, max_voxels=r.max_voxels)
    read_s = time.perf_counter() - t_read
    if options.write.dtype is not None and fmt != "video" and \
            io.output_format(out_path, fmt) == "dicom":
        from medsr.io.dicom.pixels import dicom_dtype  # pydicom: only for DICOM output

        dicom_dtype(options.write.dtype)  # a --dtype DICOM cannot store fails before work
    if mode == "self-supervised":
        result = run_self_supervised(vol, input_path, out_path, t0, read_s, options)
    elif mode == "saved-fit":
        result = run_saved_fit(vol, Path(str(model)), input_path, out_path, t0, options)
    else:
        result = _run(vol, input_path, out_path, t0, options, model)
    result.notes[:0] = notes
    return result


def infer_file_with_sidecar(input_path: str | Path, output: str | Path | None,
                            options: InferOptions, *, sidecar: bool = True,
                            command: Sequence[str] | str | None = None) -> InferResult:
    """:func:`infer_file` with its provenance sidecar (:func:`medsr.provenance.run_with_sidecar`:
    refused before any work when it may not be written, written after the output)."""
    def infer(src: str | Path, dst: str | Path | None, **_: Any) -> InferResult:
        return infer_file(src, dst, options)

    run = options.run
    return run_with_sidecar(infer, input_path, output, sidecar=sidecar, command=command,
                            overwrite=options.write.overwrite, model=run.model,
                            device=run.device, precision=run.precision)


def _run(vol: Volume, input_path: Path, out_path: Path, t0: float, options: InferOptions,
         model: Any) -> InferResult:
    """Network or classical: plan, resolve, adapt, project, write; ``model`` is
    ``--model`` resolved (a name served by a larger shipped model is that one)."""
    run = replace(options.run, model=model)
    kind = kind_of(vol)  # "frames" | "stack" (microscopy TIFF) | None (scans)
    if run.profile is not None and kind is not None:
        raise UserError("--slice-profile projects a scan's output onto its slices; it does "
                        "not apply to pictures, frames or microscopy stacks")
    grid, passes, notes = plan(vol, options.grid, options.run, kind)
    sr = super_resolve_volume(vol, grid, run, passes=passes, auto_profile=run.auto_profile,
                              label=input_path.name)
    result = write_result(vol, sr.volume, input_path, out_path, t0, method=sr.method,
                          notes=[*notes, *sr.notes], write=options.write,
                          keep_overshoot=True)  # clipped above
    result.model, result.tta = sr.model, sr.tta
    return result


def plan(vol: Volume, request: GridRequest, run: RunOptions,
         kind: str | None) -> tuple[OutputGrid, list | None, list[str]]:
    """(the output grid, the network passes when planning loaded them, notes).

    ``--scale``/``--spacing`` set the grid. Without them, on an isotropic input (where
    the default is x2 along every axis, which no 2D network realises) a named model's own
    factors do (``run.model`` as given; :func:`medsr.inference.resolvers.plan_by_model`);
    otherwise pictures, frames and video go x4 in-plane, and scans and stacks follow
    :func:`medsr.geometry.plan_grid`'s default (the thick axis to the finest spacing)."""
    limit = request.max_output_voxels
    if run.model is not None and not request.given and is_isotropic(vol):
        grid, passes, note = plan_by_model(vol, run.model, run.device, limit)
        return grid, passes, [note]
    scale = request.scale
    if kind == "frames" and request.spacing is None:
        # pictures, frames and video: upsample in-plane only, never along the frame axis
        scale = DEFAULT_FRAMES_SCALE if scale is None else scale
        if np.ndim(scale) == 0:
            scale = (float(scale), float(scale), 1.0)
    return plan_grid(vol, scale=scale, spacing=request.spacing,
                     max_output_voxels=limit), None, []


def is_isotropic(vol: Volume) -> bool:
    """Whether :func:`medsr.geometry.default_factors` leaves no axis (of more than one
    voxel) at its spacing, i.e. the input has no thick axis to make isotropic."""
    present = np.array([n > 1 for n in vol.spatial_shape])
    k = default_factors(vol.affine, vol.spatial_shape)
    return not np.any(np.isclose(k, 1.0) & present)


def _output_path(input_path: Path, output: str | Path | None,
                 options: InferOptions) -> tuple[Path, str]:
    """(where to write, the input's format): by default ``<stem>_sr`` beside the input,
    checked before any work; ``--save-model``'s checkpoint and JSON follow the same rules."""
    fmt = "video" if is_video(input_path) else io.detect_format(input_path)
    if output is not None:
        out_path = Path(output)
    elif fmt == "video":
        out_path = input_path.with_name(f"{input_path.stem}_sr{input_path.suffix}")
    else:
        out_path = io.default_output_path(input_path, fmt)
    overwrite = options.write.overwrite
    check_output(out_path, overwrite, inputs=[input_path])  # fail before expensive work
    save = options.selfsup.save_model
    if save:
        fit = Path(save)
        fit = fit if fit.suffix == ".safetensors" else fit.with_name(fit.name + ".safetensors")
        for path in (fit, fit.with_suffix(".json")):
            check_output(path, overwrite, inputs=[input_path, out_path])
    return out_path, fmt
