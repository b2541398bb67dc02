"""The one runner of ``medsr infer`` and ``medsr eval --model``: a volume super-resolved
onto a planned grid, in memory (resolve -> adapt -> project -> clip)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from medsr.adapters import for_kind, kind_of
from medsr.geometry import OutputGrid
from medsr.inference.resolvers import choose_resolver
from medsr.options import RunOptions
from medsr.pipeline.projection import estimate_for, project
from medsr.pipeline.result import clip_overshoot
from medsr.progress import progress_bar
from medsr.volume import Volume


@dataclass
class Resolved:
    """What :func:`super_resolve_volume` made, and how."""

    volume: Volume
    notes: list[str]
    method: str  # what ran: the network(s) or the classical method
    model: str = ""  # the network(s); "" for classical methods
    tta: bool = False  # the flip self-ensemble ran


def super_resolve_volume(vol: Volume, grid: OutputGrid, run: RunOptions | None = None, *,
                         passes: list | None = None, auto_profile: bool = False,
                         label: str = "volume", **options: Any) -> Resolved:
    """``vol`` super-resolved onto ``grid`` under ``run`` (or the :class:`RunOptions`
    made of ``options``: method, model, device, tta, max_memory, tile, batch, ...).

    The resolver (:func:`medsr.inference.resolvers.choose_resolver`: ``passes`` already
    loaded, a named model, the shipped default that fits, or a classical method) runs
    through the adapter of the input's kind (:func:`medsr.adapters.for_kind`: channels,
    luma/chroma, microscopy percentiles); then the optional projection onto the slices
    (``run.slice_profile``, or the confident estimate with ``auto_profile``) and the
    clipping of a non-negative input's output at 0 unless ``run.keep_overshoot``.
    """
    if run is None:
        run = RunOptions(**options)
    elif options:
        raise TypeError("give the run options as `run` or as keywords, not both")
    kind = kind_of(vol)  # "frames" | "stack" (microscopy TIFF) | None (scans)
    resolver = choose_resolver(vol, grid, run, kind=kind, passes=passes)
    adapt = for_kind(kind)
    estimate = estimate_for(vol, grid, run, kind, auto=auto_profile)  # before the output
    if resolver.network:
        with progress_bar(f"{label}: super-resolving", run.progress) as update:
            out = adapt(vol, grid, partial(resolver, progress=update))
    else:
        out = adapt(vol, grid, resolver)
    out, projected = project(vol, out, grid, run, kind, auto=auto_profile, estimate=estimate)
    notes = [*resolver.notes, *projected]
    if run.tta and not resolver.network:
        notes.append(f"--tta applies to networks; {resolver.method} did not use it")
    if not run.keep_overshoot:
        out, note = clip_overshoot(vol, out)
        if note:
            notes.append(note)
    return Resolved(out, notes, resolver.method, resolver.model,
                    bool(run.tta and resolver.network))
