"""``medsr eval``: per-volume PSNR / SSIM / NRMSE.

Two modes:
  medsr eval --reference HR [HR ...] --test SR [SR ...] [--mask M | --auto-mask] ...
  medsr eval (--run DIR | --model PATH) --data HR [HR ...] [--out DIR] ...
The first compares files (medsr.evaluation.compare); the second degrades, super-resolves
and scores a trained model against the interpolation baselines
(medsr.evaluation.benchmark). This module parses; :func:`medsr.evaluation.evaluate_command`
does the rest.
"""

from __future__ import annotations

import argparse

from medsr import evaluation
from medsr.cli.args import int_in_range


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of both modes."""
    g = p.add_argument_group("reference / test files")
    g.add_argument("--reference", nargs="+", metavar="HR", help="reference (ground-truth) volumes")
    g.add_argument("--test", nargs="+", metavar="SR",
                   help="volumes to score, paired with --reference by position")
    m = g.add_mutually_exclusive_group()
    m.add_argument("--mask", nargs="+", metavar="M",
                   help="mask volume(s), voxels > 0 scored: one for all or one per volume")
    m.add_argument("--auto-mask", action="store_true",
                   help="score the automatic foreground of each reference (Otsu)")
    g.add_argument("--crop", type=int_in_range(0, 2**31 - 1), default=0, metavar="N",
                   help="leave N border voxels out of every axis longer than 2N (default 0)")
    g.add_argument("--data-range", type=float, metavar="R",
                   help="intensity range for PSNR/SSIM (default: each reference's max - min)")
    g.add_argument("--ssim-mode", choices=("3d", "2d"), default="3d",
                   help="3D SSIM, or the mean 2D SSIM of the slices along --ssim-axis")
    g.add_argument("--ssim-axis", type=int, choices=(0, 1, 2), default=2,
                   help="slice normal for --ssim-mode 2d (default 2)")
    g.add_argument("--json", metavar="FILE", help="write one record per volume plus a summary")
    g.add_argument("--csv", metavar="FILE", help="write one row per volume plus mean and std")
    g.add_argument("--overwrite", action="store_true",
                   help="replace existing --json/--csv/--figure files (or the --out "
                        "folder a previous medsr eval wrote)")
    g.add_argument("--label", nargs="+", metavar="NAME",
                   help="the method of each --test file, one per file (default: from the file "
                        "names); the tables give one mean row per method")
    fg = g.add_mutually_exclusive_group()
    fg.add_argument("--figure", metavar="PNG",
                    help="write a figure: PSNR/SSIM per volume and method, and reference / "
                         "test / error slices (default: beside --json or --csv, as .png)")
    fg.add_argument("--no-figure", action="store_true", help="write no figure")

    # Model mode: the options of medsr.evaluation.benchmark.benchmark_command. Declared
    # here so that building the parser does not import torch.
    r = p.add_argument_group("model evaluation: (--run DIR | --model PATH) --data HR ...")
    who = r.add_mutually_exclusive_group()
    who.add_argument("--run", metavar="DIR", help="a training run directory (best checkpoint)")
    who.add_argument("--model", metavar="PATH", help="a checkpoint (.safetensors)")
    r.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="which checkpoint of --run (default best)")
    r.add_argument("--data", nargs="+", metavar="HR", help="HR volumes: files, globs or folders")
    r.add_argument("--lr-data", nargs="+", help="paired LR volumes (skip the degradation)")
    r.add_argument("--degradation", help="a preset name (default: the one trained with)")
    r.add_argument("--axis", type=int, choices=(0, 1, 2), help="slice normal for 2D models")
    r.add_argument("--out", metavar="DIR", help="folder for tables and figures "
                                                "(default RUN/eval or ./medsr-eval)")
    r.add_argument("--no-figures", action="store_true", help="skip the per-volume figures")
    r.add_argument("--seed", type=int, default=0, help="seed of the degradation")
    r.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))


def options(args: argparse.Namespace) -> evaluation.EvalOptions:
    """The parsed flags as :class:`medsr.evaluation.EvalOptions`."""
    return evaluation.EvalOptions(
        reference=args.reference, test=args.test, mask=args.mask, auto_mask=args.auto_mask,
        crop=args.crop, data_range=args.data_range, ssim_mode=args.ssim_mode,
        ssim_axis=args.ssim_axis, json=args.json, csv=args.csv, overwrite=args.overwrite,
        label=args.label, figure=args.figure, no_figure=args.no_figure, run=args.run,
        model=args.model, checkpoint=args.checkpoint, data=args.data, lr_data=args.lr_data,
        degradation=args.degradation, axis=args.axis, out=args.out,
        no_figures=args.no_figures, seed=args.seed, device=args.device)


def run(args: argparse.Namespace) -> int:
    """``medsr eval``: the exit code."""
    return int(evaluation.evaluate_command(options(args)))
