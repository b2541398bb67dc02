"""The one place that chooses how a volume is super-resolved: a network (the shipped
default that fits, a named model or checkpoint, a multi-frame model) or a classical
method, for scans, microscopy stacks and frames alike.

:func:`choose_resolver` returns a :class:`Resolver`: a single-channel super-resolver
(channels, colour and percentiles are the adapters' job, :mod:`medsr.adapters`) with the
name of what runs and the notes that go in the summary. :func:`model_grid_factors` is
what a named model realises on a scan (``--model`` without ``--scale``/``--spacing``
plans the grid by it). A saved self-supervised fit is recognised by :func:`saved_fit`.

torch and the network modules are imported where a network is first needed, so that a
classical run imports no torch (tests/test_startup_imports.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsr import pretrained
from medsr.errors import UserError
from medsr.geometry import OutputGrid, plan_grid
from medsr.inference.classical import super_resolve
from medsr.interpolate import resize
from medsr.options import RunOptions
from medsr.volume import Volume


@dataclass
class Resolver:
    """A single-channel super-resolver and what it is."""

    apply: Callable[..., Volume]  # (vol, grid, progress=None) -> Volume on grid
    method: str  # what runs: the network(s) or the classical method
    model: str = ""  # the network(s); "" for a classical method
    notes: list[str] = field(default_factory=list)

    @property
    def network(self) -> bool:
        """Whether a network runs."""
        return bool(self.model)

    def __call__(self, vol: Volume, grid: OutputGrid, progress: Any = None) -> Volume:
        return self.apply(vol, grid, progress)


def saved_fit(model: Any) -> Path | None:
    """``model`` when it is a network fitted by ``--self-supervised --save-model`` (its
    checkpoint has a ``selfsup`` block), else None."""
    if model is None:
        return None
    path = Path(str(model))
    if path.suffix != ".safetensors" or not path.is_file():
        return None
    from medsr.models.checkpoint import read_info  # imports torch

    try:
        info = read_info(path)  # metadata only: the weights are read once, where used
    except UserError:
        return None  # not readable as one: the model path reports it
    return path if "selfsup" in info else None


def default_model_for(kind: str | None, plan: OutputGrid) -> str | None:
    """The shipped model that realises ``plan`` for a microscopy ``stack`` or ``frames``
    (:func:`medsr.adapters.kind_of`), if installed.

    Stacks with only z upsampled -> ``microscopy-z<K>``; frames (pictures, frames, video,
    RGB TIFF) with both in-plane axes upsampled equally -> ``frames-x<K>`` (K the integer
    factor the network gives; a non-integer factor is finished by Lanczos resampling).
    Returns the registry name when :mod:`medsr.pretrained` knows it, else the weight file
    path when the file exists, else None. Scans choose by :func:`medsr.pretrained.choose`.
    """
    K = pretrained.integer_factors(plan.factors)
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


def load_named(model: str | Path, device: Any) -> tuple[Any, dict[str, Any], str, bool]:
    """(network, checkpoint info, its name, whether shipped) of ``--model NAME|PATH``;
    a name served by a larger shipped model loads that one."""
    from medsr.inference.model_sr import load

    model, _ = pretrained.resolve(model)
    net, info = load(model, device)
    name = str(model) if str(model) in pretrained.PRETRAINED else None
    return net, info, name or Path(str(model)).name, name is not None


def model_grid_factors(vol: Volume, scale: Sequence[int],
                       spatial_dims: int) -> tuple[float, float, float]:
    """The factors a network of this ``scale`` realises on ``vol`` in one pass: a 3D
    network its scale; a one-axis 2D network (scale (1, k)) k along the thick axis (the
    coarsest; axis 2 on an isotropic scan); an in-plane 2D network its scale on the
    other two axes."""
    s = [int(v) for v in scale]
    if int(spatial_dims) == 3:
        return tuple(float(v) for v in s)  # type: ignore[return-value]
    sp = np.asarray(vol.spacing, dtype=float)
    # anisotropic as medsr.geometry.default_factors has it (largest >= 1.2 x smallest)
    thick = int(np.argmax(sp)) if sp.max() >= 1.2 * sp.min() else 2
    f = [1.0, 1.0, 1.0]
    if min(s) == 1:
        f[thick] = float(max(s))
    else:
        a, b = (ax for ax in range(3) if ax != thick)
        f[a], f[b] = float(s[0]), float(s[1])
    return tuple(f)  # type: ignore[return-value]


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
    net, info, name, shipped = load_named(model, device)
    return net_passes(plan, net, info, name, shipped=shipped)


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
    """Networks realise the integer factors K >= k on one channel; Lanczos resamples to
    the exact grid. ``run_options`` (tile, batch, precision, compile_model, blend) go to
    :func:`medsr.inference.model_sr.run_passes`."""
    from medsr.inference.model_sr import run_passes

    if vol.data.ndim != 3:
        raise UserError("a network takes one channel at a time (medsr.adapters.per_channel)")
    K = np.ones(3)
    for p in passes:  # what the networks realise (>= the plan's factors, rounded up)
        K *= np.array(p.factors, dtype=float)
    y = run_passes(vol.data, passes, device=device, tta=tta, max_memory=max_memory,
                   progress=progress, **run_options)
    if not np.allclose(K, plan.factors):
        y = resize(y, plan.factors / K, method="lanczos", shape_out=plan.shape_out)
    return vol.with_data(y, affine=plan.affine_out)


def choose_resolver(vol: Volume, grid: OutputGrid, run: RunOptions, *,
                    kind: str | None = None, passes: list | None = None) -> Resolver:
    """The network or classical method for ``vol`` on ``grid``.

    ``passes`` (already loaded), ``run.model`` (a shipped name or checkpoint), or with
    ``run.method == "auto"`` the shipped default that fits: for scans by the factors
    (:func:`medsr.pretrained.choose`), for stacks and frames (``kind``) microscopy-z /
    frames-x (:func:`default_model_for`); a multi-frame model runs through
    :func:`medsr.inference.multiframe.multiframe_sr`. Where no network fits: cubic
    B-spline (Catmull-Rom for frames), with a note. A classical ``run.method`` otherwise.
    """
    model, used, notes = run.model, run.method, []
    if passes is None and model is None and used == "auto" and kind is not None:
        model = default_model_for(kind, grid)  # the MRI models do not apply here
        if model is None:
            used = "catmull-rom" if kind == "frames" else "cubic"
            if np.any(grid.factors > 1):
                notes.append(f"no shipped {'frames' if kind == 'frames' else 'microscopy'} "
                             f"model for factors {np.round(grid.factors, 3).tolist()}; "
                             f"used {used}")
    if passes is not None or model is not None or used == "auto":
        from medsr.devices import select_device
        from medsr.inference.model_sr import use_all_cores

        dev = select_device(run.device)
        use_all_cores()
        if passes is None:
            passes = model_passes(grid, model, dev)
        if passes:
            name = " + ".join(str(p.info.get("name") or model or p.info["architecture"])
                              for p in passes)
            return Resolver(_network(passes, dev, run), name, name, notes)
        used = "cubic"
        if np.any(grid.factors > 1):
            notes.append(f"no shipped model for factors {np.round(grid.factors, 3).tolist()}"
                         "; used cubic B-spline")

    def classical(v: Volume, p: OutputGrid, progress: Any = None) -> Volume:
        return super_resolve(v, p, method=used)

    return Resolver(classical, used, "", notes)


def _network(passes: list, dev: Any, run: RunOptions) -> Callable[..., Volume]:
    """The single-channel network runner of ``passes`` under ``run``'s settings."""
    from medsr.inference.multiframe import is_multiframe, multiframe_sr

    def net(v: Volume, p: OutputGrid, progress: Any = None) -> Volume:
        if is_multiframe(passes):  # 2r+1 frames in
            return multiframe_sr(v, p, passes[0].model, passes[0].info, device=dev,
                                 tta=run.tta, max_memory=run.max_memory)
        return super_resolve_model(v, p, passes, device=dev, tta=run.tta,
                                   max_memory=run.max_memory, progress=progress,
                                   tile=run.tile, batch=run.batch, precision=run.precision,
                                   compile_model=run.compile_model, blend=run.blend)

    return net


def plan_by_model(vol: Volume, model: str | Path, device: str, max_output_voxels: int
                  ) -> tuple[OutputGrid, list, str]:
    """``--model`` without ``--scale``/``--spacing``: (the grid the model's own factors
    make, the model's pass on it, a note saying so). A shipped name's factors are its
    name's (``thick-slice-x3`` plans x3 even when x4 serves it); a checkpoint's are its
    network's scale. The model is loaded once."""
    from medsr.devices import select_device

    net, info, name, shipped = load_named(model, select_device(device))
    named = pretrained.PRETRAINED.get(str(model))
    if named is not None:  # one-axis kinds (1, k), in-plane kinds (k, k); all 2D
        one_axis = named.kind in ("through-plane", "microscopy")
        factors = model_grid_factors(vol, (1, named.factor) if one_axis else
                                     (named.factor, named.factor), 2)
    else:
        factors = model_grid_factors(vol, net.scale, net.spatial_dims)
    grid = plan_grid(vol, scale=factors, max_output_voxels=max_output_voxels)
    shown = ", ".join(f"{f:g}" for f in factors)
    return (grid, net_passes(grid, net, info, name, shipped=shipped),
            f"grid from the model's factors ({shown}); --scale or --spacing sets another")
