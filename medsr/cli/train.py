"""``medsr train CONFIG.yaml [--run-dir DIR] [--set key=value ...] [--resume DIR]``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from medsr.errors import UserError
from medsr.extras import require


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="YAML config (see configs/ and docs/training.md)")
    parser.add_argument("--run-dir", help="where the run is written (default runs/<config>-<time>)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.steps=1000 (repeatable)")
    parser.add_argument("--resume", metavar="DIR",
                        help="continue the run in DIR from its last checkpoint")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar (default: when stderr is a terminal)")


def run(args: argparse.Namespace) -> int:
    require("train", "medsr train")
    from medsr.engine.config import defaults, load_config, merge
    from medsr.engine.manifest import read_manifest
    from medsr.engine.train import train

    argv = ["medsr", *sys.argv[1:]] if sys.argv and sys.argv[0] else None
    for flag, value in (("--run-dir", args.run_dir), ("--resume", args.resume)):
        if value is not None and not value.strip():
            raise UserError(f"{flag} must name a directory, got an empty path")
    if args.resume:
        run_dir = Path(args.resume)
        if args.run_dir and Path(args.run_dir).resolve() != run_dir.resolve():
            raise UserError("--resume DIR continues DIR; do not also give another --run-dir")
        base = read_manifest(run_dir)["config"]
        try:  # the manifest's config checked as a config file is (keys, types, values)
            base = merge(defaults(), base)
        except UserError as exc:
            raise UserError(f"the config in {run_dir / 'manifest.json'} is invalid: "
                            f"{exc}") from exc
        cfg = load_config(None, args.sets, base=base)
        if args.config:
            cfg_file = load_config(args.config, args.sets)
            if cfg_file != cfg:
                raise UserError(f"{args.config} differs from the config of the run in "
                                f"{run_dir}; resume without CONFIG, or use --set")
        summary = train(cfg, run_dir, resume=True, argv=argv, progress=args.progress)
    else:
        if not args.config:
            raise UserError("give a CONFIG.yaml (or --resume DIR)")
        cfg = load_config(args.config, args.sets)
        from medsr.engine.distributed import check_env, world_size

        check_env()
        if world_size() > 1 and not args.run_dir:
            raise UserError("under torchrun give --run-dir: the default name holds the start "
                            "time, which the processes would not agree on")
        run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / (
            f"{Path(args.config).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
        summary = train(cfg, run_dir, argv=argv, progress=args.progress)
    from medsr.engine.distributed import is_main_process

    if not is_main_process():  # under torchrun, rank 0 alone reports
        return 0
    print(f"run: {summary['run_dir']}  steps: {summary['steps']}  best val PSNR: "
          f"{summary['best_psnr']:.3f} dB at step {summary['best_step']}")
    print(f"checkpoints: {summary['last']}  {summary['best']}")
    return 0
