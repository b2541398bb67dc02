"""What one ``medsr infer`` run is asked to do: frozen, validated option objects.

Built once, by the CLI from its arguments (or by :meth:`InferOptions.from_kwargs` for a
Python caller), and passed down unchanged:

- :class:`ReadOptions` -> :func:`medsr.io.read` (which volume / series, spacing override);
- :class:`GridRequest` -> :func:`medsr.geometry.plan_grid` (``--scale`` / ``--spacing``);
- :class:`RunOptions` -> the resolver and the network runner (method, model, speed knobs,
  the projection onto the slices, clipping);
- :class:`SelfSupOptions` -> the self-supervised fit (budget, steps, seed, save);
- :class:`WriteOptions` -> :func:`medsr.io.write`.

Each object checks its own values; which options combine across objects is checked in
one place, :func:`medsr.pipeline.modes.check_options`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsr.errors import UserError

DEFAULT_MAX_OUTPUT_VOXELS = 1_000_000_000  # = medsr.geometry.DEFAULT_MAX_OUTPUT_VOXELS
DEFAULT_MAX_MEMORY = 1.5e9  # bytes for network tiles (--max-memory 1.5 GB)
AUTO_PROFILE = "auto"  # --slice-profile default: estimated from the scan

Factors = float | tuple[float, ...]


def _factors(value: Any) -> Factors | None:
    """One number stays a float, a sequence of one is that number, longer ones a tuple."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    values = tuple(float(v) for v in value)
    return values[0] if len(values) == 1 else values


def _tuple(value: Sequence[Any] | None, kind: type) -> tuple | None:
    return None if value is None else tuple(kind(v) for v in value)


@dataclass(frozen=True)
class ReadOptions:
    """How to read the input (:func:`medsr.io.read`)."""

    volume: int | None = None  # --volume: one volume of a 4D input, 0-based
    series: str | None = None  # --series: one SeriesInstanceUID of a mixed DICOM directory
    input_spacing: tuple[float, ...] | None = None  # --input-spacing overrides the header
    max_voxels: int = DEFAULT_MAX_OUTPUT_VOXELS

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_spacing", _tuple(self.input_spacing, float))
        if self.max_voxels < 1:
            raise UserError("--max-output-voxels must be a positive integer")


@dataclass(frozen=True)
class GridRequest:
    """The output grid asked for: a scale, a spacing, or neither (the planner's default,
    or a named model's own factors)."""

    scale: Factors | None = None
    spacing: Factors | None = None
    max_output_voxels: int = DEFAULT_MAX_OUTPUT_VOXELS

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", _factors(self.scale))
        object.__setattr__(self, "spacing", _factors(self.spacing))
        if self.scale is not None and self.spacing is not None:
            raise UserError("give --scale or --spacing, not both")

    @property
    def given(self) -> bool:
        """Whether ``--scale`` or ``--spacing`` was given."""
        return self.scale is not None or self.spacing is not None


@dataclass(frozen=True)
class RunOptions:
    """How to super-resolve: which network or method, how it runs, what follows it."""

    method: str = "auto"  # auto (a network, else cubic) or a classical method
    model: str | Path | None = None  # a shipped name or a checkpoint path
    device: str = "auto"
    tta: bool = False
    max_memory: float = DEFAULT_MAX_MEMORY
    tile: tuple[int, ...] | None = None
    batch: int | None = None
    precision: str = "auto"
    compile_model: bool = False
    blend: str = "crop"
    slice_profile: str | Path | None = None  # None / "auto": estimated where it applies
    slice_thickness: float | None = None
    keep_overshoot: bool = False
    progress: bool | None = None  # None: a bar when stderr is a terminal

    def __post_init__(self) -> None:
        object.__setattr__(self, "tile", _tuple(self.tile, int))
        if not (math.isfinite(self.max_memory) and self.max_memory > 0):
            raise UserError("--max-memory must be a positive number")
        if self.batch is not None and self.batch < 1:
            raise UserError("--batch must be a positive integer")
        if self.tile is not None and (not self.tile or min(self.tile) < 1):
            raise UserError("--tile needs positive whole numbers")
        if self.slice_thickness is not None and not self.slice_thickness > 0:
            raise UserError("--slice-thickness must be positive")

    @property
    def auto_profile(self) -> bool:
        """No ``--slice-profile`` (or ``auto``): the profile is estimated where it applies."""
        return self.slice_profile is None or str(self.slice_profile) == AUTO_PROFILE

    @property
    def profile(self) -> str | Path | None:
        """The given slice profile; None when it is to be estimated."""
        return None if self.auto_profile else self.slice_profile


@dataclass(frozen=True)
class SelfSupOptions:
    """``--self-supervised`` and the options that belong to it."""

    enabled: bool = False
    budget_s: float | None = None  # the whole command's budget (default 300 s)
    steps: int | None = None
    seed: int | None = None
    save_model: str | Path | None = None
    budget_start: float | None = None  # time.perf_counter() when the command started

    def __post_init__(self) -> None:
        if self.budget_s is not None and not (math.isfinite(self.budget_s)
                                              and self.budget_s > 0):
            raise UserError("the budget must be a positive finite duration")
        if self.steps is not None and self.steps < 1:
            raise UserError("--steps must be a positive integer")


@dataclass(frozen=True)
class WriteOptions:
    """How to write the output (:func:`medsr.io.write`)."""

    overwrite: bool = False
    dtype: str | None = None
    anonymize: bool = False


@dataclass(frozen=True)
class InferOptions:
    """Everything one ``medsr infer`` run is asked to do."""

    read: ReadOptions = field(default_factory=ReadOptions)
    grid: GridRequest = field(default_factory=GridRequest)
    run: RunOptions = field(default_factory=RunOptions)
    selfsup: SelfSupOptions = field(default_factory=SelfSupOptions)
    write: WriteOptions = field(default_factory=WriteOptions)

    @classmethod
    def from_kwargs(cls, **kw: Any) -> InferOptions:
        """The objects from flat keywords named as ``medsr infer``'s options
        (``scale=2, method="cubic", volume_index=0, budget_s=60, ...``); an unknown
        keyword is a TypeError."""
        unknown = set(kw) - _FLAT
        if unknown:
            raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
        limit = kw.get("max_output_voxels", DEFAULT_MAX_OUTPUT_VOXELS)
        return cls(
            read=ReadOptions(volume=kw.get("volume_index"), series=kw.get("series"),
                             input_spacing=kw.get("input_spacing"), max_voxels=limit),
            grid=GridRequest(scale=kw.get("scale"), spacing=kw.get("spacing"),
                             max_output_voxels=limit),
            run=RunOptions(**{k: kw[k] for k in _RUN if k in kw}),
            selfsup=SelfSupOptions(enabled=bool(kw.get("self_supervised", False)),
                                   **{k: kw[k] for k in _SELFSUP if k in kw}),
            write=WriteOptions(**{k: kw[k] for k in _WRITE if k in kw}))


_RUN = ("method", "model", "device", "tta", "max_memory", "tile", "batch", "precision",
        "compile_model", "blend", "slice_profile", "slice_thickness", "keep_overshoot",
        "progress")
_SELFSUP = ("budget_s", "steps", "seed", "save_model", "budget_start")
_WRITE = ("overwrite", "dtype", "anonymize")
_FLAT = {*_RUN, *_SELFSUP, *_WRITE, "self_supervised", "volume_index", "series",
         "input_spacing", "max_output_voxels", "scale", "spacing"}
