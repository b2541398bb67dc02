"""Training configuration: one schema with defaults, YAML files and ``--set`` overrides.

A config is a nested dict. Every key must exist in :data:`DEFAULTS` (a typo is a
:class:`~medsr.errors.UserError` naming the key and the allowed ones), values are
type-checked against the default, and the few open sections (:data:`OPEN_SECTIONS`,
e.g. model hyperparameters) accept any key. YAML is read with ``yaml.safe_load`` only.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from medsr.errors import UserError

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "device": "auto",            # auto | cpu | cuda
    "num_threads": 0,            # torch CPU threads; 0 = leave torch's default
    "data": {
        "source": "folder",      # folder | glob | csv | mni152
        "path": None,            # folder, glob pattern or CSV file
        "pattern": "*.nii*",     # file pattern inside a folder
        "resolution": 2,         # mni152 only: 1 or 2 mm
        "val_fraction": 0.2,     # share of volumes held out for validation
        "val_paths": [],         # explicit validation volumes (overrides val_fraction)
        "normalise": {"lower": 0.5, "upper": 99.5},  # robust percentiles -> [0, 1]
        "cache": True,           # MONAI CacheDataset of the loaded, normalised volumes
    },
    "degradation": {
        "preset": "bicubic",     # a medsr.degrade preset name
        "params": {},            # overrides passed to load_preset
        "spec": None,            # a full Degradation.to_dict() (replaces preset + params)
    },
    "sampling": {
        "mode": "2d",            # 2d | 2.5d | 3d
        "axes": [2],             # 2d / 2.5d: slice normals to sample from (0, 1, 2)
        "context": 1,            # 2.5d: neighbouring slices on each side (channels 2c+1)
        "patch_size": [32, 32],  # HR patch, one entry per patch axis (or one number)
        "batch_size": 8,
        "flips": True,
        "permute": True,         # swap patch axes when scale and spacing allow it
        "min_foreground": 0.25,  # share of voxels above 0.1 a patch needs (retries)
        "gamma": None,           # [lo, hi]: HR intensity augmentation x ** g (log-uniform g)
        "remap": 0.0,            # probability of a random smooth intensity look-up table
        "num_workers": 0,
        "val_patches": 16,
    },
    "model": {
        "name": "srcnn",
        "scale": [2, 2],         # per patch axis (or one number)
        "hparams": {},
        "init": None,            # a checkpoint to start from (e.g. a pixel-loss pre-training)
    },
    "discriminator": {
        "name": "vgg",           # used only when loss.adversarial > 0
        "hparams": {},
        "lr": 1.0e-4,
    },
    "loss": {
        "l1": 1.0,
        "l2": 0.0,
        "charbonnier": 0.0,
        "gradient": 0.0,
        "ssim": 0.0,
        "tv": 0.0,
        "perceptual": 0.0,
        "texture": 0.0,
        "adversarial": 0.0,
        "adversarial_kind": "standard",   # standard (SRGAN) | relativistic (ESRGAN) | enhancenet
        "feature_weights": None,          # local VGG19 weight file for perceptual / texture
        "perceptual_layer": "relu5_4",
        "texture_layers": ["relu2_1", "relu3_1"],
        "charbonnier_eps": 1.0e-3,
    },
    "optim": {
        "name": "adam",          # adam | adamw | sgd
        "lr": 1.0e-3,
        "weight_decay": 0.0,
        "betas": [0.9, 0.999],
        "momentum": 0.9,
    },
    "schedule": {
        "name": "none",          # none | step | cosine
        "step_size": 1000,
        "gamma": 0.5,
        "warmup": 0,
        "min_lr": 0.0,
    },
    "train": {
        "steps": 200,
        "log_every": 10,
        "val_every": 50,
        "ckpt_every": 50,
        "grad_clip": 0.0,        # max gradient norm; 0 = off
        "ema": 0.0,              # EMA decay; 0 = off
        "amp": True,             # true: float16 on CUDA only; bf16: bfloat16 on any device
    },
}

#: Keys of more than one type, checked by :func:`validate` instead of by their default's.
VALIDATED_KEYS = {"train.amp"}
AMP_CHOICES = (True, False, "bf16")


def check_amp(amp: Any) -> None:
    """``train.amp`` is true, false or "bf16" (see :func:`medsr.devices.training_precision`)."""
    if not any(amp is c if isinstance(c, bool) else amp == c for c in AMP_CHOICES):
        raise UserError(f"config key 'train.amp' must be true, false or bf16; got {amp!r}")

#: Sections whose keys are free (passed through to another component).
OPEN_SECTIONS = {"model.hparams", "degradation.params", "degradation.spec",
                 "discriminator.hparams"}


def defaults() -> dict[str, Any]:
    """A fresh deep copy of the defaults."""
    return copy.deepcopy(DEFAULTS)


def _type_ok(default: Any, value: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, list):
        # a per-axis list may also be given as one number
        return isinstance(value, (list, int, float)) and not isinstance(value, bool)
    if isinstance(default, dict):
        return isinstance(value, dict)
    return True


def _is_open(path: str) -> bool:
    return any(path == s or path.startswith(s + ".") for s in OPEN_SECTIONS)


def _deep_update(base: dict, override: dict) -> None:
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def _merge(base: dict, override: dict, prefix: str) -> None:
    for key, value in override.items():
        if not isinstance(key, str):
            raise UserError(f"config key {key!r} at '{prefix or '<top>'}' is not a string")
        path = f"{prefix}{key}"
        if key not in base:
            allowed = ", ".join(sorted(base))
            raise UserError(f"unknown config key '{path}'; allowed keys here: {allowed}")
        default = DEFAULTS_FLAT.get(path, base[key])
        if _is_open(path):
            if not (value is None or isinstance(value, dict)):
                raise UserError(f"config key '{path}' must be a mapping, got {value!r}")
            if isinstance(value, dict) and isinstance(base[key], dict):
                _deep_update(base[key], value)
            else:
                base[key] = copy.deepcopy(value)
            continue
        if isinstance(base[key], dict) and isinstance(value, dict):
            _merge(base[key], value, path + ".")
            continue
        if isinstance(default, float) and isinstance(value, str):
            try:  # YAML 1.1 reads "1e-4" (no dot) as a string
                value = float(value)
            except ValueError:
                pass
        if path not in VALIDATED_KEYS and not _type_ok(default, value):
            raise UserError(f"config key '{path}' must be {type(default).__name__}, "
                            f"got {value!r}")
        if isinstance(default, float) and isinstance(value, int):
            value = float(value)
        base[key] = copy.deepcopy(value)


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out[prefix + k] = v
        if isinstance(v, dict) and (prefix + k) not in OPEN_SECTIONS:
            out.update(_flatten(v, prefix + k + "."))
    return out


DEFAULTS_FLAT = _flatten(DEFAULTS)


def merge(config: dict, override: dict) -> dict:
    """``config`` updated by ``override`` (checked against the schema), as a new dict."""
    out = copy.deepcopy(config)
    _merge(out, override, "")
    return out


def read_yaml(path: str | os.PathLike) -> dict:
    """A YAML mapping from ``path`` (``yaml.safe_load``; never executes anything)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read config {p}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"config {p} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config {p} must be a mapping of keys to values")
    return data


def parse_set(item: str) -> dict:
    """``"a.b=value"`` -> ``{"a": {"b": value}}``, the value parsed as YAML."""
    if "=" not in item:
        raise UserError(f"--set expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise UserError(f"--set: bad key {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    out: dict = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def load_config(path: str | os.PathLike | None = None, sets: list[str] | None = None,
                base: dict | None = None) -> dict:
    """Defaults (or ``base``) <- YAML file <- ``--set`` items, checked and validated."""
    cfg = defaults() if base is None else copy.deepcopy(base)
    if path is not None:
        cfg = merge(cfg, read_yaml(path))
    for item in sets or []:
        cfg = merge(cfg, parse_set(item))
    validate(cfg)
    return cfg


def _choice(cfg: dict, path: str, allowed: tuple[str, ...]) -> None:
    node: Any = cfg
    for part in path.split("."):
        node = node[part]
    if node not in allowed:
        raise UserError(f"config key '{path}' must be one of {', '.join(allowed)}; got {node!r}")


def validate(cfg: dict) -> None:
    """Check values that types alone cannot (choices, ranges)."""
    _choice(cfg, "device", ("auto", "cpu", "cuda"))
    _choice(cfg, "data.source", ("folder", "glob", "csv", "mni152"))
    _choice(cfg, "sampling.mode", ("2d", "2.5d", "3d"))
    _choice(cfg, "optim.name", ("adam", "adamw", "sgd"))
    _choice(cfg, "schedule.name", ("none", "step", "cosine"))
    _choice(cfg, "loss.adversarial_kind", ("standard", "relativistic", "enhancenet"))
    check_amp(cfg["train"]["amp"])
    if cfg["data"]["source"] != "mni152" and not cfg["data"]["path"]:
        raise UserError(f"config key 'data.path' is required for data.source "
                        f"{cfg['data']['source']!r}")
    t = cfg["train"]
    for key in ("steps", "log_every", "val_every", "ckpt_every"):
        if t[key] < 1:
            raise UserError(f"config key 'train.{key}' must be >= 1, got {t[key]}")
    if cfg["sampling"]["batch_size"] < 1:
        raise UserError("config key 'sampling.batch_size' must be >= 1")
    axes = cfg["sampling"]["axes"]
    axes = [axes] if isinstance(axes, int) else axes
    if not axes or any(a not in (0, 1, 2) for a in axes):
        raise UserError(f"config key 'sampling.axes' must list axes 0, 1 or 2; got {axes!r}")
    g = cfg["sampling"]["gamma"]
    if g is not None and not (isinstance(g, list) and len(g) == 2
                              and all(isinstance(v, (int, float)) and v > 0 for v in g)
                              and g[0] <= g[1]):
        raise UserError(f"config key 'sampling.gamma' must be null or [lo, hi] with "
                        f"0 < lo <= hi; got {g!r}")
    if not 0.0 <= cfg["sampling"]["remap"] <= 1.0:
        raise UserError("config key 'sampling.remap' must be a probability in [0, 1]")
    if not 0.0 <= cfg["train"]["ema"] < 1.0:
        raise UserError("config key 'train.ema' must be in [0, 1)")
    weights = {k: v for k, v in cfg["loss"].items() if k in LOSS_TERMS}
    if any(w < 0 for w in weights.values()):
        raise UserError("loss weights must be >= 0")
    if not any(w > 0 for k, w in weights.items() if k != "adversarial"):
        raise UserError("at least one non-adversarial loss weight must be > 0")


LOSS_TERMS = ("l1", "l2", "charbonnier", "gradient", "ssim", "tv", "perceptual", "texture",
              "adversarial")


def spatial_dims(cfg: dict) -> int:
    """2 for 2D and 2.5D sampling, 3 for 3D patches."""
    return 3 if cfg["sampling"]["mode"] == "3d" else 2


def per_axis(value: Any, n: int, key: str) -> tuple:
    """Broadcast one number or check a list of ``n`` numbers."""
    vals = [value] if isinstance(value, (int, float)) else list(value)
    if len(vals) == 1:
        vals = vals * n
    if len(vals) != n:
        raise UserError(f"config key '{key}' needs 1 or {n} values, got {value!r}")
    return tuple(vals)
