"""Self-supervised through-plane SR against cubic on simulated thick slices (issue 7).

Ground truth: the MNI152 T1 template at 1 mm (nilearn, offline) and skimage's
``cell`` microscopy image (a 2D slice, so its fine axis supplies the pairs). Thick
slices are simulated with ``medsr.degrade`` (slice profile Gaussian with FWHM = k voxels
or rect of width k, then ``decimate``: slice thickness = slice spacing) along one axis.
Each method gets the LR Volume only; the self-supervised one gets ``--budget`` seconds
of wall time for everything (training and inference) and is told the profile shape.

    python pipelines/benchmark_selfsup.py --budget 300            # the issue's setting
    python pipelines/benchmark_selfsup.py --budget 60 --cases mni-gauss-x4

Prints a table: case, method, PSNR, SSIM, seconds (and writes --json if given).
PSNR/SSIM use ``medsr.metrics`` over the whole volume with data_range = HR max - min.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from medsr import metrics
from medsr.degrade import Degradation, degrade_volume
from medsr.interpolate import resize
from medsr.volume import Volume

CASES = {
    # name: (image, axis, k, profile)
    "mni-gauss-x4": ("mni", 2, 4, "gaussian"),
    "mni-rect-x4": ("mni", 2, 4, "rect"),
    "cell-gauss-x4": ("cell", 0, 4, "gaussian"),
    "mni-gauss-x2": ("mni", 2, 2, "gaussian"),
    "mni-gauss-x6": ("mni", 2, 6, "gaussian"),
}


def load_image(name: str) -> Volume:
    if name == "mni":
        from nilearn.datasets import load_mni152_template

        img = load_mni152_template(resolution=1)
        data = np.asarray(img.get_fdata(), dtype=np.float32)
        return Volume(data, img.affine)
    if name == "cell":
        from skimage import data as skdata

        return Volume(skdata.cell().astype(np.float32)[:, :, None], np.eye(4))
    raise SystemExit(f"unknown image {name}")


def thick_slices(hr: Volume, axis: int, k: int, profile: str) -> tuple[Volume, Volume]:
    """(HR cropped to a multiple of k along axis, LR with thickness = spacing = k)."""
    n = hr.spatial_shape[axis] // k * k
    sl = [slice(None)] * 3
    sl[axis] = slice(0, n)
    hr = hr.with_data(np.ascontiguousarray(hr.data[tuple(sl)]))
    scale = [1, 1, 1]
    scale[axis] = k
    width = [None, None, None]
    width[axis] = float(k)
    key = "fwhm" if profile == "gaussian" else "thickness"
    d = Degradation(scale=scale, profile=profile, downsample="decimate", **{key: width})
    lr = degrade_volume(hr, d)
    return hr, lr.with_data(lr.data.astype(np.float32))


def score(hr: np.ndarray, sr: np.ndarray) -> tuple[float, float]:
    return metrics.psnr(hr, sr), metrics.ssim(hr, sr)


def run_cubic(lr: Volume, axis: int, k: int) -> np.ndarray:
    f = [1, 1, 1]
    f[axis] = k
    return resize(lr.data, f, "cubic")


def run_selfsup(lr: Volume, profile: str, budget: float, seed: int) -> tuple[np.ndarray, dict]:
    from medsr.selfsup import super_resolve_self_supervised

    sr, rep = super_resolve_self_supervised(lr, budget_s=budget, profile=profile, seed=seed,
                                            progress=sys.stderr.isatty())
    return sr.data, rep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=300.0, help="seconds per self-sup run")
    ap.add_argument("--cases", nargs="*", default=["mni-gauss-x4", "mni-rect-x4",
                                                    "cell-gauss-x4"], choices=list(CASES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    import torch

    rows = []
    images: dict[str, Volume] = {}
    for case in args.cases:
        name, axis, k, profile = CASES[case]
        images.setdefault(name, load_image(name))
        hr, lr = thick_slices(images[name], axis, k, profile)
        t = time.perf_counter()
        cub = run_cubic(lr, axis, k)
        rows.append({"case": case, "method": "cubic", **dict(zip(("psnr", "ssim"),
                     score(hr.data, cub))), "seconds": time.perf_counter() - t})
        t = time.perf_counter()
        sr, rep = run_selfsup(lr, profile, args.budget, args.seed)
        rows.append({"case": case, "method": f"selfsup ({args.budget:g}s budget)",
                     **dict(zip(("psnr", "ssim"), score(hr.data, sr))),
                     "seconds": time.perf_counter() - t, "steps": rep["train"]["steps"]})
        print(f"# {case}: {rep['train']['steps']} steps in {rep['train']['seconds']:.0f} s, "
              f"inference {rep['inference_s']:.0f} s (estimated "
              f"{rep['inference_s_estimated']:.0f} s)", file=sys.stderr, flush=True)
    print(f"torch threads: {torch.get_num_threads()}")
    print(f"{'case':<16} {'method':<26} {'PSNR':>7} {'SSIM':>7} {'seconds':>8}")
    for r in rows:
        print(f"{r['case']:<16} {r['method']:<26} {r['psnr']:7.2f} {r['ssim']:7.4f} "
              f"{r['seconds']:8.1f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
