"""The training config's schema: every key with its default (:data:`DEFAULTS`), the open
sections, and :func:`validate`, which checks every value (finite, in range, a known
choice); reading YAML files and ``--set`` items is :mod:`medsr.training.config`."""

from __future__ import annotations

import math
import reprlib
from typing import Any

from medsr.errors import UserError
from medsr.training.precision import check_amp

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
        "max_anisotropy": None,  # 2d / 2.5d: sample only planes whose axes are at most this
                                 # x the volume's finest spacing (thick-slice scans: their
                                 # acquired planes); volumes with none are left out
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

#: Sections whose keys are free (passed through to another component).
OPEN_SECTIONS = {"model.hparams", "degradation.params", "degradation.spec",
                 "discriminator.hparams"}


def short_repr(value: Any, limit: int = 80) -> str:
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


def _get(cfg: dict, path: str) -> Any:
    node: Any = cfg
    for part in path.split("."):
        node = node[part]
    return node


def _choice(cfg: dict, path: str, allowed: tuple[str, ...]) -> None:
    node = _get(cfg, path)
    if not isinstance(node, str) or node not in allowed:
        raise UserError(f"config key '{path}' must be one of {', '.join(allowed)}; "
                        f"got {short_repr(node)}")


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
        raise UserError(f"config key '{key}' must be {what}; got {short_repr(value)}")


def _num(cfg: dict, path: str, **bounds: Any) -> None:
    _check_number(_get(cfg, path), path, **bounds)


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, list) else [value]


def _str_or_none(cfg: dict, path: str) -> None:
    v = _get(cfg, path)
    if v is not None and (not isinstance(v, str) or not v):
        raise UserError(f"config key '{path}' must be a non-empty string or null; "
                        f"got {short_repr(v)}")


def _str_list(cfg: dict, path: str) -> None:
    v = _get(cfg, path)
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise UserError(f"config key '{path}' must be a list of strings; got {short_repr(v)}")


def validate(cfg: dict) -> None:
    """Check every value where types alone cannot: finite, in range, a known choice.

    Model hyperparameters, degradation parameters and the data itself are checked by
    building them (:func:`medsr.training.loop.train` does, before a run writes anything).
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
                        f"{short_repr(d['resolution'])}")
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
                        f"[0, 1] or [lo, hi] with 0 <= lo <= hi <= 1; got {short_repr(sig)}")
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
                        f"got {short_repr(s['axes'])}")
    _num(cfg, "sampling.context", integer=True, ge=0, le=64)
    _num(cfg, "sampling.batch_size", integer=True, ge=1, le=65536)
    _num(cfg, "sampling.min_foreground", ge=0, le=1)
    _num(cfg, "sampling.remap", ge=0, le=1)
    if s["max_anisotropy"] is not None:
        _num(cfg, "sampling.max_anisotropy", ge=1, le=1000)
    _num(cfg, "sampling.num_workers", integer=True, ge=0, le=1024)
    _num(cfg, "sampling.val_patches", integer=True, ge=1, le=100_000)
    g = s["gamma"]
    if g is not None and not (isinstance(g, list) and len(g) == 2
                              and all(_is_number(v) and v > 0 for v in g)
                              and g[0] <= g[1]):
        raise UserError(f"config key 'sampling.gamma' must be null or [lo, hi] with "
                        f"0 < lo <= hi; got {short_repr(g)}")
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
                        f"got {short_repr(b)}")

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
        raise UserError(f"config key '{key}' needs 1 or {n} values, got {short_repr(value)}")
    return tuple(vals)
