"""Development data for the default's projection onto the slices when the profile is not
known: which kernel should plain ``medsr infer`` project under on a thick-slice scan?

On the training subjects (development data: the defaults trained on them, so their own
gains are optimistic; what is compared here is the projection step on top of the same
output), one-axis x2/x4/x6 thick slices acquired as ``pipelines/benchmark_real.py``
does (Gaussian FWHM = k voxels or a block average, point-sampled), the shipped default's
output is projected onto the LR slices (``medsr.selfsup.consistency.project``) under:

* ``true``: the true profile (what ``--slice-profile`` gives);
* ``est``: the estimate's family at its width (``medsr.selfsup.profile_estimate``);
* ``mix``: the mean kernel of a box and a Gaussian, each at the width the estimate fits
  to it (what ``--self-supervised`` projects under when the profile is unknown);

against ``none`` (no projection, the default's output) and cubic.

    python pipelines/projection_blind.py [--subjects a,b] [--json F]   # and F's .md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pipelines"))
SUBJECTS = ("pycortex_s1_t1", "colin27_t1", "heudiconv_b0_1")
CROP = (144, 144, 144)  # central block (the one-axis axis is the first), for speed


def development_volume(name: str):
    """The central block of training volume ``name`` (first axis a multiple of 12)."""
    import benchmark_real as br

    from medsr import io

    v = io.read(ROOT / "runs" / "data" / "real" / "train" / f"{name}.nii.gz")
    return br.central_block(v, CROP, (12, 1, 1))


def kernels(lr, k: int, profile: str) -> tuple[dict[str, np.ndarray], object]:
    """The projection kernels compared (on the plan's grid: spacing s_t / k), and the
    estimate."""
    from medsr.selfsup.axes import detect_through_plane, profile_kernel
    from medsr.selfsup.blind import mixture_kernels
    from medsr.selfsup.profile_estimate import estimate_profile

    est = estimate_profile(lr)
    tp = detect_through_plane(lr).on_grid(k)
    out = {"true": profile_kernel(tp, float(lr.spacing[est.axis]), profile),
           "est": profile_kernel(tp, est.width_mm, est.family),
           "mix": mixture_kernels(tp, {f: est.best[f][0] for f in ("rect", "gaussian")})[1]}
    return out, est


METHODS = ("none", "true", "est", "mix")


def markdown(rows: list[dict]) -> str:
    """The per-case table (PSNR dB) and the gain of each projection over none."""
    lines = ["| subject | k | profile | cubic | none | true | est | mix | estimate |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['subject']} | {r['k']} | {r['profile']} | {r['cubic']:.2f} | "
                     + " | ".join(f"{r[m]:.2f}" for m in METHODS) + f" | {r['estimate']} |")
    lines.append("")
    for m in METHODS[1:]:
        gain = [r[m] - r["none"] for r in rows]
        lines.append(f"- {m} - none: mean {np.mean(gain):+.2f} dB, min {np.min(gain):+.2f}, "
                     f"max {np.max(gain):+.2f} ({len(rows)} cases)")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import benchmark_real as br

    from medsr.geometry import plan_grid
    from medsr.inference.resolvers import model_passes
    from medsr.pipeline import super_resolve_volume
    from medsr.pipeline.result import clip_overshoot
    from medsr.selfsup.consistency import project

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", default=",".join(SUBJECTS))
    ap.add_argument("--factors", default="2,4,6")
    ap.add_argument("--json", type=Path, default=ROOT / "docs/benchmarks/projection_blind.json")
    ap.add_argument("--render", action="store_true",
                    help="only write the markdown of an existing --json")
    args = ap.parse_args(argv)
    if args.render:
        args.json.with_suffix(".md").write_text(markdown(json.loads(args.json.read_text())))
        return 0
    rows = []
    for name in args.subjects.split(","):
        ref = development_volume(name)
        for k in (int(x) for x in args.factors.split(",")):
            factors = (k, 1, 1)
            for profile in ("gaussian", "box"):
                lr = br.degrade(ref, factors, profile)
                plan = plan_grid(lr, scale=factors)
                out = super_resolve_volume(lr, plan, passes=model_passes(plan, None, "cpu"),
                                           device="cpu", progress=False).volume
                cubic = super_resolve_volume(lr, plan, method="cubic", progress=False).volume
                ks, est = kernels(lr, k, br.PROFILES[profile])
                outs = {"cubic": cubic.data, "none": out.data}
                for kname, kern in ks.items():
                    outs[kname] = project(out.data, lr.data, 0, kern, k)
                row = {"subject": name, "k": k, "profile": profile,
                       "estimate": est.describe()}
                for m, data in outs.items():
                    clipped, _ = clip_overshoot(lr, out.with_data(data))
                    row[m] = br.scores(ref.data, np.asarray(clipped.data))["psnr"]
                rows.append(row)
                print(json.dumps({kk: (round(v, 2) if isinstance(v, float) else v)
                                  for kk, v in row.items()}), flush=True)
    table = markdown(rows)
    print(table)
    args.json.write_text(json.dumps(rows, indent=1) + "\n")
    args.json.with_suffix(".md").write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
