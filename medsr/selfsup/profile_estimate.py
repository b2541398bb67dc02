"""Estimate the through-plane slice profile of a thick-slice scan from the scan itself.

Non-adversarial (no training; about 0.05 s of CPU for the shipped example). The
in-plane axes of a thick-slice scan are fine; blur an in-plane axis a with a candidate
profile h and sample it at the slice spacing, and the result Z is acquired alike along a
(with h) and along the thick axis t (with the true profile). When h is the true profile
and the anatomy is about isotropic, Z's (a, t) power spectrum is symmetric: its power at
(u, v) equals its power at (v, u). So:

* 2D power spectra of (a, t) patches of the scan (one whole-slice difference along each
  axis first, which whitens the spectrum; 2D Hann window; patches L slices by the same
  length in-plane, about half overlapping; at most :data:`MAX_PATCHES` per fine axis,
  planes taken evenly), averaged: one batched float32 real FFT;
* blurring along a multiplies by |H|^2 (the taps :mod:`medsr.degrade.profiles` makes,
  integrated over the fine voxels and centred where the slices lie, for all candidate
  widths at once: ``integrated_taps``) and sampling every slice spacing folds the
  aliases back: one einsum gives Z's spectrum on the slices' frequency grid for every
  candidate;
* the width of each family is where the full 2D comparison (mean squared difference of
  log Z at (u, v) and at (v, u)) is least; the family is the one whose marginal spectra
  (the mean over the other frequency, along a against along t) match best, where the
  families part most.

Candidates: a Gaussian of FWHM w and a box of width w, w over a geometric grid of 0.4 to
2.5 slice spacings; the minima are refined by a parabola. The estimate is *confident*
when the other family's best marginal match is at least :data:`CONFIDENT_RATIO` times
worse, the widths that each fine axis alone and the marginal spectra give are within
:data:`MAX_SPREAD` of each other (anatomy unlike along the axes moves them apart), the
match is good and the width is not at the edge of the grid.

Tried and left out (docs/benchmarks/profile_estimate.md, 36 cases each without and with
3% white noise, as tried during the change that brought this design): a flat noise
floor fitted per candidate (white noise added after the acquisition is blurred by the
candidate along a but by nothing along t) changed the median width error by about a
point; a Gaussian anisotropy term fitted per candidate, or the comparison restricted to
the high frequencies, told the families apart no better.

Limits (measured there): a box of width w and a Gaussian of FWHM ~0.68 w (the same
standard deviation) give nearly the same spectra; they part in the shape near the slices'
Nyquist frequency and in the weak aliases, by less than the templates' own anisotropy
along the axes. So on brains the family is a coin toss and never said with confidence
(the estimate says so, and callers keep their defaults); on an isotropic texture a thin
box or a Gaussian is sometimes called, and rightly. The width is the better part: the
true family's best width is within 20% in 7 to 8 cases of 10 (median error 7-9%), and
the estimate's standard deviation, whichever family it names, within 20% in about 2 of 3
(median 11%).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from medsr.degrade.profiles import integrated_taps
from medsr.errors import UserError
from medsr.selfsup.axes import detect_through_plane
from medsr.volume import Volume

FAMILIES = ("gaussian", "rect")
WIDTHS = np.geomspace(0.4, 2.5, 41)  # candidate widths, in slice spacings
SEGMENT = 32            # slices per thick-axis segment (fewer when the scan has fewer)
MIN_SEGMENT = 8         # below this many slices the spectrum has too few bins to decide
MAX_PATCHES = 300       # 2D patches per fine axis (planes taken evenly), for speed
OVERLAP = 0.5           # patch step / patch length (about)
CONFIDENT_RATIO = 2.0   # other family's distance / best distance for a confident call
MAX_SPREAD = 1.15       # largest / smallest width from each fine axis alone and the marginals
MAX_RMS = 0.25          # root mean square log-spectrum error of a confident match
PRIOR = 1e-5            # pull towards width = spacing (breaks ties on coarse fine grids)
WORDS = {"gaussian": "Gaussian", "rect": "box"}


@dataclass(frozen=True)
class ProfileEstimate:
    """The slice profile of a thick-slice scan, estimated from its own data."""

    family: str                  # "gaussian" (width = FWHM) or "rect" (box, width = width)
    width_mm: float
    confident: bool
    axis: int                    # the thick axis
    spacing_mm: float            # its slice spacing
    rms: float                   # root mean square log error of the best marginal match
    ratio: float                 # other family's best marginal distance / this family's
    why: str = ""                # why it is not confident (empty when it is)
    best: dict = field(default_factory=dict)  # family -> [width mm, full 2D distance]

    def describe(self) -> str:
        """'box, 4.1 mm (estimated, confident)'."""
        what = "box" if self.family == "rect" else "Gaussian, FWHM"
        how = "confident" if self.confident else f"not confident: {self.why}"
        return f"{what} {self.width_mm:.3g} mm (estimated, {how})"

    def to_dict(self) -> dict:
        return asdict(self)


def _patch_spectrum(x: np.ndarray, n_a: int, n_t: int) -> np.ndarray:
    """Mean 2D power spectrum (fft2 order, axes (a, t)) of (n_a, n_t) patches of the
    planes ``x`` (planes, a, t): half-overlapping, mean removed, 2D Hann window; float32,
    one batched real FFT (the negative t frequencies by the spectrum's symmetry)."""
    p = np.concatenate([x[:, i:i + n_a, j:j + n_t] for i in _starts(x.shape[1], n_a)
                        for j in _starts(x.shape[2], n_t)])
    p -= p.mean(axis=(1, 2), keepdims=True)
    w = np.outer(np.hanning(n_a + 2)[1:-1], np.hanning(n_t + 2)[1:-1]).astype(np.float32)
    p *= w
    f = np.fft.rfft2(p)
    half = (f.real * f.real + f.imag * f.imag).sum(axis=0, dtype=np.float64)
    full = np.empty((n_a, n_t))
    full[:, :half.shape[1]] = half
    neg = np.arange(half.shape[1], n_t)  # P(u, -v) = P(-u, v)
    full[:, neg] = half[(-np.arange(n_a)) % n_a][:, n_t - neg]
    return full / (p.shape[0] * float(np.sum(w.astype(np.float64) ** 2)))


def _responses(family: str, widths_vox: np.ndarray, freq_cyc_per_vox: np.ndarray,
               centre: float) -> np.ndarray:
    """|H|^2 (widths, *freq shape) of the profiles' fine-grid taps (each the profile
    integrated over a fine voxel: :func:`medsr.degrade.profiles.integrated_taps`, all
    widths at once) at the given frequencies."""
    j, taps = integrated_taps(family, widths_vox, centre)
    f = np.asarray(freq_cyc_per_vox, dtype=np.float64)
    h = taps @ np.cos(2.0 * np.pi * np.multiply.outer(j, f.ravel()))
    return (h * h).reshape(taps.shape[0], *f.shape)


def _starts(n: int, m: int) -> np.ndarray:
    """Starts of patches of length m over n samples, evenly spread, about half
    overlapping (at least one patch; none nearly repeating another)."""
    count = 1 + int(round((n - m) / (OVERLAP * m)))
    return np.unique(np.round(np.linspace(0, n - m, count)).astype(int))


def _folds(data: np.ndarray, t: int, fine: list[int], sp: list[float], n_t: int) -> list:
    """Per fine axis a: (alias frequencies in cycles / fine voxel (n_t, aliases), the
    whitened (a, t) patch power at them (n_t, aliases, n_t), the fine spacing)."""
    s_t = sp[t]
    v = np.fft.fftfreq(n_t) / s_t  # the slices' frequencies, cycles / mm
    folds = []
    for a in fine:
        b = 3 - a - t
        n_a = int(round(n_t * s_t / sp[a]))
        lag = max(1, int(round(s_t / sp[a])))
        corners = _starts(data.shape[a] - lag, n_a).size * _starts(data.shape[t] - 1, n_t).size
        planes = np.arange(data.shape[b])
        if planes.size * corners > MAX_PATCHES:  # planes evenly, for speed
            keep = max(1, MAX_PATCHES // corners)
            planes = np.unique(np.linspace(0, planes.size - 1, keep).astype(int))
        x = np.moveaxis(np.take(data, planes, axis=b), (b, a, t), (0, 1, 2))
        x = np.asarray(x, dtype=np.float32)
        # one difference along each axis (lag: one slice spacing) whitens the spectrum;
        # a lag of whole slices commutes with the folding
        src = np.diff(x[:, lag:] - x[:, :-lag], axis=2)
        p2 = np.fft.fftshift(_patch_spectrum(src, n_a, n_t), axes=0)
        f_a = np.fft.fftshift(np.fft.fftfreq(n_a)) / sp[a]
        m_max = int(math.ceil(s_t / (2.0 * sp[a]))) + 1
        alias = np.add.outer(v, np.arange(-m_max, m_max + 1) / s_t)  # (n_t, aliases)
        inside = np.abs(alias) < 0.5 / sp[a] - 1e-9
        power = np.stack([np.interp(alias, f_a, p2[:, j]) for j in range(n_t)], axis=-1)
        power *= inside[..., None]
        folds.append((alias * sp[a], power, sp[a]))
    return folds


def _folded(fam: str, folds: list, s_t: float, centre: float) -> np.ndarray:
    """Z's power spectrum per fine axis and candidate width (:data:`WIDTHS`, all at
    once): (fine axes, widths, u, v), fine-axis frequency u, thick-axis frequency v."""
    return np.stack([np.einsum("wum,umv->wuv",
                               _responses(fam, WIDTHS * s_t / s_a, alias_vox, centre), power)
                     for alias_vox, power, s_a in folds])


def _log(x: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(x, 1e-30))


def _full_distance(z: np.ndarray) -> np.ndarray:
    """Per width: the mean squared difference between log Z at (u, v) and at (v, u) (the
    zero frequencies, which the whitening empties, left out)."""
    lz = _log(z.sum(axis=0)[:, 1:, 1:])
    return np.mean((lz - np.swapaxes(lz, 1, 2)) ** 2, axis=(1, 2)) + _prior()


def _marginal_distance(z: np.ndarray) -> np.ndarray:
    """Per (fine axes..., width): the mean squared difference between log Z's mean spectrum
    along the fine axis and along the thick axis (each the mean over the other frequency)."""
    m_a, m_t = z[..., :, 1:].mean(axis=-1)[..., 1:], z[..., 1:, :].mean(axis=-2)[..., 1:]
    return np.mean((_log(m_a) - _log(m_t)) ** 2, axis=-1) + _prior()


def _prior() -> np.ndarray:
    # a faint pull towards thickness = spacing breaks ties (fine grids too coarse to tell
    # narrow widths apart)
    return PRIOR * np.log(WIDTHS) ** 2


def thick_axis(vol: Volume) -> tuple[int, list[int], int] | None:
    """(thick axis, fine axes, integer factor) of ``vol``, or None when no axis is thick (nearly
    isotropic, or fewer than two axes longer than one voxel)."""
    try:
        tp = detect_through_plane(vol)
    except UserError:
        return None
    return tp.axis, list(tp.inplane_axes), tp.k


def estimate_profile(vol: Volume) -> ProfileEstimate | None:
    """The through-plane slice profile of ``vol`` (family and width, with a confidence),
    or None when ``vol`` has no thick axis (:func:`thick_axis`)."""
    axes = thick_axis(vol)
    if axes is None:
        return None
    t, fine, tp_k = axes
    data = np.asarray(vol.data)  # the planes used are made float32 where they are taken
    if data.ndim == 4:
        data = data.mean(axis=3, dtype=np.float32)
    sp = [float(s) for s in vol.spacing]
    s_t = sp[t]
    n_t = min(SEGMENT, data.shape[t] - 1)
    n_t -= n_t % 2
    # the in-plane patch side must span the same length: shrink when an axis is short
    for a in fine:
        n_t = min(n_t, int((data.shape[a] - s_t / sp[a] - 1) * sp[a] / s_t) // 2 * 2)
    if n_t < MIN_SEGMENT:
        return ProfileEstimate("gaussian", s_t, False, t, s_t, math.nan, 1.0,
                               f"too few samples ({n_t} slices a patch) to compare spectra")
    folds = _folds(data, t, fine, sp, n_t)
    centre = 0.5 if tp_k % 2 == 0 else 0.0  # where the slices lie on the fine grid
    z = {fam: _folded(fam, folds, s_t, centre) for fam in FAMILIES}
    # the width: the full 2D comparison (the most accurate, docs/benchmarks)
    best = {fam: _refine(_full_distance(z[fam])) for fam in FAMILIES}
    # the family: the marginal spectra (where the families part most)
    fit = {fam: _refine(_marginal_distance(z[fam].sum(axis=0)))[1] for fam in FAMILIES}
    fam = min(FAMILIES, key=lambda f: fit[f])
    other = FAMILIES[1 - FAMILIES.index(fam)]
    width = best[fam][0] * s_t
    d_best = max(fit[fam], 1e-12)
    ratio = fit[other] / d_best
    rms = math.sqrt(d_best)
    # the width as each fine axis alone sees it, and as the marginal spectra do: far apart,
    # the anatomy is not alike along the axes and no width is to be trusted
    widths = [_refine(_full_distance(z[fam][i:i + 1]))[0] for i in range(len(folds))]
    widths.append(_refine(_marginal_distance(z[fam].sum(axis=0)))[0])
    spread = max(widths) / min(widths)
    why = ""
    if ratio < CONFIDENT_RATIO:
        why = (f"the best {WORDS[other]} fits nearly as well ({ratio:.2f}x the error, "
               f"{CONFIDENT_RATIO}x needed)")
    elif spread > MAX_SPREAD:
        why = (f"the fine axes disagree on the width ({min(widths) * s_t:.3g} to "
               f"{max(widths) * s_t:.3g} mm)")
    elif rms > MAX_RMS:
        why = (f"no candidate fits the thick axis's spectrum well (rms log error {rms:.2f}, "
               f"{MAX_RMS} at most)")
    edge = best[fam][0] <= WIDTHS[0] * 1.001 or best[fam][0] >= WIDTHS[-1] * 0.999
    if not why and edge:
        why = "the width is at the edge of the candidates"
    return ProfileEstimate(fam, float(width), not why, t, s_t, float(rms), float(ratio), why,
                           {f: [float(best[f][0] * s_t), float(best[f][1])]
                            for f in FAMILIES})


def _refine(d: np.ndarray) -> tuple[float, float]:
    """(width in slice spacings, distance) at the minimum of ``d`` over :data:`WIDTHS`,
    refined by a parabola in log width through the best grid point and its neighbours."""
    i = int(np.argmin(d))
    if 0 < i < d.size - 1:
        y0, y1, y2 = d[i - 1], d[i], d[i + 1]
        den = y0 - 2.0 * y1 + y2
        if den > 0:
            off = 0.5 * (y0 - y2) / den
            step = math.log(WIDTHS[1] / WIDTHS[0])
            return (float(WIDTHS[i] * math.exp(off * step)),
                    max(0.0, float(y1 - 0.25 * (y0 - y2) * off)))
    return float(WIDTHS[i]), float(d[i])
