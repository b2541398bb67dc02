"""Speed and memory benchmark of `medsr infer`'s default networks on this machine.

Prints, in one run:
  * case A: a 256 x 256 x 64 volume with 1 x 1 x 4 mm voxels to 1 mm isotropic (x4 along
    z, the thick-slice default with through-plane fusion);
  * case B: a 512 x 512 x 128 volume x2 in-plane;
  for each: the medsr default's time, scipy.ndimage.zoom(order=3)'s time on the same
  data and their ratio, and medsr's own cubic B-spline (separable, changed axes only);
  * the network's achieved GFLOP/s (useful work, halos excluded) against this machine's
    measured fp32 matrix-multiply GFLOP/s (torch.mm, 2048^2, all cores);
  * peak resident memory of `medsr infer` super-resolving a 512 x 512 x 128 NIfTI by
    (1, 1, 4) (a 512^3 output), measured in a child process.

    python pipelines/benchmark_speed.py [--model-a PATH] [--model-b PATH] [--skip-memory]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi
import torch

from medsr import models
from medsr.devices import select_device
from medsr.infer import model_passes, plan_grid, super_resolve, super_resolve_model
from medsr.inference.model_sr import use_all_cores
from medsr.volume import Volume


def smooth_volume(shape, spacing, seed=0) -> Volume:
    """Band-limited random texture (speed does not depend on content, but keep it real)."""
    rng = np.random.default_rng(seed)
    data = ndi.gaussian_filter(rng.random(shape, dtype=np.float32), 2.0) * 4000.0
    return Volume(data.astype(np.float32), np.diag([*spacing, 1.0]), {"format": "nifti"})


def matmul_gflops(n: int = 2048, reps: int = 5) -> float:
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def network_flops(passes, shape_in) -> float:
    """Useful FLOPs of the passes: 2 x MACs per output voxel x output voxels x planes."""
    total = 0.0
    shape = np.array(shape_in)
    for p in passes:
        info = p.info
        per_voxel = models.macs_per_output_voxel(info["architecture"], info["spatial_dims"],
                                                 tuple(info["scale"]), **info["hparams"])
        out = shape * np.array(p.factors)
        up = [ax for ax in range(3) if p.factors[ax] > 1]
        planes = 2 if len(up) == 1 and sum(n > 1 for n in shape) == 3 else 1
        total += 2 * per_voxel * float(np.prod(out)) * planes
        shape = out
    return total


def case(name, vol, factors, model, device) -> dict:
    plan = plan_grid(vol, scale=factors)
    passes = model_passes(plan, model, device)
    if not passes:
        raise SystemExit(f"no shipped model covers {factors}; give --model")
    super_resolve_model(vol.with_data(vol.data[:32, :32]), plan_grid(
        vol.with_data(vol.data[:32, :32]), scale=factors), passes, device=device)  # warm-up
    t = time.perf_counter()
    super_resolve_model(vol, plan, passes, device=device)
    t_net = time.perf_counter() - t
    t = time.perf_counter()
    super_resolve(vol, plan, method="cubic")
    t_cubic = time.perf_counter() - t
    t = time.perf_counter()
    ndi.zoom(vol.data, factors, order=3, grid_mode=True, mode="reflect")
    t_scipy = time.perf_counter() - t
    flops = network_flops(passes, vol.spatial_shape)
    print(f"{name}: medsr default {t_net:6.1f} s | scipy zoom(order=3) {t_scipy:6.1f} s | "
          f"ratio {t_net / t_scipy:4.2f}x | medsr cubic {t_cubic:5.2f} s "
          f"({t_scipy / t_cubic:4.0f}x faster than scipy) | network "
          f"{flops / t_net / 1e9:5.1f} GFLOP/s", flush=True)
    return {"net": t_net, "scipy": t_scipy, "cubic": t_cubic, "gflops": flops / t_net / 1e9}


def peak_memory_case(model: str | None) -> float:
    """Peak RSS (GB) of `medsr infer` on a 512x512x128 NIfTI -> (1,1,4), in a child."""
    import nibabel as nib

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "big.nii.gz"
        rng = np.random.default_rng(0)
        data = (ndi.gaussian_filter(rng.random((512, 512, 128), dtype=np.float32), 2)
                * 4000).astype(np.int16)
        nib.save(nib.Nifti1Image(data, np.diag([0.5, 0.5, 2.0, 1.0])), src)
        del data
        cmd = [sys.executable, "-m", "medsr", "infer", str(src), "-o", str(Path(tmp) / "o.nii"),
               "--scale", "1,1,4"]
        if model:
            cmd += ["--model", model]
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t = time.perf_counter()
        subprocess.run(cmd, check=True)
        secs = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        gb = max(peak, before) / 1024**2
        print(f"memory: 512x512x128 -> 512x512x512 via `medsr infer`: peak RSS {gb:.2f} GB "
              f"({secs:.0f} s)", flush=True)
        return gb


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-a", help="through-plane x4 model (default: the shipped one)")
    ap.add_argument("--model-b", help="in-plane x2 model (default: the shipped one)")
    ap.add_argument("--skip-memory", action="store_true")
    args = ap.parse_args(argv)
    use_all_cores()
    device = select_device("auto")
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {device}")
    peak = matmul_gflops()
    print(f"fp32 matrix multiply (torch.mm 2048^2): {peak:.1f} GFLOP/s")
    a = case("A 256x256x64 @1x1x4 mm -> 1 mm (1,1,4)", smooth_volume((256, 256, 64), (1, 1, 4)),
             (1, 1, 4), args.model_a, device)
    b = case("B 512x512x128 x2 in-plane (2,2,1)", smooth_volume((512, 512, 128), (1, 1, 1)),
             (2, 2, 1), args.model_b, device)
    for n, r in (("A", a), ("B", b)):
        print(f"network efficiency {n}: {r['gflops'] / peak * 100:.0f}% of the matmul rate")
    if not args.skip_memory:
        peak_memory_case(args.model_a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
