"""Which slice profile self-supervised SR should assume when it is not told one (issue 23).

On pipelines/benchmark_real.py's held-out one-axis cases, fits a fixed number of steps
(so that the machine's load does not decide) with each profile variant and scores the
output (3D PSNR / SSIM against the reference) with and without the projection onto the
slices:

* ``told``: the true family at the nominal width; ``gauss``: Gaussian FWHM = spacing
  (the old default); ``est``: the estimate's family and width (confident or not);
* ``mixest`` / ``mixsp``: the blind mixture (box and Gaussian, one per batch) at the
  estimate's widths / at the spacing.

Projections: ``none``, ``own`` (the variant's kernel; the mixture's mean), ``true``.

    python pipelines/selfsup_blind_profile.py --subjects itk_t1 --cases one-axis-x2 \\
        --steps 150 --out runs/ss/exp.jsonl
Results: docs/self-supervised.md, "Blind profile".
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

VARIANTS = ("told", "gauss", "est", "mixest", "mixsp")


def main(argv: list[str] | None = None) -> int:
    import benchmark_real as bench
    import real_data
    import torch

    from medsr.geometry import plan_grid
    from medsr.interpolate import resize
    from medsr.pipeline.result import clip_overshoot
    from medsr.selfsup import api, blind
    from medsr.selfsup.axes import detect_through_plane, profile_kernel
    from medsr.selfsup.profile_estimate import estimate_profile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", default="itk_t1,dipy_b0,cranium_ct")
    ap.add_argument("--cases", default="one-axis-x2,one-axis-x4")
    ap.add_argument("--profiles", default="gaussian,box")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("runs/ss/exp.jsonl"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    def scored(lr, out, factors, ref) -> dict:
        plan = plan_grid(lr, scale=factors)
        if out.data.shape != tuple(plan.shape_out):  # isotropic voxels: to the reference grid
            ratio = np.asarray(plan.shape_out, float) / np.asarray(out.data.shape, float)
            out = out.with_data(resize(out.data, ratio, method="lanczos",
                                       shape_out=plan.shape_out))
        out, _ = clip_overshoot(lr, out)
        return bench.scores(ref.data, np.asarray(out.data, np.float32))

    by_name = {r["name"]: r for r in real_data.heldout()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.subjects.split(","):
        ref, thick = bench.reference(by_name[name])
        for case in args.cases.split(","):
            f = bench.factors_of(case, thick)
            for prof in args.profiles.split(","):
                lr = bench.degrade(ref, f, prof)
                tp = detect_through_plane(lr)
                true_k = profile_kernel(tp, tp.spacing[tp.axis], bench.PROFILES[prof])
                est = estimate_profile(lr)
                c = {"subject": name, "case": case, "profile": prof}
                r = bench.scores(ref.data, bench.run("cubic", lr, f, prof, "cpu")[0])
                print(json.dumps({**c, "variant": "cubic", "psnr": r["psnr"],
                                  "ssim": r["ssim"]}), flush=True)
                for var in args.variants.split(","):
                    kw: dict = {"profile": "auto"}
                    if var == "told":
                        kw = {"profile": bench.PROFILES[prof]}
                    elif var == "gauss":
                        kw = {"profile": "gaussian"}
                    elif var == "est":
                        kw = {"profile": est.family, "slice_thickness": est.width_mm}
                    blind.BLIND_TRUST_CONFIDENT = False  # the mixture variants: always mixed
                    blind.BLIND_WIDTHS = "estimate" if var == "mixest" else "spacing"
                    t0 = time.time()
                    fitted = api.fit(lr, seconds=1e9, steps=args.steps, device="cpu", **kw)
                    fit_s = time.time() - t0
                    projs = {"none": None, "own": fitted.kernel}
                    if "profile_mixture" in fitted.extra:
                        projs["true"] = true_k
                    for pn, pk in projs.items():
                        out = api.apply(lr, fitted.model, device="cpu", tta=True, kernel=pk)
                        r = scored(lr, out, f, ref)
                        rec = {**c, "variant": var, "proj": pn, "psnr": r["psnr"],
                               "ssim": r["ssim"], "steps": fitted.train_report.steps,
                               "fit_s": fit_s, "init": fitted.init,
                               "used": fitted.extra.get("profile_used")}
                        print(json.dumps(rec), flush=True)
                        with args.out.open("a") as fh:
                            fh.write(json.dumps(rec) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
