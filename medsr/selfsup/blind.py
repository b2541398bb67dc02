"""The slice profile of self-supervised training pairs when none is given
(``profile="auto"``): a mixture of box and Gaussian at the widths the estimate fits.

Measured on the held-out real scans (docs/self-supervised.md, "Blind profile"): the
family of the estimate is a coin toss on brains and can be confidently wrong (the CT's
box slices), while a mixture of both families loses little where one is right.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medsr.selfsup.axes import (
    ThroughPlane,
    detect_through_plane,
    profile_kernel,
    slice_thickness,
)
from medsr.selfsup.profile_estimate import estimate_profile
from medsr.volume import Volume

# profile="auto" (no profile given): the pairs mix both families (BLIND_FAMILIES), one per
# batch, at the widths the estimate (medsr.selfsup.profile_estimate) fits to each, and the
# output is projected onto the slices under their mean kernel; a confident estimate's
# family alone only with BLIND_TRUST_CONFIDENT (off: confidently wrong on the CT's box
# slices, -1.6 dB there; within 0.05 dB of the mixture where right). Measured on the
# held-out real scans: docs/self-supervised.md, "Blind profile"
BLIND_TRUST_CONFIDENT = False  # measured: a confident estimate can be wrong (CT x2 box)
BLIND_FAMILIES = ("rect", "gaussian")
BLIND_WIDTHS = "estimate"   # each family's best width from the estimate ("spacing": s_t)
BLIND_PROJECTION = "mean"   # "mean" kernel of the mixture, or "none"
# the estimate's widths are uncertain (median error 7-9%, within 20% in 7-8 of 10 cases:
# medsr.selfsup.profile_estimate): each family's pairs are made at these multiples of its
# estimated width (one kernel per batch), so a long fit learns the conditional mean over
# the estimate's error rather than betting on one width (a box 15% too wide sharpened
# past the truth: -0.8 dB under cubic at 3000 steps, +1.2 with the spread;
# docs/self-supervised.md, "Blind profile"). Not applied to a thickness given or read
# from the header, nor to the slice spacing (no estimate)
BLIND_SPREAD = (0.8, 1.0, 1.25)


def _centred_mean(kernels: list[np.ndarray]) -> np.ndarray:
    """The mean of kernels centred alike (lengths of one parity), padded to one length."""
    n = max(kk.size for kk in kernels)
    return np.mean([np.pad(kk, (n - kk.size) // 2) for kk in kernels], axis=0)


def mixture_kernels(tp: ThroughPlane, widths: dict[str, float]
                    ) -> tuple[list[np.ndarray], np.ndarray, str]:
    """(each family's taps on ``tp``'s fine grid at its width in mm, their centred mean,
    words: "box 4.1 mm and Gaussian, FWHM 3.2 mm") for the families of ``widths``."""
    kernels = [profile_kernel(tp, widths[fam], fam) for fam in widths]
    words = " and ".join(f"{'box' if fam == 'rect' else 'Gaussian, FWHM'} "
                         f"{widths[fam]:.3g} mm" for fam in widths)
    return kernels, _centred_mean(kernels), words


def blind_profiles(vol: Volume, thickness: float | None = None,
                   estimate: Any = "estimate") -> dict[str, Any]:
    """The slice profile(s) of the training pairs when none is given (``profile="auto"``):

    * with ``BLIND_TRUST_CONFIDENT`` (off by default), the estimate of
      :func:`medsr.selfsup.profile_estimate.estimate_profile` when it is confident: its
      family at its width (a thickness given or from the header wins over the width);
    * otherwise (by default always) a mixture of both families (``BLIND_FAMILIES``),
      each batch of pairs degraded by one: each family at its best-fitting width in the
      estimate (a box of width, a Gaussian of FWHM; ``BLIND_WIDTHS``) and at
      ``BLIND_SPREAD`` multiples of it, or both at the thickness when it is given or in
      the header, or at the slice spacing without an estimate. The output is projected
      onto the slices under the mean of the families' kernels at their widths
      (``BLIND_PROJECTION``).

    Returns {"task": the :class:`ThroughPlane` found, "kernels": [fine-grid taps],
    "kernel": the projection's taps, "project",
    "profile" (the family, or "mixture"), "thickness_mm", "thickness_source",
    "description" (words for the summary), "estimate" (its dict, or None)}; a mixture
    also has "widths_mm", "families" and "spread" (the multiples its pairs use).
    ``estimate``: a :class:`ProfileEstimate` (or None) already made, else made here.
    """
    tp = detect_through_plane(vol)
    mm, source = slice_thickness(vol, tp, thickness)
    est = estimate_profile(vol) if isinstance(estimate, str) else estimate
    est_d = est.to_dict() if est is not None else None
    said = f"; estimate: {est.describe()}" if est is not None else ""
    if est is not None and est.confident and BLIND_TRUST_CONFIDENT:
        if source == "spacing":
            mm, source = float(est.width_mm), "estimate"
        kern = profile_kernel(tp, mm, est.family)
        what = "box" if est.family == "rect" else "Gaussian, FWHM"
        return {"task": tp, "kernels": [kern], "kernel": kern, "project": True,
                "profile": est.family,
                "thickness_mm": mm, "thickness_source": source, "estimate": est_d,
                "description": f"{what} {mm:.3g} mm (estimated, confident)"}
    widths = {fam: mm for fam in BLIND_FAMILIES}
    wsource = source
    if source == "spacing" and BLIND_WIDTHS == "estimate" and est is not None and est.best:
        widths = {fam: float(est.best[fam][0]) for fam in BLIND_FAMILIES}
        wsource = "estimate"
    _, kernel, words = mixture_kernels(tp, widths)  # the projection stays at 1x
    spread = BLIND_SPREAD if wsource == "estimate" else (1.0,)
    # the pairs span the estimate's error: each family at each multiple of its width
    kernels = [profile_kernel(tp, widths[fam] * f, fam) for fam in widths for f in spread]
    if len(spread) > 1:
        words += f", each at {', '.join(f'{f:g}' for f in spread[:-1])} and {spread[-1]:g}x"
    proj = BLIND_PROJECTION == "mean"
    return {"task": tp, "kernels": kernels, "kernel": kernel, "project": proj,
            "profile": "mixture", "thickness_mm": float(np.mean(list(widths.values()))),
            "thickness_source": wsource, "estimate": est_d,
            "widths_mm": widths, "families": list(BLIND_FAMILIES),
            "spread": [float(f) for f in spread],
            "description": (f"unknown: a mixture of {words} (widths from the {wsource}); "
                            + ("projected onto the slices under their mean"
                               if proj else "not projected onto the slices") + said)}
