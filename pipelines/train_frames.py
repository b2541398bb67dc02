"""Train the shipped frames model ``frames-x4``: 2D in-plane x4 on luma (Y), offline.

Data (see pipelines/frames_data.py): the 160 training faces of scikit-image's
``lfw_subset`` (grey, 25 x 25, tiled into one 250 x 400 mosaic so that patches can be
larger than a face) and its training natural images, converted to BT.601 luma (Y in
16..235) and written as float32 TIFFs into ``--data``; the held-out faces and
photos stay out for pipelines/benchmark_quality_frames.py. Degradation: the classic
antialiased bicubic x4, half of the patches clean and half with Gaussian noise (sigma
0.5% or 1% of the range), so the model serves clean and mildly noisy frames.
Config: configs/frames_x4.yaml.

``--multi-frame`` trains ``frames-x4-mf`` instead, the multi-frame variant (neighbouring
frames as input channels, :mod:`medsr.inference.multiframe`): the same pictures become synthetic
frame stacks under camera motion (whole-HR-pixel translations, so the x4 LR frames see
different sub-pixel phases; ``frames_data.shifted_stack``), written as (Y, X, T) float32
TIFFs into ``runs/data/frames_mf``, and sampled in 2.5D along the frame axis.
Config: configs/frames_x4_mf.yaml.

    python pipelines/train_frames.py [--multi-frame] [--steps N] [--run-dir DIR]
                                     [--config FILE] [--opencv-photos] [--wallpaper-photos]
                                     [--no-install]
                                     [--set KEY=VALUE ...]
    python pipelines/train_frames.py [--multi-frame] --install-from RUN_DIR

The best checkpoint (validation PSNR) is copied to medsr/weights/frames_x4.safetensors
(or frames_x4_mf.safetensors) (+ .json) with a model card (.md).
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

from medsr.adapters.colour import luma  # noqa: E402
from medsr.cli.train import add_run_arguments  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "frames_x4.yaml"
CONFIG_MF = ROOT / "configs" / "frames_x4_mf.yaml"
MF_FRAMES = 9      # frames per synthetic stack
MF_SEED = 0        # motion of the synthetic stacks


HALF_MIN_SIZE = 400   # pictures at least this large also train at half size


def training_pictures(photo_sets: tuple[str, ...] = ()) -> list[tuple[str, np.ndarray]]:
    """(name, luma (H, W) float) of every training picture: the faces mosaic,
    frames_data.TRAIN_NATURAL (and the pictures of each of ``photo_sets``, names of
    frames_data.PHOTO_SETS), and
    a half-size copy (antialiased) of each natural picture of at least HALF_MIN_SIZE
    pixels a side, whose detail per pixel is closer to that of small photos and video
    frames (the usual multi-scale augmentation of SR training)."""
    from skimage.transform import rescale

    f = frames_data.faces()[:frames_data.N_TRAIN_FACES] * 255.0   # (160, 25, 25) grey
    rows = 10
    mosaic = np.concatenate([np.concatenate(list(f[r::rows]), axis=1) for r in range(rows)],
                            axis=0)                                  # (250, 400)
    out = [("faces", mosaic)]
    extra = tuple(n for s in photo_sets for n in frames_data.PHOTO_SETS[s][0])
    for name in frames_data.TRAIN_NATURAL + extra:
        y = luma(frames_data.natural(name))
        name = name.replace(":", "_")
        out.append((name, y))
        if min(y.shape) >= HALF_MIN_SIZE and name != frames_data.VAL_NATURAL:
            out.append((f"{name}_half", rescale(y, 0.5, order=3, anti_aliasing=True)))
    return out


def write_data(folder: Path, multi_frame: bool = False,
               photo_sets: tuple[str, ...] = ()) -> list[Path]:
    """The luma training volumes as float32 TIFFs in ``folder`` (rewritten each time):
    one plane per picture, or with ``multi_frame`` one synthetic stack of MF_FRAMES."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    rng = np.random.default_rng(MF_SEED)
    paths = []
    for name, y in training_pictures(photo_sets):
        arr = (frames_data.shifted_stack(y, MF_FRAMES, rng) if multi_frame
               else y[..., None])
        paths.append((name, arr))
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


def frames_card(cfg: dict, summary: dict, minutes: float, n_files: int,
                multi_frame: bool = False, photo_sets: tuple[str, ...] = (),
                command: list[str] | None = None) -> str:
    """The model card (markdown) of a frames-x4 (or frames-x4-mf) training run;
    ``command``: the pipeline's arguments that trained it (its reproduce line)."""
    r = int(cfg["sampling"]["context"])
    head = ("""# frames-x4

2D in-plane x4 super-resolution of frames and pictures, applied to luma (BT.601 Y);
chroma is upsampled by bicubic (`medsr.adapters.colour.super_resolve_colour`).
""" if not multi_frame else f"""# frames-x4-mf

Multi-frame 2D in-plane x4 super-resolution of frame stacks and video, applied to luma
(BT.601 Y): the network reads frames t-{r}..t+{r} as {2 * r + 1} input channels and
predicts frame t (edge frames repeated at the ends of a stack; `medsr.inference.multiframe`).
Chroma is upsampled by bicubic. Use it with `--model frames-x4-mf`; it is not the default.
Trained on synthetic stacks: each training picture translated by whole HR pixels per
frame (drift up to 0.5 px/frame + Gaussian shake of 1.2 px, {MF_FRAMES} frames, seed
{MF_SEED}), i.e. global camera motion; large or non-rigid motion gives it nothing to use.
""")
    deg = cfg["degradation"]["params"]
    sig = (deg.get("sigma") or {}).get("choice") if isinstance(deg.get("sigma"), dict) else None
    noise = (f"Gaussian noise sigma drawn from {sig} (fraction of the range)" if sig
             else "no noise")
    photos = "".join(f"\n  and {what}:\n  " + ", ".join(n.split(":", 1)[1] for n in names) + ";"
                     for names, what in (frames_data.PHOTO_SETS[s] for s in photo_sets))
    precision = ("bfloat16 autocast (float32 weights)" if cfg["train"]["amp"] == "bf16"
                 else "float32")
    down = {"area": "4 x 4 pixel means (sensor integration, aliased)"}.get(
        deg.get("downsample"), "antialiased bicubic")
    return head + f"""
- architecture: {cfg['model']['name']} {cfg['model']['hparams']}, scale (4, 4)
- data: scikit-image `lfw_subset` faces 0..159 (as one mosaic) and
  {', '.join(n for n in frames_data.TRAIN_NATURAL if n != frames_data.VAL_NATURAL)},{photos}
  those of at least {HALF_MIN_SIZE} px a side also at half size ({n_files} volumes, luma);
  validation (checkpoint choice): {frames_data.VAL_NATURAL}; held out: faces 160..199,
  {', '.join(frames_data.HELDOUT_NATURAL)}
- degradation: {down} x4; {noise}
- normalisation: percentiles {cfg['data']['normalise']}
- training: {summary['steps']} steps, batch {cfg['sampling']['batch_size']}, patch
  {cfg['sampling']['patch_size']}, L1 loss, Adam lr {cfg['optim']['lr']} with
  {cfg['schedule']['name']} decay, {precision}, {minutes:.1f} min on
  {cfg['num_threads']} CPU thread(s), seed {cfg['seed']};
  best validation PSNR {summary['best_psnr']:.2f} dB at step {summary['best_step']}
- reproduce: `python {' '.join(command or ['pipelines/train_frames.py'])}`; benchmark:
  `python pipelines/benchmark_quality_frames.py`
- limits: trained on small grey faces and a few dozen photographs on one CPU thread; not
  a face hallucination model, not for heavy compression artefacts.
"""


def heldout_section(multi_frame: bool) -> str:
    """The model card's held-out numbers, measured now by
    pipelines/benchmark_quality_frames.py on the installed weights."""
    import benchmark_quality_frames as bench

    lines = ["", "## Held-out benchmark (pipelines/benchmark_quality_frames.py)", ""]
    if multi_frame:
        lines.append("PSNR on Y (mean of 9 frames), synthetic camera-shake stacks, LR = 4 x 4 "
                     "pixel means (8-bit); bicubic / frames-x4 / frames-x4-mf / frames-x4-mf "
                     "with the neighbours replaced by the centre frame:")
        for case, noise in (("clean", 0.0), ("1% noise", 0.01)):
            for img, per in bench.multiframe_cases(noise).items():
                lines.append(f"- {img}, {case}: " + " / ".join(
                    f"{per[m]['psnr_y']:.2f}" for m in ("bicubic", "medsr", "medsr-mf",
                                                         "medsr-mf-centre")) + " dB")
    else:
        lines.append("PSNR on Y, bicubic (Catmull-Rom) -> frames-x4, LR by antialiased "
                     "bicubic x4 (8-bit):")
        clean, noisy = bench.frames_cases(0.0), bench.frames_cases(0.01)
        for img in clean:
            c, n = clean[img], noisy[img]
            lines.append(f"- {img}: {c['bicubic']['psnr_y']:.2f} -> {c['medsr']['psnr_y']:.2f} "
                         f"dB (with 1% noise: {n['bicubic']['psnr_y']:.2f} -> "
                         f"{n['medsr']['psnr_y']:.2f} dB)")
    return "\n".join(lines) + "\n"


def parse_args(doc: str, name: str, data: str, argv: list[str] | None,
               multi_frame: bool = False) -> argparse.Namespace:
    """The command line shared by the frames and microscopy training pipelines."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    if multi_frame:
        ap.add_argument("--multi-frame", action="store_true",
                        help="train frames-x4-mf (neighbouring frames as channels)")
    ap.add_argument("--config", help="another training config (default: the shipped one)")
    ap.add_argument("--steps", type=int, help="override train.steps")
    add_run_arguments(ap, run_dir=f"runs/{name}")
    ap.add_argument("--data", help=f"default runs/data/{data}")
    ap.add_argument("--no-install", action="store_true", help="do not copy into medsr/weights")
    if multi_frame:
        for s, (_, what) in frames_data.PHOTO_SETS.items():  # --opencv-photos ...
            ap.add_argument(f"--{s}-photos", action="store_true",
                            help=f"also train on {' '.join(what.split())}")
        ap.add_argument("--install-from", metavar="RUN_DIR",
                        help="do not train: install the best checkpoint of a finished run")
    args = ap.parse_args(argv)
    mf = getattr(args, "multi_frame", False)
    args.run_dir = args.run_dir or str(ROOT / "runs" / (f"{name}_mf" if mf else name))
    args.photo_sets = tuple(s for s in frames_data.PHOTO_SETS
                            if getattr(args, f"{s}_photos", False))
    if not args.data:  # each set of pictures gets its own folder: sets never mix
        sub = "frames_mf" if mf else data
        args.data = str(ROOT / "runs" / "data" / "_".join((sub, *args.photo_sets)))
    return args


def run_training(config: Path, args: argparse.Namespace, what: str,
                 extra: list[str] | None = None) -> tuple[dict, dict, float]:
    """Train ``config`` on ``args.data`` into ``args.run_dir``: (config, summary, minutes).

    ``extra`` are pipeline overrides applied before the user's ``--set`` items."""
    from medsr.training.config import load_config
    from medsr.training.loop import train

    sets = [f"data.path={args.data}", *(extra or [])]
    if args.steps:
        sets.append(f"train.steps={args.steps}")
    sets += list(getattr(args, "sets", []) or [])
    cfg = load_config(config, sets)
    t0 = time.perf_counter()
    summary = train(cfg, args.run_dir, progress=False)
    minutes = (time.perf_counter() - t0) / 60
    print(f"trained {summary['steps']} steps in {minutes:.1f} min; best val PSNR "
          f"{summary['best_psnr']:.2f} dB ({what}) at step {summary['best_step']}")
    return cfg, summary, minutes


def finished_run(run_dir: Path) -> tuple[dict, dict, float]:
    """(config, summary, minutes) of a finished training run in ``run_dir``, as
    :func:`run_training` returns them: the manifest's config, the last and best
    validation rows of metrics.csv (and the command that trained it), and the wall time
    from the manifest to the last checkpoint (for runs trained earlier, or resumed
    across sessions)."""
    import csv
    import json

    manifest = run_dir / "manifest.json"
    last = run_dir / "checkpoints" / "last.safetensors"
    if not manifest.is_file() or not last.is_file():
        raise SystemExit(f"{run_dir} holds no finished training run")
    meta = json.loads(manifest.read_text())
    cfg = meta["config"]
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f)]
    val = [r for r in rows if r.get("val_psnr")]
    best = max(val, key=lambda r: float(r["val_psnr"]))
    summary = {"steps": int(rows[-1]["step"]), "best_psnr": float(best["val_psnr"]),
               "best_step": int(best["step"]), "best": str(last.with_name("best.safetensors")),
               "command": meta["command"]}
    minutes = (last.stat().st_mtime - manifest.stat().st_mtime) / 60
    return cfg, summary, minutes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, "frames_x4", "frames_y", argv, multi_frame=True)
    mf = args.multi_frame
    if args.install_from:
        cfg, summary, minutes = finished_run(Path(args.install_from))
        command = summary["command"]
        files = sorted(Path(cfg["data"]["path"]).glob(cfg["data"]["pattern"]))
        photo_sets = tuple(s for s in frames_data.PHOTO_SETS
                           if any(f.name.startswith(f"{s}_") for f in files))
    else:
        photo_sets = args.photo_sets
        command = ["pipelines/train_frames.py", *(sys.argv[1:] if argv is None else argv)]
        files = write_data(Path(args.data), multi_frame=mf, photo_sets=photo_sets)
        val = Path(args.data) / f"{frames_data.VAL_NATURAL}.tif"
        config = Path(args.config) if args.config else (CONFIG_MF if mf else CONFIG)
        cfg, summary, minutes = run_training(config, args, "normalised Y",
                                             [f"data.val_paths=['{val}']"])
    if not args.no_install:
        card = frames_card(cfg, summary, minutes, len(files), multi_frame=mf,
                           photo_sets=photo_sets, command=command)
        name = "frames_x4_mf" if mf else "frames_x4"
        dst = install(Path(summary["best"]), name, card)
        dst.with_suffix(".md").write_text(card + heldout_section(mf), encoding="utf-8")
        print("installed", dst)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
