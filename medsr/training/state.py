"""Training state on disk: a directory ``state-<step>`` with ``state.safetensors`` (model,
optimiser, EMA, discriminator, RNG tensors) and ``state.json`` (everything else), written
atomically as one unit; optimiser state split into tensors and JSON."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from medsr.errors import UserError
from medsr.io.common import atomic_path
from medsr.models.checkpoint import FORMAT, plain_tensors


def flatten_optimizer(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict, dict]:
    """Split ``opt.state_dict()`` into tensors and JSON (param_groups, scalar state)."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"{prefix}.{pid}.{key}"] = val
            else:
                scalars.setdefault(str(pid), {})[key] = val
    groups = json.loads(json.dumps(sd["param_groups"]))
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer(opt: torch.optim.Optimizer, tensors: dict, meta: dict,
                        prefix: str) -> None:
    """Inverse of :func:`flatten_optimizer`: load the state into ``opt``."""
    state: dict[int, dict[str, Any]] = {}
    for name, val in tensors.items():
        if not name.startswith(prefix + "."):
            continue
        pid, key = name[len(prefix) + 1:].split(".", 1)
        state.setdefault(int(pid), {})[key] = val
    for pid, st in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(st)
    groups = meta["param_groups"]
    for g in groups:
        if "betas" in g and isinstance(g["betas"], list):
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})


def save_state(directory: str | os.PathLike, tensors: dict[str, torch.Tensor],
               meta: dict[str, Any]) -> Path:
    """Write a training-state directory (state.safetensors + state.json) atomically."""
    directory = Path(directory)
    with atomic_path(directory) as tmp:
        tmp.mkdir()
        save_file(plain_tensors(tensors), str(tmp / "state.safetensors"),
                  metadata={"format": FORMAT})
        (tmp / "state.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n",
                                        encoding="utf-8")
    return directory


def save_state_versioned(ckpt_dir: str | os.PathLike, step: int,
                         tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Save ``ckpt_dir/state-<step>`` (a new name, so the rename is atomic even though a
    directory cannot atomically replace another), then delete older state directories:
    whenever the process dies, one complete state remains."""
    ckpt_dir = Path(ckpt_dir)
    out = save_state(ckpt_dir / f"state-{step:09d}", tensors, meta)
    for old in ckpt_dir.glob("state-*"):
        if old != out and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return out


def latest_state(ckpt_dir: str | os.PathLike) -> Path:
    """The newest complete training-state directory in ``ckpt_dir``."""
    found = sorted(p for p in Path(ckpt_dir).glob("state-*")
                   if (p / "state.json").is_file() and (p / "state.safetensors").is_file())
    if not found:
        raise UserError(f"no training state in {ckpt_dir} (nothing to resume)")
    return found[-1]


def load_state(directory: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a directory written by :func:`save_state`."""
    directory = Path(directory)
    try:
        tensors = load_file(str(directory / "state.safetensors"))
        meta = json.loads((directory / "state.json").read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UserError(f"no training state in {directory} (nothing to resume)") from exc
    except Exception as exc:
        raise UserError(f"training state in {directory} is corrupted: {exc}") from exc
    return tensors, meta
