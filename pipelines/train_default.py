"""Train the default models that ship in medsr/weights, reproducibly, on offline data.

Data: the MNI152 T1 template (1 mm, inside nilearn), intensities x 1000. Only its
anterior block (y < 110 voxels) is used for training and validation; the posterior block
(y >= 123) is held out for pipelines/benchmark_quality.py.

Each model is a `medsr train` run of a config in configs/default/ (blind degradation:
randomised slice profile, width, image- vs k-space sampling and noise). Runs are
deterministic on CPU for a given thread count (1 per job here), so rerunning this script
regenerates the weights bit for bit on the same software stack. The best checkpoint (by
validation PSNR) is copied to medsr/weights/ with its JSON and a model card.

    python pipelines/train_default.py [--jobs 2] [--only thick_slice_x4,in_plane_x2]
        [--set train.steps=300]   # a quick, weaker rerun
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "default"
WEIGHTS = ROOT / "medsr" / "weights"
MODELS = ["thick_slice_x4", "in_plane_x2", "thick_slice_x2", "in_plane_x4", "thick_slice_x6",
          "thick_slice_x3", "thick_slice_x5"]


def make_training_data(out_dir: Path) -> Path:
    """The anterior block of MNI152 as one NIfTI (the only data the models see)."""
    from medsr import io
    from medsr.data.sources import load_mni152

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "mni152_anterior.nii.gz"
    if not path.exists():
        v = load_mni152(resolution=1)
        data = np.ascontiguousarray(v.data[:, :110, :] * 1000.0, dtype=np.float32)
        io.write(v.with_data(data), path, dtype="float32")
    return out_dir


def train_one(name: str, data_dir: Path, runs: Path, sets: list[str]) -> tuple[str, float, Path]:
    run_dir = runs / name
    if run_dir.exists():
        shutil.rmtree(run_dir)
    cmd = [sys.executable, "-m", "medsr", "train", str(CONFIGS / f"{name}.yaml"),
           "--run-dir", str(run_dir), "--set", f"data.path={data_dir}", "--no-progress"]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    with (runs / f"{name}.log").open("w") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT)
    return name, time.perf_counter() - t0, run_dir


def collect_run(name: str, data_dir: Path, runs: Path, sets: list[str]
                ) -> tuple[str, float, Path]:
    """A finished run; its training time from the run's own files (manifest -> best)."""
    run_dir = runs / name
    best = run_dir / "checkpoints" / "best.safetensors"
    if not best.exists():
        raise SystemExit(f"{run_dir} has no best checkpoint; train it first")
    secs = best.stat().st_mtime - (run_dir / "manifest.json").stat().st_mtime
    return name, secs, run_dir


def model_card(name: str, info: dict, seconds: float, run_dir: Path) -> str:
    rows = [r for r in (run_dir / "metrics.csv").read_text().splitlines()[1:] if r]
    last_val = [r.split(",") for r in rows if r.split(",")[-1]]
    val = f"{float(last_val[-1][-2]):.2f} dB PSNR / {float(last_val[-1][-1]):.4f} SSIM" \
        if last_val else "n/a"
    cfg = json.loads((run_dir / "manifest.json").read_text())["config"]
    smp = cfg["sampling"]
    augment = "".join(
        [f" gamma x ** g, log g uniform in {smp['gamma']};" if smp.get("gamma") else "",
         f" a random smooth look-up table (contrasts may reorder) for {smp['remap']:.0%} of "
         "patches" if smp.get("remap") else ""]).rstrip(";") or " none"
    use = ("one coarse axis: applied on both planes that contain it, fused"
           if info["scale"][0] == 1 else "in-plane, slice by slice")
    return f"""# medsr default model `{name.replace('_', '-')}`

- **Network**: `{info['architecture']}` {json.dumps(info['hparams'])}, 2D, scale
  {info['scale']} per patch axis ({use}).
- **Data**: MNI152 T1 template (ICBM 2009a sym, 1 mm, shipped in nilearn), intensities
  x 1000, anterior block only (y < 110 voxels); slices from orientations
  {cfg['sampling']['axes']}; robust percentile normalisation
  {cfg['data']['normalise']}. The posterior block (y >= 123) is held out for
  `pipelines/benchmark_quality.py`.
- **Intensity augmentation of the HR patch** (before the degradation):{augment}.
- **Degradation (blind, randomised per patch)**: preset `{cfg['degradation']['preset']}`
  with {json.dumps(cfg['degradation']['params'])}.
- **Training**: {cfg['train']['steps']} steps, batch {cfg['sampling']['batch_size']},
  patches {cfg['sampling']['patch_size']}, {cfg['optim']['name']} lr {cfg['optim']['lr']}
  ({cfg['schedule']['name']}), L1 loss, seed {cfg['seed']}, 1 CPU thread:
  {seconds / 60:.1f} minutes on this project's 2-core machine (with another job running).
- **Validation** (held-back patches of the training block, last evaluation): {val}.
- **Regenerate**: `python pipelines/train_default.py --only {name}`.
- **Known limits**: one template (an average brain, smoother than a single scan), T1
  contrast (the intensity augmentation stands in for others); trained on magnitude
  images normalised to [0, 1] by percentiles; other anatomies, contrasts and modalities
  (CT) work but gain less. Use
  `medsr infer --self-supervised` for scans unlike the training data.
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", help="comma-separated model names")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "default")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--collect-only", action="store_true",
                    help="do not train: copy finished runs from --runs into medsr/weights")
    args = ap.parse_args(argv)
    names = args.only.split(",") if args.only else MODELS
    args.runs.mkdir(parents=True, exist_ok=True)
    data_dir = make_training_data(args.runs / "data")
    WEIGHTS.mkdir(exist_ok=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(collect_run if args.collect_only else train_one, n, data_dir,
                               args.runs, args.sets) for n in names]
        for fut in futures:
            name, secs, run_dir = fut.result()
            src = run_dir / "checkpoints" / "best.safetensors"
            shutil.copyfile(src, WEIGHTS / f"{name}.safetensors")
            info = json.loads(src.with_suffix(".json").read_text())
            info["name"] = name.replace("_", "-")
            info["training_seconds"] = round(secs, 1)
            (WEIGHTS / f"{name}.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
            (WEIGHTS / f"{name}.md").write_text(model_card(name, info, secs, run_dir))
            print(f"{name}: {secs / 60:.1f} min -> {WEIGHTS / (name + '.safetensors')}",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
