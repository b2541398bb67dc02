"""What one run did (:class:`InferResult`, its summary line) and the last step: clip,
check and write the output."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medsr import io
from medsr.adapters import spacing_unit
from medsr.errors import InputError
from medsr.intensity import all_finite, count_below
from medsr.options import WriteOptions
from medsr.volume import Volume


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
        """One line (shapes, spacings, method, time, output), then one per note."""
        def fmt(v: Sequence[float]) -> str:
            return "x".join(f"{x:.4g}" for x in v)

        u = self.unit
        line = (f"{self.input.name}: {fmt(self.shape_in)} @ {fmt(self.spacing_in)} {u} -> "
                f"{fmt(self.shape_out)} @ {fmt(self.spacing_out)} {u}, {self.method}"
                f"{', tta' if self.tta else ''}, {self.seconds:.1f} s -> {self.output}")
        return "\n".join([line, *(f"  note: {n}" for n in self.notes)])


def num(v: Any) -> str:
    """A number at 4 significant digits (3.9999999460600644 -> 4); other values as given."""
    return f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)


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
    n = count_below(data, 0)
    if n == 0:
        return out, None
    if data.flags.writeable and not np.may_share_memory(data, vol.data):
        np.maximum(data, 0, out=data)
    else:
        out = out.with_data(np.maximum(data, 0))
    return out, (f"clipped {n:,} voxels ({100.0 * n / data.size:.3g}%) below 0 to 0 (the "
                 "input is non-negative; --keep-overshoot keeps them)")


def write_result(vol: Volume, out: Volume, input_path: Path, out_path: Path, t0: float, *,
                 method: str, notes: list[str], write: WriteOptions,
                 keep_overshoot: bool = False) -> InferResult:
    """Write ``out`` in the format ``out_path`` names (video by its suffix) and report;
    a non-negative input's output is clipped at 0 unless ``keep_overshoot``."""
    if np.issubdtype(out.data.dtype, np.inexact) and not all_finite(out.data):
        raise InputError(f"{input_path}: {method} produced non-finite values (the input's "
                         "range overflows the arithmetic); rescale the image")
    if not keep_overshoot:
        out, note = clip_overshoot(vol, out)
        if note:
            notes = [*notes, note]
    options: dict[str, Any] = {"anonymize": True} if write.anonymize else {}
    written = io.write(out, out_path, overwrite=write.overwrite, dtype=write.dtype,
                       inputs=[input_path], **options)
    return InferResult(input=input_path, output=Path(written), method=method,
                       shape_in=vol.spatial_shape, shape_out=out.spatial_shape,
                       spacing_in=tuple(float(s) for s in vol.spacing),
                       spacing_out=tuple(float(s) for s in out.spacing),
                       seconds=time.perf_counter() - t0, notes=notes,
                       unit=spacing_unit(vol),
                       provenance={"affine_out": out.affine.tolist()})  # issue 25
