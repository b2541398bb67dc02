"""Per-volume metric tables for pairs of files (reference HR vs test SR), as ``medsr eval``
prints and saves them. The CLI is a thin layer over :func:`evaluate_files`."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any

import numpy as np

from medsr import metrics
from medsr.errors import UserError
from medsr.volume import Volume

METRICS = ("psnr", "ssim", "nrmse")
AFFINE_TOLERANCE_MM = 1e-3

PathLike = str | os.PathLike


@dataclass
class EvaluationResult:
    """One record per volume pair (``reference``, ``test``, ``psnr``, ``ssim``, ``nrmse``,
    ``data_range``) and the settings used."""

    records: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Mean and sample standard deviation (ddof=1; 0 for one volume) per metric."""
        out: dict[str, Any] = {"n": len(self.records)}
        for m in METRICS:
            v = np.array([r[m] for r in self.records], dtype=np.float64)
            finite = np.isfinite(v).all()
            mean = float(v.mean()) if v.size else math.nan
            std = float(v.std(ddof=1)) if v.size > 1 and finite else (0.0 if v.size == 1 else
                                                                      math.nan)
            out[m] = {"mean": mean, "std": std}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"volumes": self.records, "summary": self.summary(), "settings": self.settings}

    def to_json(self) -> str:
        """JSON text; an infinite PSNR (identical images) is written as the string "inf",
        an undefined value as null (strict JSON has neither)."""
        return json.dumps(_json_safe(self.to_dict()), indent=2) + "\n"

    def to_csv(self) -> str:
        """Columns reference,test,psnr,ssim,nrmse,data_range; then a ``mean`` and a ``std``
        row (in the reference column)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        cols = ["reference", "test", *METRICS, "data_range"]
        w.writerow(cols)
        for r in self.records:
            w.writerow([r[c] for c in cols])
        s = self.summary()
        for stat in ("mean", "std"):
            w.writerow([stat, "", *(s[m][stat] for m in METRICS), ""])
        return buf.getvalue()

    def table(self):
        """A rich Table: one row per volume, then mean and std."""
        from rich.table import Table

        t = Table(title=f"medsr eval ({len(self.records)} volumes)")
        for name, just in (("reference", "left"), ("test", "left"), ("PSNR dB", "right"),
                           ("SSIM", "right"), ("NRMSE", "right")):
            t.add_column(name, justify=just)
        for r in self.records:
            t.add_row(_short(r["reference"]), _short(r["test"]),
                      *(_fmt(r[m], m) for m in METRICS))
        s = self.summary()
        t.add_section()
        for stat in ("mean", "std"):
            t.add_row(stat, "", *(_fmt(s[m][stat], m) for m in METRICS))
        return t


def _short(p: str, width: int = 48) -> str:
    return p if len(p) <= width else "..." + p[-(width - 3):]


def _fmt(v: float, metric: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if math.isinf(v):
        return "inf"
    return f"{v:.2f}" if metric == "psnr" else f"{v:.4f}"


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def corner_distance_mm(a: np.ndarray, b: np.ndarray, shape: Sequence[int]) -> float:
    """Largest distance in mm between where two affines put the corners of a grid."""
    corners = np.array([[*c, 1.0] for c in product(*[(0, max(int(n) - 1, 0))
                                                      for n in shape[:3]])])
    return float(np.linalg.norm((corners @ (a - b).T)[:, :3], axis=1).max())


def _mask_array(vol: Volume, shape: tuple[int, ...], path: str) -> np.ndarray:
    data = vol.data if vol.data.ndim == 3 else vol.data[..., 0]
    if data.shape != shape:
        raise UserError(f"mask {path} has shape {data.shape}, the volume {shape}")
    return data > 0.5 if data.dtype.kind == "f" else data > 0


def evaluate_volumes(pairs: Sequence[tuple[Volume, Volume]], names: Sequence[tuple[str, str]],
                     *, masks: Sequence[np.ndarray | None] | None = None,
                     auto_mask: bool = False, crop: int = 0, data_range: float | None = None,
                     ssim_mode: str = "3d", ssim_axis: int = 2) -> EvaluationResult:
    """Score already loaded (reference, test) volume pairs; see :func:`evaluate_files`."""
    records = []
    for i, ((ref, tst), (rname, tname)) in enumerate(zip(pairs, names)):
        if ref.data.shape != tst.data.shape:
            raise UserError(f"shapes differ: reference {rname} is {ref.data.shape}, "
                            f"test {tname} is {tst.data.shape}")
        d = corner_distance_mm(ref.affine, tst.affine, ref.spatial_shape)
        if d > AFFINE_TOLERANCE_MM:
            warnings.warn(f"{tname} is not on the grid of {rname} (voxel corners up to "
                          f"{d:.3g} mm apart); scoring voxel by voxel anyway", stacklevel=2)
        mask = None
        if masks is not None:
            mask = masks[i] if len(masks) > 1 else masks[0]
        elif auto_mask:
            mask = metrics.foreground_mask(ref.data)
        try:
            rng = (metrics.default_data_range(ref.data, crop) if data_range is None
                   else float(data_range))
            scores = metrics.evaluate(ref.data, tst.data, data_range=rng, mask=mask, crop=crop,
                                      ssim_mode=ssim_mode, ssim_axis=ssim_axis)
        except UserError as exc:
            raise UserError(f"{rname} vs {tname}: {exc}") from exc
        records.append({"reference": rname, "test": tname, **scores, "data_range": rng})
    settings = {"data_range": data_range if data_range is not None else "reference max - min",
                "crop": crop, "ssim_mode": ssim_mode, "ssim_axis": ssim_axis,
                "ssim_window": "gaussian sigma 1.5, radius 5 (truncated on thin axes)",
                "nrmse_normalization": "euclidean"}
    return EvaluationResult(records, settings)


def evaluate_files(references: Sequence[PathLike], tests: Sequence[PathLike], *,
                   masks: Sequence[PathLike] | None = None, auto_mask: bool = False,
                   crop: int = 0, data_range: float | None = None, ssim_mode: str = "3d",
                   ssim_axis: int = 2,
                   reader: Callable[[PathLike], Volume] | None = None) -> EvaluationResult:
    """Score ``tests[i]`` against ``references[i]`` (paired by position).

    ``masks``: one file for every pair or one per pair (voxels > 0 count); ``auto_mask``
    uses :func:`medsr.metrics.foreground_mask` of each reference. Shapes must match; an
    affine mismatch above 1e-3 mm is a warning (the images are compared voxel by voxel).
    Volumes are read one pair at a time, so memory holds two volumes at most.
    """
    if reader is None:
        from medsr.io import read as reader
    references, tests = list(references), list(tests)
    if not references:
        raise UserError("no reference volumes given")
    if len(references) != len(tests):
        raise UserError(f"{len(references)} reference(s) but {len(tests)} test volume(s); "
                        "they are paired by position")
    if masks is not None and auto_mask:
        raise UserError("give either mask files or auto_mask, not both")
    if masks is not None and len(masks) not in (1, len(references)):
        raise UserError(f"give one mask for all volumes or one per volume, got {len(masks)}")
    mask_cache: dict[str, np.ndarray] = {}
    result: EvaluationResult | None = None
    for i, (r, t) in enumerate(zip(references, tests)):
        ref, tst = reader(r), reader(t)
        mask = None
        if masks is not None:
            mp = str(masks[i] if len(masks) > 1 else masks[0])
            if mp not in mask_cache:
                mask_cache[mp] = _mask_array(reader(mp), ref.data.shape[:3], mp)
            mask = [mask_cache[mp]]
        one = evaluate_volumes([(ref, tst)], [(str(r), str(t))], masks=mask, auto_mask=auto_mask,
                               crop=crop, data_range=data_range, ssim_mode=ssim_mode,
                               ssim_axis=ssim_axis)
        if result is None:
            result = one
        else:
            result.records.extend(one.records)
    assert result is not None
    result.settings["mask"] = ("auto (Otsu foreground)" if auto_mask else
                               [str(m) for m in masks] if masks else None)
    return result
