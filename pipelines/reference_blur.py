"""How blurred each axis of a reference volume is against its finest axis, from its data.

A benchmark reference is a truth only along axes as sharp as the grid says: a head CT
reconstructed every 1.5 mm from ~3 mm slices carries a 3 mm profile on its 1.5 mm
grid, and super-resolution thickening that axis is then scored against a blurred
reference. This measures it: the 1D power spectrum along each axis (one difference
first, which whitens it, divided out again; Hann-windowed segments of one physical
length, about half overlapping, over the whole volume), divided by the finest axis's
spectrum at the same frequencies (cycles / mm), is |H|^2 of the extra blur the axis has
(anatomy about isotropic). A box of width w (|sinc(w f)|^2, times a free gain) is fitted
to it up to 60% of the axis's Nyquist frequency (above, aliasing and the noise floor
lift it). Width 0: as sharp as the finest axis.

    python pipelines/reference_blur.py [FILE ...]   # default: the held-out references
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SEGMENT_MM = 48.0   # physical length of the spectrum segments
FIT_UP_TO = 0.6     # of the axis's Nyquist frequency
WIDTHS_MM = np.linspace(0.0, 8.0, 801)


def axis_spectrum(data: np.ndarray, axis: int, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies in cycles / mm, mean power) along ``axis``: differenced, windowed
    segments of :data:`SEGMENT_MM`, the difference's response divided out."""
    x = np.diff(np.moveaxis(np.asarray(data, dtype=np.float64), axis, -1), axis=-1)
    n = min(int(round(SEGMENT_MM / spacing)), x.shape[-1])
    starts = range(0, x.shape[-1] - n + 1, max(1, n // 2))
    seg = np.concatenate([x[..., s:s + n].reshape(-1, n) for s in starts])
    seg = seg[np.ptp(seg, axis=1) > 0]
    seg = (seg - seg.mean(axis=1, keepdims=True)) * np.hanning(n)
    power = (np.abs(np.fft.rfft(seg, axis=1)) ** 2).mean(axis=0)
    f = np.fft.rfftfreq(n)
    power[1:] /= (2.0 * np.sin(np.pi * f[1:])) ** 2
    return f[1:] / spacing, power[1:]


def box_width(data: np.ndarray, spacing, axis: int) -> tuple[float, float]:
    """(box width in mm of ``axis``'s blur relative to the finest axis (the first of
    them), rms log error of the fit); 0 for that axis itself."""
    fine = int(np.argmin(spacing))
    if axis == fine:
        return 0.0, 0.0
    f_t, p_t = axis_spectrum(data, axis, spacing[axis])
    f_a, p_a = axis_spectrum(data, fine, spacing[fine])
    keep = f_t <= FIT_UP_TO * 0.5 / spacing[axis]
    f, ratio = f_t[keep], np.log(p_t[keep] / np.interp(f_t[keep], f_a, p_a))
    model = np.log(np.maximum(np.sinc(np.outer(WIDTHS_MM, f)) ** 2, 1e-12))
    resid = ratio[None, :] - model
    resid -= resid.mean(axis=1, keepdims=True)  # the free gain
    err = np.sqrt(np.mean(resid ** 2, axis=1))
    i = int(np.argmin(err))
    return float(WIDTHS_MM[i]), float(err[i])


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT / "pipelines"))
    from medsr import io

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path)
    args = ap.parse_args(argv)
    files = args.files
    if not files:
        import real_data

        files = [ROOT / r["file"] for r in real_data.heldout()]
    for path in files:
        v = io.read(path)
        sp = [float(s) for s in v.spacing]
        data = np.asarray(v.data, dtype=np.float64)
        data = data.mean(axis=3) if data.ndim == 4 else data
        words = []
        for a in range(3):
            if data.shape[a] < 16:
                words.append(f"axis {a} ({sp[a]:.3g} mm): too short")
                continue
            w, e = box_width(data, sp, a)
            words.append(f"axis {a} ({sp[a]:.3g} mm): box {w:.2f} mm (rms {e:.2f})")
        print(f"{path.name}: " + "; ".join(words), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
