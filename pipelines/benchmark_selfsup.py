"""Self-supervised through-plane SR against cubic and the shipped default (issue 7).

Ground truth, none of it used to develop the method or train the default:

* ``mni``: the held-out posterior block of the MNI152 T1 template (192 x 108 x 180 at
  1 mm, ``benchmark_quality.test_volume``); the shipped thick-slice models were trained
  on its anterior block, so this is the contrast the default was trained for.
* ``b0``: a real diffusion MRI b=0 (T2-weighted EPI) slab, 128 x 128 x 10 at 2 mm,
  ``S0_10slices.nii.gz`` shipped inside dipy's wheel (BSD-3). A contrast the default was
  not trained for. Benchmark-only dependency: ``pip install dipy`` (not a medsr
  requirement); its cases are skipped with a note when dipy is missing.
* ``t1``: a real T1-weighted coronal slice of an adult brain (256 x 256, 2D,
  ``t1_coronal_slice.npy`` in dipy's wheel): another subject and scanner than the
  template, never looked at while the method was developed; its one fine axis supplies
  the pairs.
* ``colin``: Colin27 (``ch2.nii.gz`` of Debian's ``mricron-data``, fetched from the package
  registry when not installed, see ``debian_data``): a T1 of one adult, the average of 27
  scans, 181 x 217 x 181 at 1 mm. Another subject than the template the default was
  trained on, same contrast. Added after the method was developed (session 5): fresh data.
* ``inia19``: the INIA19 rhesus macaque T1 brain template (``inia19-t1-brain.nii.gz`` of
  ``mricron-data``), 168 x 206 x 128 at 0.5 mm: an anatomy the default was not trained
  for. Added with ``colin`` as fresh data.
* ``cell``: skimage's ``cell`` (a 660 x 550 light-microscopy image, 2D: its one fine axis
  supplies the pairs). Another modality entirely.

Thick slices are simulated exactly along one axis (``slice_weights``, written here
independently of ``medsr``): slice profile Gaussian with FWHM = k voxels or box ("rect")
of width k (thickness = slice spacing), integrated over each fine voxel around the LR
slice centre. Each method gets the LR Volume only:

* ``cubic``: cubic B-spline to the HR grid;
* ``default``: what ``medsr infer`` picks with no flags (``plan_grid`` with no scale, then
  the shipped ``thick-slice-x{k}`` model through ``medsr infer``'s runner,
  ``super_resolve_volume``);
* ``selfsup``: ``super_resolve_self_supervised`` with ``--budget`` seconds of wall time
  for everything (set-up, training, inference), told the profile shape; one row per
  ``--inits`` value (``auto`` is what ``medsr infer --self-supervised`` does; ``scratch``
  and ``default`` (fine-tune the shipped model) are the two starts it chooses between);
  ``--variants`` adds ablations of ``auto`` (``l1`` loss, ``no-flips`` at test time,
  ``prior-0.5``: a fine-tuned network averaged half-half with the default it started
  from, ``no-consistency``: no projection onto the acquired slices,
  ``fine-companions``: pairs without the thick axis as companion, ``uniform``: patches
  drawn uniformly instead of by gradient, ``patch-32`` / ``batch-32``: smaller patches or
  a larger batch, ``wide``: a bigger network, ``sp_vdsr`` depth 10 with 64 features, from
  scratch);
  ``--project-default`` adds the default's output projected onto the slices.

    python pipelines/benchmark_selfsup.py --budget 300 --threads 1      # the issue's setting
    python pipelines/benchmark_selfsup.py --budget 60 --cases mni-gauss-x4
    python pipelines/benchmark_quality.py selfsup --budget 300 ...      # same thing

Prints a table (case, method, PSNR, SSIM, seconds); ``--json`` / ``--markdown`` write it.
PSNR / SSIM use ``medsr.metrics`` over the whole volume, data range = HR max - min.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from medsr import metrics
from medsr.geometry import plan_grid
from medsr.interpolate import resize
from medsr.pipeline.projection import project_onto_slices
from medsr.selfsup.consistency import project
from medsr.volume import Volume

sys.path.insert(0, str(Path(__file__).resolve().parent))

IMAGES = {"mni": 2, "b0": 1, "t1": 0, "cell": 0, "colin": 2, "inia19": 2}  # -> thick axis
MRICRON = {"colin": "ch2.nii.gz", "inia19": "inia19-t1-brain.nii.gz"}  # mricron-data files
CASES = {  # name: (image, axis, k, profile)
    f"{img}-{short}-x{k}": (img, axis, k, profile)
    for img, axis in IMAGES.items()
    for k in (2, 4, 6)
    for short, profile in (("gauss", "gaussian"), ("rect", "rect"))
}
DEFAULT_CASES = ["mni-gauss-x4", "mni-rect-x4", "b0-gauss-x4", "b0-rect-x4", "t1-gauss-x4",
                 "t1-rect-x4", "cell-gauss-x4", "cell-rect-x4"]
INITS = ("auto", "scratch", "default")
# ablations of the design choices (docs/self-supervised.md): what each variant changes
VARIANTS = {"l1": {"loss": "l1"}, "no-flips": {"tta": False},
            "prior-0.5": {"prior_weight": 0.5}, "no-consistency": {"consistency": False},
            "fine-companions": {"thick_companion": False},
            "uniform": {"gradient_weighted": False}, "patch-32": {"patch": 32},
            "batch-32": {"batch": 32},
            "wide": {"network": {"architecture": "sp_vdsr", "depth": 10, "features": 64}}}


def load_image(name: str) -> Volume:
    """The HR ground truth ``name`` (see the module docstring)."""
    if name == "mni":
        from benchmark_quality import test_volume

        return test_volume()
    if name == "b0":
        import nibabel as nib

        try:
            from dipy.data import get_fnames
        except ImportError as exc:
            raise LookupError("the b0 cases need dipy (pip install dipy; benchmark only)"
                              ) from exc
        img = nib.load(get_fnames(name="S0_10"))
        data = np.asarray(img.get_fdata(), dtype=np.float32)[..., 0]
        # 10 consecutive 2 mm axial slices (neighbours correlate at 0.87-0.89); the header's
        # third pixdim (53 mm) is not the slice spacing, so the grid is set to 2 mm iso
        return Volume(np.ascontiguousarray(data), np.diag([2.0, 2.0, 2.0, 1.0]))
    if name == "t1":
        try:
            from dipy.data import get_fnames
        except ImportError as exc:
            raise LookupError("the t1 cases need dipy (pip install dipy; benchmark only)"
                              ) from exc
        img = np.load(get_fnames(name="t1_coronal_slice")).astype(np.float32)
        return Volume(np.ascontiguousarray(img[:, :, None]), np.eye(4))
    if name in MRICRON:
        import nibabel as nib
        from debian_data import debian_package

        rel = Path("usr/share/mricron/templates") / MRICRON[name]
        img = nib.load(debian_package("mricron-data", rel) / rel)
        data = np.asarray(img.get_fdata(), dtype=np.float32)
        return Volume(np.ascontiguousarray(data), img.affine)
    if name == "cell":
        from skimage import data as skdata

        return Volume(skdata.cell().astype(np.float32)[:, :, None], np.eye(4))
    raise SystemExit(f"unknown image {name}")


def slice_weights(n: int, k: int, profile: str) -> np.ndarray:
    """(n // k, n) matrix of exact thick-slice acquisition along one axis, written here from
    first principles (independent of ``medsr.degrade`` and of the method's pairs): LR slice
    m is centred at fine position c = k m + (k - 1) / 2 (the grid ``medsr.geometry``
    upsamples back), and fine voxel i gets the slice profile integrated over
    [i - 1/2, i + 1/2]: a Gaussian of FWHM k, or a box of width k (so for k = 4 a box slice
    is exactly the mean of its four voxels). Weight falling outside the volume is mirrored
    back in (half-sample symmetric border), so a constant stays constant."""
    from scipy.stats import norm

    c = (k * np.arange(n // k) + (k - 1) / 2.0)[:, None]
    pad = min(2 * k + 2, n)  # > 4.7 sigma of the Gaussian; one mirror at most
    i = np.arange(-pad, n + pad)[None, :]
    if profile == "gaussian":
        sigma = k / (2.0 * np.sqrt(2.0 * np.log(2.0)))
        w = norm.cdf((i + 0.5 - c) / sigma) - norm.cdf((i - 0.5 - c) / sigma)
    elif profile == "rect":
        w = np.clip(np.minimum(i + 0.5, c + k / 2.0) - np.maximum(i - 0.5, c - k / 2.0), 0, None)
    else:
        raise SystemExit(f"unknown profile {profile}")
    src = i[0]
    src = np.where(src < 0, -1 - src, np.where(src >= n, 2 * n - 1 - src, src))
    out = np.zeros((n // k, n))
    np.add.at(out.T, src, w.T)
    return out / out.sum(axis=1, keepdims=True)


def thick_slices(hr: Volume, axis: int, k: int, profile: str) -> tuple[Volume, Volume]:
    """(HR cropped to a multiple of k along axis, LR with thickness = spacing = k), by
    :func:`slice_weights`; the LR affine is ``medsr.degrade.downsample.lr_affine``."""
    from medsr.degrade.downsample import lr_affine

    n = hr.spatial_shape[axis] // k * k
    sl = [slice(None)] * 3
    sl[axis] = slice(0, n)
    hr = hr.with_data(np.ascontiguousarray(hr.data[tuple(sl)]))
    w = slice_weights(n, k, profile)
    lr = np.moveaxis(np.tensordot(w, np.moveaxis(hr.data, axis, 0), axes=(1, 0)), 0, axis)
    factors = [1, 1, 1]
    factors[axis] = k
    return hr, Volume(np.ascontiguousarray(lr, dtype=np.float32),
                      lr_affine(hr.affine, hr.spatial_shape, factors))


def high_band_share(hr: np.ndarray) -> list[float | None]:
    """Per axis: the share of the (mean-removed) power spectrum along that axis above half
    its Nyquist frequency (None for a singleton axis). Self-supervision assumes the fine
    axes it learns from carry the detail the thick axis lost; a lower share along the
    thick axis than along the fine ones (as along an EPI's phase-encoding axis) breaks it."""
    out: list[float | None] = []
    for ax in range(hr.ndim):
        if hr.shape[ax] < 4:
            out.append(None)
            continue
        p = np.abs(np.fft.rfft(hr.astype(np.float64), axis=ax)) ** 2
        p = p.mean(axis=tuple(a for a in range(hr.ndim) if a != ax))[1:]
        out.append(float(p[p.size // 2:].sum() / p.sum()))
    return out


def band_share_line(name: str, hr: np.ndarray, axis: int) -> str:
    """One printable line of :func:`high_band_share` for image ``name``."""
    share = ", ".join(f"axis {a}: {100 * v:.2f}%" for a, v in enumerate(high_band_share(hr))
                      if v is not None)
    return f"{name} power above half Nyquist: {share} (thick axis {axis})"


def score(hr: np.ndarray, sr: np.ndarray) -> tuple[float, float]:
    mode = "2d" if hr.ndim == 3 and 1 in hr.shape else "3d"
    r = float(hr.max() - hr.min())
    return metrics.psnr(hr, sr, data_range=r), metrics.ssim(hr, sr, data_range=r, mode=mode)


def run_cubic(lr: Volume, axis: int, k: int) -> np.ndarray:
    f = [1, 1, 1]
    f[axis] = k
    return resize(lr.data, f, "cubic")


def run_default(lr: Volume, axis: int, k: int) -> tuple[np.ndarray, str]:
    """The shipped model ``medsr infer`` picks for this scan with no flags."""
    from medsr.devices import select_device
    from medsr.inference.resolvers import model_passes
    from medsr.pipeline import super_resolve_volume

    plan = plan_grid(lr)
    want = np.ones(3)
    want[axis] = k
    if not np.allclose(plan.factors, want):
        raise SystemExit(f"medsr infer's default plan is {plan.factors.tolist()}, "
                         f"expected {want.tolist()}")
    dev = select_device("auto")
    passes = model_passes(plan, None, dev)
    if not passes:
        raise LookupError(f"no shipped model for one-axis x{k}")
    out = super_resolve_volume(lr, plan, passes=passes, device=dev, progress=False).volume
    return out.data, " + ".join(str(p.info.get("name")) for p in passes)


def run_selfsup(lr: Volume, profile: str, budget: float, seed: int, init: str,
                **options) -> tuple[np.ndarray, dict]:
    from medsr.selfsup import super_resolve_self_supervised

    sr, rep = super_resolve_self_supervised(lr, budget_s=budget, profile=profile, seed=seed,
                                            init=init, progress=sys.stderr.isatty(),
                                            **options)
    return sr.data, rep


def markdown(rows: list[dict]) -> str:
    """One line per case and method, with the gain over cubic and over the default."""
    lines = ["| case | method | PSNR | SSIM | seconds | vs cubic | vs default | note |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ref = {x["method"]: x["psnr"] for x in rows if x["case"] == r["case"]}
        dc, dd = (f"{r['psnr'] - ref[m]:+.2f}" if m in ref and m != r["method"] else ""
                  for m in ("cubic", "default"))
        lines.append(f"| {r['case']} | {r['method']} | {r['psnr']:.2f} | {r['ssim']:.4f} | "
                     f"{r['seconds']:.0f} | {dc} | {dd} | {r.get('note', '')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=300.0, help="seconds per self-sup run")
    ap.add_argument("--cases", nargs="*", default=DEFAULT_CASES, choices=list(CASES))
    ap.add_argument("--inits", nargs="*", default=["auto"], choices=INITS,
                    help="self-supervised starts to run (one row each)")
    ap.add_argument("--variants", nargs="*", default=[], choices=list(VARIANTS),
                    help="also run these ablations of init=auto (one row each)")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                    help="torch intra-op threads (default: all cores of this process)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--probe", action="store_true",
                    help="also record where init=auto starts on each case and its probe "
                         "errors (medsr.selfsup.auto_start; no training)")
    ap.add_argument("--project-default", action="store_true",
                    help="also score the default's output projected onto the slices "
                         "(medsr.selfsup.consistency) under the case's profile and, for "
                         "box cases, under a Gaussian one (a wrong profile)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--markdown", type=Path, default=None)
    ap.add_argument("--collect", type=Path, nargs="+", default=None, metavar="JSON",
                    help="compute nothing: one table from the rows of earlier --json files")
    args = ap.parse_args(argv)
    if args.collect:
        runs = [json.loads(p.read_text()) for p in args.collect]
        seen: dict[tuple[str, str], dict] = {}
        for r in (r for run in runs for r in run["rows"]):
            seen.setdefault((r["case"], r["method"]), r)  # a case run twice: its first rows
        rows = list(seen.values())
        head = "\n".join(f"- `{p}`: torch threads {run['threads']}, budget "
                          f"{run['budget_s']:g} s" for p, run in zip(args.collect, runs))
        table = markdown(sorted(rows, key=lambda r: list(CASES).index(r["case"])))
        print(table)
        if args.markdown:
            args.markdown.write_text(head + "\n\n" + table)
        return 0
    import torch

    torch.set_num_threads(max(1, args.threads))
    rows: list[dict] = []
    probes: list[dict] = []
    images: dict[str, Volume] = {}

    def save() -> None:
        if args.json:  # keep what is done so far
            args.json.write_text(json.dumps({"threads": args.threads, "budget_s": args.budget,
                                             "rows": rows, "probes": probes}, indent=1) + "\n")

    def emit(row: dict) -> None:
        rows.append(row)
        print(f"{row['case']:<14} {row['method']:<30} PSNR {row['psnr']:6.2f} SSIM "
              f"{row['ssim']:.4f} {row['seconds']:7.1f} s  {row.get('note', '')}", flush=True)
        save()

    for case in args.cases:
        name, axis, k, profile = CASES[case]
        try:
            if name not in images:
                images[name] = load_image(name)
                print("# " + band_share_line(name, images[name].data, axis), flush=True)
        except LookupError as exc:
            print(f"# {case}: skipped ({exc})", file=sys.stderr, flush=True)
            continue
        hr, lr = thick_slices(images[name], axis, k, profile)
        if args.probe:
            from medsr.selfsup import auto_start

            ev = auto_start(lr, profile=profile, seed=args.seed)
            ratio = ev["auto_probe_mse_default"] / ev["auto_probe_mse_lanczos"]
            probes.append({"case": case, **ev, "ratio": ratio})
            print(f"# {case}: init=auto starts from {ev['init']} (probe error default / "
                  f"Lanczos = {ratio:.2f})", flush=True)
            save()
        t = time.perf_counter()
        out = run_cubic(lr, axis, k)
        emit({"case": case, "method": "cubic", **dict(zip(("psnr", "ssim"),
              score(hr.data, out))), "seconds": time.perf_counter() - t})
        t = time.perf_counter()
        try:
            out, used = run_default(lr, axis, k)
            emit({"case": case, "method": "default", **dict(zip(("psnr", "ssim"),
                  score(hr.data, out))), "seconds": time.perf_counter() - t, "note": used})
            if args.project_default:  # what `medsr infer --slice-profile P` does
                plan = plan_grid(lr)
                for assumed in dict.fromkeys((profile, "gaussian")):
                    proj = project_onto_slices(lr, Volume(out, plan.affine_out), plan,
                                               assumed)[0].data
                    emit({"case": case, "method": f"default, projected ({assumed} profile)",
                          **dict(zip(("psnr", "ssim"), score(hr.data, proj))),
                          "seconds": time.perf_counter() - t, "note": used})
        except LookupError as exc:
            print(f"# {case}: no default row ({exc})", file=sys.stderr, flush=True)
        runs = [(f"selfsup {init}", init, {}) for init in args.inits]
        runs += [(f"selfsup {v}", "auto", VARIANTS[v]) for v in args.variants]
        for label, init, options in runs:
            t = time.perf_counter()
            # the projection onto the slices is the last step of the call: run without it
            # and project here, to score the network's own output too (same result:
            # tests/test_selfsup.py, test_self_supervised_output_is_consistent_with_the_scan)
            project_here = options.get("consistency", True)
            out, rep = run_selfsup(lr, profile, args.budget, args.seed, init,
                                   **{**options, "consistency": False})
            raw = out
            if project_here:
                tp = rep["through_plane"]
                out = project(raw, lr.data, tp["axis"], np.asarray(rep["slice_profile"]),
                              tp["k"])
            tr = rep["train"]
            row = {"case": case, "method": f"{label} ({args.budget:g} s)",
                   **dict(zip(("psnr", "ssim"), score(hr.data, out))),
                   "seconds": time.perf_counter() - t, "steps": tr["steps"],
                   "started": rep["init"], "inference_s": rep["inference_s"],
                   "note": f"{rep['init']}; {tr['steps']} steps, inference "
                           f"{rep['inference_s']:.0f} s"}
            if project_here:
                row.update(zip(("psnr_unprojected", "ssim_unprojected"), score(hr.data, raw)))
                row["note"] += f"; unprojected {row['psnr_unprojected']:.2f}"
            emit(row)
    print(f"\ntorch threads: {args.threads}, budget {args.budget:g} s\n")
    table = markdown(rows)
    print(table)
    if args.markdown:
        command = " ".join(["python pipelines/benchmark_selfsup.py", *(argv or sys.argv[1:])])
        args.markdown.write_text(f"`{command}` (torch threads: {args.threads}, budget "
                                 f"{args.budget:g} s)\n\n" + table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
