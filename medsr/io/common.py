"""Helpers every writer shares: output checks and atomic writes.

The cast to the stored dtype is :mod:`medsr.io.dtype`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from medsr import __version__
from medsr.errors import OutputError

TMP_PREFIX = ".medsr-tmp-"
OLD_PREFIX = ".medsr-old-"


MARKER = ".medsr-output"
_MEDSR_DERIVATION = "by medsr"  # in the DerivationDescription medsr's DICOM writer sets


def _within(inner: Path, outer: Path) -> bool:
    """``inner`` is ``outer`` or lies below it (both absolute)."""
    return inner == outer or outer in inner.parents


def _spellings(p: Path) -> list[Path]:
    """The absolute path as written (``..`` folded) and with every symlink resolved."""
    found = [Path(os.path.abspath(p))]
    with contextlib.suppress(OSError, RuntimeError):
        found.append(p.resolve())
    return found


def _tree(d: Path) -> set[str]:
    """Every file and folder below ``d`` as a relative POSIX path (the marker left out)."""
    names = set()
    for root, dirs, files in os.walk(d):
        rel = Path(root).relative_to(d)
        names.update((rel / n).as_posix() for n in dirs + files)
    names.discard(MARKER)
    return names


def write_marker(d: str | os.PathLike) -> None:
    """Record in ``d/.medsr-output`` every entry medsr wrote into the directory ``d``."""

    d = Path(d)
    record = {"written_by": "medsr", "version": __version__, "entries": sorted(_tree(d))}
    (d / MARKER).write_text(json.dumps(record) + "\n", encoding="utf-8")


def _marked(d: Path) -> bool:
    try:
        record = json.loads((d / MARKER).read_text(encoding="utf-8"))
        listed = set(record["entries"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return record.get("written_by") == "medsr" and _tree(d) <= listed


def _medsr_dicom_series(d: Path) -> bool:
    """Every entry of ``d`` is a DICOM file of one series that medsr's writer derived."""
    try:
        entries = list(os.scandir(d))
    except OSError:
        return False
    if not entries:
        return False
    try:
        import pydicom
    except ImportError:
        return False
    series = set()
    for e in entries:
        if not e.is_file(follow_symlinks=False):
            return False
        try:
            with open(e.path, "rb") as f:
                if f.read(132)[128:] != b"DICM":
                    return False
            ds = pydicom.dcmread(e.path, stop_before_pixels=True,
                                 specific_tags=["SeriesInstanceUID", "ImageType",
                                                "DerivationDescription"])
            kind = [str(v).upper() for v in ds.get("ImageType", [])]
            derived = _MEDSR_DERIVATION in str(ds.get("DerivationDescription", ""))
        except Exception:  # any unreadable file: not recognisably ours
            return False
        if not derived or kind[:1] != ["DERIVED"]:
            return False
        series.add(str(ds.get("SeriesInstanceUID", "")))
    return len(series) == 1


def is_medsr_output_dir(path: str | os.PathLike) -> bool:
    """True for a directory ``--overwrite`` may replace: empty, or written by medsr.

    Written by medsr means either the ``.medsr-output`` marker that :func:`atomic_path`
    puts into every directory it commits lists every entry now in it (a file the user
    added afterwards makes it theirs), or - for DICOM series, which carry no marker -
    every entry is a DICOM file of one series whose ImageType is DERIVED and whose
    DerivationDescription says medsr wrote it.
    """
    d = Path(path)
    if d.is_symlink() or not d.is_dir():
        return False
    try:
        if not any(True for _ in d.iterdir()):
            return True
    except OSError:
        return False
    return _marked(d) or _medsr_dicom_series(d)


def _check_inputs(out: Path, inputs: Sequence[str | os.PathLike] | None,
                  may_hold: bool) -> None:
    """``out`` is none of ``inputs``, not inside an input folder and (unless ``may_hold``,
    for a folder medsr only adds files to) holds no input."""
    outs = _spellings(out)
    for p in inputs or []:
        p = Path(p)
        ins = _spellings(p)
        same = any(o == i for o in outs for i in ins)
        if not same and os.path.lexists(out) and p.exists():
            with contextlib.suppress(OSError):
                same = os.path.samefile(out, p)
        if same:
            raise OutputError(f"output {out} is the input; choose another -o")
        if not may_hold and any(_within(i, o) for o in outs for i in ins):
            raise OutputError(f"output {out} contains the input {p}; choose another -o")
        if p.is_dir() and any(_within(o, i) for o in outs for i in ins):
            raise OutputError(f"output {out} is inside the input {p}; write it outside "
                              "the input with -o")


def check_output_dir(path: str | os.PathLike,
                     inputs: Sequence[str | os.PathLike] | None = None) -> Path:
    """Check a folder medsr writes several outputs into (a cohort's ``-o``) before it is
    created: not an input, not inside an input folder, a directory if it exists."""
    out = Path(path)
    _check_inputs(out, inputs, may_hold=True)
    if os.path.lexists(out) and not out.is_dir():
        raise OutputError(f"for several inputs -o must be a directory; {out} is not one")
    return out


def check_output(path: str | os.PathLike, overwrite: bool,
                 inputs: Sequence[str | os.PathLike] | None = None) -> Path:
    """Refuse an output that would destroy what medsr did not write; return it as a Path.

    Never the input (however spelt: ``./a``, a symlink, a hard link), a folder holding an
    input, a path inside an input folder, the working directory or a folder holding it;
    an existing output only with ``overwrite``, and then only a file or a directory
    :func:`is_medsr_output_dir` recognises. The parent must exist and be writable.
    """
    out = Path(path)
    outs = _spellings(out)
    exists = os.path.lexists(out)
    _check_inputs(out, inputs, may_hold=False)
    if exists:
        cwd = _spellings(Path.cwd())
        if any(_within(c, o) for o in outs for c in cwd):
            raise OutputError(f"output {out} is the working directory or holds it; give the "
                              "output its own name with -o")
        if out.is_dir() and not out.is_symlink():
            if not is_medsr_output_dir(out):
                raise OutputError(f"output {out} is a directory medsr did not write (it "
                                  "holds other files); --overwrite replaces only medsr's own "
                                  "outputs: choose another -o")
        elif not out.is_symlink() and not out.is_file():
            raise OutputError(f"output {out} is not a regular file or directory; "
                              "choose another -o")
        if not overwrite:
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
    write into the same directory). Any OSError (read-only, full, permissions, a busy
    working directory) becomes an :class:`OutputError`, leaves the previous output in
    place and no temporary behind. A directory written here gets the ``.medsr-output``
    marker (DICOM series excepted: they are recognised by their headers), and an existing
    directory is replaced only when :func:`is_medsr_output_dir` recognises it.
    """
    final = Path(path)
    parent = final.parent if str(final.parent) else Path(".")
    if final.is_dir() and not final.is_symlink() and not is_medsr_output_dir(final):
        raise OutputError(f"output {final} is a directory medsr did not write; "
                          "choose another -o")
    sweep_stale(parent)
    try:
        tmpdir = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + _owner_tag(), dir=parent))
    except OSError as exc:
        raise _output_error(final, exc) from exc
    tmp = tmpdir / final.name if final.name not in ("", ".", "..") else tmpdir / "out"
    try:
        yield tmp
        if not tmp.exists():
            raise OutputError(f"cannot write {final}: the writer produced nothing")
        if tmp.is_dir() and not tmp.is_symlink() and not _medsr_dicom_series(tmp):
            write_marker(tmp)
        _fsync_tree(tmp)
        if os.path.lexists(final) and (tmp.is_dir() or
                                       final.is_dir() and not final.is_symlink()):
            _swap(tmp, final, parent)
        else:
            os.replace(tmp, final)
        _fsync_dir(parent)
    except OSError as exc:
        raise _output_error(final, exc) from exc
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _swap(new: Path, final: Path, parent: Path) -> None:
    """Put ``new`` in place of the existing ``final`` (os.replace cannot replace a
    non-empty directory): move the old one aside, rename, then delete the old one. If
    the second rename fails the old one is moved back, so nothing is lost or left."""
    old = Path(tempfile.mkdtemp(prefix=OLD_PREFIX + _owner_tag(), dir=parent))
    aside = old / "old"
    try:
        os.replace(final, aside)
    except OSError:
        shutil.rmtree(old, ignore_errors=True)
        raise
    try:
        os.replace(new, final)
    except OSError:
        try:
            os.replace(aside, final)
        except OSError as exc:  # cannot happen short of a vanished disk: keep the data
            raise OSError(exc.errno, f"{exc.strerror}; the previous output is kept in "
                                     f"{aside}") from exc
        shutil.rmtree(old, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Write a matplotlib figure to ``path`` atomically (no half-written PNG) and close it."""
    from matplotlib import pyplot  # an optional dependency: only figure writers get here

    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=dpi)
    pyplot.close(fig)
    return out
