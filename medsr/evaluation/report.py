"""The one summary of per-volume scores and the writers of its tables.

Every ``medsr eval`` table, files against files (:mod:`medsr.evaluation.compare`) or a
model against the baselines (:mod:`medsr.evaluation.benchmark`), summarises its records
with :func:`summary`: per metric the mean and the **sample standard deviation (ddof=1)**,
0 for one volume, undefined (NaN) when a value is not finite or there is no volume.
The tables say so: ``std`` rows and the ``mean ± std`` label name the convention.

Writers: CSV, JSON and the terminal (rich) table of a comparison; CSV, Markdown and JSON
of a benchmark (:func:`write_benchmark_tables`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from medsr.io.common import atomic_path, check_output

METRICS = ("psnr", "ssim", "nrmse")
STD_CONVENTION = "sample standard deviation (ddof=1)"
STD_LABEL = "std (sample, ddof=1)"
DEFAULT_METHOD = "test"  # the group of a record without a method

PathLike = str | os.PathLike


# --- the one summary --------------------------------------------------------------------------

def method_of(record: dict[str, Any]) -> str:
    """The group a record belongs to (``test`` when it names none)."""
    return str(record.get("method", DEFAULT_METHOD))


def methods(records: Sequence[dict[str, Any]]) -> list[str]:
    """The groups of ``records``, in first-seen order."""
    return list(dict.fromkeys(method_of(r) for r in records))


def summary(records: Sequence[dict[str, Any]], method: str | None = None
            ) -> dict[str, Any]:
    """``{"n", metric: {"mean", "std"}}`` of the records of one group (``method``) or of
    all: the mean and the sample standard deviation (ddof=1; 0 for one volume; NaN when a
    value is not finite or there is none)."""
    recs = [r for r in records if method is None or method_of(r) == method]
    out: dict[str, Any] = {"n": len(recs)}
    for m in METRICS:
        v = np.array([r[m] for r in recs], dtype=np.float64)
        mean = float(v.mean()) if v.size else math.nan
        if v.size == 1:
            std = 0.0
        elif v.size > 1 and np.isfinite(v).all():
            std = float(v.std(ddof=1))
        else:
            std = math.nan
        out[m] = {"mean": mean, "std": std}
    return out


def group_summaries(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """:func:`summary` of each group, in first-seen order."""
    return {m: summary(records, m) for m in methods(records)}


def flat_summaries(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """:func:`group_summaries` with flat keys (``n``, ``psnr_mean``, ``psnr_std``, ...), the
    form of a benchmark's ``eval.json``."""
    out: dict[str, dict[str, float]] = {}
    for method, s in group_summaries(records).items():
        stats: dict[str, float] = {"n": s["n"]}
        for m in METRICS:
            stats[f"{m}_mean"], stats[f"{m}_std"] = s[m]["mean"], s[m]["std"]
        out[method] = stats
    return out


# --- formatting -------------------------------------------------------------------------------

def short(p: str, width: int = 48) -> str:
    """``p`` cut to ``width`` characters from the left (``...`` then its end)."""
    return p if len(p) <= width else "..." + p[-(width - 3):]


def fmt(v: float | None, metric: str) -> str:
    """A score for a table: PSNR at 2 decimals, others at 4; ``-`` undefined, ``inf``."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if math.isinf(v):
        return "inf"
    return f"{v:.2f}" if metric == "psnr" else f"{v:.4f}"


def json_safe(obj: Any) -> Any:
    """``obj`` for strict JSON: an infinite value as the string "inf" / "-inf", an
    undefined one as null, numpy scalars as Python numbers."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
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


def write_text(path: PathLike, text: str, overwrite: bool, inputs: Sequence[PathLike]) -> Path:
    """Write ``text`` to ``path`` atomically, under every output's rules
    (:func:`medsr.io.common.check_output`: not over an input, existing only with
    ``overwrite``)."""
    out = check_output(path, overwrite, list(inputs))
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(out)


# --- files against files ----------------------------------------------------------------------

def comparison_dict(records: list[dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any]:
    """``volumes``, ``groups`` (summary per method) and ``summary``: that of the one
    group, or None with several (a mean over different methods means nothing)."""
    groups = group_summaries(records)
    return {"volumes": records, "groups": groups,
            "summary": next(iter(groups.values())) if len(groups) == 1 else None,
            "settings": settings}


def comparison_json(records: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    """JSON text of :func:`comparison_dict`; an infinite PSNR (identical images) is
    written as the string "inf", an undefined value as null (strict JSON has neither)."""
    return json.dumps(json_safe(comparison_dict(records, settings)), indent=2) + "\n"


def comparison_csv(records: list[dict[str, Any]]) -> str:
    """Columns reference,test,method,psnr,ssim,nrmse,data_range; then a ``mean`` and a
    ``std`` (sample, ddof=1) row (in the reference column) per method."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = ["reference", "test", "method", *METRICS, "data_range"]
    w.writerow(cols)
    for r in records:
        w.writerow([method_of(r) if c == "method" else r[c] for c in cols])
    for method, s in group_summaries(records).items():
        for stat in ("mean", "std"):
            w.writerow([stat, "", method, *(s[m][stat] for m in METRICS), ""])
    return buf.getvalue()


def comparison_table(records: list[dict[str, Any]]) -> Table:
    """A rich Table: one row per volume, then mean and std (sample, ddof=1) per method."""
    groups = methods(records)
    title = f"medsr eval ({len(records)} volumes"
    t = Table(title=title + (f", {len(groups)} methods)" if len(groups) > 1 else ")"),
              caption=f"std: {STD_CONVENTION}")
    for name, just in (("reference", "left"), ("test", "left"), ("method", "left"),
                       ("PSNR dB", "right"), ("SSIM", "right"), ("NRMSE", "right")):
        t.add_column(name, justify=just)
    for i, method in enumerate(groups):
        if i:
            t.add_section()
        for r in records:
            if method_of(r) == method:
                t.add_row(short(r["reference"], 28), short(r["test"], 28), method,
                          *(fmt(r[m], m) for m in METRICS))
        s = summary(records, method)
        t.add_section()
        for stat in ("mean", "std"):
            t.add_row(stat, "", method, *(fmt(s[m][stat], m) for m in METRICS))
    return t


# --- a model against the baselines ------------------------------------------------------------

def benchmark_csv(rows: list[dict[str, Any]]) -> str:
    """One row per volume and method: volume,method,psnr,ssim,nrmse (full precision)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["volume", "method", *METRICS])
    for r in rows:
        w.writerow([r["volume"], r["method"], *[repr(r[k]) for k in METRICS]])
    return buf.getvalue()


def benchmark_markdown(result: dict[str, Any]) -> str:
    """Per-volume PSNR / SSIM / NRMSE by method, then mean ± std (sample, ddof=1)."""
    methods_ = list(result["summary"])
    lines = ["| volume | metric | " + " | ".join(methods_) + " |",
             "|---|---|" + "---|" * len(methods_)]
    for vol in dict.fromkeys(r["volume"] for r in result["rows"]):
        for k in METRICS:
            vals = {r["method"]: r[k] for r in result["rows"] if r["volume"] == vol}
            lines.append(f"| {vol} | {k} | " + " | ".join(_num(vals.get(m), k) for m in methods_)
                         + " |")
    s = result["summary"]
    for k in METRICS:
        lines.append(f"| **mean ± std** (sample, ddof=1) | {k} | " + " | ".join(
            f"{_num(s[m][f'{k}_mean'], k)} ± {_num(s[m][f'{k}_std'], k)}" for m in methods_)
            + " |")
    return "\n".join(lines) + "\n"


def _num(v: float | None, metric: str) -> str:
    if v is None:
        return ""
    return f"{v:.2f}" if metric == "psnr" else f"{v:.4f}"


def write_benchmark_tables(result: dict[str, Any], out_dir: PathLike) -> dict[str, Path]:
    """eval.csv (one row per volume and method), eval.md and eval.json in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / "eval.csv", "md": out_dir / "eval.md", "json": out_dir / "eval.json"}
    with atomic_path(paths["csv"]) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            f.write(benchmark_csv(result["rows"]))
    with atomic_path(paths["md"]) as tmp:
        tmp.write_text(benchmark_markdown(result), encoding="utf-8")
    with atomic_path(paths["json"]) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return paths
