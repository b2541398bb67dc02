"""Helpers every writer shares: atomic writes and safe integer casting."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from medsr.errors import OutputError


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
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output directory {parent} is not writable")
    return out


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    Works for files and for directories (a DICOM series): a killed process leaves
    either the previous output or none, never a partial one (plus, at worst, a hidden
    ``.medsr-tmp-*`` entry that is not the output).
    """
    final = Path(path)
    parent = final.parent if str(final.parent) else Path(".")
    tmpdir = Path(tempfile.mkdtemp(prefix=".medsr-tmp-", dir=parent))
    tmp = tmpdir / final.name
    try:
        yield tmp
        if final.is_dir() and not final.is_symlink():
            # os.replace cannot replace a non-empty directory: move the old one aside first.
            old = Path(tempfile.mkdtemp(prefix=".medsr-old-", dir=parent))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except OSError as exc:
        raise OutputError(f"cannot write {final}: {exc.strerror or exc}") from exc
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def cast_to_dtype(data: np.ndarray, dtype: np.dtype | str) -> np.ndarray:
    """Round and clip to an integer dtype's range (never wrap); plain cast for floats."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        rounded = np.rint(np.nan_to_num(data, nan=0.0))
        n_clip = int(np.count_nonzero((rounded < info.min) | (rounded > info.max)))
        if n_clip:
            warnings.warn(f"{n_clip} voxels outside the {dtype} range were clipped "
                          f"to [{info.min}, {info.max}]", stacklevel=2)
        return np.clip(rounded, info.min, info.max).astype(dtype)
    if dtype == np.bool_:
        return data > 0.5
    return data.astype(dtype)
