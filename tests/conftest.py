"""Shared pytest fixtures for the medsr test suite (keep this file small)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator: every test sees the same numbers."""
    return np.random.default_rng(1234)


@pytest.fixture
def oblique_affine() -> np.ndarray:
    """An oblique, flipped, anisotropic RAS affine (rotation about two axes, x flipped)."""
    a, b = np.deg2rad(17.0), np.deg2rad(-9.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    m = np.eye(4)
    m[:3, :3] = rz @ rx @ np.diag([-0.9, 1.1, 3.0])
    m[:3, 3] = [12.5, -30.25, 7.0]
    return m


@pytest.fixture
def one_thread():
    """One torch thread for the test, restored afterwards: tests that time training
    steps or compare runs share the machine with the other xdist worker."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
