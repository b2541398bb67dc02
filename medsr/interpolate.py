"""Classical interpolation baselines, separable and on medsr's one grid convention.

Output sample j along an axis sits at input position
``medsr.geometry.source_coordinates(n_in, n_out, k)`` (pixel shuffle / align_corners=False
for integer k; the centre of the field of view is kept for any k). Each axis whose factor
is not 1 is resampled by one 1-D linear operator, a banded (n_out x n_in) weight matrix;
axes with factor 1 are not touched at all.

Methods:

- ``nearest``     nearest input sample (no antialiasing when downsampling).
- ``linear``      triangle kernel.
- ``cubic``       interpolating cubic B-spline: the B-spline prefilter (samples ->
                  coefficients, pole sqrt(3) - 2, mirror boundary) and the B-spline
                  evaluation folded into one FIR kernel, the cardinal cubic spline, cut
                  where its weights fall below float32 (float64) resolution (31 (61)
                  taps). Equals ``scipy.ndimage.zoom(order=3, mode='reflect',
                  grid_mode=True)`` to 1e-7 (1e-12), without scipy's prefilter pass.
- ``catmull-rom`` Keys' cubic with a = -0.5 (what image tools call bicubic).
- ``mitchell``    Mitchell-Netravali, B = C = 1/3 (slightly smoothing, little ringing).
- ``lanczos``     Lanczos-3 windowed sinc, weights normalised to sum to 1 per sample.

Downsampling (k < 1): the kernels are widened by 1/k (antialiasing, as PIL does), and
``cubic`` uses the widened B-spline without prefilter (a smooth low-pass rather than an
interpolator). ``nearest`` just picks samples.

Edges: the signal is extended half-sample symmetrically (d c b a | a b c d | d c b a;
scipy's ``reflect``). Constants stay constant everywhere. A linear ramp stays exactly
linear wherever the kernel does not reach past the border: all output samples at least
``r`` input voxels inside (r = 1 linear, 2 cubics, 3 Lanczos; a few more voxels for the
B-spline prefilter, whose influence decays by 0.27 per voxel). Nearer the border, and
for the outermost half voxel of the field of view (outputs beyond the first and last
input centre), the ramp flattens towards the edge value instead of extrapolating.

Lanczos-3 does not reproduce linear functions exactly (its weights are normalised): a
ramp comes back with interior errors up to ~2% of the per-voxel step (PIL's LANCZOS does
the same). All other methods but nearest reproduce it to float precision when
upsampling, and when downsampling by an integer 1/k; for a non-integer 1/k the sampled
widened kernel leaves a small (~1-5% of a step) error, as in PIL.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from medsr.errors import InputError, UserError
from medsr.geometry import as_factors, output_shape, source_coordinates, upsampled_affine
from medsr.volume import Volume

if TYPE_CHECKING:
    import scipy.sparse as sp

METHODS = ("nearest", "linear", "cubic", "catmull-rom", "mitchell", "lanczos")

_BLOCK_OUT = 64  # output rows per dense block of the banded operator


# ----------------------------------------------------------------------------- kernels
def _linear(x: np.ndarray) -> np.ndarray:
    return np.clip(1.0 - np.abs(x), 0.0, None)


def _bc_cubic(B: float, C: float):
    """The Mitchell-Netravali family; (1, 0) B-spline, (0, 0.5) Catmull-Rom."""

    def k(x: np.ndarray) -> np.ndarray:
        x = np.abs(x)
        x2, x3 = x * x, x * x * x
        near = ((12 - 9 * B - 6 * C) * x3 + (-18 + 12 * B + 6 * C) * x2 + (6 - 2 * B)) / 6
        far = ((-B - 6 * C) * x3 + (6 * B + 30 * C) * x2 + (-12 * B - 48 * C) * x
               + (8 * B + 24 * C)) / 6
        return np.where(x < 1, near, np.where(x < 2, far, 0.0))

    return k


def _lanczos3(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) < 3, np.sinc(x) * np.sinc(x / 3.0), 0.0)


_BSPLINE3 = _bc_cubic(1.0, 0.0)
_POLE = np.sqrt(3.0) - 2.0  # the cubic B-spline prefilter's pole, |z| = 0.268


def _cardinal_cubic(reach: int):
    """The interpolating cubic spline as one FIR kernel: B3 evaluated on the prefiltered
    coefficients, c = sum_s sqrt(3) z^|t-s| x(s), i.e. eta(u) = sum_t B3(u - t) sqrt(3) z^|t|,
    with t cut at |t| <= reach (the neglected weights are below |z|^reach)."""
    t = np.arange(-reach, reach + 1, dtype=np.float64)
    h = np.sqrt(3.0) * _POLE ** np.abs(t)

    def k(x: np.ndarray) -> np.ndarray:
        return _BSPLINE3(x[..., None] - t) @ h

    return k


# cut-off of the cardinal spline: |z|^reach below the dtype's resolution
_CARDINAL_REACH = {np.dtype(np.float32): 15, np.dtype(np.float64): 30}


# name -> (kernel, support radius in input samples)
_KERNELS = {
    "linear": (_linear, 1.0),
    "cubic": (_bc_cubic(1.0, 0.0), 2.0),
    "catmull-rom": (_bc_cubic(0.0, 0.5), 2.0),
    "mitchell": (_bc_cubic(1.0 / 3.0, 1.0 / 3.0), 2.0),
    "lanczos": (_lanczos3, 3.0),
}


def _check_method(method: str) -> str:
    m = method.lower().replace("_", "-")
    aliases = {"bicubic": "catmull-rom", "bspline": "cubic", "lanczos3": "lanczos",
               "trilinear": "linear", "bilinear": "linear", "keys": "catmull-rom"}
    m = aliases.get(m, m)
    if m not in METHODS:
        raise UserError(f"unknown interpolation method {method!r}; "
                        f"choose from {', '.join(METHODS)}")
    return m


def _mirror(idx: np.ndarray, n: int) -> np.ndarray:
    """Half-sample symmetric extension of indices onto 0..n-1."""
    i = np.mod(idx, 2 * n)
    return np.where(i >= n, 2 * n - 1 - i, i)


# ----------------------------------------------------------------------------- operators
@lru_cache(maxsize=64)
def weight_matrix(n_in: int, n_out: int, k: float, method: str,
                  dtype: str = "float32") -> sp.csr_matrix:
    """The (n_out x n_in) sparse operator of one axis, float64, boundary folded in.

    ``cubic`` upsampling uses the cardinal cubic spline (B-spline prefilter and
    evaluation in one kernel), cut where its weights fall below ``dtype``'s resolution.
    """
    import scipy.sparse as sp  # here: the CLI's parser imports this module (medsr --help)

    method = _check_method(method)
    x = source_coordinates(n_in, n_out, k)
    rows = np.arange(n_out)
    if method == "nearest":
        cols = np.clip(np.floor(x + 0.5), 0, n_in - 1).astype(np.int64)
        return sp.csr_matrix((np.ones(n_out), (rows, cols)), shape=(n_out, n_in))
    kernel, radius = _KERNELS[method]
    if method == "cubic" and k >= 1.0:
        reach = _CARDINAL_REACH[np.dtype(dtype)]
        kernel, radius = _cardinal_cubic(reach), float(reach + 2)
    widen = max(1.0, 1.0 / k)
    reach = int(np.ceil(radius * widen))
    offsets = np.arange(-reach, reach + 1)
    taps = np.floor(x)[:, None].astype(np.int64) + offsets[None, :]
    w = kernel((x[:, None] - taps) / widen)
    w /= w.sum(axis=1, keepdims=True)
    cols = _mirror(taps, n_in)
    keep = w != 0
    m = sp.coo_matrix((w[keep], (np.broadcast_to(rows[:, None], w.shape)[keep], cols[keep])),
                      shape=(n_out, n_in))
    return m.tocsr()  # sums the weights of mirrored duplicates


def axis_operator(n_in: int, n_out: int, k: float, method: str,
                  dtype: str = "float32") -> np.ndarray:
    """Dense (n_out x n_in) operator of one axis (for torch and tests)."""
    return weight_matrix(n_in, n_out, float(k), _check_method(method), dtype).toarray()


def _blocks(W: sp.csr_matrix) -> list[tuple[int, int, int, int, np.ndarray]]:
    """Split a banded operator into dense blocks (rows r0:r1 use columns c0:c1)."""
    out = []
    n_out = W.shape[0]
    for r0 in range(0, n_out, _BLOCK_OUT):
        r1 = min(n_out, r0 + _BLOCK_OUT)
        sub = W[r0:r1]
        c0, c1 = int(sub.indices.min()), int(sub.indices.max()) + 1
        out.append((r0, r1, c0, c1, sub[:, c0:c1].toarray()))
    return out


def _apply_axis(x: np.ndarray, W: sp.csr_matrix, axis: int) -> np.ndarray:
    """Apply W along ``axis`` of x with dense BLAS blocks; memory ~ the output only."""
    n_out, n_in = W.shape
    shape = x.shape
    pre = int(np.prod(shape[:axis], dtype=np.int64))
    post = int(np.prod(shape[axis + 1:], dtype=np.int64))
    x3 = x.reshape(pre, n_in, post)
    out = np.empty((pre, n_out, post), dtype=x.dtype)
    blocks = [(r0, r1, c0, c1, B.astype(x.dtype)) for r0, r1, c0, c1, B in _blocks(W)]
    if post == 1:  # the last axis: (rows x n_in) @ block.T, written in place
        x2, o2 = x3.reshape(pre, n_in), out.reshape(pre, n_out)
        for r0, r1, c0, c1, B in blocks:
            np.matmul(x2[:, c0:c1], B.T, out=o2[:, r0:r1])
    elif post < 8 and pre >= 64:  # the last spatial axis before a few channels
        x2 = np.ascontiguousarray(np.moveaxis(x3, 2, 1)).reshape(pre * post, n_in)
        o2 = np.empty((pre * post, n_out), dtype=x.dtype)
        for r0, r1, c0, c1, B in blocks:
            np.matmul(x2[:, c0:c1], B.T, out=o2[:, r0:r1])
        out[...] = np.moveaxis(o2.reshape(pre, post, n_out), 2, 1)
    else:
        for p in range(pre):
            for r0, r1, c0, c1, B in blocks:
                np.matmul(B, x3[p, c0:c1], out=out[p, r0:r1])
    return out.reshape(shape[:axis] + (n_out,) + shape[axis + 1:])


# ----------------------------------------------------------------------------- public API
def _plan(shape: Sequence[int], factors, shape_out) -> tuple[np.ndarray, tuple[int, ...]]:
    nd = np.size(factors) if np.ndim(factors) else len(shape)
    if nd > len(shape):
        raise UserError(f"{nd} factors for an array of {len(shape)} dimensions")
    f = as_factors(factors, nd)
    spatial = tuple(int(n) for n in shape[:nd])
    if shape_out is None:
        so = output_shape(spatial, f)
    else:
        so = tuple(int(n) for n in shape_out)[:nd]
        if len(so) != nd or min(so) < 1:
            raise UserError(f"shape_out {tuple(shape_out)} does not fit {nd} spatial axes")
    return f, so


def resize(data: np.ndarray, factors, method: str = "cubic",
           shape_out: tuple[int, ...] | None = None) -> np.ndarray:
    """Resample the first ``len(factors)`` axes of ``data`` (trailing axes are channels).

    A scalar factor applies to every axis. Returns float64 for float64 input, float32
    otherwise. Axes with factor 1 (and unchanged size) are left bit for bit as they were.
    """
    method = _check_method(method)
    data = np.asarray(data)
    dtype = np.float64 if data.dtype == np.float64 else np.float32
    f, so = _plan(data.shape, factors, shape_out)
    f32max = float(np.finfo(np.float32).max)
    big = dtype == np.float32 and data.size and np.issubdtype(data.dtype, np.floating) and \
        max(abs(float(data.max())), abs(float(data.min()))) > f32max / 1024
    out = data.astype(np.float64 if big else dtype, copy=False)
    # overflow shows up as non-finite values, which the caller refuses in one line (no
    # numpy warning lines before it)
    with np.errstate(over="ignore", invalid="ignore"):
        for ax, (k, n_out) in enumerate(zip(f, so)):
            n_in = out.shape[ax]
            if k == 1.0 and n_out == n_in:
                continue
            W = weight_matrix(n_in, n_out, float(k), method, np.dtype(dtype).name)
            out = _apply_axis(out, W, ax)
    if big:  # values near float32's limit: computed in float64, must fit float32 again
        peak = float(np.max(np.abs(out))) if np.all(np.isfinite(out)) else float("inf")
        if peak > f32max:
            size = "values beyond float64's range" if peak == float("inf") else \
                f"values up to {peak:.3g}"
            raise InputError(f"{size} overflow float32 after {method} interpolation "
                             f"(limit {f32max:.3g}); rescale the image")
        out = out.astype(np.float32)
    if out is data:
        out = data.copy()
    return out


def resize_volume(vol: Volume, factors, method: str = "cubic",
                  shape_out: tuple[int, int, int] | None = None) -> Volume:
    """Resample a Volume's three spatial axes; the affine becomes A @ S (geometry)."""
    f = as_factors(factors, 3)
    data = resize(vol.data, f, method, shape_out)
    affine = upsampled_affine(vol.affine, f, vol.spatial_shape, data.shape[:3])
    return vol.with_data(data, affine)


def resize_torch(x, factors, method: str = "cubic", shape_out: Sequence[int] | None = None):
    """Resample a (N, C, *spatial) tensor on its device, the same grid and kernels as resize.

    Each changed axis is one dense matmul with the (n_out x n_in) operator, so it is
    differentiable and suits patches; for whole large volumes prefer :func:`resize`.
    """
    import torch

    method = _check_method(method)
    nsp = x.ndim - 2
    if nsp < 1:
        raise UserError(f"resize_torch expects (N, C, *spatial), got shape {tuple(x.shape)}")
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64, torch.float16,
                                   torch.bfloat16) else torch.float32
    out = x.to(dtype)
    for dim, M in _operator_fn()(tuple(int(n) for n in x.shape[2:]), factors, method,
                                 shape_out, dtype, x.device):
        out = torch.movedim(torch.movedim(out, dim, -1) @ M.T, -1, dim)
    return out


_TORCH_OPERATORS: dict[tuple, Any] = {}


def _torch_operators(shape: tuple[int, ...], factors, method: str,
                     shape_out: Sequence[int] | None, dtype, device) -> list:
    """[(dim, (n_out x n_in) operator tensor on ``device``)] for the changed axes, cached:
    a tiled run asks for the same few shapes thousands of times (and on a GPU each build
    is a host copy). Planned outside ``torch.compile`` graphs (it is numpy code);
    inference-mode tensors are cached apart, since autograd must not see them."""
    import torch

    factors = tuple(float(k) for k in as_factors(factors, len(shape)))
    shape_out = None if shape_out is None else tuple(int(n) for n in shape_out)
    key = (shape, factors, method, shape_out, dtype, str(device),
           torch.is_inference_mode_enabled())
    ops = _TORCH_OPERATORS.get(key)
    if ops is None:
        f, so = _plan(shape, factors, shape_out)
        prec = "float64" if dtype == torch.float64 else "float32"
        ops = []
        for ax, (k, n_out) in enumerate(zip(f, so)):
            n_in = shape[ax]
            if k == 1.0 and n_out == n_in:
                continue
            M = torch.as_tensor(axis_operator(n_in, int(n_out), float(k), method, prec),
                                dtype=dtype, device=device)
            ops.append((ax + 2, M))
        if len(_TORCH_OPERATORS) >= 256:
            _TORCH_OPERATORS.clear()
        _TORCH_OPERATORS[key] = ops
    return ops


_OPERATOR_FN: list = []


def _operator_fn():
    """:func:`_torch_operators`, excluded from ``torch.compile`` graphs (torch imported
    lazily). Until ``torch._dynamo`` is loaded nothing can be compiling (``torch.compile``
    imports it), and ``torch.compiler.disable`` would import it (seconds): the plain
    function then."""
    if not _OPERATOR_FN:
        if "torch._dynamo" not in sys.modules:
            return _torch_operators
        import torch

        disable = getattr(getattr(torch, "compiler", None), "disable", None)
        _OPERATOR_FN.append(disable(_torch_operators) if disable is not None else _torch_operators)
    return _OPERATOR_FN[0]
