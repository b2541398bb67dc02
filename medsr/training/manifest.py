"""The run manifest: what was run, on what, with which code, so anyone can repeat it.

A directory holding ``manifest.json`` is a run medsr wrote. The rule for where a run goes
(:func:`check_run_dir`): a new run needs a directory that does not exist yet or is empty,
and is created only once everything has been checked; ``--resume`` needs a run directory
(one with ``manifest.json``). A directory holding anything else is never trained into.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from medsr import __version__
from medsr.errors import UserError
from medsr.io.common import atomic_path


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_info(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the repository holding ``path`` (the medsr source).

    ``{"commit": None, "dirty": None}`` when git or a repository is not there.
    """
    cwd = Path(path) if path is not None else Path(__file__).resolve().parent
    commit = _git(["rev-parse", "HEAD"], cwd)
    if commit is None:
        return {"commit": None, "dirty": None}
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def versions() -> dict[str, str | None]:
    """Versions of medsr and the libraries that decide the numbers."""
    out: dict[str, str | None] = {"medsr": __version__, "python": platform.python_version()}
    for name in ("torch", "monai", "numpy", "safetensors"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - a missing library is recorded as None
            out[name] = None
    return out


def build_manifest(config: dict, *, seed: int, device: str, argv: list[str] | None,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest dict (JSON-able)."""

    return {
        "config": config,
        "seed": seed,
        "command": list(sys.argv if argv is None else argv),
        "git": git_info(),
        "versions": versions(),
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        **(extra or {}),
    }


MANIFEST = "manifest.json"


def check_run_dir(run_dir: str | os.PathLike, *, resume: bool = False) -> None:
    """UserError unless ``run_dir`` may take a run; creates and changes nothing.

    New run: ``run_dir`` does not exist (its first existing ancestor must be a writable
    directory) or is an empty directory. Resume: ``run_dir`` holds ``manifest.json``.
    """

    p = Path(run_dir)
    if resume:
        if not p.is_dir():
            raise UserError(f"{p} is not a directory; nothing to resume")
        if not (p / MANIFEST).is_file():
            raise UserError(f"{p} is not a medsr run directory (no {MANIFEST}); "
                            "nothing to resume")
        return
    if p.is_symlink() or p.exists():
        if not p.is_dir():
            raise UserError(f"run directory {p} exists and is not a directory")
        if (p / MANIFEST).exists():
            raise UserError(f"{p} already holds a run; use --resume {p} or another --run-dir")
        names = sorted(os.listdir(p))
        if names:
            more = f" and {len(names) - 1} more" if len(names) > 1 else ""
            raise UserError(f"run directory {p} is not empty (it holds {names[0]!r}{more}) "
                            "and is not a medsr run; give a new or empty --run-dir")
        return
    parent = p.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"cannot create run directory {p}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot create run directory {p}: {parent} is not writable")


def write_manifest(run_dir: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    """Write ``run_dir/manifest.json`` atomically."""
    path = Path(run_dir) / "manifest.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_manifest(run_dir: str | os.PathLike) -> dict[str, Any]:
    """``run_dir/manifest.json`` as a dict (UserError when missing or unreadable)."""

    path = Path(run_dir) / "manifest.json"
    try:
        if path.exists() and not path.is_file():
            raise UserError(f"{path} is not a regular file")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UserError(f"{run_dir} is not a medsr run directory (no manifest.json)") from exc
    except UnicodeDecodeError as exc:
        raise UserError(f"cannot read {path}: not UTF-8 text (byte {exc.start})") from exc
    except (OSError, ValueError, RecursionError) as exc:
        text = " ".join(str(exc).split())[:200]
        raise UserError(f"cannot read {path}: {text}") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a medsr manifest: a JSON object was expected, "
                        f"got {type(data).__name__}")
    if not isinstance(data.get("config"), dict):
        raise UserError(f"{path} is not a medsr manifest: no 'config' mapping")
    return data
