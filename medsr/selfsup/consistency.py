"""Data consistency along the thick axis: make the SR output re-acquire the scan exactly.

The acquisition along the thick axis is linear: y = A x, A (n, k n) the slice profile
sampled on the fine grid and decimated (the forward model the training pairs use,
:func:`medsr.selfsup.pairs.degrade_lines`). Of all volumes that re-acquire the scan, the
one closest to the network's output x0 is the orthogonal projection

    x = x0 + A^T (A A^T)^-1 (y - A x0),

applied to every line along the thick axis. When the profile is right and the scan
noise-free, the truth is such a volume, so the projection never moves the output away
from it (Pythagoras); measured gains are in docs/self-supervised.md. A small ridge keeps
(A A^T) invertible for profiles much wider than the slice spacing.
"""

from __future__ import annotations

import numpy as np

from medsr.selfsup.pairs import degrade_lines

RIDGE = 1e-4  # times the mean diagonal of A A^T
BLOCK_BYTES = 64 << 20  # lines projected at a time, as float32 fine-grid bytes


def thick_operator(n_lr: int, kernel: np.ndarray, k: int) -> np.ndarray:
    """(n_lr, k n_lr) float64 matrix of the thick-axis acquisition: row m is the profile
    of LR slice m on the fine grid (border handling as the training pairs')."""
    eye = np.eye(k * n_lr, dtype=np.float32)
    return degrade_lines(eye, kernel, k, axis=0).astype(np.float64)


def correction_matrix(a: np.ndarray, ridge: float = RIDGE) -> np.ndarray:
    """A^T (A A^T + ridge * mean diag)^-1: maps a residual of LR slices onto the fine grid."""
    g = a @ a.T
    g = g + ridge * float(np.mean(np.diag(g))) * np.eye(g.shape[0])
    return np.linalg.solve(g, a).T


def project(sr: np.ndarray, lr: np.ndarray, axis: int, kernel: np.ndarray, k: int
            ) -> np.ndarray:
    """``sr`` (on the k-times finer grid along ``axis``) made consistent with ``lr``: the
    orthogonal projection onto {x : A x = lr} line by line. Trailing channel axes are
    handled like any other axis but ``axis``."""
    n_lr = lr.shape[axis]
    if sr.shape[axis] != k * n_lr:
        raise ValueError(f"SR has {sr.shape[axis]} samples along axis {axis}, expected "
                         f"{k} x {n_lr}")
    a = thick_operator(n_lr, kernel, k).astype(np.float32)
    c = correction_matrix(a.astype(np.float64)).astype(np.float32)
    x = np.moveaxis(np.asarray(sr, dtype=np.float32), axis, 0)
    y = np.moveaxis(np.asarray(lr, dtype=np.float32), axis, 0)
    if x.ndim == 1:
        x, y = x[:, None], y[:, None]
    out = np.empty(x.shape, dtype=np.float32)
    # slabs of the next axis at a time: the memory beyond input and output stays
    # ~BLOCK_BYTES however large the volume
    row_bytes = 4 * x.shape[0] * int(np.prod(x.shape[2:]))
    step = max(1, BLOCK_BYTES // max(1, row_bytes))
    for i in range(0, x.shape[1], step):
        xb = x[:, i:i + step].reshape(x.shape[0], -1)
        yb = y[:, i:i + step].reshape(n_lr, -1)
        out[:, i:i + step] = (xb + c @ (yb - a @ xb)).reshape(out[:, i:i + step].shape)
    out = out.reshape(np.moveaxis(np.asarray(sr), axis, 0).shape)
    return np.moveaxis(out, 0, axis)
