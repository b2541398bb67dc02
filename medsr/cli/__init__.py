"""The ``medsr`` command: a thin layer that parses arguments and calls the library.

Each subcommand lives in its own module with ``add_arguments(parser)`` and
``run(args) -> int``. The mapping below is the whole registry (no import side effects);
modules are imported only when their command runs, so ``medsr --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings

from medsr import __version__
from medsr.errors import UserError

COMMANDS: dict[str, tuple[str, str]] = {
    "infer": ("medsr.cli.infer", "super-resolve scans (NIfTI, DICOM, TIFF, images, frames)"),
    "degrade": ("medsr.cli.degrade", "simulate low-resolution data: LR = D(HR; sigma)"),
    "train": ("medsr.cli.train", "train an SR network from a YAML config"),
    "eval": ("medsr.cli.eval", "per-volume PSNR / SSIM / NRMSE tables"),
    "models": ("medsr.cli.models", "list the networks and the shipped weights"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medsr", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"medsr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # a command not built yet
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"medsr: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    warnings.showwarning = _warning_line
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"medsr: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medsr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
