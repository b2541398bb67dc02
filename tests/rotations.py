"""Rotation matrices for the tests' oblique geometries, built here independently of medsr."""

from __future__ import annotations

import numpy as np


def rotation(ax: float, ay: float, az: float = 0.0) -> np.ndarray:
    """Rz @ Ry @ Rx for angles in radians about x, y and z."""
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx
