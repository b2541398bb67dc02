"""Per-volume metric tables for pairs of files (reference HR vs test SR), as ``medsr eval``
prints and saves them. The CLI is a thin layer over :func:`evaluate_files`."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from medsr import metrics
from medsr.errors import UserError
from medsr.volume import Volume

METRICS = ("psnr", "ssim", "nrmse")
AFFINE_TOLERANCE_MM = 1e-3
PREVIEW_REFERENCES = 3  # references shown in the figure, each with its tests
PREVIEW_TESTS = 5
_SUFFIXES = (".nii.gz", ".nii", ".mgz", ".mgh", ".tiff", ".tif", ".png", ".jpg", ".jpeg",
             ".dcm", ".nrrd", ".mha", ".mhd", ".npy")

PathLike = str | os.PathLike


@dataclass
class EvaluationResult:
    """One record per volume pair (``reference``, ``test``, ``method``, ``psnr``, ``ssim``,
    ``nrmse``, ``data_range``) and the settings used. ``method`` groups the records (the
    method or test set a test volume comes from); ``previews`` holds the middle slices
    of some pairs for :meth:`figure` (not saved in the tables)."""

    records: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)
    previews: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def methods(self) -> list[str]:
        """The groups, in first-seen order."""
        return list(dict.fromkeys(r.get("method", "test") for r in self.records))

    def summary(self, method: str | None = None) -> dict[str, Any]:
        """Mean and sample standard deviation (ddof=1; 0 for one volume) per metric, of
        one group (``method``) or of all records."""
        recs = [r for r in self.records if method is None or r.get("method", "test") == method]
        out: dict[str, Any] = {"n": len(recs)}
        for m in METRICS:
            v = np.array([r[m] for r in recs], dtype=np.float64)
            finite = np.isfinite(v).all()
            mean = float(v.mean()) if v.size else math.nan
            std = float(v.std(ddof=1)) if v.size > 1 and finite else (0.0 if v.size == 1 else
                                                                      math.nan)
            out[m] = {"mean": mean, "std": std}
        return out

    def group_summaries(self) -> dict[str, dict[str, Any]]:
        """:meth:`summary` of each group."""
        return {m: self.summary(m) for m in self.methods()}

    def to_dict(self) -> dict[str, Any]:
        """``volumes``, ``groups`` (summary per method) and ``summary``: that of the one
        group, or None with several (a mean over different methods means nothing)."""
        groups = self.group_summaries()
        return {"volumes": self.records, "groups": groups,
                "summary": next(iter(groups.values())) if len(groups) == 1 else None,
                "settings": self.settings}

    def to_json(self) -> str:
        """JSON text; an infinite PSNR (identical images) is written as the string "inf",
        an undefined value as null (strict JSON has neither)."""
        return json.dumps(_json_safe(self.to_dict()), indent=2) + "\n"

    def to_csv(self) -> str:
        """Columns reference,test,method,psnr,ssim,nrmse,data_range; then a ``mean`` and a
        ``std`` row (in the reference column) per method."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        cols = ["reference", "test", "method", *METRICS, "data_range"]
        w.writerow(cols)
        for r in self.records:
            w.writerow([r.get(c, "test") if c == "method" else r[c] for c in cols])
        for method, s in self.group_summaries().items():
            for stat in ("mean", "std"):
                w.writerow([stat, "", method, *(s[m][stat] for m in METRICS), ""])
        return buf.getvalue()

    def table(self):
        """A rich Table: one row per volume, then mean and std."""
        from rich.table import Table

        methods = self.methods()
        title = f"medsr eval ({len(self.records)} volumes"
        t = Table(title=title + (f", {len(methods)} methods)" if len(methods) > 1 else ")"))
        for name, just in (("reference", "left"), ("test", "left"), ("method", "left"),
                           ("PSNR dB", "right"), ("SSIM", "right"), ("NRMSE", "right")):
            t.add_column(name, justify=just)
        for i, method in enumerate(methods):
            if i:
                t.add_section()
            for r in self.records:
                if r.get("method", "test") == method:
                    t.add_row(_short(r["reference"], 28), _short(r["test"], 28), method,
                              *(_fmt(r[m], m) for m in METRICS))
            s = self.summary(method)
            t.add_section()
            for stat in ("mean", "std"):
                t.add_row(stat, "", method, *(_fmt(s[m][stat], m) for m in METRICS))
        return t

    def figure(self, out_png: PathLike) -> Path:
        """A PNG: PSNR and SSIM per volume and method, and for the first references the
        middle slice of the reference, each test and |test - reference|."""
        from medsr.engine.figures import file_comparison_figure

        return file_comparison_figure(self.records, self.previews, out_png,
                                      title=f"medsr eval: {len(self.records)} volumes")


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


def _stem(path: str) -> tuple[str, str]:
    """(name without the image suffix, parent folder name) of a path."""
    p = Path(path)
    name = p.name
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[:-len(suffix)]
            break
    return name, p.parent.name


def _tokens(text: str) -> list[str]:
    return [t for t in re.split(r"[_\-.\s]+", text) if t]


def method_labels(references: Sequence[PathLike], tests: Sequence[PathLike]) -> list[str]:
    """A method label per test file, from its name: the name's parts (split at ``_ - .``)
    that its reference's name lacks (``sub1_cubic`` vs ``sub1`` -> ``cubic``; ``sr`` vs
    ``A`` -> ``sr``), else its folder when that differs from the reference's
    (``cubic/sub1`` vs ``hr/sub1`` -> ``cubic``). When that names every test differently
    and no reference is scored twice, the names are volume names, not methods: all
    tests are one group, ``test``."""
    refs, tsts = [str(r) for r in references], [str(t) for t in tests]
    labels = []
    for r, t in zip(refs, tsts):
        (rs, rp), (ts, tp) = _stem(r), _stem(t)
        own = set(_tokens(rs.lower()))
        left = [tok for tok in _tokens(ts) if tok.lower() not in own]
        labels.append("_".join(left) if left else (tp if tp and tp != rp else "test"))
    repeated = len({os.path.abspath(r) for r in refs}) < len(refs)
    if len(labels) > 1 and len(set(labels)) == len(labels) and not repeated:
        return ["test"] * len(labels)
    return labels


def evaluate_volumes(pairs: Sequence[tuple[Volume, Volume]], names: Sequence[tuple[str, str]],
                     *, masks: Sequence[np.ndarray | None] | None = None,
                     auto_mask: bool = False, crop: int = 0, data_range: float | None = None,
                     ssim_mode: str = "3d", ssim_axis: int = 2,
                     labels: Sequence[str] | None = None,
                     previews: int = 0) -> EvaluationResult:
    """Score already loaded (reference, test) volume pairs; see :func:`evaluate_files`.

    ``labels``: the method of each pair (default :func:`method_labels` of the names);
    ``previews``: keep the middle slices (across ``ssim_axis``) of the first pairs."""
    if labels is None:
        labels = method_labels([n[0] for n in names], [n[1] for n in names])
    records = []
    kept: list[dict[str, Any]] = []
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
        records.append({"reference": rname, "test": tname, "method": str(labels[i]), **scores,
                        "data_range": rng})
        if i < previews:
            kept.append({"reference": rname, "test": tname, "method": str(labels[i]),
                         "axis": ssim_axis, **middle_slices(ref.data, tst.data, ssim_axis)})
    settings = {"data_range": data_range if data_range is not None else "reference max - min",
                "crop": crop, "ssim_mode": ssim_mode, "ssim_axis": ssim_axis,
                "ssim_window": "gaussian sigma 1.5, radius 5 (truncated on thin axes)",
                "nrmse_normalization": "euclidean"}
    return EvaluationResult(records, settings, kept)


def middle_slices(ref: np.ndarray, test: np.ndarray, axis: int = 2) -> dict[str, np.ndarray]:
    """The middle slice across ``axis`` of a reference and a test (first channel), float32."""
    def cut(a: np.ndarray) -> np.ndarray:
        a = a if a.ndim == 3 else a[..., 0]
        return np.asarray(np.take(a, a.shape[axis] // 2, axis=axis), dtype=np.float32)

    return {"ref_slice": cut(ref), "test_slice": cut(test)}


def evaluate_files(references: Sequence[PathLike], tests: Sequence[PathLike], *,
                   masks: Sequence[PathLike] | None = None, auto_mask: bool = False,
                   crop: int = 0, data_range: float | None = None, ssim_mode: str = "3d",
                   ssim_axis: int = 2,
                   reader: Callable[[PathLike], Volume] | None = None,
                   labels: Sequence[str] | None = None,
                   previews: bool = False) -> EvaluationResult:
    """Score ``tests[i]`` against ``references[i]`` (paired by position).

    ``labels``: the method (group) of each test file, one per test (default: from the
    file names, :func:`method_labels`); the tables give one mean row per group.
    ``previews``: keep the middle slices of the first references' pairs for
    :meth:`EvaluationResult.figure`.

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
    if labels is None:
        labels = method_labels(references, tests)
    labels = [str(x).strip() for x in labels]
    if len(labels) != len(tests) or not all(labels):
        raise UserError(f"give one non-empty label per test volume ({len(tests)}), got "
                        f"{len(labels)}")
    mask_cache: dict[str, np.ndarray] = {}
    result: EvaluationResult | None = None
    shown: dict[str, int] = {}  # reference -> previews kept
    for i, (r, t) in enumerate(zip(references, tests)):
        key = os.path.abspath(r)
        keep = previews and shown.get(key, 0) < PREVIEW_TESTS and (
            key in shown or len(shown) < PREVIEW_REFERENCES)
        if keep:
            shown[key] = shown.get(key, 0) + 1
        ref, tst = reader(r), reader(t)
        mask = None
        if masks is not None:
            mp = str(masks[i] if len(masks) > 1 else masks[0])
            if mp not in mask_cache:
                mask_cache[mp] = _mask_array(reader(mp), ref.data.shape[:3], mp)
            mask = [mask_cache[mp]]
        one = evaluate_volumes([(ref, tst)], [(str(r), str(t))], masks=mask, auto_mask=auto_mask,
                               crop=crop, data_range=data_range, ssim_mode=ssim_mode,
                               ssim_axis=ssim_axis, labels=[labels[i]], previews=int(keep))
        if result is None:
            result = one
        else:
            result.records.extend(one.records)
            result.previews.extend(one.previews)
    assert result is not None
    result.settings["mask"] = ("auto (Otsu foreground)" if auto_mask else
                               [str(m) for m in masks] if masks else None)
    return result
