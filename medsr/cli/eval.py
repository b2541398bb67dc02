"""``medsr eval``: per-volume PSNR / SSIM / NRMSE.

Two modes:
  medsr eval --reference HR [HR ...] --test SR [SR ...] [--mask M | --auto-mask] ...
  medsr eval (--run DIR | --model PATH) --data HR [HR ...] [--out DIR] ...
The first compares files (medsr.evaluation); the second degrades, super-resolves and
scores a trained model against the interpolation baselines (medsr.engine.evaluate).
"""

from __future__ import annotations

import argparse
import os
import sys

from medsr.cli.args import int_in_range
from medsr.errors import UserError
from medsr.extras import available, install_hint, require


def add_arguments(p: argparse.ArgumentParser) -> None:
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

    # Model mode: the options of medsr.engine.evaluate.evaluate_model_cli. Declared here
    # rather than imported so that building the parser does not import torch.
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


def _run_model(args: argparse.Namespace) -> int:
    if args.reference or args.test:
        raise UserError("--reference/--test compare files; --run/--model evaluate a model: "
                        "use one mode")
    if not args.no_figures:
        require("figures", "medsr eval --run/--model (its figures; --no-figures skips them)")
    if any(str(d).startswith("mni152:") for d in args.data or []):
        require("train", "medsr eval --data mni152:...")
    try:
        from medsr.engine.evaluate import evaluate_model_cli
    except ImportError as exc:
        if exc.name not in (None, "medsr.engine.evaluate", "medsr.engine"):
            raise
        raise UserError("model evaluation is not available yet") from exc
    return int(evaluate_model_cli(args) or 0)


def _write(path: str, text: str, overwrite: bool, inputs: list[str]) -> None:
    from medsr.io.common import atomic_path, check_output

    out = check_output(path, overwrite, inputs)
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _inputs(args: argparse.Namespace) -> list[str]:
    """Every file the comparison reads: an output may replace none of them."""
    return [*(args.reference or []), *(args.test or []), *(args.mask or [])]


def _crop_checked(crop: int):
    """medsr.io.read that refuses a volume --crop would leave uncropped on every axis."""
    from medsr.io import read

    def reader(path):
        vol = read(path)
        if crop and not any(n > 2 * crop for n in vol.spatial_shape):
            raise UserError(f"--crop {crop} is too large for {path} (shape "
                            f"{list(vol.spatial_shape)}): no axis is longer than 2 x {crop}")
        return vol
    return reader


def _figure_path(args: argparse.Namespace) -> str | None:
    """--figure, else the --json (or --csv) path with .png; None without them or with
    --no-figure. It may not name an input file."""
    if getattr(args, "no_figure", False):
        return None
    path = getattr(args, "figure", None)
    if path is None:
        base = args.json or args.csv
        if not base:
            return None
        path = os.path.splitext(base)[0] + ".png"
    files = [*(args.reference or []), *(args.test or []), *(args.mask or [])]
    if any(os.path.abspath(path) == os.path.abspath(f) for f in files):
        raise UserError(f"the figure {path} would replace an input; give --figure PATH")
    return path


def run(args: argparse.Namespace) -> int:
    if args.run or args.model:
        return _run_model(args)
    if args.data:
        raise UserError("--data needs --run DIR or --model PATH; to compare files use "
                        "--reference HR ... --test SR ...")
    if not args.reference or not args.test:
        raise UserError("give --reference HR ... and --test SR ... (or --run/--model with --data)")
    from medsr.io.common import check_output

    if args.json and args.csv and os.path.abspath(args.json) == os.path.abspath(args.csv):
        raise UserError(f"--json and --csv both name {args.csv}; give them different files")
    for path in (args.json, args.csv):  # fail before the work, not after
        if path:
            check_output(path, args.overwrite, _inputs(args))
    figure = _figure_path(args)
    if figure and args.figure:
        require("figures", "medsr eval --figure")
    elif figure and not available("figures"):  # the implicit figure beside --json/--csv
        print(f"medsr: note: no figure: matplotlib is not installed ({install_hint('figures')})",
              file=sys.stderr)
        figure = None
    if figure:
        check_output(figure, args.overwrite)
    from medsr.evaluation import evaluate_files

    result = evaluate_files(args.reference, args.test, masks=args.mask,
                            auto_mask=args.auto_mask, crop=args.crop,
                            reader=_crop_checked(args.crop),
                            data_range=args.data_range, ssim_mode=args.ssim_mode,
                            ssim_axis=args.ssim_axis, labels=args.label,
                            previews=figure is not None)
    from rich.console import Console

    Console(soft_wrap=False, width=max(100, Console().width)).print(result.table())
    if args.json:
        _write(args.json, result.to_json(), args.overwrite, _inputs(args))
    if args.csv:
        _write(args.csv, result.to_csv(), args.overwrite, _inputs(args))
    if figure:
        print(f"figure: {result.figure(figure)}")
    return 0
