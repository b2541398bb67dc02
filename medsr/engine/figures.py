"""Figures for runs and evaluations (matplotlib, Agg backend, written atomically)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from medsr.io.common import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def training_curve(metrics_csv: str | os.PathLike, out_png: str | os.PathLike) -> Path | None:
    """Training loss (log scale) and validation PSNR/SSIM against step; None if no rows."""
    with open(metrics_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    plt = _plt()

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
    axes[0].set_title("training loss")
    axes[0].legend(fontsize=7)
    s = series("val_psnr")
    if s is not None:
        axes[1].plot(*s, "o-", color="C0", label="val PSNR")
        axes[1].set_ylabel("PSNR (dB)")
        s2 = series("val_ssim")
        if s2 is not None:
            ax2 = axes[1].twinx()
            ax2.plot(*s2, "s--", color="C1", label="val SSIM")
            ax2.set_ylabel("SSIM")
    axes[1].set_xlabel("step")
    axes[1].set_title("validation (normalised intensities)")
    fig.tight_layout()
    out = Path(out_png)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return out


def comparison_figure(panels: dict[str, np.ndarray], reference: np.ndarray,
                      out_png: str | os.PathLike, title: str = "",
                      window: tuple[float, float] | None = None) -> Path:
    """One row of images (e.g. LR | cubic | SR | HR) with one intensity window, and below
    them the absolute-error maps |x - HR| with one shared error window."""
    plt = _plt()
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
    out = Path(out_png)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    return out
