"""Real-scan quality benchmark (issue 23 item 5): held-out real people only.

Ground truth: the held-out volumes of pipelines/real_data.py (whole subjects no shipped
network was trained on): a head CT (0.96 x 0.96 x 1.5 mm), a T1 of another adult
(2 x 2 x 3 mm, ITK) and a diffusion b0 slab of another adult and scanner (2 mm, dipy).
Each reference is cropped so every factor divides its grid. Nothing is added to it: a
real scan's own noise stays in the reference and in the simulated LR.

Degradations (:func:`degrade`): ``gaussian`` (Gaussian slice profile, FWHM = k voxels)
and ``box`` (block average: a box profile, thickness = spacing), each sampled at the LR
voxel centres, along the first two axes (``in-plane x2/x4``) or along the first of the
reference's finest axes (``one-axis x2/x4/x6``, :func:`one_axis`: the CT's and the ITK
T1's coarser z and the b0's second axis carry blur of their own, no truth at a finer
grid). References wider than 192 voxels in-plane (the CT) are cropped to
their central 192 x 192 (the whole head height), to keep the run short.

Methods: nearest, cubic (B-spline), lanczos, ibp (10 iterations), ``default`` (what
``medsr infer`` does with no flags: the shipped default model chosen by the factors,
and on a one-axis case its output projected onto the LR slices under the profile it
estimates, ``medsr.pipeline.projection.project``),
``default+proj`` (one-axis only: the default projected onto the LR slices under the
true profile, ``--slice-profile gaussian|rect``, see medsr.pipeline.projection.project_onto_slices),
``default-noproj`` (on request, one-axis only: the network's output, not projected),
and with ``--selfsup S[,S2...]`` ``selfsup Ss`` (one-axis only: ``--self-supervised``
with a budget of S seconds, NOT told the profile: it estimates it, or trains on a mixture
of box and Gaussian, as ``medsr infer --self-supervised`` does; 60 s in the issue, 300 s
slow; ``--selfsup-told`` adds ``selfsup told Ss``, told the true profile); it upsamples
to the finest spacing, so where that is not the reference grid its output is resampled
there by Lanczos.
Its rows record the profile it used, the steps it trained and the load average.
Every output
is clipped at 0 where the input is non-negative, as ``medsr infer`` does.

Metrics: PSNR and SSIM over the whole volume (3D) and the mean over slices across the
last axis (2D), data range = reference max - min (``medsr.metrics``).

    python pipelines/benchmark_real.py [--weights DIR] [--compare OLD_DIR] [--selfsup 60,300]
        [--cases in-plane-x2] [--subjects itk_t1] [--profiles box] [--methods cubic]
    python pipelines/benchmark_real.py --readme-table   # README's table from the JSON
    python pipelines/benchmark_quality.py real ...       # the same
Writes docs/benchmarks/quality_real.{json,md} (``--json`` / ``--markdown`` elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[1]
PROFILES = {"gaussian": "gaussian", "box": "rect"}
CASES = {"in-plane-x2": (2, "in"), "in-plane-x4": (4, "in"), "one-axis-x2": (2, "one"),
         "one-axis-x4": (4, "one"), "one-axis-x6": (6, "one")}
METHODS = ("nearest", "cubic", "lanczos", "ibp", "default", "default+proj")
SELFSUP = re.compile(r"selfsup( told)? (\d+(?:\.\d+)?)s$")  # "selfsup 60s", "selfsup told 60s"
MAX_INPLANE = 192  # larger references (the CT) are cropped to their central 192 x 192


def one_axis(spacing) -> int:
    """The axis the one-axis cases thicken: the first of the reference's finest axes. Only
    an axis as sharp as the finest is a truth for them, and a coarser or another one is
    often not (``python pipelines/reference_blur.py``, box width of each axis's blur
    against this one: the CT's 1.5 mm z 3.2 mm, reconstructed from thick slices; the ITK
    T1's 3 mm z 4.1 mm; the b0's second axis 3.2 mm, its EPI phase encoding; the other
    axes 0-1 mm), so a method that restores the in-plane resolution there is scored
    against a blurred reference."""
    return min(range(3), key=lambda a: (round(float(spacing[a]), 3), a))


def central_block(v, size, multiples):
    """The central ``size`` block of Volume ``v`` (each side cut down to a multiple of
    ``multiples``), with its affine moved to the block's first voxel."""
    data = np.asarray(v.data, dtype=np.float32)
    size = [min(n, m) for n, m in zip(data.shape, size)]
    size = [n - n % q for n, q in zip(size, multiples)]
    start = [(n - m) // 2 for n, m in zip(data.shape, size)]
    A = v.affine.copy()
    A[:3, 3] = A[:3, :3] @ np.asarray(start, dtype=float) + A[:3, 3]
    box = tuple(slice(a, a + m) for a, m in zip(start, size))
    return type(v)(np.ascontiguousarray(data[box]), A, {"format": "nifti"})


def reference(row: dict):
    """(The held-out volume of manifest ``row``, cropped so every factor divides it, the
    axis of its one-axis cases)."""
    from medsr import io

    v = io.read(ROOT / row["file"])
    thick = one_axis(v.spacing)
    shape = v.data.shape[:3]
    size = [MAX_INPLANE if a < 2 else n for a, n in enumerate(shape)]
    multiples = [12 if a == thick else 4 if a < 2 else 1 for a in range(3)]
    return central_block(v, size, multiples), thick


def factors_of(case: str, thick: int) -> tuple[int, int, int]:
    k, kind = CASES[case]
    if kind == "in":
        return (k, k, 1)
    f = [1, 1, 1]
    f[thick] = k
    return tuple(f)


def degrade(hr, factors, profile: str):
    """The LR acquisition of ``hr``: along every axis downsampled by k, each LR voxel is
    the slice profile (Gaussian of FWHM k voxels, or a box of width k: exactly the mean of
    its k voxels) integrated over the HR voxels and sampled at the LR voxel's centre
    (``benchmark_selfsup.slice_weights``, written from first principles, independent of
    ``medsr.degrade``); the LR affine is ``medsr.degrade.downsample.lr_affine``. No extra
    area sampling on top: the profile *is* the acquisition, as in 2D multi-slice MRI."""
    from benchmark_selfsup import slice_weights

    from medsr.degrade.downsample import lr_affine

    data = np.asarray(hr.data, dtype=np.float64)
    for axis, k in enumerate(factors):
        if k > 1:
            w = slice_weights(data.shape[axis], k, PROFILES[profile])
            data = np.moveaxis(np.tensordot(w, np.moveaxis(data, axis, 0), axes=(1, 0)),
                               0, axis)
    return type(hr)(np.ascontiguousarray(data, dtype=np.float32),
                    lr_affine(hr.affine, hr.spatial_shape, list(factors)), {"format": "nifti"})


def run(method: str, lr, factors, profile: str, device, weights: dict | None = None,
        info: dict | None = None, tta: bool = False):
    """(SR array or None when the method does not apply, seconds); ``weights`` maps a
    method prefix ("old ") to the folder of default weights it uses; ``info`` receives a
    self-supervised run's profile used, steps and load average; ``tta``: the default
    networks with the flip self-ensemble (``--tta``)."""
    from medsr import pretrained

    for prefix, folder in sorted((weights or {}).items(), key=lambda kv: -len(kv[0])):
        if method.startswith(prefix):
            method = method[len(prefix):]
            pretrained.WEIGHTS_DIR = folder
            break
    else:
        pretrained.WEIGHTS_DIR = (weights or {}).get("", pretrained.WEIGHTS_DIR)
    from medsr.geometry import plan_grid
    from medsr.inference.resolvers import model_passes
    from medsr.pipeline import super_resolve_volume
    from medsr.pipeline.result import clip_overshoot

    one_axis = sum(k > 1 for k in factors) == 1
    ss = SELFSUP.match(method)
    if (method.endswith(("default+proj", "default-noproj")) or ss) and not one_axis:
        return None, 0.0
    plan = plan_grid(lr, scale=factors)
    t0 = time.perf_counter()
    if method in ("default", "default+proj", "default-noproj"):  # medsr infer's runner
        passes = model_passes(plan, None, device)
        proj = method == "default+proj"  # --slice-profile P; else estimated, as medsr infer
        out = super_resolve_volume(lr, plan, passes=passes, device=device, progress=False,
                                   slice_profile=PROFILES[profile] if proj else None,
                                   auto_profile=method == "default", tta=tta).volume
    elif ss:
        from medsr.selfsup.api import super_resolve_self_supervised

        told = {"profile": PROFILES[profile]} if ss.group(1) else {}  # blind: "auto"
        out, rep = super_resolve_self_supervised(lr, budget_s=float(ss.group(2)),
                                                 device=device, progress=False, **told)
        if info is not None:
            info.update({"profile_used": rep.get("profile_used") or rep.get("profile"),
                         "steps": rep["train"]["steps"], "init": rep.get("init"),
                         "selfsup_seconds": rep["seconds"],
                         "load_average": [round(x, 2) for x in os.getloadavg()]})
        if out.data.shape != tuple(plan.shape_out):  # it went to isotropic voxels
            from medsr.interpolate import resize


            ratio = np.asarray(plan.shape_out, float) / np.asarray(out.data.shape, float)
            out = out.with_data(resize(out.data, ratio, method="lanczos",
                                       shape_out=plan.shape_out))
    else:
        out = super_resolve_volume(lr, plan, method=method, progress=False).volume
    out, _ = clip_overshoot(lr, out)  # the runner's outputs are clipped already
    return np.asarray(out.data, dtype=np.float32), time.perf_counter() - t0


def scores(ref: np.ndarray, sr: np.ndarray) -> dict:
    from medsr import metrics

    rng = float(ref.max() - ref.min())
    out = {"psnr": metrics.psnr(ref, sr, data_range=rng),
           "ssim": metrics.ssim(ref, sr, data_range=rng, mode="3d")}
    ps, ss = [], []
    for k in range(ref.shape[2]):
        r, s = ref[:, :, k:k + 1], sr[:, :, k:k + 1]
        if np.ptp(r) == 0:
            continue
        ps.append(metrics.psnr(r, s, data_range=rng))
        ss.append(metrics.ssim(r, s, data_range=rng, mode="2d"))
    out["psnr_slices"], out["ssim_slices"] = float(np.mean(ps)), float(np.mean(ss))
    return out


def _by(rows: list[dict], key: tuple, method: str) -> dict | None:
    """The row of ``method`` for (subject, case, profile) ``key``, or None."""
    return next((r for r in rows if (r["subject"], r["case"], r["profile"]) == key
                 and r["method"] == method), None)


def markdown(rows: list[dict], methods: list[str]) -> str:
    """One line per subject, case and profile: 3D PSNR / SSIM of each method, and the
    default's gain over cubic (3D and slice-wise PSNR, 3D SSIM)."""
    head = ("| subject | case | profile | " + " | ".join(methods)
            + " | default - cubic: PSNR 3D / slices, SSIM 3D |")
    lines = [head, "|" + "---|" * (len(methods) + 4)]
    keys = list(dict.fromkeys((r["subject"], r["case"], r["profile"]) for r in rows))
    gains, gains_old = [], []
    for key in keys:
        by = {r["method"]: r for r in rows if (r["subject"], r["case"], r["profile"]) == key}
        cells = [f"{by[m]['psnr']:.2f} / {by[m]['ssim']:.3f}" if m in by else "-"
                 for m in methods]
        gain = ""
        if "old default" in by and "cubic" in by:
            gains_old.append(by["old default"]["psnr"] - by["cubic"]["psnr"])
        if "default" in by and "cubic" in by:
            d, c = by["default"], by["cubic"]
            g = (d["psnr"] - c["psnr"], d["psnr_slices"] - c["psnr_slices"],
                 d["ssim"] - c["ssim"])
            gains.append(g)
            gain = f"{g[0]:+.2f} / {g[1]:+.2f} dB, {g[2]:+.3f}"
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells)
                     + f" | {gain} |")
    means = [f"{np.mean([r['psnr'] for r in rows if r['method'] == m]):.2f}"
             if any(r["method"] == m for r in rows) else "-" for m in methods]
    lines.append("| mean PSNR (3D) | | | " + " | ".join(means) + " | |")
    if gains:
        g = np.array(gains)
        lines.append("")
        lines.append(f"Default vs cubic over {len(g)} cases: PSNR gain mean {g[:, 0].mean():+.2f} "
                     f"dB, min {g[:, 0].min():+.2f}, max {g[:, 0].max():+.2f} (slice-wise mean "
                     f"{g[:, 1].mean():+.2f}); SSIM above cubic in {(g[:, 2] > 0).sum()} of "
                     f"{len(g)} cases (mean {g[:, 2].mean():+.4f}).")
    if gains:
        for kind in ("in-plane", "one-axis"):
            k = np.array([gi[0] for gi, key in zip(gains, keys) if key[1].startswith(kind)])
            if k.size:
                lines.append(f"{kind}: default - cubic mean {k.mean():+.2f} dB, min "
                             f"{k.min():+.2f}; {(k >= 0.5).sum()} of {k.size} cases >= +0.5 dB.")
    if gains_old:
        lines.append(f"Old default vs cubic: PSNR gain mean {np.mean(gains_old):+.2f} dB, "
                     f"min {np.min(gains_old):+.2f}, max {np.max(gains_old):+.2f}.")
    for a, b in (("default", "old default"), ("default+proj", "default")):
        d = [_by(rows, key, a)["psnr"] - _by(rows, key, b)["psnr"] for key in keys
             if _by(rows, key, a) and _by(rows, key, b)]
        if d:
            lines.append(f"{a} - {b}: mean {np.mean(d):+.2f} dB, min {np.min(d):+.2f}, max "
                         f"{np.max(d):+.2f}; above in {(np.array(d) > 0).sum()} of {len(d)}.")
    ss = [r for r in rows if "steps" in r]
    if ss:  # self-supervised runs: against cubic, with what they trained and under what load
        lines += ["", "| subject | case | profile | method | PSNR / SSIM | - cubic: PSNR, SSIM "
                  "| steps | start | load (1 min) | profile used |", "|" + "---|" * 10]
        cub = {(r["subject"], r["case"], r["profile"]): r for r in rows
               if r["method"] == "cubic"}
        wins = 0
        for r in ss:
            c = cub.get((r["subject"], r["case"], r["profile"]))
            d = (f"{r['psnr'] - c['psnr']:+.2f} dB, {r['ssim'] - c['ssim']:+.3f}"
                 if c else "-")
            wins += bool(c) and r["psnr"] > c["psnr"] and r["ssim"] > c["ssim"]
            lines.append(f"| {r['subject']} | {r['case']} | {r['profile']} | {r['method']} | "
                         f"{r['psnr']:.2f} / {r['ssim']:.3f} | {d} | {r['steps']} | "
                         f"{r.get('init', '')} | "
                         f"{r['load_average'][0]:.2f} | {r['profile_used']} |")
        lines.append(f"\nSelf-supervised above cubic in PSNR and SSIM: {wins} of {len(ss)} runs.")
    return "\n".join(lines) + "\n"


def readme_table(rows: list[dict]) -> str:
    """README's "Quality" table from the rows: cubic, ibp, the previous weights, the
    default (bold), the default under the true profile, and the default's gain."""
    cols = ("cubic", "ibp", "old default", "default", "default+proj")
    lines = ["| scan | case | profile | cubic | ibp | previous default | **default** | "
             "default + `--slice-profile` | default - cubic |", "|" + "---|" * 9]
    for key in dict.fromkeys((r["subject"], r["case"], r["profile"]) for r in rows):
        by = {m: _by(rows, key, m) for m in cols}
        if not (by["default"] and by["cubic"]):
            continue
        cell = {m: f"{r['psnr']:.2f} / {r['ssim']:.3f}" if r else "-" for m, r in by.items()}
        d, c = by["default"], by["cubic"]
        lines.append(f"| {' | '.join(key)} | {cell['cubic']} | {cell['ibp']} | "
                     f"{cell['old default']} | **{cell['default']}** | {cell['default+proj']} "
                     f"| {d['psnr'] - c['psnr']:+.2f} dB, {d['ssim'] - c['ssim']:+.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import real_data

    from medsr import pretrained
    from medsr.devices import select_device
    from medsr.inference.model_sr import use_all_cores
    from medsr.selfsup.budget import BudgetTooShort

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options = {  # flag: argparse keywords
        "--weights": dict(type=Path, help="a folder of default weights to test instead of "
                          "medsr/weights (same file names)"),
        "--compare": dict(type=Path, help="a folder of other (e.g. the previous) default "
                          "weights: adds 'old default' and 'old default+proj' rows"),
        "--selfsup": dict(default="", help="add --self-supervised (not told the profile) "
                          "with these budgets in seconds, e.g. 60,300 (slow): methods "
                          "'selfsup 60s', ..."),
        "--selfsup-told": dict(action="store_true",
                               help="also 'selfsup told Ss': told the true slice profile"),
        "--profiles": dict(default=",".join(PROFILES),
                           help="degradation profiles to run (gaussian,box)"),
        "--cases": dict(default=",".join(CASES)),
        "--subjects": dict(help="comma-separated held-out names (default: all)"),
        "--methods": dict(default=",".join(METHODS)),
        "--append": dict(action="store_true", help="add these rows to those already in "
                         "--json (e.g. a later case)"),
        "--json": dict(type=Path, default=ROOT / "docs/benchmarks/quality_real.json"),
        "--markdown": dict(type=Path, default=ROOT / "docs/benchmarks/quality_real.md"),
        "--readme-table": dict(action="store_true", help="print README's table from "
                               "--json's rows and stop (no runs)"),
        "--merge": dict(type=Path, nargs="+", help="no runs: write --json and --markdown "
                        "from the rows of these JSON files (runs split over processes)"),
    }
    for flag, kw in options.items():
        ap.add_argument(flag, **kw)
    args = ap.parse_args(argv)
    if args.readme_table:
        print(readme_table(json.loads(args.json.read_text())["rows"]), end="")
        return 0
    weights = {"": (args.weights or pretrained.WEIGHTS_DIR).resolve()}
    budgets = [f"{float(b):g}" for b in args.selfsup.split(",") if b.strip()]
    methods = [m for m in args.methods.split(",") if m] + [f"selfsup {b}s" for b in budgets]
    methods += [f"selfsup told {b}s" for b in budgets if args.selfsup_told]
    if args.compare:
        weights["old "] = args.compare.resolve()
        methods += [f"old {m}" for m in methods if m.startswith("default")]
    use_all_cores()
    device = select_device("cpu")
    old = json.loads(args.json.read_text()) if args.append else {}
    rows, refused = old.get("rows", []), old.get("refused", [])
    if args.merge:  # rows already run (e.g. subjects split over processes): tables only
        parts = [json.loads(f.read_text()) for f in args.merge]
        rows = [r for part in parts for r in part["rows"]]
        refused = [r for part in parts for r in part.get("refused", [])]
        rows_in, methods = [], []
        names = list(dict.fromkeys(r["subject"] for r in rows))
    else:
        rows_in = real_data.heldout()
        names = [x["name"] for x in rows_in]
        if args.subjects:
            rows_in = [r for r in rows_in if r["name"] in args.subjects.split(",")]
    for row in rows_in:
        ref, thick = reference(row)
        for case in args.cases.split(","):
            factors = factors_of(case, thick)
            for profile in args.profiles.split(","):
                lr = degrade(ref, factors, profile)
                for method in methods:
                    info: dict = {}
                    try:
                        sr, secs = run(method, lr, factors, profile, device, weights, info)
                    except BudgetTooShort as exc:  # this machine: set-up + inference > budget
                        refused.append({"subject": row["name"], "case": case,
                                        "profile": profile, "method": method,
                                        "refused": str(exc),
                                        "load_average": [round(x, 2)
                                                         for x in os.getloadavg()]})
                        print(f"{row['name']:11s} {case:12s} {profile:8s} {method:13s} "
                              f"refused: {exc}", flush=True)
                        continue
                    if sr is None:
                        continue
                    assert sr.shape == ref.data.shape, (sr.shape, ref.data.shape)
                    r = {"subject": row["name"], "contrast": row["contrast"], "case": case,
                         "factors": list(factors), "profile": profile, "method": method,
                         **scores(ref.data, sr), "seconds": secs, **info}
                    rows.append(r)
                    print(f"{row['name']:11s} {case:12s} {profile:8s} {method:13s} PSNR "
                          f"{r['psnr']:6.2f} ({r['psnr_slices']:6.2f}) SSIM {r['ssim']:.4f} "
                          f"({r['ssim_slices']:.4f}) {secs:6.1f} s"
                          + (f" steps {info['steps']} load {info['load_average'][0]}"
                             f" profile: {info['profile_used']}" if info else ""), flush=True)
    order = {c: i for i, c in enumerate(CASES)}
    rows.sort(key=lambda r: (names.index(r["subject"]), order[r["case"]]))
    methods = list(dict.fromkeys(m for m in METHODS + tuple(methods)
                                 + tuple(r["method"] for r in rows)
                                 for r in rows if r["method"] == m))
    table = markdown(rows, methods) + "".join(
        f"\n{r['subject']} {r['case']} {r['profile']} {r['method']}: refused (load "
        f"{r['load_average'][0]:.2f}): {r['refused']}\n" for r in refused)
    print(table)
    args.json.write_text(json.dumps({"weights": str(args.weights or "medsr/weights"),
                                     "compare": str(args.compare) if args.compare else None,
                                     "rows": rows, "refused": refused}, indent=1) + "\n")
    args.markdown.write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
