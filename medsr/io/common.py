"""Helpers every writer shares: atomic writes and safe integer casting."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from medsr.errors import OutputError

TMP_PREFIX = ".medsr-tmp-"
OLD_PREFIX = ".medsr-old-"


def check_output(path: str | os.PathLike, overwrite: bool,
                 inputs: list[Path] | None = None) -> Path:
    """Refuse to overwrite an existing output (unless asked) or any input, ever."""
    out = Path(path)
    for p in inputs or []:
        try:
            if out.exists() and out.resolve() == Path(p).resolve():
                raise OutputError(f"output {out} is the input; choose another -o")
        except OSError:
            pass
    if out.exists() and not overwrite:
        raise OutputError(f"output {out} exists; pass --overwrite to replace it")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.exists():
        raise OutputError(f"output directory {parent} does not exist")
    if not parent.is_dir():
        raise OutputError(f"cannot write {out}: {parent} is not a directory")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output directory {parent} is not writable")
    return out


def _owner_tag() -> str:
    """``<host>-<pid>-``: lets a later run recognise temporaries of dead processes."""
    host = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"
    return f"{host}-{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, owned by someone else
        return True
    return True


def sweep_stale(parent: str | os.PathLike) -> list[Path]:
    """Remove ``.medsr-tmp-``/``.medsr-old-`` entries in ``parent`` left by killed processes.

    Only entries made on this host by a process that no longer exists are removed (a
    temporary of a live writer, or of another host on a shared file system, is kept).
    Returns what was removed.
    """
    host = _owner_tag().split("-", 1)[0]
    removed = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for e in entries:
        m = re.match(rf"^(?:{re.escape(TMP_PREFIX)}|{re.escape(OLD_PREFIX)})"
                     rf"{re.escape(host)}-(\d+)-", e.name)
        if m is None or _pid_alive(int(m.group(1))):
            continue
        with contextlib.suppress(OSError):
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path)
            else:
                os.unlink(e.path)
            removed.append(Path(e.path))
    return removed


def _fsync_tree(path: Path) -> None:
    """Flush a written file (or every file of a written directory) to the disk."""
    paths = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _output_error(final: Path, exc: OSError) -> OutputError:
    why = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        why += " (free some space or write elsewhere with -o)"
    return OutputError(f"cannot write {final}: {why}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    Works for files and for directories (a DICOM series): a killed process leaves
    either the previous output or none, never a partial one (plus, at worst, a hidden
    ``.medsr-tmp-<host>-<pid>-*`` entry that is not the output, removed by the next
    write into the same directory). Any OSError (read-only, full, permissions) becomes
    an :class:`OutputError` and leaves nothing behind.
    """
    final = Path(path)
    parent = final.parent if str(final.parent) else Path(".")
    sweep_stale(parent)
    try:
        tmpdir = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + _owner_tag(), dir=parent))
    except OSError as exc:
        raise _output_error(final, exc) from exc
    tmp = tmpdir / final.name
    try:
        yield tmp
        if not tmp.exists():
            raise OutputError(f"cannot write {final}: the writer produced nothing")
        _fsync_tree(tmp)
        if final.is_dir() and not final.is_symlink():
            # os.replace cannot replace a non-empty directory: move the old one aside first.
            old = Path(tempfile.mkdtemp(prefix=OLD_PREFIX + _owner_tag(), dir=parent))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(parent)
    except OSError as exc:
        raise _output_error(final, exc) from exc
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def cast_to_dtype(data: np.ndarray, dtype: np.dtype | str,
                  bounds: tuple[int, int] | None = None, what: str | None = None) -> np.ndarray:
    """Round and clip to an integer dtype's range (never wrap); plain cast for floats.

    ``bounds`` narrows the integer range (e.g. a DICOM BitsStored of 12), ``what`` names
    it in the warning that counts the clipped voxels."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        lo, hi = int(np.iinfo(dtype).min), int(np.iinfo(dtype).max)
        if bounds is not None:
            lo, hi = max(lo, int(bounds[0])), min(hi, int(bounds[1]))
        out = np.empty(data.shape, dtype=dtype)
        n_clip = 0
        # in slabs along the first axis: the temporaries stay small whatever the volume
        step = max(1, (1 << 24) // max(1, int(np.prod(data.shape[1:]))))
        for a in range(0, max(1, data.shape[0]), step):
            rounded = np.rint(np.nan_to_num(np.asarray(data[a:a + step]), nan=0.0))
            n_clip += int(np.count_nonzero((rounded < lo) | (rounded > hi)))
            out[a:a + step] = np.clip(rounded, lo, hi)
        if n_clip:
            pct = f"{100.0 * n_clip / max(1, data.size):.3g}%"
            warnings.warn(f"{n_clip} voxels outside the {what or dtype} range were clipped "
                          f"to [{lo}, {hi}] ({pct} of the voxels)", stacklevel=2)
        return out
    if dtype == np.bool_:
        return data > 0.5
    return data.astype(dtype)
