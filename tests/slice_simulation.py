"""Thick slices from first principles, for tests: the acquisition matrix the
self-supervised benchmark simulates with (``pipelines/benchmark_selfsup.py``
``slice_weights``, written independently of medsr), so the tests that use it also check
the simulation behind the benchmark's headline numbers."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np


def thick_slices(x: np.ndarray, k: int, profile: str) -> np.ndarray:
    """``x`` acquired with slices k voxels thick (and apart) along its last axis."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipelines"))
    try:
        bench = importlib.import_module("benchmark_selfsup")
    finally:
        sys.path.pop(0)
    return x.astype(np.float64) @ bench.slice_weights(x.shape[-1], k, profile).T
