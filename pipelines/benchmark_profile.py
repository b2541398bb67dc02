"""How well medsr estimates a thick-slice scan's slice profile from the scan (issue 23.3).

Real volumes made thick along one axis with known profiles (``benchmark_selfsup``'s
``thick_slices``, written independently of medsr: Gaussian of FWHM k or box of width k,
thickness = spacing = k voxels), at x2 / x4 / x6, along two axes each:

* ``mni``: the MNI152 T1 template at 2 mm (nilearn);
* ``colin``: Colin27 and ``inia19``: the INIA19 macaque template (Debian mricron-data,
  ``debian_data``).

Each case is run as it is and with white Gaussian noise added after the acquisition
(``--noise``; default 3% of the mean of the voxels above the scan's mean, seed 1), as a
scanner adds it. For each case: the estimated family and width, whether it is confident,
the width error of the estimate, of the true family's best match and of the estimate's
standard deviation (the profile's sd against the true one's: a family-free measure, as
a box of width w and a Gaussian of FWHM 0.68 w have the same sd), and the seconds.
``--end-to-end`` adds, on held-out Colin27 (not the template the defaults trained on) at
x4 box and Gaussian, PSNR of plain ``medsr infer`` (the shipped default) with and without
the auto projection (and with the true profile, for reference) and of
``--self-supervised --budget B`` with the auto profile and with the Gaussian.

    python pipelines/benchmark_profile.py                 # accuracy table (two minutes)
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
from medsr.selfsup.profile_estimate import CONFIDENT_RATIO, estimate_profile  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
IMAGES = {"mni": (2, 0), "colin": (2, 0), "inia19": (2, 0)}  # thick axes tried


def load(name: str):
    if name == "mni":
        from medsr.training.data.sources import load_mni152

        return load_mni152(2)
    return load_image(name)


SD = {"gaussian": 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0))),  # sd / width (FWHM)
      "rect": 1.0 / np.sqrt(12.0)}                           # sd / width


def accuracy(noises: list[float]) -> list[dict]:
    rows = []
    for noise in noises:
        rng = np.random.default_rng(1)
        for name, axes in IMAGES.items():
            hr = load(name)
            for axis in axes:
                for k in (2, 4, 6):
                    for profile in ("gaussian", "rect"):
                        _, lr = thick_slices(hr, axis, k, profile)
                        if noise:
                            d = lr.data
                            sd = noise * float(d[d > d.mean()].mean())
                            lr = lr.with_data(d + rng.normal(0.0, sd, d.shape).astype(d.dtype))
                        t0 = time.perf_counter()
                        est = estimate_profile(lr)
                        sec = time.perf_counter() - t0
                        true_mm = float(lr.spacing[axis])  # thickness = spacing
                        rows.append({
                            "image": name, "axis": axis, "k": k, "profile": profile,
                            "noise": noise, "family": est.family, "width_mm": est.width_mm,
                            "true_mm": true_mm, "confident": est.confident,
                            "ratio": est.ratio, "rms": est.rms,
                            "family_right": est.family == profile,
                            "width_error": est.width_mm / true_mm - 1.0,
                            "true_family_width_error": est.best[profile][0] / true_mm - 1.0,
                            "sd_error": (est.width_mm * SD[est.family])
                            / (true_mm * SD[profile]) - 1.0,
                            "seconds": sec})
                        r = rows[-1]
                        print(f"{name} noise {noise:g} axis {axis} x{k} {profile:8s}: "
                              f"{est.describe()} (ratio {est.ratio:.2f}, true family width "
                              f"error {100 * r['true_family_width_error']:+.0f}%)", flush=True)
    return rows


EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "mni152_t1_1x1x4mm.nii.gz"


def example() -> dict:
    """The shipped example (pipelines/make_example.py: the ``mri-thick-slice`` preset, a
    Gaussian of FWHM 4 mm and then the mean over each 4 mm slice ("area"), Rician noise):
    its estimate against the sd of that profile, sqrt((4 mm / 2.355)^2 + (4 mm)^2 / 12)."""
    from medsr import io

    vol = io.read(EXAMPLE)
    t0 = time.perf_counter()
    est = estimate_profile(vol)
    sec = time.perf_counter() - t0
    true_sd = float(np.hypot(4.0 * SD["gaussian"], 4.0 * SD["rect"]))
    row = {"estimate": est.describe(), "family": est.family, "width_mm": est.width_mm,
           "confident": est.confident, "ratio": est.ratio, "true_sd_mm": true_sd,
           "sd_error": est.width_mm * SD[est.family] / true_sd - 1.0, "seconds": sec}
    print(f"example: {est.describe()} (sd error {100 * row['sd_error']:+.0f}%)", flush=True)
    return row


def summary(acc: list[dict]) -> str:
    n = len(acc)
    conf = [r for r in acc if r["confident"]]
    right = sum(r["family_right"] for r in conf)

    def med(key: str) -> str:
        return f"{100 * np.median([abs(r[key]) for r in acc]):.0f}%"

    def within(key: str) -> int:
        return sum(abs(r[key]) <= 0.2 for r in acc)

    return (f"family right in {sum(r['family_right'] for r in acc)}/{n}; confident in "
            f"{len(conf)}/{n} (right {right}, wrong {len(conf) - right}); median |width "
            f"error| of the estimate {med('width_error')} (within 20% in "
            f"{within('width_error')}/{n}), of the true family's best width "
            f"{med('true_family_width_error')} ({within('true_family_width_error')}/{n}), "
            f"of the estimate's sd {med('sd_error')} ({within('sd_error')}/{n}); "
            f"median {1000 * np.median([r['seconds'] for r in acc]):.0f} ms a case")


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


def markdown(acc: list[dict], e2e: list[dict], ex: dict | None = None) -> str:
    lines = ["# Slice-profile estimate (pipelines/benchmark_profile.py)", "",
             "Truth: thickness = spacing = k voxels of the template. *width error*: the "
             "estimate's width against the true width (a wrong family's width is off by "
             "the families' own scale); *true family's width error*: that family's best "
             "width; *sd error*: the estimate's standard deviation against the true "
             "profile's (FWHM / 2.355 for a Gaussian, width / sqrt(12) for a box), which "
             "does not depend on the family named; *ratio*: the other family's best "
             f"marginal distance over the named one's (a confident call needs "
             f"{CONFIDENT_RATIO:g}).", "",
             "| image | noise | axis | k | truth | estimate | confident | ratio | width error | "
             "true family's width error | sd error |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in acc:
        lines.append(f"| {r['image']} | {100 * r.get('noise', 0):g}% | {r['axis']} | {r['k']} | "
                     f"{r['profile']} | {r['family']} {r['width_mm']:.2f} mm | "
                     f"{r['confident']} | {r['ratio']:.2f} | {100 * r['width_error']:+.0f}% | "
                     f"{100 * r['true_family_width_error']:+.0f}% | "
                     f"{100 * r['sd_error']:+.0f}% |")
    noises = sorted({r.get("noise", 0) for r in acc})
    if acc:
        lines.append("")
        for noise in noises:
            part = [r for r in acc if r.get("noise", 0) == noise]
            lines.append(f"* noise {100 * noise:g}%: {summary(part)}.")
    if ex:
        lines += ["", f"The shipped example (docs/examples, Gaussian FWHM 4 mm then the mean "
                      f"over each 4 mm slice, Rician noise; true sd {ex['true_sd_mm']:.2f} mm): "
                      f"{ex['estimate']}; sd error {100 * ex['sd_error']:+.0f}% "
                      f"({1000 * ex['seconds']:.0f} ms, after the cases above)."]
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
    ap.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.03],
                    help="white noise sd, as a share of the mean above the mean (0: none)")
    ap.add_argument("--out", type=Path, default=OUT / "profile_estimate")
    args = ap.parse_args(argv)
    old = {}
    json_path = args.out.with_suffix(".json")
    if json_path.exists():
        old = json.loads(json_path.read_text())
    acc = old.get("accuracy", []) if args.no_accuracy else accuracy(args.noise)
    ex = old.get("example") if args.no_accuracy else example()
    e2e = end_to_end(args.budget) if args.end_to_end else old.get("end_to_end", [])
    json_path.write_text(json.dumps({"accuracy": acc, "example": ex, "end_to_end": e2e},
                                    indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(acc, e2e, ex))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
