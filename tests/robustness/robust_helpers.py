"""Shared tools of the robustness tests: run the real CLI in a subprocess, fingerprint
files and directories, and check the "one clear line, exit code 2, nothing left behind"
contract. Hostile files are made here with raw byte edits, independently of medsr."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import re
import struct
import subprocess
import sys
import uuid
from pathlib import Path

import nibabel as nib
import numpy as np

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import dicom_fixtures as fx  # noqa: E402  (tests/ is on the path now)

__all__ = ["fx"]

PY = sys.executable
_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
_ENV.pop("PYTHONWARNINGS", None)
RUN_MAIN = "import sys\nfrom medsr.cli import main\nsys.exit(main())\n"


def medsr(*args: str | os.PathLike, cwd: str | os.PathLike, prelude: str = "",
          env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python -m medsr ARGS`` (or ``prelude`` then the CLI) and capture its output."""
    argv = [str(a) for a in args]
    cmd = [PY, "-c", prelude + "\n" + RUN_MAIN, *argv] if prelude else [PY, "-m", "medsr", *argv]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**_ENV, **(env or {})})


def popen(*args: str | os.PathLike, cwd: str | os.PathLike) -> subprocess.Popen:
    return subprocess.Popen([PY, "-m", "medsr", *map(str, args)], cwd=cwd, env=_ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    """stderr lines that are not warnings or progress lines (timed progress goes to a log
    that is not a terminal when the work takes over 2 s, as under load)."""
    return [ln for ln in proc.stderr.splitlines()
            if ln.strip() and not ln.startswith(("medsr: warning:", "medsr: progress:"))]


def assert_one_line_error(proc: subprocess.CompletedProcess, match: str | None = None,
                          code: int = 2) -> str:
    """Exit ``code``, no traceback anywhere, exactly one error line (matching ``match``)."""
    both = proc.stdout + proc.stderr
    assert proc.returncode == code, f"exit {proc.returncode}\n{both}"
    assert "Traceback" not in both, both
    lines = error_lines(proc)
    assert len(lines) == 1, f"expected one error line, got:\n{proc.stderr}"
    assert re.match(r"^medsr( \w+)?: error: \S", lines[0]), lines[0]
    if match is not None:
        assert re.search(match, lines[0]), f"{match!r} not in {lines[0]!r}"
    return lines[0]


def fingerprint(path: str | os.PathLike) -> dict[str, str]:
    """sha256 of a file, or of every file (hidden ones too) under a directory."""
    p = Path(path)
    files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())
    return {str(q.relative_to(p.parent)): hashlib.sha256(q.read_bytes()).hexdigest()
            for q in files}


def entries(directory: str | os.PathLike) -> list[str]:
    """Every name in a directory, hidden temporaries included."""
    return sorted(os.listdir(directory))


def stray_temporaries(directory: str | os.PathLike) -> list[str]:
    return [n for n in entries(directory) if n.startswith(".medsr-")]


# ------------------------------------------------------------------------- mounts


@contextlib.contextmanager
def mounted(kind: str, target: Path, source: Path | None = None):
    """A tiny tmpfs (``kind='tmpfs64k'``) or a read-only bind of ``source`` at ``target``;
    yields False (and mounts nothing) where mounting is not permitted."""
    target.mkdir(parents=True, exist_ok=True)
    if kind == "tmpfs64k":
        cmd = ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(target)]
    else:
        cmd = ["mount", "--bind", "-o", "ro", str(source), str(target)]
    try:
        ok = subprocess.run(cmd, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    try:
        yield ok
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=10)


# ------------------------------------------------------------------------- NIfTI makers


def nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    img = nib.Nifti1Image(data, np.diag([1.0, 1.0, 3.0, 1.0]) if affine is None else affine)
    img.header.set_qform(img.affine, 1)
    img.header.set_sform(img.affine, 1)
    nib.save(img, path)
    return path


def small_volume(seed: int = 0, shape=(8, 8, 4)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1000, size=shape).astype(np.int16)


def raw_header_edit(src: Path, dst: Path, edit) -> Path:
    """Write ``dst`` = ``src`` (uncompressed .nii) with ``edit(bytearray)`` applied to the
    raw bytes, so nibabel's own fixes on save cannot undo the corruption; .gz if asked."""
    raw = bytearray(src.read_bytes())
    edit(raw)
    dst.write_bytes(gzip.compress(bytes(raw)) if dst.name.endswith(".gz") else bytes(raw))
    return dst


def set_dims(dims: list[int]):
    def edit(raw: bytearray) -> None:
        struct.pack_into("<8h", raw, 40, len(dims), *dims, *([1] * (7 - len(dims))))
    return edit


def set_pixdim(values: list[float]):
    def edit(raw: bytearray) -> None:
        struct.pack_into(f"<{len(values)}f", raw, 80, *values)
    return edit


def unique_token() -> str:
    return uuid.uuid4().hex[:8]


# x2 by cubic B-spline: these tests are about files, faults and messages, not the networks
X2_CUBIC = ("--scale", "2", "--method", "cubic")
