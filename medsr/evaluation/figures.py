"""Figures of ``medsr eval`` (matplotlib, an optional dependency imported when a figure
is drawn; Agg backend; written atomically): a model against the baselines on one slice
(:func:`benchmark_figure`), and files against files (:func:`file_comparison_figure`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from medsr.extras import pyplot
from medsr.io.common import save_figure


def comparison_figure(panels: dict[str, np.ndarray], reference: np.ndarray,
                      out_png: str | os.PathLike, title: str = "",
                      window: tuple[float, float] | None = None) -> Path:
    """One row of images (e.g. LR | cubic | SR | HR) with one intensity window, and below
    them the absolute-error maps |x - HR| with one shared error window."""
    plt = pyplot()
    names = list(panels)
    lo, hi = window if window is not None else (float(np.percentile(reference, 0.5)),
                                                float(np.percentile(reference, 99.5)))
    errors = {n: np.abs(panels[n] - reference) for n in names
              if panels[n].shape == reference.shape and panels[n] is not reference}
    emax = max([float(np.percentile(e, 99.5)) for e in errors.values()] + [1e-12])
    fig, axes = plt.subplots(2, len(names), figsize=(3 * len(names), 6.2), squeeze=False)
    im = None
    for i, n in enumerate(names):
        ax = axes[0, i]
        ax.imshow(panels[n].T, cmap="gray", vmin=lo, vmax=hi, origin="lower",
                  interpolation="nearest",
                  extent=(0, reference.shape[0], 0, reference.shape[1]))
        ax.set_title(n)
        ax.axis("off")
        ax = axes[1, i]
        if n in errors:
            im = ax.imshow(errors[n].T, cmap="magma", vmin=0, vmax=emax, origin="lower",
                           interpolation="nearest")
            ax.set_title(f"|{n} - HR|")
        ax.axis("off")
    if errors:
        fig.colorbar(im, ax=axes[1, -1], fraction=0.046, pad=0.04, label="|error|")
    if title:
        fig.suptitle(title)
    return save_figure(fig, out_png, dpi=100)


def _short_name(path: str, width: int = 28) -> str:
    name = Path(path).name
    return name if len(name) <= width else name[:width - 3] + "..."


def file_comparison_figure(records: list[dict], previews: list[dict],
                           out_png: str | os.PathLike, title: str = "") -> Path:
    """``medsr eval`` of files: PSNR and SSIM per reference volume with a bar per method,
    then, per previewed reference, its middle slice, each test's and |test - reference|
    (one intensity window and one error window per reference)."""
    plt = pyplot()
    methods = list(dict.fromkeys(r.get("method", "test") for r in records))
    refs = list(dict.fromkeys(r["reference"] for r in records))
    blocks: dict[str, list[dict]] = {}
    for p in previews:
        blocks.setdefault(p["reference"], []).append(p)
    ncols = max([2] + [1 + len(b) for b in blocks.values()])
    nrows = 1 + 2 * len(blocks)
    fig = plt.figure(figsize=(max(10.0, 2.8 * ncols), 3.6 + 2.7 * 2 * len(blocks)))
    gs = fig.add_gridspec(nrows, ncols, height_ratios=[1.4] + [1.0] * (nrows - 1))
    top = gs[0, :].subgridspec(1, 2, wspace=0.25)
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(refs))
    for k, (metric, unit) in enumerate((("psnr", "dB"), ("ssim", ""))):
        ax = fig.add_subplot(top[0, k])
        for j, m in enumerate(methods):
            vals = np.full(len(refs), np.nan)
            for r in records:
                if r.get("method", "test") == m:
                    v = r[metric]
                    vals[refs.index(r["reference"])] = v if v is not None and np.isfinite(v) \
                        else np.nan
            mean = np.nanmean(vals) if np.isfinite(vals).any() else np.nan
            ax.bar(x + (j - (len(methods) - 1) / 2) * width, vals, width,
                   label=f"{m} (mean {mean:.4g}{' ' + unit if unit else ''})", color=f"C{j}")
        ax.set_ylabel(f"{metric.upper()}" + (f" ({unit})" if unit else ""))
        ax.set_title(f"{metric.upper()} per volume (higher is better)")
        finite = [float(r[metric]) for r in records
                  if r[metric] is not None and np.isfinite(r[metric])]
        highest = max(finite + [1.0 if metric == "ssim" else 1e-9])
        ax.set_ylim(min(finite + [0.0]), 1.3 * highest)  # bars from 0; room for the legend
        if len(refs) <= 20:
            ax.set_xticks(x, [_short_name(r, 18) for r in refs], rotation=30, ha="right",
                          fontsize=7)
        else:
            ax.set_xlabel(f"reference volume (1 to {len(refs)})")
            ax.set_xticks([])
        ax.legend(fontsize=7, loc="upper right")
    for b, (ref_name, items) in enumerate(blocks.items()):
        ref = items[0]["ref_slice"]
        lo, hi = float(np.percentile(ref, 0.5)), float(np.percentile(ref, 99.5))
        hi = hi if hi > lo else lo + 1.0
        errors = [np.abs(p["test_slice"] - ref) for p in items]
        emax = max([float(np.percentile(e, 99.5)) for e in errors] + [1e-12])
        row = 1 + 2 * b
        ax = fig.add_subplot(gs[row, 0])
        ax.imshow(ref.T, cmap="gray", vmin=lo, vmax=hi, origin="lower", interpolation="nearest")
        ax.set_title(f"reference\n{_short_name(ref_name)}", fontsize=8)
        ax.axis("off")
        ax = fig.add_subplot(gs[row + 1, 0])
        ax.axis("off")
        ax.text(0.5, 0.5, f"middle slice across axis {items[0].get('axis', 2)}\n"
                "below: |test - reference|", ha="center", va="center", fontsize=8,
                transform=ax.transAxes)
        im = None
        for i, (p, err) in enumerate(zip(items, errors), start=1):
            score = next((r for r in records if r["reference"] == p["reference"]
                          and r["test"] == p["test"]), {})
            psnr = score.get("psnr")
            ax = fig.add_subplot(gs[row, i])
            ax.imshow(p["test_slice"].T, cmap="gray", vmin=lo, vmax=hi, origin="lower",
                      interpolation="nearest")
            ax.set_title(f"{p.get('method', 'test')}\n{_short_name(p['test'])}", fontsize=8)
            ax.axis("off")
            ax = fig.add_subplot(gs[row + 1, i])
            im = ax.imshow(err.T, cmap="magma", vmin=0, vmax=emax, origin="lower",
                           interpolation="nearest")
            ax.set_title(f"|error|, PSNR {psnr:.2f} dB" if isinstance(psnr, float)
                         else "|error|", fontsize=8)
            ax.axis("off")
        if im is not None:
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="|error| (image units)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, out_png, dpi=90)


def benchmark_figure(out_dir: Path, name: str, lr: np.ndarray, outputs: dict[str, np.ndarray],
                     hr: np.ndarray, factors: tuple[int, int, int], normal: int | None) -> Path:
    """``out_dir/<volume stem>.png``: LR | cubic | SR | HR of the middle slice across
    ``normal`` (axis 2 for a 3D model), arrays (C, I, J, K), with the error maps."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ax = 2 if normal is None else normal
    idx = hr.shape[1 + ax] // 2
    lidx = min(idx // factors[ax], lr.shape[1 + ax] - 1)

    def cut(a: np.ndarray, i: int) -> np.ndarray:
        return np.take(a[0], i, axis=ax)

    panels: dict[str, Any] = {
        "LR": cut(lr, lidx), "cubic": cut(outputs["cubic"], idx) if "cubic" in outputs
        else None, "SR": cut(outputs["model"], idx), "HR": cut(hr, idx)}
    panels = {k: v for k, v in panels.items() if v is not None}
    stem = name.split(".")[0]
    return comparison_figure(panels, panels["HR"], out_dir / f"{stem}.png",
                             title=f"{name} (slice {idx} along axis {ax})")
