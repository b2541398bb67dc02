"""The run manifest: what was run, on what, with which code, so anyone can repeat it."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from medsr import __version__
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
    import torch

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


def write_manifest(run_dir: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    """Write ``run_dir/manifest.json`` atomically."""
    path = Path(run_dir) / "manifest.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_manifest(run_dir: str | os.PathLike) -> dict[str, Any]:
    """``run_dir/manifest.json`` as a dict (UserError when missing or unreadable)."""
    from medsr.errors import UserError

    path = Path(run_dir) / "manifest.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UserError(f"{run_dir} is not a medsr run directory (no manifest.json)") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from exc
