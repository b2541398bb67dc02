"""What a training config builds: optimiser, learning-rate schedule, degradation, patch
sampling, the network (sizes checked before anything is allocated) and its discriminator,
and the metadata a checkpoint carries to rebuild the network."""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from medsr import degrade, models
from medsr.errors import UserError
from medsr.models.checkpoint import MAX_HPARAM_INT
from medsr.training import schema
from medsr.training.data.sampling import SamplingSpec

CREATE_KEYS = ("spatial_dims", "scale", "in_channels", "out_channels", "name")


def lr_at(step: int, optim_cfg: dict, sched_cfg: dict, total: int) -> float:
    """Learning rate of (0-based) ``step``: linear warm-up, then none / step / cosine."""
    base = float(optim_cfg["lr"])
    warm = int(sched_cfg["warmup"])
    if warm > 0 and step < warm:
        return base * (step + 1) / warm
    name = sched_cfg["name"]
    t = step - warm
    if name == "step":
        return base * float(sched_cfg["gamma"]) ** (t // int(sched_cfg["step_size"]))
    if name == "cosine":
        span = max(1, total - warm)
        lo = float(sched_cfg["min_lr"])
        return lo + (base - lo) * 0.5 * (1.0 + math.cos(math.pi * min(t, span) / span))
    return base


def build_optimizer(params: Iterable[nn.Parameter], optim_cfg: dict,
                    lr: float | None = None) -> torch.optim.Optimizer:
    """Adam / AdamW / SGD from the ``optim`` section."""
    lr = float(optim_cfg["lr"]) if lr is None else lr
    wd = float(optim_cfg["weight_decay"])
    name = optim_cfg["name"]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(optim_cfg["momentum"]),
                               weight_decay=wd)
    betas = tuple(float(b) for b in optim_cfg["betas"])
    cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    return cls(params, lr=lr, betas=betas, weight_decay=wd)  # type: ignore[arg-type]


def build_degradation(cfg: dict, scale: tuple[int, ...]) -> degrade.Degradation:
    """The Degradation of the config for a given per-axis ``scale`` (patch or volume)."""
    dcfg = cfg["degradation"]
    try:
        if dcfg["spec"]:
            return degrade.Degradation.from_dict(dcfg["spec"])
        return degrade.load_preset(dcfg["preset"], scale=tuple(int(k) for k in scale),
                                   **dcfg["params"])
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        key = "degradation.spec" if dcfg["spec"] else "degradation.params"
        raise UserError(f"config key '{key}' does not give a degradation: "
                        f"{_one_line(exc)}") from exc


def model_channels(cfg: dict, data_channels: int) -> tuple[int, int]:
    """(in, out) channels: 2.5D stacks 2*context+1 slices into the input."""
    if cfg["sampling"]["mode"] == "2.5d":
        return 2 * int(cfg["sampling"]["context"]) + 1, 1
    return data_channels, data_channels


def sampling_spec(cfg: dict) -> SamplingSpec:
    """The patch sampling the config asks for (per-axis patch and scale checked)."""
    s = cfg["sampling"]
    nd = schema.spatial_dims(cfg)
    axes = s["axes"] if isinstance(s["axes"], list) else [s["axes"]]
    scale = schema.per_axis(cfg["model"]["scale"], nd, "model.scale")
    patch = schema.per_axis(s["patch_size"], nd, "sampling.patch_size")
    for p, k in zip(patch, scale):
        if int(k) != k or k < 1:
            raise UserError(f"config key 'model.scale' must hold integers >= 1, got {scale}")
        if p % int(k):
            raise UserError(f"sampling.patch_size {patch} must be divisible by model.scale "
                            f"{scale}")
    return SamplingSpec(mode=s["mode"], axes=tuple(int(a) for a in axes),
                        context=int(s["context"]), patch=tuple(int(p) for p in patch),
                        scale=tuple(int(k) for k in scale), flips=bool(s["flips"]),
                        permute=bool(s["permute"]),
                        min_foreground=float(s["min_foreground"]),
                        gamma=None if s["gamma"] is None else (float(s["gamma"][0]),
                                                               float(s["gamma"][1])),
                        remap=float(s["remap"]),
                        max_anisotropy=(None if s["max_anisotropy"] is None
                                        else float(s["max_anisotropy"])))


def create_model(cfg: dict, in_ch: int, out_ch: int) -> nn.Module:
    """The config's network, its size checked on the meta device before it is allocated."""
    spec = sampling_spec(cfg)
    name = cfg["model"]["name"]
    if name not in models.available():
        raise UserError(f"unknown model {name!r}; available: {', '.join(models.available())}")
    hparams = cfg["model"]["hparams"]
    _check_model_hparams(name, hparams)
    kwargs = {"spatial_dims": spec.spatial_dims, "scale": spec.scale, "in_channels": in_ch,
              "out_channels": out_ch, **hparams}
    try:
        # sizes first, on the meta device (nothing allocated): a huge width or depth is one
        # line, not the OOM killer
        with torch.device("meta"):
            probe = models.create(name, **kwargs)
        n = sum(p.numel() for p in probe.parameters())
        del probe
        if n > MAX_MODEL_PARAMETERS:
            raise UserError(f"model {name!r} with model.hparams {_short_hp(hparams)} would "
                            f"have {n:.3g} parameters (more than {MAX_MODEL_PARAMETERS:.0e})")
        return models.create(name, **kwargs)
    except UserError as exc:
        if "model.hparams" in str(exc) or not hparams:
            raise
        raise UserError(_one_line(f"model {name!r} cannot be built with model.hparams "
                                  f"{_short_hp(hparams)}: {exc}")) from exc
    except Exception as exc:  # noqa: BLE001 - any failure of a user's hparams is one line
        raise UserError(_one_line(f"model {name!r} cannot be built with model.hparams "
                                  f"{_short_hp(hparams)}: {exc}")) from exc


MAX_MODEL_PARAMETERS = 1_000_000_000


def _short_hp(hparams: dict) -> str:
    return _one_line(str(hparams), 120)


def _check_model_hparams(name: str, hparams: dict) -> None:
    """Whole-number hparams (sizes, counts) in 1..MAX_HPARAM_INT (0 where 0 is the default)."""
    params = inspect.signature(models.NETWORKS[name].__init__).parameters
    for key, value in hparams.items():
        if key not in params:  # models.create names the unknown hyperparameter
            continue
        default = params[key].default
        for x in value if isinstance(value, list | tuple) else [value]:
            if isinstance(x, bool) or not isinstance(x, int):
                continue
            if x > MAX_HPARAM_INT or x < 0 or (x == 0 and default != 0):
                raise UserError(f"model {name!r} cannot be built with model.hparams "
                                f"{key} = {_one_line(str(value), 60)}: whole numbers here are "
                                f"sizes or counts, 1..{MAX_HPARAM_INT}")


def probe_model(model: nn.Module, cfg: dict, in_ch: int, device: torch.device) -> None:
    """One forward pass on a zero LR patch (no gradients), before anything is written: a
    network that builds but cannot run (a zero width, ...) is a one-line UserError."""
    spec = sampling_spec(cfg)
    shape = (1, in_ch, *(p // k for p, k in zip(spec.patch, spec.scale)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(shape, device=device))
    except Exception as exc:  # noqa: BLE001 - a lazy check (interpolation, ...) included
        raise UserError(_one_line(f"model {cfg['model']['name']!r} with model.hparams "
                                  f"{_short_hp(cfg['model']['hparams'])} cannot run on a "
                                  f"{list(shape[2:])} patch: {exc}")) from exc
    finally:
        model.train(was_training)


def _one_line(exc: BaseException | str, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def model_info(cfg: dict, model: nn.Module, in_ch: int, out_ch: int,
               degradation: Any) -> dict[str, Any]:
    """Everything ``load_model`` / ``medsr infer --model`` need besides the weights."""
    spec = sampling_spec(cfg)
    hp = dict(getattr(model, "hparams", None) or cfg["model"]["hparams"])
    hp = {k: v for k, v in hp.items() if k not in CREATE_KEYS}
    try:
        deg = degradation.to_dict()
    except Exception:  # noqa: BLE001 - a degradation without to_dict is recorded by name
        deg = None
    return {
        "architecture": cfg["model"]["name"],
        "hparams": json.loads(json.dumps(hp)),
        "scale": list(spec.scale),
        "spatial_dims": spec.spatial_dims,
        "in_channels": in_ch,
        "out_channels": out_ch,
        "normalisation": {"method": "percentile", **cfg["data"]["normalise"]},
        "degradation": {"preset": cfg["degradation"]["preset"],
                        "params": cfg["degradation"]["params"],
                        "spec": cfg["degradation"]["spec"], "patch": deg,
                        **({"target_noise": cfg["degradation"]["target_noise"]}
                           if cfg["degradation"]["target_noise"]["kind"] != "none" else {})},
        "sampling": {"mode": spec.mode, "axes": list(spec.axes), "context": spec.context,
                     "patch_size": list(spec.patch)},
    }


def build_discriminator(cfg: dict, out_ch: int) -> nn.Module:
    """The adversarial loss's discriminator (``discriminator`` section) for the patch size."""
    spec = sampling_spec(cfg)
    return models.create_discriminator(cfg["discriminator"]["name"],
                                       spatial_dims=spec.spatial_dims, in_channels=out_ch,
                                       patch_size=spec.patch, **cfg["discriminator"]["hparams"])
