"""The affine math of resampled grids, in one place.

Voxel centres sit at integer indices. Upsampling an axis of n voxels by a factor k
(pixel shuffle, transposed convolution, interpolation with align_corners=False) puts
output index j at input position (j + 0.5) / k - 0.5, so

    A_out = A_in @ S,   S = [[diag(1/k), (1/k - 1) / 2], [0, 1]],   n_out = k * n_in.

The field of view (corner to corner) is preserved. For a factor that does not divide
the grid evenly (n * k not an integer, or a target spacing) the output grid keeps the
centre of the field of view and the requested spacing, with n_out = round(n * k):

    x_in(j) = (j - (n_out - 1) / 2) / k + (n_in - 1) / 2,

which reduces to the formula above when n_out = k * n_in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medsr.errors import UserError

Factors = Sequence[float] | float


def spacing_of(affine: np.ndarray) -> np.ndarray:
    """Voxel size along each index axis (the column norms of the 3x3 part)."""
    return np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)


def as_factors(factors: Factors, ndim: int = 3) -> np.ndarray:
    """Broadcast a scalar or per-axis factor to ``ndim`` positive float factors."""
    f = np.asarray(factors, dtype=np.float64).reshape(-1)
    if f.size == 1:
        f = np.repeat(f, ndim)
    if f.size != ndim:
        raise UserError(f"expected 1 or {ndim} factors, got {f.size}")
    if not np.all(np.isfinite(f)) or np.any(f <= 0):
        raise UserError(f"scale factors must be positive numbers, got {f.tolist()}")
    return f


def output_shape(shape: Sequence[int], factors: Factors) -> tuple[int, ...]:
    """n_out = round(n_in * k) per axis (at least 1)."""
    f = as_factors(factors, len(shape))
    return tuple(max(1, int(np.floor(n * k + 0.5))) for n, k in zip(shape, f))


def source_coordinates(n_in: int, n_out: int, k: float) -> np.ndarray:
    """Continuous input index of each output sample along one axis (centre-preserving)."""
    j = np.arange(n_out, dtype=np.float64)
    return (j - (n_out - 1) / 2.0) / k + (n_in - 1) / 2.0


def index_transform(shape_in: Sequence[int], factors: Factors,
                    shape_out: Sequence[int] | None = None) -> np.ndarray:
    """The 4x4 matrix S mapping output voxel indices to input voxel indices."""
    f = as_factors(factors, len(shape_in))
    shape_out = output_shape(shape_in, f) if shape_out is None else tuple(shape_out)
    nd = len(shape_in)
    S = np.eye(nd + 1)
    for ax, (n_in, n_out, k) in enumerate(zip(shape_in, shape_out, f)):
        S[ax, ax] = 1.0 / k
        S[ax, nd] = -(n_out - 1) / (2.0 * k) + (n_in - 1) / 2.0
    return S


def upsampled_affine(affine: np.ndarray, factors: Factors,
                     shape_in: Sequence[int] | None = None,
                     shape_out: Sequence[int] | None = None) -> np.ndarray:
    """A_out = A_in @ S for the grid upsampled by ``factors`` (k > 1 finer, k < 1 coarser).

    Without shapes the integer-factor form (n_out = k n_in) is used, which does not depend
    on n. Give both shapes for a grid where n_out != k n_in (non-integer division).
    """
    affine = np.asarray(affine, dtype=np.float64)
    f = as_factors(factors, 3)
    if shape_in is None:
        S = np.eye(4)
        S[:3, :3] = np.diag(1.0 / f)
        S[:3, 3] = (1.0 / f - 1.0) / 2.0
    else:
        S = index_transform(tuple(shape_in), f, shape_out)
    return affine @ S


def downsampled_affine(affine: np.ndarray, factors: Factors) -> np.ndarray:
    """A_lr = A_hr @ S^-1: the grid that ``upsampled_affine(A_lr, factors)`` maps back onto."""
    affine = np.asarray(affine, dtype=np.float64)
    f = as_factors(factors, 3)
    S = np.eye(4)
    S[:3, :3] = np.diag(1.0 / f)
    S[:3, 3] = (1.0 / f - 1.0) / 2.0
    return affine @ np.linalg.inv(S)


def factors_for_spacing(affine: np.ndarray, target_spacing: Factors) -> np.ndarray:
    """Per-axis factors k = s_in / s_target (1 where the axis keeps its spacing)."""
    s_in = spacing_of(affine)
    t = as_factors(target_spacing, 3)
    k = s_in / t
    k[np.isclose(k, 1.0, rtol=1e-6, atol=0)] = 1.0
    return k


def default_factors(affine: np.ndarray, spatial_shape: Sequence[int]) -> np.ndarray:
    """The plan when the user gives neither --scale nor --spacing.

    Anisotropic input (largest spacing >= 1.2 x smallest): isotropic at the finest
    spacing. Isotropic input: x2 along every axis that has more than one voxel.
    """
    s = spacing_of(affine)
    present = np.array([n > 1 for n in spatial_shape])
    s_present = s[present] if present.any() else s
    if s_present.max() >= 1.2 * s_present.min():
        k = s / s_present.min()
        k[~present] = 1.0
        k[np.isclose(k, 1.0, rtol=1e-6, atol=0)] = 1.0
        return k
    return np.where(present, 2.0, 1.0)


def is_integer_factors(factors: Factors, tol: float = 1e-6) -> bool:
    f = as_factors(factors, np.size(factors) if np.ndim(factors) else 1)
    return bool(np.all(np.abs(f - np.round(f)) < tol))


RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def ras_to_lps(affine: np.ndarray) -> np.ndarray:
    """NIfTI RAS+ <-> DICOM LPS (the same flip both ways)."""
    return RAS_TO_LPS @ np.asarray(affine, dtype=np.float64)


lps_to_ras = ras_to_lps
