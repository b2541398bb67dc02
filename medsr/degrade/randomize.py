"""Domain randomisation: parameter specs that may hold ranges or choices.

Rules (one per kind of parameter, so a list is never ambiguous):
  - scalar numbers (sigma, gain, jpeg_quality, window_alpha): a value, ``[lo, hi]``
    (uniform), ``{"uniform": [lo, hi]}``, ``{"log_uniform": [lo, hi]}`` or
    ``{"choice": [...]}``; sigma and gain also take ``{"per_channel": [v1, v2, ...]}``
    (each entry a value or a range);
  - per-axis numbers (scale, fwhm, thickness): a scalar or a list with one entry per axis;
    each entry may itself be ``[lo, hi]`` or a dict as above (also the whole scalar);
  - categorical strings (profile, downsample, noise, window): a value or a list to choose
    from (or ``{"choice": [...]}``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medsr.errors import UserError

SCALAR = ("sigma", "gain", "jpeg_quality", "window_alpha")
PER_AXIS = ("scale", "fwhm", "thickness")
CATEGORICAL = ("profile", "downsample", "noise", "window")
INTEGER = ("jpeg_quality",)


def _is_dist(v: Any) -> bool:
    return isinstance(v, dict) and len(v) == 1 and next(iter(v)) in (
        "uniform", "log_uniform", "choice")


def _draw_number(v: Any, rng: np.random.RandomState, name: str) -> Any:
    if isinstance(v, dict) and set(v) == {"per_channel"}:
        return [_draw_number(e, rng, name) for e in v["per_channel"]]
    if _is_dist(v):
        (kind, arg), = v.items()
        if kind == "choice":
            if not arg:
                raise UserError(f"{name}: empty choice list")
            return arg[int(rng.randint(len(arg)))]
        lo, hi = _bounds(arg, name)
        if kind == "log_uniform":
            if lo <= 0:
                raise UserError(f"{name}: log_uniform needs positive bounds, got {arg}")
            return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        return float(rng.uniform(lo, hi))
    if isinstance(v, list | tuple):
        lo, hi = _bounds(v, name)
        return float(rng.uniform(lo, hi))
    return v


def _bounds(arg: Any, name: str) -> tuple[float, float]:
    if not isinstance(arg, list | tuple) or len(arg) != 2:
        raise UserError(f"{name}: a range is [lo, hi], got {arg!r}")
    lo, hi = float(arg[0]), float(arg[1])
    if hi < lo:
        raise UserError(f"{name}: range [lo, hi] needs lo <= hi, got {arg}")
    return lo, hi


def is_random(spec: dict[str, Any]) -> bool:
    """True if any parameter of ``spec`` is a range or a choice."""
    for key, v in spec.items():
        if _is_dist(v):
            return True
        if isinstance(v, dict) and set(v) == {"per_channel"}:
            if any(_is_dist(e) or isinstance(e, list | tuple) for e in v["per_channel"]):
                return True
        if key in SCALAR and isinstance(v, list | tuple):
            return True
        if key in CATEGORICAL and isinstance(v, list | tuple):
            return True
        if key in PER_AXIS and isinstance(v, list | tuple) and any(
                _is_dist(e) or isinstance(e, list | tuple) for e in v):
            return True
    return False


def sample(spec: dict[str, Any], rng: np.random.RandomState) -> dict[str, Any]:
    """Concrete values for every parameter of ``spec`` (keys visited in sorted order)."""
    out = dict(spec)
    for key in sorted(spec):
        v = spec[key]
        if key in CATEGORICAL:
            if _is_dist(v):
                v = _draw_number(v, rng, key)
            elif isinstance(v, list | tuple):
                v = v[int(rng.randint(len(v)))] if v else None
        elif key in SCALAR:
            v = _draw_number(v, rng, key)
        elif key in PER_AXIS:
            if isinstance(v, list | tuple):
                v = [_draw_number(e, rng, key) for e in v]
            else:
                v = _draw_number(v, rng, key)
        if key in INTEGER and v is not None:
            v = int(round(float(v)))
        out[key] = v
    return out
