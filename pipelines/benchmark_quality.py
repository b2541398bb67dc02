"""Quality benchmark: medsr's default networks against interpolation and IBP on held-out data.

Data: the MNI152 T1 template (1 mm, shipped inside nilearn). The default models are
trained on its anterior part (y < 110 voxels, see pipelines/train_default.py); this
benchmark tests on the posterior part (y >= 123), which took no part in training, cropped
to 192 x 108 x 180 voxels so every factor divides the grid. A single-slice case (one axial
slice stored as a one-slice NIfTI) checks 2D inputs.

Degradations (the networks never see these exact parameters; they were trained with
randomised profiles, widths, sampling and noise):
    gaussian  Gaussian slice profile / PSF, FWHM = k voxels, sampled at the LR voxel centres
    box       box profile of width k (thickness = spacing): each LR voxel is exactly the
              mean of its k HR voxels
    kspace    k-space truncation (sinc interpolation model), no blur (medsr.degrade)
``gaussian`` and ``box`` are the physical acquisition of the real-scan benchmark
(``benchmark_real.degrade``, by ``benchmark_selfsup.slice_weights``) along every axis
with a factor above 1: the profile *is* the acquisition, with no area sampling on top
(a profile followed by area averaging would blur twice: a box would become a triangle
twice as wide).

Methods: nearest, linear, cubic (B-spline), lanczos, ibp (Gaussian forward model,
10 iterations), medsr (the shipped default that `medsr infer` picks with no flags),
each run by `medsr infer`'s runner (`medsr.pipeline.super_resolve_volume`).

    python pipelines/benchmark_quality.py [--quick] [--json out.json] [--markdown out.md]

Other suites, each its own script with its own options (arguments after the suite name
are passed on):

    python pipelines/benchmark_quality.py selfsup ...   # benchmark_selfsup.py (issue 7)
    python pipelines/benchmark_quality.py frames ...    # benchmark_quality_frames.py
                                                        # (frames and microscopy, issue 9)
    python pipelines/benchmark_quality.py real ...      # benchmark_real.py: held-out
                                                        # real people's scans (issue 23)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from medsr import metrics
from medsr.degrade import Degradation, degrade_volume
from medsr.devices import select_device
from medsr.geometry import plan_grid
from medsr.inference.model_sr import use_all_cores
from medsr.inference.resolvers import model_passes
from medsr.pipeline import super_resolve_volume
from medsr.training.data.sources import load_mni152
from medsr.volume import Volume

PIPELINES = Path(__file__).resolve().parent
PROFILES = {  # None: the physical acquisition of benchmark_real.degrade
    "gaussian": None,
    "box": None,
    "kspace": {"profile": "none", "downsample": "kspace"},
}
CASES = [  # (name, factors)
    ("in-plane x2", (2, 2, 1)),
    ("in-plane x4", (4, 4, 1)),
    ("one-axis x2", (1, 1, 2)),
    ("one-axis x4", (1, 1, 4)),
    ("one-axis x6", (1, 1, 6)),
]
METHODS = ("nearest", "linear", "cubic", "lanczos", "ibp", "medsr")


def test_volume() -> Volume:
    """The held-out posterior block of MNI152 (intensities x 1000, like a scanner's)."""
    v = load_mni152(resolution=1)
    A = v.affine.copy()
    A[:3, 3] = A[:3, :3] @ np.array([0.0, 123.0, 0.0]) + A[:3, 3]
    data = np.ascontiguousarray(v.data[:192, 123:231, :180] * 1000.0, dtype=np.float32)
    return Volume(data, A, {"format": "nifti"})


def single_slice(vol: Volume, k: int = 90) -> Volume:
    A = vol.affine.copy()
    A[:3, 3] = A[:3, :3] @ np.array([0.0, 0.0, float(k)]) + A[:3, 3]
    return Volume(np.ascontiguousarray(vol.data[:, :, k:k + 1]), A, {"format": "nifti"})


def sibling(name: str):
    """A sibling script of pipelines/ as a module."""
    import importlib
    import sys

    if str(PIPELINES) not in sys.path:
        sys.path.insert(0, str(PIPELINES))
    return importlib.import_module(name)


def degrade(hr: Volume, factors, profile: str) -> Volume:
    """The LR of ``hr``: ``gaussian`` / ``box`` by the real-scan benchmark's physical
    acquisition (``benchmark_real.degrade``), ``kspace`` by medsr's Degradation."""
    if PROFILES[profile] is None:
        return sibling("benchmark_real").degrade(hr, factors, profile)
    d = Degradation.from_dict({"scale": list(factors), **PROFILES[profile]})
    d.set_random_state(0)
    return degrade_volume(hr, d)


def run_method(method: str, lr: Volume, factors, device) -> tuple[np.ndarray, float]:
    """Every method through the runner of ``medsr infer`` (:func:`super_resolve_volume`:
    the network tiled and fused over planes, a one-axis output projected onto the slices
    under the estimated profile, every output clipped at 0 as infer writes it)."""
    plan = plan_grid(lr, scale=factors)
    t0 = time.perf_counter()
    if method == "medsr":
        passes = model_passes(plan, None, device)
        if not passes:
            raise SystemExit(f"no shipped model covers {factors}: run pipelines/train_default.py")
        out = super_resolve_volume(lr, plan, passes=passes, device=device, progress=False,
                                   auto_profile=True)
    else:
        out = super_resolve_volume(lr, plan, method=method, progress=False)
    return out.volume.data, time.perf_counter() - t0


SUITES = {"selfsup": "benchmark_selfsup", "frames": "benchmark_quality_frames",
          "real": "benchmark_real"}


def run_suite(name: str, argv: list[str]) -> int:
    """Run another benchmark suite (a sibling script's ``main``)."""
    return int(sibling(SUITES[name]).main(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    import sys

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUITES:
        return run_suite(argv[0], argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="x4 cases only")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--weights", type=Path, help="a folder of default weights to test "
                    "instead of medsr/weights (same file names)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args(argv)
    if args.weights:
        from medsr import pretrained

        pretrained.WEIGHTS_DIR = args.weights.resolve()
    use_all_cores()
    device = select_device("auto")
    methods = args.methods.split(",")
    hr = test_volume()
    rng_range = float(hr.data.max() - hr.data.min())
    cases = [(n, f, hr) for n, f in CASES]
    sl = single_slice(hr)
    cases += [("slice in-plane x2", (2, 2, 1), sl), ("slice in-plane x4", (4, 4, 1), sl),
              ("slice one-axis x4", (1, 4, 1), sl)]
    if args.quick:
        cases = [c for c in cases if "x4" in c[0]]
    rows = []
    for name, factors, ref in cases:
        for profile in PROFILES:
            lr = degrade(ref, factors, profile)
            for method in methods:
                sr, secs = run_method(method, lr, factors, device)
                assert sr.shape == ref.data.shape, (sr.shape, ref.data.shape)
                mode = "2d" if ref.data.shape[2] == 1 else "3d"
                row = {"case": name, "degradation": profile, "method": method,
                       "psnr": metrics.psnr(ref.data, sr, data_range=rng_range),
                       "ssim": metrics.ssim(ref.data, sr, data_range=rng_range, mode=mode),
                       "seconds": secs}
                rows.append(row)
                print(f"{name:18s} {profile:9s} {method:8s} PSNR {row['psnr']:6.2f} "
                      f"SSIM {row['ssim']:.4f} {secs:6.1f} s", flush=True)
    table = markdown(rows, methods)
    print()
    print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.markdown:
        args.markdown.write_text(table)
    return 0


def markdown(rows: list[dict], methods: list[str]) -> str:
    """One line per case and degradation: PSNR / SSIM of each method, gain over cubic."""
    head = "| case | degradation | " + " | ".join(methods) + " | medsr - cubic |"
    lines = [head, "|" + "---|" * (len(methods) + 3)]
    keys = []
    for r in rows:
        if (r["case"], r["degradation"]) not in keys:
            keys.append((r["case"], r["degradation"]))
    for case, deg in keys:
        by = {r["method"]: r for r in rows if r["case"] == case and r["degradation"] == deg}
        cells = [f"{by[m]['psnr']:.2f} / {by[m]['ssim']:.3f}" if m in by else "" for m in methods]
        gain = (f"{by['medsr']['psnr'] - by['cubic']['psnr']:+.2f} dB"
                if "medsr" in by and "cubic" in by else "")
        lines.append(f"| {case} | {deg} | " + " | ".join(cells) + f" | {gain} |")
    means = []
    for m in methods:
        vals = [r["psnr"] for r in rows if r["method"] == m]
        means.append(f"{np.mean(vals):.2f}" if vals else "")
    lines.append("| mean PSNR | | " + " | ".join(means) + " | |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
