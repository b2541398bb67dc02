"""``--self-supervised`` (a network fitted to the scan itself, within a time budget) and
``--model FIT`` (a saved fit applied), from a read scan to the written output.

The budget covers the whole command, from ``budget_start`` (the process start when run
from the command line) to the written output: set-up, the scan's read, the profile
estimate, training, inference and the estimated write. A budget that set-up and inference
alone do not fit in is refused (:class:`medsr.selfsup.budget.BudgetTooShort`, exit 2).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from medsr.errors import UserError
from medsr.options import InferOptions
from medsr.pipeline import projection
from medsr.pipeline.result import InferResult, num, write_result
from medsr.provenance import selfsup_part  # issue 25
from medsr.volume import Volume

# medsr.selfsup is imported where used: it is lazy on purpose (tests/test_startup_imports.py)

DEFAULT_BUDGET_S = 300.0  # --self-supervised --budget
WRITE_PER_READ = 3.0  # writing a voxel takes up to this many times reading one (gzip)


def self_supervised_budget(budget_s: float, spent_s: float, read_s: float,
                           factor: float) -> float:
    """Seconds left to :func:`medsr.selfsup.super_resolve_self_supervised` of a command's
    ``budget_s``: less what is spent (``spent_s``: reading the scan and, from the command
    line, starting Python) and the writing still to come, estimated as WRITE_PER_READ
    times the read time (``read_s``) per voxel, ``factor`` times as many voxels."""
    return budget_s - spent_s - WRITE_PER_READ * read_s * max(1.0, factor)


def run_saved_fit(vol: Volume, fitted: Path, input_path: Path, out_path: Path, t0: float,
                  opts: InferOptions) -> InferResult:
    """``--model FIT`` with a saved self-supervised fit: applied as the fitting run applied
    it (both orientations, test-time flips, projected onto this scan's slices under the
    profile it was fitted for; :func:`medsr.selfsup.apply_saved`)."""
    from medsr.selfsup import apply_saved

    out = apply_saved(vol, fitted, device=opts.run.device)
    notes = [f"self-supervised fit {fitted.name}: test-time flips, projected onto the "
             "scan's slices"]
    result = write_result(vol, out, input_path, out_path, t0,
                          method="self-supervised (saved fit)", notes=notes,
                          write=opts.write, keep_overshoot=opts.run.keep_overshoot)
    result.model, result.tta = str(fitted), True
    return result


def run_self_supervised(vol: Volume, input_path: Path, out_path: Path, t0: float,
                        read_s: float, opts: InferOptions) -> InferResult:
    """``--self-supervised``: the plan is the scan's own (its thick axis to the in-plane
    spacing); the budget covers the whole command from ``opts.selfsup.budget_start``
    (default ``t0``) to the written output. With no ``--slice-profile`` the slice profile
    of the training pairs is not known: the pairs mix a box and a Gaussian at the widths
    estimated from the scan (:func:`medsr.selfsup.blind.blind_profiles`)."""
    from medsr.selfsup import FEW_STEPS, super_resolve_self_supervised
    from medsr.selfsup.budget import BudgetTooShort

    run, ss = opts.run, opts.selfsup
    budget_s = DEFAULT_BUDGET_S if ss.budget_s is None else ss.budget_s
    start = t0 if ss.budget_start is None else ss.budget_start
    slice_thickness = run.slice_thickness
    name, kernel = projection.read_slice_profile(run.profile)
    if run.auto_profile:  # blind: estimated, or a mixture of both families (in the budget)
        name = "auto"
    now = time.perf_counter()  # the budget counts the imports above
    sp = np.sort(np.asarray(vol.spacing, dtype=float))
    spent = now - start
    inner = self_supervised_budget(budget_s, spent, read_s, float(sp[-1] / max(sp[0], 1e-12)))
    if inner <= 0:
        raise UserError(f"the {budget_s:g} s budget is too short: starting and reading the "
                        f"scan took {spent:.1f} s and writing the output will take about "
                        f"{budget_s - spent - inner:.1f} s, leaving no time to train; give at "
                        f"least --budget {math.ceil(4 * (budget_s - inner))}s")
    try:
        out, report = super_resolve_self_supervised(
            vol, budget_s=inner, slice_thickness=slice_thickness, slice_profile=kernel,
            profile=name, seed=0 if ss.seed is None else ss.seed, steps=ss.steps,
            device=run.device, tta=True if run.tta else None,
            save_model=Path(ss.save_model) if ss.save_model else None,
            progress=bool(run.progress) if run.progress is not None else None)
    except BudgetTooShort as short:  # said of the command's budget, not the inner one
        raise short.around(budget_s, spent, budget_s - spent - inner) from None
    estimated_mm = report.get("slice_thickness_source") == "estimate"
    profile_note = None
    if run.auto_profile and report.get("profile_used"):
        profile_note = (f"slice profile: {report['profile_used']} (--slice-profile "
                        "gaussian|rect|FILE.npy sets it)")
    notes = _notes(report, budget_s, inner, ss.steps, estimated_mm, profile_note, FEW_STEPS)
    result = write_result(vol, out, input_path, out_path, t0, method="self-supervised",
                          notes=notes, write=opts.write, keep_overshoot=run.keep_overshoot)
    result.model = str(report.get("saved_model") or report.get("architecture") or "")
    result.provenance.update(  # issue 25: the slice profile for the sidecar
        selfsup_part(report, name, estimated_mm, profile_note, run.auto_profile))
    result.tta = int(report.get("test_time_flips", 1)) > 1
    took = time.perf_counter() - start
    if took > 1.05 * budget_s:
        result.notes.append(f"the run took {took:.1f} s, over the {budget_s:g} s budget: "
                            f"set-up ({report.get('setup_s', 0.0):.1f} s), one training step "
                            "and inference need more; give a longer --budget")
    return result


def _notes(report: dict, budget_s: float, inner: float, steps: int | None,
           estimated_mm: bool, profile_note: str | None, few_steps: int) -> list[str]:
    """The summary notes of a self-supervised fit's ``report``."""
    tr = report.get("train", {})
    notes = [f"self-supervised: {tr.get('steps', '?')} training steps in "
             f"{tr.get('seconds', 0.0):.0f} s (stopped by {tr.get('stopped_by') or '?'}; "
             f"budget {budget_s:g} s), slice thickness "
             f"{num(report.get('slice_thickness_mm'))} mm from "
             f"{'the estimate' if estimated_mm else report.get('slice_thickness_source')}"]
    if profile_note:
        notes.append(profile_note)
    if steps is not None and tr.get("steps") != steps:
        notes.append(f"the budget stopped training before --steps {steps}: this run is not "
                     "reproducible bit for bit; give a longer --budget")
    elif tr.get("stopped_by") == "budget" and tr.get("seconds", 0.0) < 0.25 * budget_s:
        notes.append(f"training had {tr.get('seconds', 0.0):.1f} s of the {budget_s:g} s "
                     "budget (set-up and inference took the rest): a longer --budget "
                     "trains more")
    if inner < 0.1 * budget_s:
        notes.append(f"reading the scan, starting up and writing the output take about "
                     f"{budget_s - inner:.1f} s of the {budget_s:g} s budget: a longer "
                     "--budget trains more")
    if report.get("few_steps"):
        notes.append(f"{tr.get('steps')} training steps is few (under {few_steps:,}): the "
                     "result is likely worse than the shipped default (medsr infer without "
                     "--self-supervised); a longer --budget trains more")
    if report.get("saved_model"):
        notes.append(f"fitted model saved to {report['saved_model']}")
    return notes
