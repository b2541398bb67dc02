"""How far the blind self-supervised pairs should spread around the estimated widths.

``--self-supervised`` without a profile trains on a box/Gaussian mixture at the widths
the scan's own estimate fits (:func:`medsr.selfsup.blind.blind_profiles`); the estimate
is off by 7-9% (median) and a width too wide makes a long fit sharpen past the truth.
This fits each held-out one-axis case of ``pipelines/benchmark_real.py`` for a fixed
number of steps (so the machine's load does not decide) with each spread of
``BLIND_SPREAD`` (the multiples of each estimated width the pairs are made at), through
the whole ``super_resolve_self_supervised`` call (flips, projection), and prints one JSON
line per run (3D and slice-wise PSNR / SSIM against the reference). ``--dev`` runs
``defaults_dev.py``'s development volumes instead (the central blocks of training
subjects: the default the fit starts from was trained on them).

    python pipelines/selfsup_spread.py --subjects itk_t1 --cases one-axis-x2 \\
        --profiles box --steps 3000 --spreads "1|0.8,1,1.25|0.7,0.85,1"
Results: docs/self-supervised.md, "Blind profile".
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv: list[str] | None = None) -> int:
    import benchmark_real as bench
    import real_data
    import torch

    from medsr.selfsup import blind
    from medsr.selfsup.api import super_resolve_self_supervised

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", default="itk_t1")
    ap.add_argument("--cases", default="one-axis-x2")
    ap.add_argument("--profiles", default="box")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--spreads", default="1|0.8,1,1.25",
                    help="spreads to compare, '|'-separated, each comma-separated")
    ap.add_argument("--dev", action="store_true",
                    help="--subjects are development volumes (pycortex_s1_t1, "
                    "heudiconv_b0_1, colin27_t1), not held-out ones")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, help="also append the JSON lines to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    by_name = {r["name"]: r for r in real_data.heldout()}
    for name in args.subjects.split(","):
        if args.dev:
            import projection_blind

            ref, thick = projection_blind.development_volume(name), 0
        else:
            ref, thick = bench.reference(by_name[name])
        for case in args.cases.split(","):
            factors = bench.factors_of(case, thick)
            for prof in args.profiles.split(","):
                lr = bench.degrade(ref, factors, prof)
                cubic = bench.scores(ref.data, bench.run("cubic", lr, factors, prof, "cpu")[0])
                for spread in args.spreads.split("|"):
                    blind.BLIND_SPREAD = tuple(float(v) for v in spread.split(","))
                    t0 = time.perf_counter()
                    out, rep = super_resolve_self_supervised(
                        lr, budget_s=1e6, steps=args.steps, device="cpu", progress=False)
                    rec = {"subject": name, "dev": args.dev, "case": case, "profile": prof,
                           "spread": list(blind.BLIND_SPREAD), "steps": args.steps,
                           **bench.scores(ref.data, out.data),
                           "cubic_psnr": cubic["psnr"], "cubic_ssim": cubic["ssim"],
                           "seconds": time.perf_counter() - t0,
                           "profile_used": rep.get("profile_used")}
                    print(json.dumps(rec), flush=True)
                    if args.out:
                        with args.out.open("a") as fh:
                            fh.write(json.dumps(rec) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
