"""Development benchmark for candidate default weights: which folder of weights (and
whether the flip self-ensemble) should ship, decided before the held-out scans are run.

Data: the central blocks of training subjects (``projection_blind.development_volume``:
pycortex's T1, heudiconv's first b0, Colin27). The defaults were trained on them, so
every network's gain over cubic here is optimistic; what this compares is one set of
weights against another trained on the same data. The LR is acquired as the held-out
benchmark does (``benchmark_real.degrade``: Gaussian FWHM = k voxels or a block
average, point-sampled; ``--profiles kspace`` adds k-space truncation, as
``benchmark_quality.degrade`` simulates it), in-plane x2/x4 along the first two axes and
one-axis x2/x4/x6 along the first. Each weights folder runs as ``medsr infer`` does with no flags
(``benchmark_real.run``: the default chosen by the factors, the profile estimate and its
projection when confident), and with ``--tta`` the flip self-ensemble is added.

    python pipelines/defaults_dev.py --weights NAME=DIR [NAME=DIR ...] [--tta]
        [--cases in-plane-x2,...] [--profiles gaussian,box,kspace] [--json F]   # and F's .md
    python pipelines/defaults_dev.py --json F --tables-only   # F's .md again from F
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "pipelines"))
SUBJECTS = ("pycortex_s1_t1", "heudiconv_b0_1", "colin27_t1")


def markdown(rows: list[dict], names: list[str]) -> str:
    head = "| subject | case | profile | cubic | " + " | ".join(names) + " |\n"
    head += "|---" * (4 + len(names)) + "|\n"
    body = ""
    keys = dict.fromkeys((r["subject"], r["case"], r["profile"]) for r in rows)
    for key in keys:
        cell = {r["method"]: r for r in rows if (r["subject"], r["case"], r["profile"]) == key}
        body += f"| {' | '.join(key)} | " + " | ".join(
            f"{cell[m]['psnr']:.2f} / {cell[m]['ssim']:.3f}" if m in cell else "-"
            for m in ["cubic", *names]) + " |\n"
    def diffs(a: str, b: str) -> list[float]:  # PSNR of a - b, case by case
        psnr = {(r["subject"], r["case"], r["profile"], r["method"]): r["psnr"] for r in rows}
        return [psnr[(*key, a)] - psnr[(*key, b)] for key in keys
                if (*key, a) in psnr and (*key, b) in psnr]

    lines = []
    for m in names:
        gains = diffs(m, "cubic")
        secs = sum(r["seconds"] for r in rows if r["method"] == m)
        lines.append(f"- {m} - cubic: mean {np.mean(gains):+.2f} dB, min {min(gains):+.2f}, "
                     f"max {max(gains):+.2f} ({len(gains)} cases, {secs:.0f} s in all)")
    for i, b in enumerate(names):  # each later column against each earlier one
        for a in names[i + 1:]:
            d = diffs(a, b)
            lines.append(f"- {a} - {b}: mean {np.mean(d):+.2f} dB, min {min(d):+.2f}, "
                         f"max {max(d):+.2f}")
    return head + body + "\n" + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import benchmark_quality as bq
    import benchmark_real as br
    import projection_blind as pb

    from medsr.inference.model_sr import use_all_cores

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", nargs="+", default=[],
                    help="NAME=DIR: a folder of default weights (medsr/weights' file names)")
    ap.add_argument("--tta", action="store_true", help="also each NAME with the flips")
    ap.add_argument("--cases", default=",".join(br.CASES))
    ap.add_argument("--profiles", default=",".join(br.PROFILES),
                    help="gaussian,box (benchmark_real's acquisition) and kspace (k-space "
                    "truncation, benchmark_quality's)")
    ap.add_argument("--subjects", default=",".join(SUBJECTS))
    ap.add_argument("--json", type=Path, default=ROOT / "docs/benchmarks/defaults_dev.json")
    ap.add_argument("--tables-only", action="store_true",
                    help="rewrite --json's .md from its rows (no runs)")
    args = ap.parse_args(argv)
    if args.tables_only:
        rows = json.loads(args.json.read_text())["rows"]
        names = list(dict.fromkeys(r["method"] for r in rows if r["method"] != "cubic"))
        args.json.with_suffix(".md").write_text(markdown(rows, names))
        return 0
    if not args.weights:
        ap.error("--weights NAME=DIR is required")
    folders = dict(w.split("=", 1) for w in args.weights)
    methods = [(n, Path(d).resolve(), False) for n, d in folders.items()]
    methods += [(f"{n} + tta", d, True) for n, d, _ in methods] if args.tta else []
    use_all_cores()
    rows = []
    for name in args.subjects.split(","):
        ref = pb.development_volume(name)
        for case in args.cases.split(","):
            factors = br.factors_of(case, 0)
            for profile in args.profiles.split(","):
                lr = bq.degrade(ref, factors, profile)  # gaussian / box: br.degrade
                todo = [("cubic", *br.run("cubic", lr, factors, profile, "cpu"))]
                for label, folder, tta in methods:  # as medsr infer with no flags
                    sr, secs = br.run("default", lr, factors, profile, "cpu",
                                      {"": folder}, tta=tta)
                    todo.append((label, sr, secs))
                for label, sr, secs in todo:
                    r = {"subject": name, "case": case, "profile": profile, "method": label,
                         **br.scores(ref.data, sr), "seconds": secs}
                    rows.append(r)
                    print(f"{name:15s} {case:12s} {profile:8s} {label:18s} PSNR "
                          f"{r['psnr']:6.2f} SSIM {r['ssim']:.4f} {secs:6.1f} s", flush=True)
    table = markdown(rows, [m[0] for m in methods])
    print(table)
    args.json.write_text(json.dumps({"weights": folders, "rows": rows}, indent=1) + "\n")
    args.json.with_suffix(".md").write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
