"""Checkpoints that never unpickle: safetensors weights + JSON metadata, saved atomically.

A model checkpoint (``last.safetensors``, ``best.safetensors``) holds the weights and,
in the safetensors metadata under ``"medsr"`` (and in a ``.json`` beside it, for people),
everything needed to rebuild and apply the network: architecture name, hyperparameters,
scale, spatial_dims, channels, normalisation, degradation, sampling mode, medsr version.

The training state (optimiser, EMA, RNG, step) lives beside the run, not here
(:mod:`medsr.training.state`).

Loading never runs code from the file: safetensors is parsed as data; a foreign
``.pt``/``.pth`` goes through ``torch.load(weights_only=True)``, which refuses any
object that is not a tensor or a plain container.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from medsr import __version__
from medsr.errors import UserError
from medsr.io.common import atomic_path
from medsr.models import registry

FORMAT = "medsr-checkpoint-1"
INFO_KEYS = ("architecture", "hparams", "scale", "spatial_dims", "in_channels", "out_channels")


def plain_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies (safetensors refuses shared or strided storage)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def save_model(path: str | os.PathLike, state_dict: dict[str, torch.Tensor],
               info: dict[str, Any]) -> Path:
    """Write weights + info to ``path`` (.safetensors) and ``path.json``, each atomically."""
    missing = [k for k in INFO_KEYS if k not in info]
    if missing:
        raise ValueError(f"checkpoint info lacks {missing}")
    info = {"format": FORMAT, "medsr_version": __version__, **info}
    text = json.dumps(info, sort_keys=True)
    path = Path(path)
    with atomic_path(path) as tmp:
        # ONE metadata key: safetensors keeps metadata in a hash map, so the header order of
        # several keys (and hence the file's bytes) would vary from process to process.
        save_file(plain_tensors(state_dict), str(tmp), metadata={"medsr": text})
    with atomic_path(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def _kind(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError as exc:
        raise UserError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from exc
    if len(head) == 9 and head[8:9] == b"{":
        return "safetensors"
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return "torch"
    raise UserError(f"{path} is not a checkpoint (neither safetensors nor a torch file)")


# Metadata are a few kilobytes of shallow JSON; anything far bigger or deeper is hostile
# (a 10000-level nesting would overflow the parser's recursion).
MAX_METADATA_CHARS = 1_000_000
MAX_METADATA_DEPTH = 32


def _depth(obj: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(obj, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            if d > MAX_METADATA_DEPTH:
                break
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def _parse_metadata(path: Path, text: Any) -> Any:
    """The medsr metadata JSON of ``path``, refused (one line) when corrupted, huge or deep."""
    if isinstance(text, dict):
        parsed: Any = text
    else:
        if not isinstance(text, str) or len(text) > MAX_METADATA_CHARS:
            raise UserError(f"checkpoint metadata in {path} are invalid: not a JSON text of "
                            f"at most {MAX_METADATA_CHARS:,} characters")
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"checkpoint {path} has corrupted medsr metadata") from exc
        except RecursionError:
            parsed = None
    if parsed is None or _depth(parsed) > MAX_METADATA_DEPTH:
        raise UserError(f"checkpoint metadata in {path} are invalid: nested more than "
                        f"{MAX_METADATA_DEPTH} levels deep")
    return parsed


def _read_safetensors(path: Path, tensors: bool) -> tuple[dict[str, torch.Tensor],
                                                         dict[str, Any]]:
    """(state_dict, or {} without ``tensors``; info) of a medsr safetensors checkpoint."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}
    except Exception as exc:  # SafetensorError, OSError, ...
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"checkpoint {path} is corrupted or not safetensors: {why}") from exc
    if "medsr" not in meta:
        raise UserError(f"{path} is a safetensors file but not a medsr checkpoint "
                        "(no medsr metadata)")
    info = _parse_metadata(path, meta["medsr"])
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise UserError(f"{path} is not a medsr checkpoint of format {FORMAT}")
    return state, info


def read_info(path: str | os.PathLike) -> dict[str, Any]:
    """The medsr metadata of a safetensors checkpoint, without reading its weights."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    if _kind(path) != "safetensors":
        raise UserError(f"{path} is not a safetensors checkpoint")
    return _read_safetensors(path, tensors=False)[1]


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, info) of a checkpoint, without executing anything stored in it.

    ``info`` is empty for a foreign torch file that carries no medsr metadata.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    if _kind(path) == "safetensors":
        return _read_safetensors(path, tensors=True)
    try:
        # torch warns about pickle details (protocol, ...) before refusing: the one line
        # medsr prints is the whole story
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"refusing {path}: not a plain-weights torch file (loading it would "
                        "unpickle arbitrary objects, or it is corrupted)") from exc
    info: dict[str, Any] = {}
    if isinstance(obj, dict) and isinstance(obj.get("medsr"), (str, dict)):
        info = _parse_metadata(path, obj["medsr"])
        if not isinstance(info, dict):
            raise UserError(f"checkpoint metadata in {path} are invalid: not a mapping")
    for key in ("state_dict", "model", "params", "params_ema"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path} does not hold a state dict of tensors")
    return dict(obj), info


# Sane bounds on what a checkpoint may ask for, checked before anything is allocated: a
# hostile or damaged file must not send the allocator after terabytes.
MAX_HPARAM_INT = 4096  # widths, depths, block counts, kernel sizes
MAX_SCALE = 16
MAX_CHANNELS = 64
MAX_PARAMETERS = 1_000_000_000


def _bad(what: str) -> UserError:
    return UserError(f"checkpoint metadata: {what}")


def _check_hparam(name: str, v: Any, depth: int = 0) -> None:
    if v is None or isinstance(v, (bool, str)):
        return
    if isinstance(v, int):
        if not 0 <= v <= MAX_HPARAM_INT:
            raise _bad(f"hyperparameter {name} = {v} is out of range (0..{MAX_HPARAM_INT})")
    elif isinstance(v, float):
        if not math.isfinite(v) or abs(v) > 1e6:
            raise _bad(f"hyperparameter {name} = {v} is not a sane number")
    elif isinstance(v, list) and depth < 2 and len(v) <= MAX_HPARAM_INT:
        for x in v:
            _check_hparam(name, x, depth + 1)
    else:
        raise _bad(f"hyperparameter {name} has an unexpected value {str(v)[:60]!r}")


def check_info(info: dict[str, Any]) -> None:
    """Refuse checkpoint metadata outside sane bounds (UserError), before any building."""
    missing = [k for k in INFO_KEYS if k not in info]
    if missing:
        raise UserError(f"checkpoint metadata lacks {', '.join(missing)}")
    if not isinstance(info["architecture"], str):
        raise _bad(f"architecture must be a name, got {str(info['architecture'])[:60]!r}")
    if info["spatial_dims"] not in (2, 3) or isinstance(info["spatial_dims"], bool):
        raise _bad(f"spatial_dims must be 2 or 3, got {str(info['spatial_dims'])[:60]!r}")
    scale = info["scale"] if isinstance(info["scale"], list) else [info["scale"]]
    if not 1 <= len(scale) <= 3 or not all(
            isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= MAX_SCALE
            for k in scale):
        raise _bad(f"scale must be 1 to 3 whole numbers from 1 to {MAX_SCALE}, got "
                   f"{str(info['scale'])[:60]!r}")
    for key in ("in_channels", "out_channels"):
        v = info[key]
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_CHANNELS:
            raise _bad(f"{key} must be a whole number from 1 to {MAX_CHANNELS}, got "
                       f"{str(v)[:60]!r}")
    if not isinstance(info["hparams"], dict):
        raise _bad("hparams must be a mapping")
    for name, v in info["hparams"].items():
        _check_hparam(str(name), v)
    _check_inference_fields(info)


NORMALISATION_METHODS = ("percentile",)
SAMPLING_MODES = ("2d", "2.5d", "3d")
MAX_CONTEXT = 64  # as the training config allows (sampling.context)


def _short(v: Any) -> str:
    return repr(str(v)[:60])


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_inference_fields(info: dict[str, Any]) -> None:
    """The optional fields inference reads (normalisation, sampling, name): types, finite
    numbers, ranges, known choices; each problem is one line."""
    arch = info["architecture"]
    if len(arch) > 100 or not arch.isprintable():
        raise _bad(f"architecture must be a short printable name, got {_short(arch)}")
    name = info.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 100
                             or not name.isprintable()):
        raise _bad(f"name must be a short printable text, got {_short(name)}")
    norm = info.get("normalisation")
    if norm is not None:
        if not isinstance(norm, dict):
            raise _bad(f"normalisation must be a mapping, got {_short(norm)}")
        method = norm.get("method", "percentile")
        if method not in NORMALISATION_METHODS:
            raise _bad(f"normalisation method must be one of "
                       f"{', '.join(NORMALISATION_METHODS)}, got {_short(method)}")
        lower, upper = norm.get("lower", 0.5), norm.get("upper", 99.5)
        for key, v in (("lower", lower), ("upper", upper)):
            if not _is_number(v) or not 0 <= v <= 100:
                raise _bad(f"normalisation {key} must be a percentile from 0 to 100, got "
                           f"{_short(v)}")
        if not lower < upper:
            raise _bad(f"normalisation lower ({lower}) must be below upper ({upper})")
    samp = info.get("sampling")
    if samp is not None:
        if not isinstance(samp, dict):
            raise _bad(f"sampling must be a mapping, got {_short(samp)}")
        mode = samp.get("mode")
        if mode is not None:
            if mode not in SAMPLING_MODES:
                raise _bad(f"sampling mode must be one of {', '.join(SAMPLING_MODES)}, got "
                           f"{_short(mode)}")
            if (mode == "3d") != (info["spatial_dims"] == 3):
                raise _bad(f"sampling mode {mode} does not fit spatial_dims "
                           f"{info['spatial_dims']}")
        axes = samp.get("axes")
        if axes is not None and (
                not isinstance(axes, list) or not 1 <= len(axes) <= 3
                or any(isinstance(a, bool) or a not in (0, 1, 2) for a in axes)):
            raise _bad(f"sampling axes must list axes 0, 1 or 2, got {_short(axes)}")
        context = samp.get("context")
        if context is not None:
            if (not isinstance(context, int) or isinstance(context, bool)
                    or not 0 <= context <= MAX_CONTEXT):
                raise _bad(f"sampling context must be a whole number from 0 to "
                           f"{MAX_CONTEXT}, got {_short(context)}")
            if mode == "2.5d" and info["in_channels"] != (2 * context + 1) * info[
                    "out_channels"]:
                raise _bad(f"sampling context {context} (2.5d) does not fit "
                           f"{info['in_channels']} input and {info['out_channels']} output "
                           "channels")


def build_model(info: dict[str, Any], max_parameters: int | None = None) -> nn.Module:
    """The zoo network described by checkpoint ``info`` (randomly initialised).

    The metadata are checked against sane bounds (:func:`check_info`) and the network is
    first built on the ``meta`` device (nothing allocated): one with more parameters than
    ``max_parameters`` (or :data:`MAX_PARAMETERS`) is refused before it is allocated.
    """
    check_info(info)
    limit = MAX_PARAMETERS if max_parameters is None else min(max_parameters, MAX_PARAMETERS)

    def create() -> nn.Module:
        return registry.create(info["architecture"], spatial_dims=int(info["spatial_dims"]),
                             scale=tuple(info["scale"]) if isinstance(info["scale"], list)
                             else info["scale"], in_channels=int(info["in_channels"]),
                             out_channels=int(info["out_channels"]), **info["hparams"])

    try:
        with torch.device("meta"):
            n = sum(p.numel() for p in create().parameters())
        if n > limit:
            held = "the weights in the file" if limit == max_parameters else "the limit"
            raise UserError(f"checkpoint metadata describe a {info['architecture']} of "
                            f"{n:,} parameters, more than {limit:,} ({held})")
        return create()
    except UserError:
        raise
    except (KeyError, ValueError, TypeError, RuntimeError, ZeroDivisionError, OverflowError,
            AssertionError, IndexError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"cannot build network {info['architecture']!r} from the "
                        f"checkpoint: {why}") from exc


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu",
               architecture: dict[str, Any] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode on ``device``, info) from a checkpoint; never unpickles.

    ``architecture`` supplies (or overrides) the info for a foreign weights file.
    """
    state, info = read_checkpoint(path)
    info = {**info, **(architecture or {})}
    if not info:
        raise UserError(f"{path} carries no medsr metadata; say which architecture it is")
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise UserError(f"checkpoint {path} is damaged: weights {name} hold NaN or "
                            "infinite values")
    model = build_model(info, max_parameters=sum(t.numel() for t in state.values()))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise UserError(f"weights in {path} do not fit {info['architecture']!r}: "
                        f"{str(exc).splitlines()[0]}") from exc
    model.to(device).eval()
    return model, info
