"""Training configuration: one schema with defaults, YAML files and ``--set`` overrides.

A config is a nested dict. Every key must exist in :data:`DEFAULTS` (a typo is a
:class:`~medsr.errors.UserError` naming the key and the allowed ones), values are
type-checked against the default, and the few open sections (:data:`OPEN_SECTIONS`,
e.g. model hyperparameters) accept any key. :func:`validate` then checks every value
(finite, in range, a known choice). YAML is read with PyYAML's safe loader only, from a
UTF-8 file of at most :data:`MAX_CONFIG_BYTES`, and a document whose aliases would expand
to more than :data:`MAX_YAML_NODES` nodes (a "billion laughs" bomb) is refused before it
is expanded.
"""

from __future__ import annotations

import copy
import math
import os
import reprlib
import stat
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
        "target_noise": {        # noise added to the HR patch (the target) BEFORE degrading,
            "kind": "none",      # for noise-free sources (templates, averages): none |
            "sigma": [0.01, 0.03],  # gaussian | rician; sigma (or [lo, hi], uniform) in
            "match": [],         # normalised units (fraction of the percentile range);
        },                       # only volumes whose file name matches a glob of match
    },                           # ([] = every volume)
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
        "micro_batches": 1,      # split each process's batch into chunks (gradient of the
                                 # mean over chunks): 1 process with W chunks = W processes
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
    if default is None:
        return True
    if value is None:  # null only where the default is null
        return False
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
                raise UserError(f"config key '{path}' must be a mapping, got {_short(value)}")
            if value is None and isinstance(default, dict):
                value = {}
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
                            f"got {_short(value)}")
        if isinstance(default, float) and isinstance(value, int):
            value = float(value)
        base[key] = copy.deepcopy(value)


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (a message stays one short line)."""
    text = " ".join(reprlib.repr(value).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


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


#: A training config is a few kB; anything larger is refused unread.
MAX_CONFIG_BYTES = 1 << 20
#: Nodes a YAML document may hold once its aliases are expanded (refused beyond this).
MAX_YAML_NODES = 100_000


def _expanded_nodes(root: yaml.Node) -> int:
    """Nodes of ``root`` with every alias expanded, counted without expanding anything.

    Shared (aliased) nodes are counted once per use from a memo, so a "billion laughs"
    document is measured in microseconds; a count over :data:`MAX_YAML_NODES` or a
    recursive alias raises UserError.
    """
    memo: dict[int, int] = {}
    active: set[int] = set()

    def count(node: yaml.Node) -> int:
        key = id(node)
        if key in memo:
            return memo[key]
        if key in active:
            raise UserError("refers to itself through an alias (recursive anchor)")
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += count(child)
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += count(k) + count(v)
        active.discard(key)
        if total > MAX_YAML_NODES:
            raise UserError(f"expands to more than {MAX_YAML_NODES} values through aliases "
                            "(a YAML bomb?)")
        memo[key] = total
        return total

    return count(root)


def safe_yaml(text: str) -> Any:
    """``yaml.safe_load(text)``, refusing alias bombs and recursive aliases before expanding.

    Raises ``yaml.YAMLError`` for a syntax error and UserError (no file name) for a bomb.
    """
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _expanded_nodes(node)
            return loader.construct_document(node)
        except RecursionError as exc:
            raise UserError("is nested too deeply") from exc
    finally:
        loader.dispose()


def read_yaml(path: str | os.PathLike) -> dict:
    """A YAML mapping from ``path`` (safe loader only; never executes anything).

    UserError for a file that cannot be read, is larger than :data:`MAX_CONFIG_BYTES`, is
    not UTF-8 text or not YAML, expands beyond :data:`MAX_YAML_NODES`, or is no mapping.
    """
    p = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; refused below (not regular)
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                kind = "a directory" if p.is_dir() else "not a regular file"
                raise UserError(f"config {p} is {kind}; give a YAML file")
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except IsADirectoryError as exc:
        raise UserError(f"config {p} is a directory; give a YAML file") from exc
    except OSError as exc:
        raise UserError(f"cannot read config {p}: {exc.strerror or exc}") from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise UserError(f"config {p} is larger than {MAX_CONFIG_BYTES // 1024} KiB; "
                        "a training config is a small YAML file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"config {p} is not UTF-8 text (byte {exc.start} of the file); "
                        "give a YAML file") from exc
    try:
        data = safe_yaml(text)
    except yaml.YAMLError as exc:
        raise UserError(f"config {p} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    except UserError as exc:
        raise UserError(f"config {p} {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config {p} must be a mapping of keys to values, "
                        f"not a {type(data).__name__}")
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
        value = safe_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    except UserError as exc:
        raise UserError(f"--set {key}: the value {exc}") from exc
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


def _get(cfg: dict, path: str) -> Any:
    node: Any = cfg
    for part in path.split("."):
        node = node[part]
    return node


def _choice(cfg: dict, path: str, allowed: tuple[str, ...]) -> None:
    node = _get(cfg, path)
    if not isinstance(node, str) or node not in allowed:
        raise UserError(f"config key '{path}' must be one of {', '.join(allowed)}; "
                        f"got {_short(node)}")


def _is_number(v: Any, integer: bool = False) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    if integer:
        return isinstance(v, int) or (math.isfinite(v) and float(v).is_integer())
    return math.isfinite(v)


def _check_number(value: Any, key: str, *, integer: bool = False, ge: float | None = None,
                  gt: float | None = None, le: float | None = None,
                  lt: float | None = None) -> None:
    """``value`` is a finite number (an integer if asked) within the given bounds."""
    lo, hi = (ge, gt)[ge is None], (le, lt)[le is None]
    what = "an integer" if integer else "a finite number"
    if lo is not None and hi is not None:
        what += f" in {'[('[ge is None]}{lo}, {hi}{'])'[le is None]}"
    elif lo is not None:
        what += f" {'>=' if ge is not None else '>'} {lo}"
    elif hi is not None:
        what += f" {'<=' if le is not None else '<'} {hi}"
    ok = _is_number(value, integer)
    if ok:
        ok = ((ge is None or value >= ge) and (gt is None or value > gt)
              and (le is None or value <= le) and (lt is None or value < lt))
    if not ok:
        raise UserError(f"config key '{key}' must be {what}; got {_short(value)}")


def _num(cfg: dict, path: str, **bounds: Any) -> None:
    _check_number(_get(cfg, path), path, **bounds)


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, list) else [value]


def _str_or_none(cfg: dict, path: str) -> None:
    v = _get(cfg, path)
    if v is not None and (not isinstance(v, str) or not v):
        raise UserError(f"config key '{path}' must be a non-empty string or null; "
                        f"got {_short(v)}")


def _str_list(cfg: dict, path: str) -> None:
    v = _get(cfg, path)
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise UserError(f"config key '{path}' must be a list of strings; got {_short(v)}")


def validate(cfg: dict) -> None:
    """Check every value where types alone cannot: finite, in range, a known choice.

    Model hyperparameters, degradation parameters and the data itself are checked by
    building them (:func:`medsr.engine.train.preflight`), before a run writes anything.
    """
    _choice(cfg, "device", ("auto", "cpu", "cuda"))
    _choice(cfg, "data.source", ("folder", "glob", "csv", "mni152"))
    _choice(cfg, "sampling.mode", ("2d", "2.5d", "3d"))
    _choice(cfg, "optim.name", ("adam", "adamw", "sgd"))
    _choice(cfg, "schedule.name", ("none", "step", "cosine"))
    _choice(cfg, "loss.adversarial_kind", ("standard", "relativistic", "enhancenet"))
    check_amp(cfg["train"]["amp"])
    _num(cfg, "seed", integer=True, ge=0, le=2**32 - 1)
    _num(cfg, "num_threads", integer=True, ge=0, le=4096)

    d = cfg["data"]
    if d["source"] != "mni152" and not d["path"]:
        raise UserError(f"config key 'data.path' is required for data.source "
                        f"{d['source']!r}")
    _str_or_none(cfg, "data.path")
    if not d["pattern"]:
        raise UserError("config key 'data.pattern' must not be empty")
    if d["resolution"] not in (1, 2):
        raise UserError(f"config key 'data.resolution' must be 1 or 2; got "
                        f"{_short(d['resolution'])}")
    _num(cfg, "data.val_fraction", ge=0, lt=1)
    _str_list(cfg, "data.val_paths")
    _num(cfg, "data.normalise.lower", ge=0, lt=100)
    _num(cfg, "data.normalise.upper", gt=0, le=100)
    if not d["normalise"]["lower"] < d["normalise"]["upper"]:
        raise UserError("config key 'data.normalise.lower' must be below "
                        "'data.normalise.upper'")

    _str_or_none(cfg, "degradation.preset")
    _choice(cfg, "degradation.target_noise.kind", TARGET_NOISES)
    sig = cfg["degradation"]["target_noise"]["sigma"]
    if not ((_is_number(sig) and 0 <= sig <= 1)
            or (isinstance(sig, list) and len(sig) == 2
                and all(_is_number(v) and 0 <= v <= 1 for v in sig) and sig[0] <= sig[1])):
        raise UserError(f"config key 'degradation.target_noise.sigma' must be a number in "
                        f"[0, 1] or [lo, hi] with 0 <= lo <= hi <= 1; got {_short(sig)}")
    _str_list(cfg, "degradation.target_noise.match")
    if not cfg["degradation"]["spec"] and not cfg["degradation"]["preset"]:
        raise UserError("config key 'degradation.preset' is required when "
                        "'degradation.spec' is null")

    s = cfg["sampling"]
    axes = s["axes"]
    axes = [axes] if isinstance(axes, int) else axes
    if (not isinstance(axes, list) or not axes
            or any(isinstance(a, bool) or a not in (0, 1, 2) for a in axes)):
        raise UserError(f"config key 'sampling.axes' must list axes 0, 1 or 2; "
                        f"got {_short(s['axes'])}")
    _num(cfg, "sampling.context", integer=True, ge=0, le=64)
    _num(cfg, "sampling.batch_size", integer=True, ge=1, le=65536)
    _num(cfg, "sampling.min_foreground", ge=0, le=1)
    _num(cfg, "sampling.remap", ge=0, le=1)
    _num(cfg, "sampling.num_workers", integer=True, ge=0, le=1024)
    _num(cfg, "sampling.val_patches", integer=True, ge=1, le=100_000)
    g = s["gamma"]
    if g is not None and not (isinstance(g, list) and len(g) == 2
                              and all(_is_number(v) and v > 0 for v in g)
                              and g[0] <= g[1]):
        raise UserError(f"config key 'sampling.gamma' must be null or [lo, hi] with "
                        f"0 < lo <= hi; got {_short(g)}")
    # per-axis values; their count and divisibility are checked by the trainer's
    # sampling_spec, which knows the patch axes
    for k in _as_list(cfg["model"]["scale"]):
        _check_number(k, "model.scale", integer=True, ge=1, le=64)
    for p in _as_list(s["patch_size"]):
        _check_number(p, "sampling.patch_size", integer=True, ge=1, le=4096)

    m = cfg["model"]
    if not m["name"]:
        raise UserError("config key 'model.name' must not be empty")
    _str_or_none(cfg, "model.init")
    _num(cfg, "discriminator.lr", gt=0)

    loss = cfg["loss"]
    for k in LOSS_TERMS:
        _num(cfg, f"loss.{k}", ge=0)
    if not any(loss[k] > 0 for k in LOSS_TERMS if k != "adversarial"):
        raise UserError("at least one non-adversarial loss weight must be > 0")
    _str_or_none(cfg, "loss.feature_weights")
    _str_list(cfg, "loss.texture_layers")
    _num(cfg, "loss.charbonnier_eps", gt=0)

    o = cfg["optim"]
    _num(cfg, "optim.lr", gt=0)
    _num(cfg, "optim.weight_decay", ge=0)
    _num(cfg, "optim.momentum", ge=0, lt=1)
    b = o["betas"]
    if not (isinstance(b, list) and len(b) == 2 and all(_is_number(v) and 0 <= v < 1
                                                         for v in b)):
        raise UserError(f"config key 'optim.betas' must be [b1, b2] with 0 <= b < 1; "
                        f"got {_short(b)}")

    _num(cfg, "schedule.step_size", integer=True, ge=1)
    _num(cfg, "schedule.gamma", gt=0)
    _num(cfg, "schedule.warmup", integer=True, ge=0)
    _num(cfg, "schedule.min_lr", ge=0)

    for key in ("steps", "log_every", "val_every", "ckpt_every"):
        _num(cfg, f"train.{key}", integer=True, ge=1)
        _num(cfg, f"train.{key}", integer=True, le=MAX_STEPS)
    _num(cfg, "train.grad_clip", ge=0)
    _num(cfg, "train.ema", ge=0, lt=1)


MAX_STEPS = 1_000_000_000  # train.steps and the *_every intervals (a run must end)

TARGET_NOISES = ("none", "gaussian", "rician")
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
        raise UserError(f"config key '{key}' needs 1 or {n} values, got {_short(value)}")
    return tuple(vals)
