"""How well medsr estimates a thick-slice scan's slice profile from the scan (issue 23.3).

Real volumes made thick along one axis with known profiles (``benchmark_selfsup``'s
``thick_slices``, written independently of medsr: Gaussian of FWHM k or box of width k,
thickness = spacing = k voxels), at x2 / x4 / x6, along two axes each:

* ``mni``: the MNI152 T1 template at 2 mm (nilearn);
* ``colin``: Colin27 and ``inia19``: the INIA19 macaque template (Debian mricron-data,
  ``debian_data``).

For each case: the estimated family and width, whether it is confident, the width error
of the estimate and of the true family's best match. ``--end-to-end`` adds, on held-out
Colin27 (not the template the defaults trained on) at x4 box and Gaussian, PSNR of plain
``medsr infer`` (the shipped default) with and without the auto projection (and with the
true profile, for reference) and of ``--self-supervised --budget B`` with the auto
profile and with the Gaussian.

    python pipelines/benchmark_profile.py                 # accuracy table (a minute)
    python pipelines/benchmark_profile.py --end-to-end --budget 60

Writes docs/benchmarks/profile_estimate.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmark_selfsup import (  # noqa: E402
    load_image,
    run_cubic,
    run_default,
    run_selfsup,
    score,
    thick_slices,
)

from medsr.geometry import plan_grid  # noqa: E402
from medsr.pipeline.projection import project_onto_slices  # noqa: E402
from medsr.selfsup.profile_estimate import estimate_profile  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
IMAGES = {"mni": (2, 0), "colin": (2, 0), "inia19": (2, 0)}  # thick axes tried


def load(name: str):
    if name == "mni":
        from medsr.training.data.sources import load_mni152

        return load_mni152(2)
    return load_image(name)


def accuracy() -> list[dict]:
    rows = []
    for name, axes in IMAGES.items():
        hr = load(name)
        for axis in axes:
            for k in (2, 4, 6):
                for profile in ("gaussian", "rect"):
                    _, lr = thick_slices(hr, axis, k, profile)
                    t0 = time.perf_counter()
                    est = estimate_profile(lr)
                    sec = time.perf_counter() - t0
                    true_mm = float(lr.spacing[axis])  # thickness = spacing
                    rows.append({
                        "image": name, "axis": axis, "k": k, "profile": profile,
                        "family": est.family, "width_mm": est.width_mm, "true_mm": true_mm,
                        "confident": est.confident, "ratio": est.ratio, "rms": est.rms,
                        "family_right": est.family == profile,
                        "width_error": est.width_mm / true_mm - 1.0,
                        "true_family_width_error": est.best[profile][0] / true_mm - 1.0,
                        "seconds": sec})
                    r = rows[-1]
                    print(f"{name} axis {axis} x{k} {profile:8s}: {est.describe()} "
                          f"(ratio {est.ratio:.2f}, true family width error "
                          f"{100 * r['true_family_width_error']:+.0f}%)", flush=True)
    return rows


def end_to_end(budget: float) -> list[dict]:
    rows = []
    hr0 = load("colin")
    for profile in ("rect", "gaussian"):
        hr, lr = thick_slices(hr0, 2, 4, profile)
        case = f"colin-{profile}-x4"
        est = estimate_profile(lr)
        plan = plan_grid(lr)

        def emit(method: str, sr: np.ndarray, note: str = "", hr=hr, case=case,
                 est=est) -> None:
            p, s = score(hr.data, sr)
            rows.append({"case": case, "method": method, "psnr": p, "ssim": s,
                         "estimate": est.describe(), "note": note})
            print(f"{case} {method}: {p:.2f} dB {note}", flush=True)

        emit("cubic", run_cubic(lr, 2, 4))
        default, _ = run_default(lr, 2, 4)
        emit("default, no projection", default)
        out = lr.with_data(default)
        if est.confident:
            auto = project_onto_slices(lr, out, plan, est.family, est.width_mm)[0].data
            emit("default, auto (projected)", auto)
        else:
            emit("default, auto (not confident: no projection)", default)
        emit("default, projected with the true profile",
             project_onto_slices(lr, out, plan, profile, None)[0].data)
        sr_g, _ = run_selfsup(lr, "gaussian", budget, 0, "auto")
        emit(f"selfsup {budget:g}s gaussian", sr_g)
        if est.confident:
            sr_a, _ = run_selfsup(lr, est.family, budget, 0, "auto",
                                  slice_thickness=est.width_mm)
            emit(f"selfsup {budget:g}s auto", sr_a)
        else:
            emit(f"selfsup {budget:g}s auto (not confident: = gaussian)", sr_g)
    return rows


def markdown(acc: list[dict], e2e: list[dict]) -> str:
    lines = ["# Slice-profile estimate (pipelines/benchmark_profile.py)", "",
             "| image | axis | k | truth | estimate | confident | ratio | width error | "
             "true family's width error |", "|---|---|---|---|---|---|---|---|---|"]
    for r in acc:
        lines.append(f"| {r['image']} | {r['axis']} | {r['k']} | {r['profile']} | "
                     f"{r['family']} {r['width_mm']:.2f} mm | {r['confident']} | "
                     f"{r['ratio']:.2f} | {100 * r['width_error']:+.0f}% | "
                     f"{100 * r['true_family_width_error']:+.0f}% |")
    n = len(acc)
    if n:
        right = sum(r["family_right"] for r in acc)
        conf = [r for r in acc if r["confident"]]
        within = sum(abs(r["true_family_width_error"]) <= 0.2 for r in acc)
        lines += ["", f"Family right in {right}/{n} cases; confident in {len(conf)}/{n} "
                      f"(right in {sum(r['family_right'] for r in conf)} of those); "
                      f"the true family's best width within 20% in {within}/{n}; median "
                      f"|width error| of the true family "
                      f"{100 * np.median([abs(r['true_family_width_error']) for r in acc]):.0f}%."]
    if e2e:
        lines += ["", "| case | method | PSNR | SSIM | estimate |", "|---|---|---|---|---|"]
        for r in e2e:
            lines.append(f"| {r['case']} | {r['method']} | {r['psnr']:.2f} | "
                         f"{r['ssim']:.4f} | {r['estimate']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--end-to-end", action="store_true")
    ap.add_argument("--no-accuracy", action="store_true")
    ap.add_argument("--budget", type=float, default=60.0)
    ap.add_argument("--out", type=Path, default=OUT / "profile_estimate")
    args = ap.parse_args(argv)
    old = {}
    json_path = args.out.with_suffix(".json")
    if json_path.exists():
        old = json.loads(json_path.read_text())
    acc = old.get("accuracy", []) if args.no_accuracy else accuracy()
    e2e = end_to_end(args.budget) if args.end_to_end else old.get("end_to_end", [])
    json_path.write_text(json.dumps({"accuracy": acc, "end_to_end": e2e}, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(acc, e2e))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
