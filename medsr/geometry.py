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

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medsr.errors import UserError
from medsr.volume import Volume

Factors = Sequence[float] | float
DEFAULT_MAX_OUTPUT_VOXELS = 1_000_000_000  # 4 GB as float32


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


@dataclass
class OutputGrid:
    """Where the output lies: per-axis factors, input and output shapes and the output
    affine A_in @ S (see the module doc)."""

    factors: np.ndarray
    shape_in: tuple[int, int, int]
    shape_out: tuple[int, int, int]
    affine_out: np.ndarray

    @property
    def spacing_out(self) -> np.ndarray:
        """The output voxel size along each index axis."""
        return spacing_of(self.affine_out)


def plan_grid(vol: Volume, scale: Factors | None = None, spacing: Factors | None = None,
              max_output_voxels: int = DEFAULT_MAX_OUTPUT_VOXELS) -> OutputGrid:
    """Turn --scale / --spacing (or neither: :func:`default_factors`) into an output grid."""
    if scale is not None and spacing is not None:
        raise UserError("give --scale or --spacing, not both")
    shape_in = vol.spatial_shape
    if scale is not None:
        factors = as_factors(scale, 3)
    elif spacing is not None:
        s = np.atleast_1d(np.asarray(spacing, dtype=float))
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise UserError(f"--spacing needs positive numbers in mm, got {s.tolist()}")
        factors = factors_for_spacing(vol.affine, spacing)
    else:
        factors = default_factors(vol.affine, shape_in)
    if np.any(factors < 1.0 - 1e-9):
        raise UserError(f"scale factors must be >= 1 (got {np.round(factors, 4).tolist()}); "
                        "medsr infer only upsamples — use medsr degrade to downsample")
    rough = float(np.prod(np.asarray(shape_in, dtype=np.float64) * factors)) * vol.channels
    if not np.isfinite(rough) or rough > 2.0 * max_output_voxels + 1e6:  # before int overflow
        raise UserError(f"output would have about {rough:.3g} voxels, above the limit of "
                        f"{max_output_voxels:,}; raise it with --max-output-voxels")
    shape_out = output_shape(shape_in, factors)
    n_out = math.prod(shape_out) * vol.channels
    if n_out > max_output_voxels:
        raise UserError(f"output would have {n_out:,} voxels, above the limit of "
                        f"{max_output_voxels:,}; raise it with --max-output-voxels")
    affine_out = upsampled_affine(vol.affine, factors, shape_in, shape_out)
    return OutputGrid(factors=factors, shape_in=shape_in, shape_out=shape_out,
                      affine_out=affine_out)


def plan_isotropic(vol: Volume, spacing: float | None = None,
                   max_output_voxels: int = DEFAULT_MAX_OUTPUT_VOXELS) -> OutputGrid:
    """Plan z (axis 2) to ``spacing`` (default: the finer lateral spacing), in the file's
    unit; the lateral axes stay as they are (microscopy stacks)."""
    dy, dx, dz = (float(s) for s in vol.spacing)
    target = min(dy, dx) if spacing is None else float(spacing)
    if not np.isfinite(target) or target <= 0:
        raise UserError(f"target z spacing must be a positive number, got {spacing}")
    if dz < target * (1 - 1e-6):
        unit = vol.meta.get("unit") or "pixel"
        raise UserError(f"z spacing {dz:g} {unit} is already finer than {target:g} {unit}; "
                        "nothing to make isotropic (give --spacing or --input-spacing)")
    return plan_grid(vol, scale=(1.0, 1.0, dz / target), max_output_voxels=max_output_voxels)
