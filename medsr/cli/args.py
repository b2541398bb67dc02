"""Argument parsing helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import math

from medsr.io.formats import VOXEL_SIZE_RANGE


def float_list(text: str) -> list[float]:
    """'2' -> [2.0]; '1,1,4' -> [1.0, 1.0, 4.0] (an argparse type)."""
    try:
        values = [float(x) for x in text.replace("x", ",").split(",") if x.strip()]
    except ValueError:
        msg = f"expected a number or a comma list, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not values:
        raise argparse.ArgumentTypeError("expected a number or a comma list")
    return values


def scalar_or_list(values: list[float] | None) -> float | list[float] | None:
    if values is None:
        return None
    return values[0] if len(values) == 1 else values


def int_list(text: str) -> list[int]:
    """'64' -> [64]; '128,128' -> [128, 128], each >= 1 (an argparse type)."""
    try:
        values = [int(x) for x in text.replace("x", ",").split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number or a comma list, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive whole numbers, got {text!r}")
    return values


# --------------------------------------------------------------------------- validators
# Every option is checked where it enters: a bad value is one argparse line, exit 2.

# Voxel sizes (in the file's unit) outside this range are refused (as in file headers).
SPACING_RANGE = VOXEL_SIZE_RANGE
# Output dtypes a scan can be written as (bool, complex, str, object ... are refused).
OUTPUT_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
                 "float32", "float64")


def _number(item: str, text: str) -> float:
    try:
        return float(item)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number or a comma list, got {text!r}") from None


def finite_float(text: str) -> float:
    """A finite number (no nan, inf or overflow such as 1e400)."""
    v = _number(text.strip(), text)
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def positive_float(text: str) -> float:
    """A finite number > 0."""
    v = _number(text.strip(), text)
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return v


def _in_range(name: str, convert, lo, hi, bounds: str):
    """An argparse type named ``name``: ``convert(text)``, refused outside [lo, hi]
    ("expected a <name> from <bounds>")."""
    def parse(text: str):
        v = convert(text)
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"expected a {name} from {bounds}, got {text!r}")
        return v
    parse.__name__ = name
    return parse


def float_in_range(lo: float, hi: float, *, positive: bool = False):
    """An argparse type: a finite number in [lo, hi] (and > 0 with ``positive``)."""
    return _in_range("number", positive_float if positive else finite_float, lo, hi,
                     f"{lo:g} to {hi:g}")


def _whole(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def int_in_range(lo: int, hi: int):
    """An argparse type: a whole number in [lo, hi]."""
    return _in_range("whole number", _whole, lo, hi, f"{lo} to {hi}")


def _numbers(text: str, *, per_axis: bool) -> list[float]:
    """The comma-separated numbers of ``text``, none empty; ``per_axis``: 1 to 3 of them,
    "x" also separating (``1x1x4``)."""
    items = (text.replace("x", ",") if per_axis else text).split(",")
    if any(not i.strip() for i in items) or per_axis and not 1 <= len(items) <= 3:
        raise argparse.ArgumentTypeError(
            f"expected one number or a comma list of 2 or 3, got {text!r}" if per_axis
            else f"expected a number or a comma list, got {text!r}")
    return [_number(i.strip(), text) for i in items]


def _checked_list(name: str, per_axis: bool, *checks):
    """An argparse type named ``name``: the numbers of :func:`_numbers`, refused with the
    first failing ``(ok, message)`` check's message (``ok(values)`` false)."""
    def parse(text: str) -> list[float]:
        values = _numbers(text, per_axis=per_axis)
        for ok, message in checks:
            if not ok(values):
                raise argparse.ArgumentTypeError(f"{message}, got {text!r}")
        return values
    parse.__name__ = name
    return parse


def _finite_in(lo: float, hi: float):
    """A check: every value finite and in [lo, hi]."""
    return lambda values: all(math.isfinite(v) and lo <= v <= hi for v in values)


def positive_list(hi: float = math.inf, lo: float = 0.0):
    """An argparse type: 1 to 3 comma-separated finite numbers in (lo, hi], none empty."""
    return _checked_list(
        "number list", True,
        (lambda values: all(math.isfinite(v) and v > 0 for v in values),
         "expected positive finite numbers"),
        (lambda values: not any(v > hi or v < lo for v in values),
         f"expected numbers from {lo:g} to {hi:g}"))


def output_dtype(text: str) -> str:
    """A numeric dtype name an image can be written as (an argparse type)."""
    import numpy as np

    try:
        name = np.dtype(text.strip()).name
    except (TypeError, ValueError, SyntaxError):
        name = ""
    if name not in OUTPUT_DTYPES:
        raise argparse.ArgumentTypeError(f"unsupported dtype {text!r}; choose one of "
                                         f"{', '.join(OUTPUT_DTYPES)}")
    return name


def width_list(hi: float):
    """An argparse type: a profile width, one number in (0, hi] or a comma list of 2 or 3 in
    [0, hi] (0: no blur along that axis), not all zero."""
    in_range = _finite_in(0.0, hi)
    return _checked_list(
        "width", True,
        (lambda values: in_range(values) and max(values) > 0,
         f"expected a positive width up to {hi:g} (per axis: 0 to {hi:g}, not all 0; "
         "no blur: --profile none)"))


def nonneg_list(hi: float):
    """An argparse type: one or more comma-separated finite numbers in [0, hi]."""
    return _checked_list("number list", False,
                         (_finite_in(0.0, hi), f"expected finite numbers from 0 to {hi:g}"))


def positive_int(text: str) -> int:
    """A whole number > 0 (an argparse type)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return v


def duration(text: str) -> float:
    """'300', '90s', '5m', '1h' -> seconds."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    t = text.strip().lower()
    mult = units.get(t[-1:], None)
    try:
        value = float(t[:-1] if mult else t) * (mult or 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a duration like 300, 90s or 5m, "
                                         f"got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"the budget must be a positive finite duration, "
                                         f"got {text!r}")
    return value
