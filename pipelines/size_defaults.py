"""Size the default networks by measurement (issue 23 item 4): quality against CPU time.

Each candidate architecture of the zoo is trained from scratch on the in-plane x2
default's recipe (configs/default/in_plane_x2.yaml: data, blind degradation,
noise-faithful targets) for the same single-thread CPU time: its step count is the
budget divided by its own training-step time, measured here first. One training subject,
Colin27, is left out of these runs and is the development set they are scored on:
its central block acquired in-plane x2 from first principles (Gaussian FWHM = 2 voxels
or a 2 x 2 block average, point-sampled; ``pipelines/benchmark_real.py``'s ``degrade``),
PSNR / SSIM against cubic, and the CPU time of that inference (one thread).

    python pipelines/size_defaults.py [--budget 900] [--jobs 2] [--only a,b]
Writes docs/benchmarks/default_sizes.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "sizing"
HELD = "colin27_t1"  # left out of the sizing runs: their development set
CANDIDATES = {  # label: (architecture, hyper-parameters)
    "sp_vdsr 10x32": ("sp_vdsr", {"depth": 10, "features": 32}),
    "sp_vdsr 10x48": ("sp_vdsr", {"depth": 10, "features": 48}),
    "sp_vdsr 16x48": ("sp_vdsr", {"depth": 16, "features": 48}),
    "edsr 8x48": ("edsr", {"n_blocks": 8, "features": 48, "interpolation": "lanczos"}),
}


def step_seconds(arch: str, hp: dict, repeats: int = 6) -> tuple[int, float]:
    """(parameters, seconds of one training step: batch 16, 24 -> 48 patches, Adam, one
    thread; the median of ``repeats`` after a warm-up)."""
    import torch

    from medsr import models

    torch.set_num_threads(1)
    torch.manual_seed(0)
    m = models.create(arch, spatial_dims=2, scale=(2, 2), in_channels=1, out_channels=1, **hp)
    opt = torch.optim.Adam(m.parameters())
    x, y = torch.rand(16, 1, 24, 24), torch.rand(16, 1, 48, 48)
    ts = []
    for _ in range(repeats + 1):
        t = time.process_time()
        opt.zero_grad()
        (m(x) - y).abs().mean().backward()
        opt.step()
        ts.append(time.process_time() - t)
    return sum(p.numel() for p in m.parameters()), float(np.median(ts[1:]))


def config_for(label: str, steps: int, data_dir: Path) -> Path:
    import yaml

    arch, hp = CANDIDATES[label]
    cfg = yaml.safe_load((ROOT / "configs/default/in_plane_x2.yaml").read_text())
    cfg["model"] = {"name": arch, "scale": [2, 2], "hparams": hp}
    cfg["data"]["path"] = str(data_dir)
    cfg["train"].update({"steps": int(steps), "val_every": max(100, steps // 4),
                         "ckpt_every": max(100, steps // 4)})
    out = RUNS / f"{label.replace(' ', '_')}.yaml"
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


def sizing_data() -> Path:
    """The training volumes without the development subject (symbolic links)."""
    sys.path.insert(0, str(ROOT / "pipelines"))
    import real_data

    out = RUNS / "data"
    out.mkdir(parents=True, exist_ok=True)
    for f in real_data.training_files():
        if not f.name.startswith(HELD):
            link = out / f.name
            if not link.exists():
                link.symlink_to(f.resolve())
    return out


def train(label: str, steps: int, data_dir: Path) -> Path:
    run = RUNS / label.replace(" ", "_")
    cfg = config_for(label, steps, data_dir)
    with (RUNS / f"{run.name}.log").open("w") as log:
        subprocess.run([sys.executable, "-m", "medsr", "train", str(cfg), "--run-dir", str(run),
                        "--no-progress"], check=True, stdout=log, stderr=subprocess.STDOUT)
    return run / "checkpoints" / "best.safetensors"


def score(weights: Path | None, label: str) -> dict:
    """PSNR / SSIM on the development subject, in-plane x2, both profiles, and the CPU
    seconds of the inference (one thread); ``weights`` None: cubic."""
    import benchmark_real as br
    import torch

    from medsr import io
    from medsr.geometry import plan_grid
    from medsr.inference.resolvers import model_passes
    from medsr.pipeline import super_resolve_volume

    torch.set_num_threads(1)
    v = io.read(ROOT / "runs/data/real/train" / f"{HELD}.nii.gz")
    data = np.asarray(v.data, dtype=np.float32)[10:170, 20:196, 40:140]  # central block
    ref = v.with_data(np.ascontiguousarray(data))
    out = {"candidate": label}
    for profile in ("gaussian", "box"):
        lr = br.degrade(ref, (2, 2, 1), profile)
        plan = plan_grid(lr, scale=(2, 2, 1))
        t = time.process_time()
        if weights is None:
            sr = super_resolve_volume(lr, plan, method="cubic", progress=False).volume
        else:
            sr = super_resolve_volume(lr, plan, passes=model_passes(plan, weights, "cpu"),
                                      device="cpu", progress=False).volume
        out[f"cpu_s_{profile}"] = time.process_time() - t
        s = br.scores(np.asarray(ref.data), np.asarray(sr.data, dtype=np.float32))
        out[f"psnr_{profile}"], out[f"ssim_{profile}"] = s["psnr"], s["ssim"]
    return out


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT / "pipelines"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=900.0,
                    help="single-thread CPU seconds of training per candidate")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", help="comma-separated candidate labels")
    ap.add_argument("--json", type=Path, default=ROOT / "docs/benchmarks/default_sizes.json")
    args = ap.parse_args(argv)
    labels = args.only.split(",") if args.only else list(CANDIDATES)
    RUNS.mkdir(parents=True, exist_ok=True)
    data_dir = sizing_data()
    cost = {lab: step_seconds(*CANDIDATES[lab]) for lab in labels}
    steps = {lab: int(args.budget / cost[lab][1]) for lab in labels}
    for lab in labels:
        print(f"{lab}: {cost[lab][0]:,} parameters, {cost[lab][1]:.3f} s a step -> "
              f"{steps[lab]} steps", flush=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        ckpts = dict(zip(labels, pool.map(lambda lab: train(lab, steps[lab], data_dir),
                                          labels)))
    rows = [score(None, "cubic")]
    for lab in labels:
        rows.append({**score(ckpts[lab], lab), "parameters": cost[lab][0],
                     "step_s": cost[lab][1], "steps": steps[lab]})
    cubic = rows[0]
    print(f"\nbudget {args.budget:g} CPU s of training each; development set: {HELD} "
          "(left out), in-plane x2\n")
    print("| candidate | parameters | step (s) | steps | Gaussian PSNR / SSIM | box PSNR / SSIM "
          "| mean - cubic (dB) | inference CPU (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        gain = np.mean([r[f"psnr_{p}"] - cubic[f"psnr_{p}"] for p in ("gaussian", "box")])
        print(f"| {r['candidate']} | {r.get('parameters', '-'):,} | {r.get('step_s', 0):.3f} | "
              f"{r.get('steps', '-')} | {r['psnr_gaussian']:.2f} / {r['ssim_gaussian']:.3f} | "
              f"{r['psnr_box']:.2f} / {r['ssim_box']:.3f} | {gain:+.2f} | "
              f"{r['cpu_s_gaussian']:.1f} |" if "parameters" in r else
              f"| cubic | - | - | - | {r['psnr_gaussian']:.2f} / {r['ssim_gaussian']:.3f} | "
              f"{r['psnr_box']:.2f} / {r['ssim_box']:.3f} | +0.00 | {r['cpu_s_gaussian']:.1f} |")
    args.json.write_text(json.dumps({"budget_s": args.budget, "development_set": HELD,
                                     "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
