"""Argument parsing helpers shared by the subcommands."""

from __future__ import annotations

import argparse


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
