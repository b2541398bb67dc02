"""``medsr train CONFIG.yaml [--run-dir DIR] [--set key=value ...] [--resume DIR]``: parse,
then :func:`medsr.training.train_from_config`."""

from __future__ import annotations

import argparse
import sys

from medsr.extras import require


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="YAML config (see configs/ and docs/training.md)")
    add_run_arguments(parser)
    parser.add_argument("--resume", metavar="DIR",
                        help="continue the run in DIR from its last checkpoint")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar (default: when stderr is a terminal)")


def add_run_arguments(parser: argparse.ArgumentParser,
                      run_dir: str = "runs/<config>-<time>") -> None:
    """``--run-dir`` (default ``run_dir``) and the repeatable ``--set KEY=VALUE`` (into
    ``sets``): shared by ``medsr train`` and the training pipelines."""
    parser.add_argument("--run-dir", help=f"where the run is written (default {run_dir})")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.steps=1000 (repeatable)")


def run(args: argparse.Namespace) -> int:
    require("train", "medsr train")
    from medsr.training import train_from_config  # torch: imported when the command runs

    argv = ["medsr", *sys.argv[1:]] if sys.argv and sys.argv[0] else None
    summary = train_from_config(args.config, args.sets, run_dir=args.run_dir,
                                resume=args.resume, argv=argv, progress=args.progress)
    if summary is None:  # under torchrun, rank 0 alone reports
        return 0
    print(f"run: {summary['run_dir']}  steps: {summary['steps']}  best val PSNR: "
          f"{summary['best_psnr']:.3f} dB at step {summary['best_step']}")
    print(f"checkpoints: {summary['last']}  {summary['best']}")
    return 0
