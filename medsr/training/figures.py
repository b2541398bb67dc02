"""Figures of training runs (matplotlib, Agg backend, written atomically): the
training curve. Comparison figures are :mod:`medsr.evaluation.figures`."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from medsr.extras import pyplot
from medsr.io.common import save_figure

PSNR_MIN_SPAN_DB = 1.0  # a validation PSNR axis spans at least this
SSIM_MIN_SPAN = 0.02


def _honest_limits(ax, values: np.ndarray, min_span: float, unit: str, fmt: str,
                   corner: float = 0.02) -> None:
    """Y limits spanning at least ``min_span`` (so that noise does not look like a trend),
    and the actual range written on the axes."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return
    lo, hi = float(v.min()), float(v.max())
    if hi - lo < min_span:
        mid = 0.5 * (lo + hi)
        ax.set_ylim(mid - 0.6 * min_span, mid + 0.6 * min_span)
    ax.ticklabel_format(axis="y", useOffset=False)
    u = f" {unit}" if unit else ""
    ax.text(0.02, corner, f"range {fmt.format(lo)} to {fmt.format(hi)}{u} "
            f"(spread {fmt.format(hi - lo)}{u})", transform=ax.transAxes, fontsize=7,
            color=ax.lines[-1].get_color() if ax.lines else "k")


def training_curve(metrics_csv: str | os.PathLike, out_png: str | os.PathLike) -> Path | None:
    """Training loss (log scale) and validation PSNR/SSIM against step; None if no rows."""
    with open(metrics_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    plt = pyplot()

    def series(key: str):
        pts = [(int(r["step"]), float(r[key])) for r in rows if r.get(key)]
        return (np.array([p[0] for p in pts]), np.array([p[1] for p in pts])) if pts else None

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    loss_cols = [c for c in rows[0] if c.startswith("loss")]
    for col in loss_cols:
        s = series(col)
        if s is not None and np.all(s[1] > 0):
            axes[0].semilogy(*s, label=col, lw=1.5 if col == "loss" else 0.8)
        elif s is not None:
            axes[0].plot(*s, label=col)
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("loss (log scale)" if axes[0].get_yscale() == "log" else "loss")
    axes[0].set_title("training loss")
    axes[0].legend(fontsize=7)
    s = series("val_psnr")
    handles = []
    if s is not None:
        handles += axes[1].plot(*s, "o-", color="C0", label="val PSNR (dB)")
        axes[1].set_ylabel("PSNR (dB)")
        _honest_limits(axes[1], s[1], PSNR_MIN_SPAN_DB, "dB", "{:.3f}")
        s2 = series("val_ssim")
        if s2 is not None:
            ax2 = axes[1].twinx()
            handles += ax2.plot(*s2, "s--", color="C1", label="val SSIM")
            ax2.set_ylabel("SSIM")
            _honest_limits(ax2, s2[1], SSIM_MIN_SPAN, "", "{:.4f}", corner=0.10)
    if handles:
        axes[1].legend(handles, [h.get_label() for h in handles], fontsize=7, loc="lower right")
    axes[1].set_xlabel("step")
    axes[1].set_title("validation (normalised intensities)")
    fig.tight_layout()
    return save_figure(fig, out_png, dpi=100)
