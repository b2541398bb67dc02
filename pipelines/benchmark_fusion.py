"""Why the defaults are what they are: through-plane fusion and flip self-ensemble (--tta).

On the held-out MNI152 block of pipelines/benchmark_quality.py, one-axis x4 (Gaussian and
box profiles): the shipped thick-slice-x4 network applied on one plane orientation only
(each of the two), on both with the results averaged (the default), and with --tta.

    python pipelines/benchmark_fusion.py
"""

from __future__ import annotations

import time

import numpy as np
import torch
from benchmark_quality import degrade, test_volume

from medsr import metrics
from medsr.geometry import plan_grid
from medsr.infer import model_passes
from medsr.inference.apply import apply_2d
from medsr.inference.model_sr import FlipEnsemble, use_all_cores
from medsr.intensity import input_range


def main() -> int:
    use_all_cores()
    hr = test_volume()
    rng = float(hr.data.max() - hr.data.min())
    for profile in ("gaussian", "box"):
        lr = degrade(hr, (1, 1, 4), profile)
        plan = plan_grid(lr, scale=(1, 1, 4))
        p = model_passes(plan, None, torch.device("cpu"))[0]
        lo, hi = input_range(lr.data)
        x = ((lr.data - lo) / (hi - lo)).astype(np.float32)
        variants = {
            "planes (y, z) only": dict(net=p.model, slice_axis=0),
            "planes (x, z) only": dict(net=p.model, slice_axis=1),
            "both, averaged (default)": dict(net=p.model, slice_axis=None),
            "both + flips (--tta)": dict(net=FlipEnsemble(p.model), slice_axis=None),
        }
        for name, v in variants.items():
            t = time.perf_counter()
            if v["slice_axis"] is None:
                y = apply_2d(v["net"], x, (1, 1, 4))
            else:  # one orientation: move the other in-plane axis out of the way
                ax = v["slice_axis"]
                xs = np.moveaxis(x, ax, 0)
                y = np.stack([apply_2d(v["net"], s[None], (1, 1, 4))[0] for s in xs])
                y = np.moveaxis(y, 0, ax)
            secs = time.perf_counter() - t
            y = y * (hi - lo) + lo
            print(f"{profile:8s} {name:26s} PSNR {metrics.psnr(hr.data, y, data_range=rng):6.2f}"
                  f"  SSIM {metrics.ssim(hr.data, y, data_range=rng):.4f}  {secs:5.1f} s",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
