"""Speed and memory benchmark of `medsr infer` on this machine.

Default (``python pipelines/benchmark_speed.py [--repeats 3] [--cases ...] [--json PATH]``):
the whole command, end to end, each run a real ``medsr infer`` subprocess, on the CPU and
on a GPU when one is present, for the shipped example, 256x256x64 at 1x1x4 mm, a mostly
empty 512x512x128 at 0.5x0.5x2 mm (both -> 1,1,4) and a 16x16x4 volume (default model
and ``--method cubic``), beside a bare ``python -c "import torch, numpy, nibabel"`` in
the same run. Per case, best of ``--repeats`` by wall time: the wall time and its parts
(start-up: launch to ``infer_file``; read; plan; model set-up (load); network (the
runner with its exact-grid finish, or the classical resize); write; the rest), the
child's peak resident memory (VmHWM), and the ratios the issue-24 targets name
(16x16x4 against the bare import, the example's wall against its network time).
Prints a table and writes JSON (default docs/benchmarks/speed.json).

``--kernels`` (the earlier in-process benchmark of the networks) prints, in one run:
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
import json
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
from medsr.inference.receptive_field import conv_layers
from medsr.inference.resolvers import model_passes
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


# ----------------------------------------------------------------------- end to end
# The child times the command's parts by wrapping the library calls infer_file makes
# (module attributes, looked up at call time), and reports them with its own VmHWM.
_E2E_CHILD = r"""import json, sys, time
t_start = time.time()
import medsr.pipeline.infer_file
import medsr.inference.resolvers as rs
from medsr import io
mi = sys.modules["medsr.pipeline.infer_file"]  # the module (its package exports the function)
parts = {}
marks = {}
def timed(mod, name, part):
    real = getattr(mod, name)
    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return real(*a, **k)
        finally:
            parts[part] = parts.get(part, 0.0) + time.perf_counter() - t
    setattr(mod, name, wrapper)
real_infer = mi.infer_file
def infer_file(*a, **k):
    marks["infer_file"] = time.time()
    return real_infer(*a, **k)
mi.infer_file = infer_file  # infer_file_with_sidecar (what the CLI calls) looks it up here
timed(io, "read", "read")
timed(mi, "plan_grid", "plan")
timed(rs, "model_passes", "load")
timed(rs, "super_resolve_model", "network")  # the exact-grid finish included
timed(io, "write", "write")
from medsr.cli import main
try:
    code = main(sys.argv[1:])
finally:
    with open("/proc/self/status") as f:
        hwm = next(line for line in f if line.startswith("VmHWM"))
    print("MEDSR_BENCH " + json.dumps({"parts": parts, "t_start": t_start,
          "t_infer": marks.get("infer_file"), "t_end": time.time(),
          "peak_rss_gb": int(hwm.split()[1]) / 1024**2}), file=sys.stderr)
sys.exit(code)
"""

EXAMPLE = Path(__file__).resolve().parents[1] / "docs/examples/mni152_t1_1x1x4mm.nii.gz"


def _write_case(path: Path, shape, spacing, empty: bool = False) -> Path:
    import nibabel as nib

    rng = np.random.default_rng(0)
    if empty:  # a mostly empty volume: an object in the middle eighth
        data = np.zeros(shape, np.int16)
        inner = tuple(slice(n * 5 // 16, n * 11 // 16) for n in shape)
        sub = [s.stop - s.start for s in inner]
        data[inner] = (ndi.gaussian_filter(rng.random(sub, dtype=np.float32), 2) * 4000
                       ).astype(np.int16)
    else:
        data = (ndi.gaussian_filter(rng.random(shape, dtype=np.float32), 2) * 4000
                ).astype(np.int16)
    nib.save(nib.Nifti1Image(data, np.diag([*spacing, 1.0])), path)
    return path


def _wall(cmd: list[str], env: dict) -> tuple[float, str]:
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr[-2000:]}")
    return wall, res.stderr


def e2e_case(name: str, src: Path, out: Path, extra: list[str], device: str, repeats: int,
             env: dict) -> dict:
    """Best of ``repeats`` (by wall time) of `medsr infer src -o out *extra` in a child."""
    runs = []
    for _ in range(repeats):
        launch = time.time()
        wall, err = _wall([sys.executable, "-c", _E2E_CHILD, "infer", str(src), "-o", str(out),
                           "--overwrite", "--device", device, *extra], env)
        rep = json.loads(next(line for line in err.splitlines()
                              if line.startswith("MEDSR_BENCH "))[len("MEDSR_BENCH "):])
        parts = {"startup": (rep["t_infer"] or rep["t_end"]) - launch,
                 **{k: rep["parts"].get(k, 0.0) for k in ("read", "plan", "load", "network",
                                                          "write")}}
        parts["other"] = max(0.0, wall - sum(parts.values()))
        runs.append({"wall": wall, "parts": parts, "peak_rss_gb": rep["peak_rss_gb"]})
    best = min(runs, key=lambda r: r["wall"])
    row = {"case": name, "device": device, "args": extra, "repeats": repeats, **best,
           "walls": [r["wall"] for r in runs],
           "peak_rss_gb_max": max(r["peak_rss_gb"] for r in runs)}
    p = best["parts"]
    print(f"{name:34s} {device:4s} {best['wall']:7.2f} s | " + " ".join(
        f"{k} {p[k]:6.2f}" for k in ("startup", "read", "plan", "load", "network", "write",
                                     "other")) + f" | peak {best['peak_rss_gb']:.2f} GB",
          flush=True)
    return row


def bare_import(repeats: int, env: dict) -> float:
    walls = [_wall([sys.executable, "-c", "import torch, numpy, nibabel"], env)[0]
             for _ in range(repeats)]
    print(f"{'bare python -c import torch, numpy, nibabel':39s} {min(walls):7.2f} s", flush=True)
    return min(walls)


E2E_CASES = ("tiny", "tiny-cubic", "example", "example-cubic", "256", "512")


def end_to_end(repeats: int, cases: list[str], json_path: Path | None,
               big_repeats: int) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, devices {devices}, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=Path(__file__).resolve().parent).stdout.strip()
    result: dict = {"commit": commit or None,
                    "machine": {"cores": os.cpu_count(), "torch": torch.__version__,
                                "devices": devices, "loadavg_start": list(load),
                                "cuda": torch.cuda.get_device_name(0) if "cuda" in devices
                                else None},
                    "repeats": repeats, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        result["bare_import_s"] = bare_import(repeats, env)
        inputs = {"tiny": lambda: _write_case(d / "tiny.nii.gz", (16, 16, 4), (1, 1, 4)),
                  "example": lambda: EXAMPLE,
                  "256": lambda: _write_case(d / "c256.nii.gz", (256, 256, 64), (1, 1, 4)),
                  "512": lambda: _write_case(d / "c512.nii.gz", (512, 512, 128),
                                             (0.5, 0.5, 2.0), empty=True)}
        for device in devices:
            for case_name in cases:
                base = case_name.split("-")[0]
                extra = ["--method", "cubic"] if case_name.endswith("-cubic") else []
                if base != "example":
                    extra += ["--scale", "1,1,4"]
                reps = big_repeats if base in ("256", "512") else repeats
                label = {"tiny": "16x16x4 @1x1x4 mm", "example": "example 197x233x47",
                         "256": "256x256x64 @1x1x4 mm",
                         "512": "512x512x128 @0.5x0.5x2 (empty)"}[base]
                label += " cubic" if extra[:1] == ["--method"] else " default"
                row = e2e_case(label, inputs[base](), d / "out.nii.gz", extra, device, reps,
                               env)
                row["key"] = case_name
                result["rows"].append(row)
    rows = {(r["key"], r["device"]): r for r in result["rows"]}
    ratios = {}
    for device in devices:
        for key, target in (("tiny", 1.5), ("tiny-cubic", 1.2)):
            if (key, device) in rows:
                ratios[f"{key}/{device}: wall / bare import (target <= {target})"] = \
                    rows[key, device]["wall"] / result["bare_import_s"]
        if ("example", device) in rows:
            r = rows["example", device]
            ratios[f"example/{device}: wall / network (target <= 1.3)"] = \
                r["wall"] / max(r["parts"]["network"], 1e-9)
        if ("512", device) in rows:
            ratios[f"512/{device}: peak RSS GB (target <= 1.0)"] = rows["512", device][
                "peak_rss_gb"]
    result["ratios"] = ratios
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}", flush=True)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {json_path}")
    return result


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
    ap.add_argument("--kernels", action="store_true",
                    help="the in-process network benchmark (cases A and B, GFLOP/s, bf16)")
    ap.add_argument("--repeats", type=int, default=3, help="end to end: runs per case (best)")
    ap.add_argument("--big-repeats", type=int, default=None,
                    help="end to end: runs of the 256 and 512 cases (default --repeats)")
    ap.add_argument("--cases", nargs="+", default=list(E2E_CASES), choices=E2E_CASES)
    ap.add_argument("--json", type=Path, default=Path(__file__).resolve().parents[1]
                    / "docs/benchmarks/speed.json", help="end to end: where the JSON goes")
    ap.add_argument("--no-json", action="store_true")
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
    if not args.kernels:
        end_to_end(args.repeats, args.cases, None if args.no_json else args.json,
                   args.big_repeats or args.repeats)
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
