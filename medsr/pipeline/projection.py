"""The optional last step of a scan's super-resolution: the output projected onto the
scan's slices under a slice profile (given, or estimated and confident; with
``BLIND_PROJECTION``, off by default, also the mean of a box and a Gaussian at an
unconfident estimate's widths)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medsr.errors import UserError
from medsr.geometry import OutputGrid
from medsr.options import RunOptions
from medsr.selfsup.blind import mixture_kernels
from medsr.selfsup.profile_estimate import estimate_profile, thick_axis
from medsr.volume import Volume

# The profile estimate and axis detection are numpy only; the rest of medsr.selfsup
# (torch, scipy) is imported where used.

# Without a confident estimate, the output may be projected under the mean kernel of a box
# and a Gaussian at the widths the estimate fits to each (as --self-supervised does).
# Off: on the training subjects (development data, pipelines/projection_blind.py,
# docs/benchmarks/projection_blind.md, 18 one-axis cases) it gained +0.34 dB mean over no
# projection (min +0.03; the true profile +0.40), but on the held-out real scans
# (pipelines/benchmark_real.py, default against default-noproj) -0.08 dB mean, min -1.72:
# on the CT and the ITK T1 (thick x beside one fine axis, y) the estimate's widths came out
# at half the truth or less (on development brains in that geometry within 30%:
# pipelines/profile_one_fine_axis.py).
BLIND_PROJECTION = False


def auto_slice_profile(vol: Volume) -> Any:
    """The slice profile of ``vol``'s thick axis estimated from the scan
    (:func:`medsr.selfsup.profile_estimate.estimate_profile`), None without a thick axis."""
    return estimate_profile(vol)


def thick_axis_upsampled(vol: Volume, plan: OutputGrid) -> bool:
    """Whether ``plan`` upsamples only ``vol``'s thick axis, by an integer factor (what
    the projection onto the slices needs)."""
    axes = thick_axis(vol)
    up = [a for a in range(3) if plan.factors[a] > 1 + 1e-6]
    if axes is None or len(up) != 1 or up[0] != axes[0] or np.any(plan.factors < 1 - 1e-6):
        return False
    f = float(plan.factors[up[0]])
    return abs(f - round(f)) <= 1e-6


def read_slice_profile(arg: str | Path | None) -> tuple[str, np.ndarray | None]:
    """``--slice-profile`` as ``medsr.selfsup`` takes it: ("gaussian" | "rect", None) for a
    named profile (None: Gaussian), ("gaussian", taps) for a 1D kernel in a .npy file
    (the taps win over the name)."""
    if arg is None or str(arg) in ("gaussian", "rect"):
        return str(arg or "gaussian"), None
    try:
        kernel = np.load(arg, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"--slice-profile is gaussian, rect or a .npy kernel; cannot read "
                        f"{arg}: {exc}") from exc
    if kernel.ndim != 1 or kernel.size < 1 or not np.all(np.isfinite(kernel)):
        raise UserError(f"the slice profile {arg} must be a finite 1D array")
    return "gaussian", kernel


def project_onto_slices(vol: Volume, out: Volume, plan: OutputGrid,
                        slice_profile: str | Path,
                        slice_thickness: float | None = None, *,
                        widths: dict[str, float] | None = None) -> tuple[Volume, str]:
    """``out`` made to re-acquire ``vol``'s slices under the slice profile
    (:mod:`medsr.selfsup.consistency`): for a one-axis integer upsampling of a thick-slice
    scan along its thick axis. Gains 0.3-0.9 dB over the shipped default when the
    profile is right, loses up to 1.6 dB when it is wrong (docs/self-supervised.md).
    ``widths`` ({family: mm}): instead, the mean kernel of those profiles (the blind
    mixture, :func:`medsr.selfsup.blind.mixture_kernels`)."""
    from medsr.selfsup import scan_profile
    from medsr.selfsup.consistency import project

    name, taps = read_slice_profile(slice_profile)
    up = [a for a in range(3) if plan.factors[a] > 1 + 1e-6]
    k = int(round(float(plan.factors[up[0]]))) if len(up) == 1 else 0
    # the profile sampled on the plan's grid (spacing s_t / k), not on the grid of the
    # scan's own task (s_t / ceil(s_t / s_in)): they differ where the native voxels are
    # anisotropic, e.g. a 3 mm axis over 0.96 mm voxels upsampled x2
    tp, kernel, mm, source = scan_profile(vol, name, slice_thickness, taps,
                                          k=k if k >= 1 else None)
    if (len(up) != 1 or up[0] != tp.axis or abs(plan.factors[up[0]] - k) > 1e-6
            or np.any(plan.factors < 1 - 1e-6)):
        raise UserError("--slice-profile needs the thick axis upsampled by an integer factor "
                        f"and nothing else (the plan is {np.round(plan.factors, 3).tolist()})")
    what = "a kernel from file" if taps is not None else f"{name} profile"
    if widths:
        _, kernel, what = mixture_kernels(tp, widths)
        what, source = f"the mean of {what}", "the estimate"
    data = project(out.data, vol.data, tp.axis, kernel, k)
    if widths:
        return out.with_data(data), f"projected onto the scan's slices ({what})"
    return out.with_data(data), (f"projected onto the scan's slices ({what}, "
                                 f"thickness {mm:g} mm from {source})")


def estimate_for(vol: Volume, grid: OutputGrid, run: RunOptions, kind: str | None, *,
                 auto: bool) -> Any:
    """The slice-profile estimate the projection step will consult (None when it will
    not: a profile was given, ``auto`` is off, not a scan, or not its thick axis alone
    upsampled). Made before the network runs, so that its temporaries and the output are
    never in memory together."""
    if run.profile is not None or not (auto and kind is None
                                       and thick_axis_upsampled(vol, grid)):
        return None
    return auto_slice_profile(vol)


def project(vol: Volume, out: Volume, grid: OutputGrid, run: RunOptions,
            kind: str | None, *, auto: bool, estimate: Any = None) -> tuple[Volume, list[str]]:
    """The projection step: onto the slices under ``run.profile`` when given; with no
    profile and ``auto``, under the estimate (``estimate``, from :func:`estimate_for`,
    else made here) for a scan whose thick axis alone is upsampled: its profile when it
    is confident, else (``BLIND_PROJECTION``) the mean of a box and a Gaussian at the
    widths it fits to each; not when it has none (a note either way)."""
    if run.profile is not None:
        out, note = project_onto_slices(vol, out, grid, run.profile, run.slice_thickness)
        return out, [note]
    if not (auto and kind is None and thick_axis_upsampled(vol, grid)):
        return out, []
    est = auto_slice_profile(vol) if estimate is None else estimate
    if est is not None and est.confident:
        out, _ = project_onto_slices(vol, out, grid, est.family, est.width_mm)
        return out, [f"slice profile: {est.describe()}: projected onto the scan's slices "
                     "(--slice-profile gaussian|rect|FILE.npy sets it)"]
    if est is not None and BLIND_PROJECTION and est.best:
        out, note = project_onto_slices(vol, out, grid, "gaussian", widths={
            fam: float(est.best[fam][0]) for fam in ("rect", "gaussian")})
        return out, [f"slice profile: {est.describe()}: {note} "
                     "(--slice-profile gaussian|rect|FILE.npy sets it)"]
    if est is not None:
        return out, [f"slice profile: {est.describe()}: not projected onto the scan's "
                     "slices (--slice-profile gaussian|rect|FILE.npy projects)"]
    return out, []
