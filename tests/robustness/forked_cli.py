"""A fast real-process runner for table-driven CLI tests.

Starting ``python -m medsr`` costs seconds of imports; hundreds of hostile cases would
take many minutes. Here one *driver* process imports ``medsr.cli`` and its heavy
dependencies once, then runs every case in its own ``os.fork()``-ed child: the child
changes into the case's directory, points fd 0 at /dev/null and fd 1/2 at files, calls
``medsr.cli.main(argv)`` and leaves with ``os._exit(code)``. ``SystemExit`` gives its
code as Python would; an uncaught exception prints its traceback and exits 1, exactly as
the real interpreter does, so the tests see it. Each case is therefore a real, separate
process running the real CLI, at a few milliseconds of overhead each.

Use::

    with ForkedCLI() as cli:
        results = cli.run([Case(["infer", "a.nii.gz", "-o", "o.nii.gz"], cwd=d)])

or the one-shot :func:`run_cases`. The protocol is one JSON line per batch in both
directions over the driver's stdin/stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0",
        "OPENBLAS_NUM_THREADS": "1"}
_ENV.pop("PYTHONWARNINGS", None)

# Imported once by the driver so that no child pays for them.
_PRELOAD = ("numpy", "torch", "nibabel", "tifffile", "PIL.Image", "medsr.cli", "medsr.pipeline",
            "medsr.io", "medsr.io.nifti", "medsr.io.nifti_write", "medsr.io.tiff",
            "medsr.io.image2d", "medsr.io.dicom",
            "medsr.models.checkpoint", "medsr.models", "medsr.evaluation", "medsr.pretrained",
            "medsr.models.complexity", "medsr.cli.infer", "medsr.cli.eval", "medsr.cli.models")


@dataclass
class Case:
    """One CLI run: ``argv`` (without ``medsr``), run in ``cwd``, killed after ``timeout``."""

    argv: list[str]
    cwd: str
    timeout: int = 60
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


class ForkedCLI:
    """A running driver process; :meth:`run` sends a batch of cases and waits for them."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen([sys.executable, "-u", __file__], env=_ENV,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True)
        ready = self._proc.stdout.readline()  # type: ignore[union-attr]
        if ready.strip() != "ready":
            self.close()
            raise RuntimeError(f"forked CLI driver did not start: {ready!r}")

    def run(self, cases: list[Case]) -> list[Result]:
        """Run ``cases`` one after the other, each in its own forked process."""
        payload = [{**asdict(c), "argv": [str(a) for a in c.argv], "cwd": str(c.cwd)}
                   for c in cases]
        self._proc.stdin.write(json.dumps(payload) + "\n")  # type: ignore[union-attr]
        self._proc.stdin.flush()  # type: ignore[union-attr]
        line = self._proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"forked CLI driver died (exit {self._proc.wait()})")
        return [Result(**r) for r in json.loads(line)]

    def run_one(self, argv: list, cwd: str | os.PathLike, timeout: int = 60) -> Result:
        return self.run([Case([str(a) for a in argv], str(cwd), timeout)])[0]

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()  # type: ignore[union-attr]
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> ForkedCLI:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_cases(cases: list[Case]) -> list[Result]:
    """Start a driver, run ``cases``, stop it."""
    with ForkedCLI() as cli:
        return cli.run(cases)


# ----------------------------------------------------------------------------- driver


def _child(case: dict, out_path: str, err_path: str) -> None:
    """In the forked child: redirect, run the CLI, never return."""
    code = 1
    try:
        import signal

        signal.alarm(int(case.get("timeout") or 60))  # a hung case dies with SIGALRM
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, p in ((1, out_path), (2, err_path)):
            f = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(f, fd)
            os.close(f)
        os.chdir(case["cwd"])
        os.environ.update(case.get("env") or {})
        from medsr.cli import main

        try:
            code = main(case["argv"])
        except SystemExit as exc:  # as the interpreter turns SystemExit into an exit code
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        code = 0 if code is None else int(code)
    except BaseException:  # noqa: BLE001  (an uncaught exception: traceback, exit 1)
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code & 0xFF)


def _run_case(case: dict, tmp: str, n: int) -> dict:
    out_path, err_path = os.path.join(tmp, f"{n}.out"), os.path.join(tmp, f"{n}.err")
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _child(case, out_path, err_path)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    texts = []
    for p in (out_path, err_path):
        try:
            texts.append(Path(p).read_text(errors="replace"))
            os.unlink(p)
        except FileNotFoundError:
            texts.append("")
    return {"returncode": code, "stdout": texts[0], "stderr": texts[1]}


def _driver() -> None:
    import importlib
    import tempfile

    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints of the driver go to stderr, never into the protocol
    for name in _PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    import torch

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    proto.write("ready\n")
    with tempfile.TemporaryDirectory(prefix="forked-cli-") as tmp:
        n = 0
        for line in sys.stdin:
            results = []
            for case in json.loads(line):
                results.append(_run_case(case, tmp, n))
                n += 1
            proto.write(json.dumps(results) + "\n")


if __name__ == "__main__":
    _driver()
