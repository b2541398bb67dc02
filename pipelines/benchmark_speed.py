"""Speed and memory benchmark of `medsr infer`'s default networks on this machine.

Prints, in one run:
  * case A: a 256 x 256 x 64 volume with 1 x 1 x 4 mm voxels to 1 mm isotropic (x4 along
    z, the thick-slice default with through-plane fusion);
  * case B: a 512 x 512 x 128 volume x2 in-plane;
  for each: the medsr default's time, scipy.ndimage.zoom(order=3)'s time on the same
  data and their ratio, and medsr's own cubic B-spline (separable, changed axes only);
  * the network's achieved GFLOP/s against this machine's measured fp32 matrix-multiply
    GFLOP/s (torch.mm, 2048^2, all cores), twice: "executed" counts every convolution
    the network ran (tile halos and edge padding included: how well the kernels use the
    machine), "useful" counts only the work that lands in the output voxels;
  * the same default with ``--precision bf16`` (opt-in: on CPUs with AMX / AVX512-BF16)
    and its PSNR against the fp32 result;
  * peak resident memory of `medsr infer` super-resolving a 512 x 512 x 128 NIfTI by
    (1, 1, 4) (a 512^3 output), measured in a child process.

    python pipelines/benchmark_speed.py [--model-a PATH] [--model-b PATH] [--skip-memory]
    python pipelines/benchmark_speed.py --sweep   # conv rate vs pixels per call, which
                                                  # sets tiling.CPU_WORKING_SET
    python pipelines/benchmark_speed.py --training [CONFIG]   # a training step of the
        # config's network, batch and patch (default configs/frames_x4.yaml) in float32 and
        # in bfloat16 autocast (train.amp: bf16), on the config's thread count
"""

from __future__ import annotations

import argparse
import os
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
from medsr.geometry import plan_grid
from medsr.inference.classical import super_resolve
from medsr.inference.model_sr import run_settings, use_all_cores
from medsr.inference.resolvers import model_passes
from medsr.inference.tiling import conv_layers
from medsr.pipeline import super_resolve_volume
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


class ConvCounter:
    """Counts the FLOPs every convolution of a network executes (forward hooks)."""

    def __init__(self, net: torch.nn.Module) -> None:
        self.flops = 0.0
        self.handles = [m.register_forward_hook(self.hook) for m in conv_layers(net)]

    def hook(self, module, inputs, output) -> None:
        w = module.weight
        self.flops += 2.0 * output.numel() * w[0].numel()

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def timed(vol, plan, passes, device, **kw) -> tuple[float, float, np.ndarray]:
    """Seconds and executed conv FLOPs of the runner of ``medsr infer``,
    :func:`super_resolve_volume` (counted in the same run)."""
    channels_last, precision = run_settings(device, None, kw.get("precision", "auto"))
    counters = [ConvCounter(p.runnable(device, channels_last, False, False, precision))
                for p in passes]
    t = time.perf_counter()
    out = super_resolve_volume(vol, plan, passes=passes, device=device, progress=False, **kw)
    secs = time.perf_counter() - t
    for c in counters:
        c.remove()
    return secs, sum(c.flops for c in counters), out.volume.data


def case(name, vol, factors, model, device) -> dict:
    plan = plan_grid(vol, scale=factors)
    passes = model_passes(plan, model, device)
    if not passes:
        raise SystemExit(f"no shipped model covers {factors}; give --model")
    small = vol.with_data(vol.data[:32, :32])
    for prec in ("auto", "bf16"):  # warm-up
        super_resolve_volume(small, plan_grid(small, scale=factors), passes=passes,
                             device=device, precision=prec, progress=False)
    t_net, executed, ref = timed(vol, plan, passes, device)
    t_bf16, _, y16 = timed(vol, plan, passes, device, precision="bf16")
    psnr16 = 10 * np.log10(float(np.ptp(ref)) ** 2 / float(np.mean((y16 - ref) ** 2)))
    del y16, ref
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
          f"{executed / t_net / 1e9:5.1f} GFLOP/s executed, {flops / t_net / 1e9:5.1f} useful "
          f"| --precision bf16 {t_bf16:5.1f} s (PSNR {psnr16:4.1f} dB vs fp32)", flush=True)
    return {"net": t_net, "scipy": t_scipy, "cubic": t_cubic, "bf16": t_bf16,
            "gflops": executed / t_net / 1e9, "useful": flops / t_net / 1e9}


def sweep() -> None:
    """32-channel 3x3 conv + ReLU (fused, channels-last) rate against pixels per call."""
    from medsr.inference.fusion import fuse_conv_act

    net = torch.nn.Sequential(torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU()).eval()
    fuse_conv_act(net)
    net = net.to(memory_format=torch.channels_last)
    peak = matmul_gflops()
    print(f"fp32 matmul {peak:.0f} GFLOP/s")
    for n, h, w in [(1, 64, 64), (1, 128, 128), (2, 128, 128), (1, 284, 92), (3, 284, 92),
                    (1, 284, 284), (8, 284, 92), (1, 540, 540), (4, 540, 540)]:
        x = torch.rand(n, 32, h, w).contiguous(memory_format=torch.channels_last)
        reps = max(2, int(2e7 / x.numel()))
        with torch.inference_mode():
            net(x)
            t = time.perf_counter()
            for _ in range(reps):
                net(x)
            dt = (time.perf_counter() - t) / reps
        rate = 2 * 9 * 32 * 32 * n * h * w / dt / 1e9
        print(f"{n} x {h} x {w} ({n * h * w:7d} px, {x.numel() * 4 / 1e6:5.1f} MB): "
              f"{rate:6.1f} GFLOP/s = {rate / peak * 100:3.0f}% of matmul", flush=True)


# The child reports its own high-water mark: getrusage(RUSAGE_CHILDREN).ru_maxrss would
# also count the parent's resident set at fork (Linux carries it across exec), and after
# cases A and B this process holds over 2 GB.
_CHILD = """import sys
from medsr.cli import main
sys.argv = ["medsr", *sys.argv[1:]]
try:
    code = main()
finally:
    with open("/proc/self/status") as f:
        hwm = next(line for line in f if line.startswith("VmHWM"))
    print("VmHWM_kB", hwm.split()[1], file=sys.stderr)
sys.exit(code)
"""


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
        cmd = [sys.executable, "-c", _CHILD, "infer", str(src), "-o", str(Path(tmp) / "o.nii"),
               "--scale", "1,1,4"]
        if model:
            cmd += ["--model", model]
        t = time.perf_counter()
        res = subprocess.run(cmd, check=True, stderr=subprocess.PIPE, text=True)
        secs = time.perf_counter() - t
        lines = res.stderr.splitlines()
        print("\n".join(line for line in lines if not line.startswith("VmHWM_kB")), flush=True)
        kb = next(int(line.split()[1]) for line in lines if line.startswith("VmHWM_kB"))
        gb = kb / 1024**2
        print(f"memory: 512x512x128 -> 512x512x512 via `medsr infer`: peak RSS {gb:.2f} GB "
              f"({secs:.0f} s)", flush=True)
        return gb


def training_step_case(config: str, steps: int = 8) -> dict[str, float]:
    """Seconds per training step (forward, L1 loss, backward, Adam) of ``config``'s
    network on random patches of its batch and LR patch size, float32 vs bfloat16
    autocast; the median of ``steps`` steps after two warm-up steps."""
    from medsr.training.build import create_model, model_channels, sampling_spec
    from medsr.training.config import load_config

    cfg = load_config(config)
    torch.set_num_threads(int(cfg["num_threads"] or torch.get_num_threads()))
    spec = sampling_spec(cfg)
    in_ch, out_ch = model_channels(cfg, 1)
    lr_patch = [p // s for p, s in zip(spec.patch, spec.scale)]
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(int(cfg["sampling"]["batch_size"]), in_ch, *lr_patch, generator=gen)
    out = {}
    for name, dtype in (("float32", None), ("bfloat16", torch.bfloat16)):
        torch.manual_seed(0)
        model = create_model(cfg, in_ch, out_ch)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        times = []
        for i in range(steps + 2):
            t = time.perf_counter()
            with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = model(x).float().abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i >= 2:
                times.append(time.perf_counter() - t)
        out[name] = float(np.median(times))
    print(f"training step, {Path(config).name} ({cfg['model']['name']}, batch "
          f"{x.shape[0]}, LR patch {lr_patch}, {torch.get_num_threads()} thread(s)): "
          f"float32 {out['float32']:.3f} s, bfloat16 autocast {out['bfloat16']:.3f} s "
          f"({out['float32'] / out['bfloat16']:.2f}x)", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-a", help="through-plane x4 model (default: the shipped one)")
    ap.add_argument("--model-b", help="in-plane x2 model (default: the shipped one)")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--sweep", action="store_true", help="only the conv-rate sweep")
    ap.add_argument("--memory-only", action="store_true", help="only the peak-memory case")
    ap.add_argument("--training", nargs="?", const="configs/frames_x4.yaml", metavar="CONFIG",
                    help="only a training step, float32 vs bfloat16 autocast")
    args = ap.parse_args(argv)
    if args.training:
        training_step_case(args.training)
        return 0
    use_all_cores()
    if args.sweep:
        sweep()
        return 0
    if args.memory_only:
        peak_memory_case(args.model_a)
        return 0
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
        print(f"network efficiency {n}: {r['gflops'] / peak * 100:.0f}% of the matmul rate "
              f"executed, {r['useful'] / peak * 100:.0f}% useful (halo and edge padding "
              "excluded)")
    if not args.skip_memory:
        peak_memory_case(args.model_a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
