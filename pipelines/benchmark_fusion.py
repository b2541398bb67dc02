"""Why the defaults are what they are: through-plane fusion and flip self-ensemble (--tta).

On the held-out MNI152 block of pipelines/benchmark_quality.py, one-axis x4 (Gaussian and
box profiles): the shipped thick-slice-x4 network applied on one plane orientation only
(each of the two), on both with the results averaged (the default), and with --tta.
The default and --tta rows are ``medsr infer``'s runner (``super_resolve_volume``; its
clipping at 0 left out with ``keep_overshoot`` so that every row is the network's raw
output); the one-orientation rows are ablations the runner does not offer, the same
normalisation and ``apply_2d`` over one plane orientation.

    python pipelines/benchmark_fusion.py
"""

from __future__ import annotations

import time

import numpy as np
import torch
from benchmark_quality import degrade, test_volume

from medsr import metrics
from medsr.geometry import plan_grid
from medsr.inference.apply import apply_2d
from medsr.inference.model_sr import use_all_cores
from medsr.inference.resolvers import model_passes
from medsr.intensity import Normalisation, input_range
from medsr.pipeline import super_resolve_volume


def main() -> int:
    use_all_cores()
    hr = test_volume()
    rng = float(hr.data.max() - hr.data.min())
    for profile in ("gaussian", "box"):
        lr = degrade(hr, (1, 1, 4), profile)
        plan = plan_grid(lr, scale=(1, 1, 4))
        passes = model_passes(plan, None, torch.device("cpu"))
        p = passes[0]
        norm = p.info.get("normalisation") or {}  # as the runner normalises
        scale = Normalisation(*input_range(lr.data, float(norm.get("lower", 0.5)),
                                           float(norm.get("upper", 99.5))))
        x = scale.apply(lr.data)
        variants = {
            "planes (y, z) only": dict(slice_axis=0),
            "planes (x, z) only": dict(slice_axis=1),
            "both, averaged (default)": dict(tta=False),
            "both + flips (--tta)": dict(tta=True),
        }
        for name, v in variants.items():
            t = time.perf_counter()
            if "tta" in v:  # medsr infer [--tta]
                y = super_resolve_volume(lr, plan, passes=passes, device="cpu", tta=v["tta"],
                                         keep_overshoot=True, progress=False).volume.data
            else:  # one orientation: move the other in-plane axis out of the way
                ax = v["slice_axis"]
                xs = np.moveaxis(x, ax, 0)
                y = np.stack([apply_2d(p.model, s[None], (1, 1, 4))[0] for s in xs])
                y = scale.invert_(np.moveaxis(y, 0, ax))
            secs = time.perf_counter() - t
            print(f"{profile:8s} {name:26s} PSNR {metrics.psnr(hr.data, y, data_range=rng):6.2f}"
                  f"  SSIM {metrics.ssim(hr.data, y, data_range=rng):.4f}  {secs:5.1f} s",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
