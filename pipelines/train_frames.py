"""Train the shipped frames model ``frames-x4``: 2D in-plane x4 on luma (Y), offline.

Data (see pipelines/frames_data.py): the 160 training faces of scikit-image's
``lfw_subset`` (grey, 25 x 25, tiled into one 250 x 400 mosaic so that patches can be
larger than a face) and its training natural images, converted to BT.601 luma (Y in
16..235) and written as float32 TIFFs into ``--data``; the held-out faces and
photos stay out for pipelines/benchmark_quality_frames.py. Degradation: the classic
antialiased bicubic x4, half of the patches clean and half with Gaussian noise (sigma
0.5% or 1% of the range), so the model serves clean and mildly noisy frames.
Config: configs/frames_x4.yaml.

    python pipelines/train_frames.py [--steps N] [--run-dir DIR] [--no-install]

The best checkpoint (validation PSNR) is copied to medsr/weights/frames_x4.safetensors
(+ .json) with a model card (.md).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import frames_data  # noqa: E402

from medsr.colour import luma  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "frames_x4.yaml"


def write_data(folder: Path) -> list[Path]:
    """The luma training volumes as float32 TIFFs in ``folder`` (rewritten each time)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    f = frames_data.faces()[:frames_data.N_TRAIN_FACES] * 255.0   # (160, 25, 25) grey
    rows = 10
    mosaic = np.concatenate([np.concatenate(list(f[r::rows]), axis=1) for r in range(rows)],
                            axis=0)                                  # (250, 400)
    paths = [("faces", mosaic[..., None])]
    for name in frames_data.TRAIN_NATURAL:
        paths.append((name, luma(frames_data.natural(name))[..., None]))
    for name, arr in paths:
        p = folder / f"{name}.tif"
        # (Y, X, Z) -> file ZYX
        tifffile.imwrite(p, np.moveaxis(arr.astype(np.float32), -1, 0), imagej=True,
                         metadata={"axes": "ZYX"})
        out.append(p)
    return out


def install(best: Path, name: str, card: str) -> Path:
    """Copy a checkpoint (+ .json) into medsr/weights and write its model card."""
    dst = ROOT / "medsr" / "weights" / f"{name}.safetensors"
    dst.parent.mkdir(exist_ok=True)
    shutil.copyfile(best, dst)
    shutil.copyfile(best.with_suffix(".json"), dst.with_suffix(".json"))
    dst.with_suffix(".md").write_text(card, encoding="utf-8")
    return dst


def frames_card(cfg: dict, summary: dict, minutes: float, n_files: int) -> str:
    """The model card (markdown) of a frames-x4 training run."""
    return f"""# frames-x4

2D in-plane x4 super-resolution of frames and pictures, applied to luma (BT.601 Y);
chroma is upsampled by bicubic (`medsr.colour.super_resolve_colour`).

- architecture: {cfg['model']['name']} {cfg['model']['hparams']}, scale (4, 4)
- data: scikit-image `lfw_subset` faces 0..159 (as one mosaic) and
  {', '.join(frames_data.TRAIN_NATURAL)}
  ({n_files} volumes, luma); held out: faces 160..199, {', '.join(frames_data.HELDOUT_NATURAL)}
- degradation: antialiased bicubic x4; Gaussian noise sigma 0 (half the patches), 0.5% or 1%
  of the range
- normalisation: percentiles {cfg['data']['normalise']}
- training: {summary['steps']} steps, batch {cfg['sampling']['batch_size']}, patch
  {cfg['sampling']['patch_size']}, {minutes:.1f} min on 1 CPU thread, seed {cfg['seed']};
  best validation PSNR {summary['best_psnr']:.2f} dB at step {summary['best_step']}
- reproduce: `python pipelines/train_frames.py`; benchmark:
  `python pipelines/benchmark_quality_frames.py`
- limits: trained on small grey faces and a dozen photographs for a few minutes; not a
  face hallucination model, not for heavy compression artefacts.
"""


def parse_args(doc: str, name: str, data: str, argv: list[str] | None) -> argparse.Namespace:
    """The command line shared by the frames and microscopy training pipelines."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--steps", type=int, help="override train.steps")
    ap.add_argument("--run-dir", default=str(ROOT / "runs" / name))
    ap.add_argument("--data", default=str(ROOT / "runs" / "data" / data))
    ap.add_argument("--no-install", action="store_true", help="do not copy into medsr/weights")
    return ap.parse_args(argv)


def run_training(config: Path, args: argparse.Namespace, what: str) -> tuple[dict, dict, float]:
    """Train ``config`` on ``args.data`` into ``args.run_dir``: (config, summary, minutes)."""
    from medsr.engine.config import load_config
    from medsr.engine.train import train

    sets = [f"data.path={args.data}"]
    if args.steps:
        sets.append(f"train.steps={args.steps}")
    cfg = load_config(config, sets)
    t0 = time.perf_counter()
    summary = train(cfg, args.run_dir, progress=False)
    minutes = (time.perf_counter() - t0) / 60
    print(f"trained {summary['steps']} steps in {minutes:.1f} min; best val PSNR "
          f"{summary['best_psnr']:.2f} dB ({what}) at step {summary['best_step']}")
    return cfg, summary, minutes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, "frames_x4", "frames_y", argv)
    files = write_data(Path(args.data))
    cfg, summary, minutes = run_training(CONFIG, args, "normalised Y")
    if not args.no_install:
        card = frames_card(cfg, summary, minutes, len(files))
        print("installed", install(Path(summary["best"]), "frames_x4", card))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
