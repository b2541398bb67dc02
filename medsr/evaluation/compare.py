"""Files against files: per-volume PSNR / SSIM / NRMSE of test volumes (SR) against
reference volumes (HR), paired by position, as ``medsr eval --reference ... --test ...``
prints and saves them. :func:`evaluate_files` scores; :func:`compare_files` is the whole
command (output checks, table, JSON / CSV, figure). Summaries and writers are those of
:mod:`medsr.evaluation.report` (std = sample standard deviation, ddof=1)."""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from medsr import metrics
from medsr.errors import UserError
from medsr.evaluation import report
from medsr.evaluation.figures import file_comparison_figure
from medsr.evaluation.report import METRICS, STD_CONVENTION
from medsr.extras import available, install_hint, require
from medsr.io import read
from medsr.io.common import check_output
from medsr.volume import Volume

__all__ = ["METRICS", "EvaluationResult", "compare_files", "corner_distance_mm",
           "evaluate_files", "evaluate_volumes", "method_labels", "middle_slices"]

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
        return report.methods(self.records)

    def summary(self, method: str | None = None) -> dict[str, Any]:
        """Mean and sample standard deviation (ddof=1; 0 for one volume) per metric, of
        one group (``method``) or of all records (:func:`medsr.evaluation.report.summary`)."""
        return report.summary(self.records, method)

    def group_summaries(self) -> dict[str, dict[str, Any]]:
        """:meth:`summary` of each group."""
        return report.group_summaries(self.records)

    def to_dict(self) -> dict[str, Any]:
        """``volumes``, ``groups`` (summary per method) and ``summary``: that of the one
        group, or None with several (a mean over different methods means nothing)."""
        return report.comparison_dict(self.records, self.settings)

    def to_json(self) -> str:
        """JSON text; an infinite PSNR (identical images) is written as the string "inf",
        an undefined value as null (strict JSON has neither)."""
        return report.comparison_json(self.records, self.settings)

    def to_csv(self) -> str:
        """Columns reference,test,method,psnr,ssim,nrmse,data_range; then a ``mean`` and a
        ``std`` row (in the reference column) per method."""
        return report.comparison_csv(self.records)

    def table(self) -> Table:
        """A rich Table: one row per volume, then mean and std."""
        return report.comparison_table(self.records)

    def figure(self, out_png: PathLike) -> Path:
        """A PNG: PSNR and SSIM per volume and method, and for the first references the
        middle slice of the reference, each test and |test - reference|."""
        return file_comparison_figure(self.records, self.previews, out_png,
                                      title=f"medsr eval: {len(self.records)} volumes")


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
                "nrmse_normalization": "euclidean", "std": STD_CONVENTION}
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
        reader = read
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


def crop_checked_reader(crop: int) -> Callable[[PathLike], Volume]:
    """:func:`medsr.io.read` that refuses a volume ``crop`` would leave uncropped on every
    axis (no axis longer than 2 x ``crop``)."""
    def reader(path: PathLike) -> Volume:
        vol = read(path)
        if crop and not any(n > 2 * crop for n in vol.spatial_shape):
            raise UserError(f"--crop {crop} is too large for {path} (shape "
                            f"{list(vol.spatial_shape)}): no axis is longer than 2 x {crop}")
        return vol
    return reader


def figure_path(figure: PathLike | None, beside: Sequence[PathLike | None],
                inputs: Sequence[PathLike]) -> str | None:
    """``figure``, else the first of ``beside`` (the JSON, then the CSV) with .png; None
    without them. It may not name an input file."""
    path = None if figure is None else str(figure)
    if path is None:
        base = next((str(b) for b in beside if b), None)
        if base is None:
            return None
        path = os.path.splitext(base)[0] + ".png"
    if any(os.path.abspath(path) == os.path.abspath(f) for f in inputs):
        raise UserError(f"the figure {path} would replace an input; give --figure PATH")
    return path


def compare_files(references: Sequence[PathLike], tests: Sequence[PathLike], *,
                  masks: Sequence[PathLike] | None = None, auto_mask: bool = False,
                  crop: int = 0, data_range: float | None = None, ssim_mode: str = "3d",
                  ssim_axis: int = 2, labels: Sequence[str] | None = None,
                  json_path: PathLike | None = None, csv_path: PathLike | None = None,
                  figure: PathLike | None = None, auto_figure: bool = True,
                  overwrite: bool = False) -> EvaluationResult:
    """``medsr eval --reference ... --test ...``: score (:func:`evaluate_files`), print the
    table, write ``json_path`` / ``csv_path`` and the figure.

    Every output is checked before the work (never over an input; an existing file only
    with ``overwrite``). ``figure``: a PNG path (needs matplotlib); without it and with
    ``auto_figure``, the figure goes beside the JSON (or CSV) as .png when matplotlib is
    installed (a note on stderr otherwise).
    """
    inputs = [*references, *tests, *(masks or [])]
    if json_path and csv_path and os.path.abspath(json_path) == os.path.abspath(csv_path):
        raise UserError(f"--json and --csv both name {csv_path}; give them different files")
    for path in (json_path, csv_path):  # fail before the work, not after
        if path:
            check_output(path, overwrite, inputs)
    png = figure_path(figure, (json_path, csv_path), inputs) if (
        figure is not None or auto_figure) else None
    if png and figure is not None:
        require("figures", "medsr eval --figure")
    elif png and not available("figures"):  # the implicit figure beside --json/--csv
        print(f"medsr: note: no figure: matplotlib is not installed ({install_hint('figures')})",
              file=sys.stderr)
        png = None
    if png:
        check_output(png, overwrite)
    result = evaluate_files(references, tests, masks=masks, auto_mask=auto_mask, crop=crop,
                            reader=crop_checked_reader(crop), data_range=data_range,
                            ssim_mode=ssim_mode, ssim_axis=ssim_axis, labels=labels,
                            previews=png is not None)
    Console(soft_wrap=False, width=max(100, Console().width)).print(result.table())
    if json_path:
        report.write_text(json_path, result.to_json(), overwrite, inputs)
    if csv_path:
        report.write_text(csv_path, result.to_csv(), overwrite, inputs)
    if png:
        print(f"figure: {result.figure(png)}")
    return result
