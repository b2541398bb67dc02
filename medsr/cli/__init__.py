"""The ``medsr`` command: a thin layer that parses arguments and calls the library.

Each subcommand lives in its own module with ``add_arguments(parser)`` and
``run(args) -> int``. The mapping below is the whole registry (no import side effects);
modules are imported only when their command runs, so ``medsr --help`` is fast.

Errors the user can act on end the run with one line on stderr and exit code 2: a
:class:`~medsr.errors.UserError`, a bad argument, a file-system error (read-only, full,
permission denied) and running out of memory. SIGTERM (a scheduler's polite kill) is
turned into an orderly stop so temporary outputs are removed; SIGKILL cannot be caught,
and atomic writes guarantee that it leaves the previous output or none.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import signal
import sys
import warnings

from medsr import __version__
from medsr.errors import UserError, one_line

COMMANDS: dict[str, tuple[str, str]] = {
    "infer": ("medsr.cli.infer", "super-resolve scans (NIfTI, DICOM, TIFF, images, frames)"),
    "degrade": ("medsr.cli.degrade", "simulate low-resolution data: LR = D(HR; sigma)"),
    "train": ("medsr.cli.train", "train an SR network from a YAML config"),
    "eval": ("medsr.cli.eval", "per-volume PSNR / SSIM / NRMSE tables"),
    "models": ("medsr.cli.models", "list the networks and the shipped weights"),
    "bids": ("medsr.cli.bids", "BIDS App: BIDS_DIR OUTPUT_DIR participant|group"),  # issue 25
}

# OSErrors that describe the environment (disk, permissions, paths), not a bug.
_ENVIRONMENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT,
                       errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.EMFILE,
                       errno.ENFILE, errno.ENAMETOOLONG, errno.EIO, errno.ELOOP, errno.EXDEV,
                       errno.ENOTEMPTY, errno.ETXTBSY, errno.EFBIG}


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block): ``medsr infer: error: ...``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="medsr", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"medsr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
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
    text = " ".join(str(message).split())  # one line, whatever the library wrote
    print(f"medsr: warning: {text}", file=sys.stderr)


class _LogFormat(logging.Formatter):
    """medsr's own INFO lines as they are; anything else as one ``medsr: <level>:`` line."""

    def format(self, record: logging.LogRecord) -> str:
        text = " ".join(record.getMessage().split())
        if record.name.startswith("medsr") and record.levelno <= logging.INFO:
            return record.getMessage()
        return f"medsr: {record.levelname.lower()}: {text}"


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogFormat())
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    logging.getLogger("medsr").setLevel(logging.INFO)


class _Terminated(BaseException):
    """SIGTERM arrived: unwind (atomic writes remove their temporaries), then exit 143.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` swallows it.
    """


def _on_sigterm(signum, frame) -> None:
    raise _Terminated()


def _os_error_line(exc: OSError) -> str:
    where = f" {exc.filename}" if exc.filename else ""
    if exc.filename2:
        where += f" -> {exc.filename2}"
    return f"{exc.strerror or exc}:{where}" if where else str(exc.strerror or exc)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.from_process = argv is None  # the process's own command line (console script, -m)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # issue 25: for provenance
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    warnings.showwarning = _warning_line
    _setup_logging()
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        previous = None
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"medsr: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except MemoryError:
        print("medsr: error: out of memory; make the job smaller (e.g. lower "
              "--max-output-voxels, or a smaller tile/patch size)", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in _ENVIRONMENT_ERRNOS:
            raise
        print(f"medsr: error: {one_line(_os_error_line(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medsr: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print("medsr: terminated (SIGTERM); no partial output was left", file=sys.stderr)
        return 143
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
