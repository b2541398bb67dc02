"""Upsamplers for per-axis integer factors, 2D and 3D.

- :func:`pixel_shuffle_nd` / :class:`PixelShuffleND`: sub-pixel rearrangement for any
  per-axis factors, e.g. (1, 1, 4); channel order matches ``torch.nn.PixelShuffle``
  (channel ``c * prod(f) + flat_index(offset)``). MONAI's ``SubpixelUpsample`` takes one
  isotropic factor only.
- :func:`icnr_`: ICNR initialisation so a fresh sub-pixel conv equals nearest-neighbour
  upsampling of one conv (no checkerboard at start).
- :class:`SubpixelConv`, :class:`TransposedConvUpsample`, :class:`ResizeConv`,
  :class:`Interpolate`: one upsampling step each.
- :func:`prime_steps` / :func:`make_upsampler`: the factory; factor k along an axis is
  decomposed into its prime factors (4 -> 2, 2; (1, 1, 4) -> (1, 1, 2), (1, 1, 2);
  3 and 5 are single steps).

Every step puts output index j at input position (j + 0.5) / k - 0.5 (the geometry of
``medsr.geometry``), exactly for sub-pixel and interpolation steps, and for transposed
convs whenever kernel - factor is even (the default kernel is chosen so).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medsr.errors import UserError
from medsr.interpolate import resize_torch
from medsr.models.blocks import CONV_TRANSPOSE, conv, layer
from medsr.models.blocks import act as make_act

Factors = Sequence[int]


def prime_factors(n: int) -> list[int]:
    """Prime factors of n in ascending order (1 -> [])."""
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out


def prime_steps(factors: Factors) -> list[tuple[int, ...]]:
    """Split per-axis factors into prime steps, e.g. (2, 4) -> [(2, 2), (1, 2)]."""
    per_axis = [prime_factors(int(f)) for f in factors]
    n = max((len(p) for p in per_axis), default=0)
    return [tuple(p[i] if i < len(p) else 1 for p in per_axis) for i in range(n)]


def pixel_shuffle_nd(x: torch.Tensor, factors: Factors) -> torch.Tensor:
    """(N, C * prod(f), *S) -> (N, C, *(S * f)) for any number of spatial axes."""
    d = x.ndim - 2
    f = tuple(int(k) for k in factors)
    if len(f) != d:
        raise UserError(f"pixel shuffle needs {d} factors, got {f}")
    r = math.prod(f)
    n, c_in, *sp = x.shape
    if c_in % r:
        raise UserError(f"{c_in} channels cannot be shuffled by factors {f}")
    c = c_in // r
    x = x.reshape(n, c, *f, *sp)
    # (N, C, f1..fd, S1..Sd) -> (N, C, S1, f1, ..., Sd, fd)
    perm = [0, 1] + [p for i in range(d) for p in (2 + d + i, 2 + i)]
    x = x.permute(*perm)
    return x.reshape(n, c, *(s * k for s, k in zip(sp, f)))


class PixelShuffleND(nn.Module):
    """Module form of :func:`pixel_shuffle_nd`."""

    def __init__(self, factors: Factors):
        super().__init__()
        self.factors = tuple(int(k) for k in factors)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_shuffle_nd(x, self.factors)

    def extra_repr(self) -> str:
        return f"factors={self.factors}"


@torch.no_grad()
def icnr_(weight: torch.Tensor, factors: Factors, init=nn.init.kaiming_normal_) -> torch.Tensor:
    """ICNR: initialise one sub-kernel per output channel and repeat it for every sub-pixel
    offset, so conv + shuffle starts as conv + nearest-neighbour upsampling."""
    if weight.is_meta:  # nothing to initialise (and torch's meta normal_ imports torch._dynamo)
        return weight
    r = math.prod(int(k) for k in factors)
    out_ch = weight.shape[0]
    sub = torch.empty((out_ch // r, *weight.shape[1:]), dtype=weight.dtype, device=weight.device)
    init(sub)
    weight.copy_(sub.repeat_interleave(r, dim=0))
    return weight


class SubpixelConv(nn.Sequential):
    """conv (in -> out * prod(f), ICNR unless grouped) -> N-d pixel shuffle -> optional act."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, factors: Factors,
                 kernel_size: int = 3, act: str | None = None, groups: int = 1):
        f = tuple(int(k) for k in factors)
        c = conv(spatial_dims, in_channels, out_channels * math.prod(f), kernel_size,
                 groups=groups)
        if groups == 1:
            icnr_(c.weight, f)
        super().__init__(c, PixelShuffleND(f), make_act(act, out_channels))


def transposed_geometry(factor: int, kernel: int | None):
    """(kernel, padding, output_padding) giving exactly ``factor * n`` outputs; the
    default kernel ``factor + 2 * ceil(factor / 2)`` is also exactly grid-aligned."""
    p = math.ceil(factor / 2) if kernel is None else math.ceil((kernel - factor) / 2)
    k = factor + 2 * p if kernel is None else kernel
    if k < factor:
        raise UserError(f"transposed conv kernel {k} is smaller than its stride {factor}")
    return k, p, factor - k + 2 * p


class TransposedConvUpsample(nn.Module):
    """Transposed convolution with stride = per-axis factors (FSRCNN, LapSRN, IDN)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, factors: Factors,
                 kernel_size: int | None = None, act: str | None = None, bias: bool = True,
                 linear_init: bool = False):
        super().__init__()
        geo = [transposed_geometry(int(f), kernel_size) for f in factors]
        k, p, op = (tuple(g[i] for g in geo) for i in range(3))
        self.deconv = layer(CONV_TRANSPOSE, spatial_dims)(
            in_channels, out_channels, k, stride=tuple(int(f) for f in factors), padding=p,
            output_padding=op, bias=bias)
        self.act = make_act(act, out_channels)
        if linear_init:
            self._linear_init(factors, k, p)

    @torch.no_grad()
    def _linear_init(self, factors: Factors, kernel: tuple, padding: tuple) -> None:
        """Start as (bi/tri)linear interpolation channel by channel (LapSRN's image branch):
        tap t lies t - p - (f - 1) / 2 output pixels from its input sample's centre."""
        w = torch.ones(())
        for f, k, p in zip(factors, kernel, padding):
            d = torch.arange(k, dtype=torch.float64) - p - (f - 1) / 2
            w = w[..., None] * (1 - d.abs() / f).clamp(min=0)
        weight = self.deconv.weight
        weight.zero_()
        for c in range(min(weight.shape[0], weight.shape[1])):
            weight[c, c] = w.to(weight.dtype)
        if self.deconv.bias is not None:
            self.deconv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.deconv(x))


class Interpolate(nn.Module):
    """Fixed (non-trainable) upsampling by per-axis factors.

    ``nearest`` / ``linear`` (bilinear or trilinear) / ``bicubic`` (2D only) use
    ``torch.nn.functional.interpolate`` (align_corners=False); ``catmull-rom``, ``cubic``
    (B-spline), ``mitchell`` and ``lanczos`` use :func:`medsr.interpolate.resize_torch`,
    the project's separable kernels on the same half-pixel grid in 2D and 3D.
    Under mixed precision (autocast) it still runs in the input's dtype: a global skip
    computed in float16 / bfloat16 would add rounding noise no network can learn away.
    """

    TORCH_MODES = {"nearest": "nearest", "linear": None, "bicubic": "bicubic"}

    def __init__(self, factors: Factors, method: str = "catmull-rom"):
        super().__init__()
        self.factors = tuple(int(k) for k in factors)
        self.method = method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if all(k == 1 for k in self.factors):
            return x
        if x.device.type not in ("cpu", "cuda"):   # meta tensors (complexity counts)
            return self._resize(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self._resize(x)

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        size = [s * k for s, k in zip(x.shape[2:], self.factors)]
        if self.method == "bicubic" and x.ndim != 4:
            raise UserError("interpolation 'bicubic' is 2D only; use 'catmull-rom' in 3D")
        if self.method in self.TORCH_MODES:
            mode = self.TORCH_MODES[self.method] or ("bilinear" if x.ndim == 4 else "trilinear")
            kw = {} if mode == "nearest" else {"align_corners": False}
            return F.interpolate(x, size=size, mode=mode, **kw)

        return resize_torch(x, self.factors, self.method, shape_out=size)

    def extra_repr(self) -> str:
        return f"factors={self.factors}, method={self.method!r}"


class ResizeConv(nn.Sequential):
    """Nearest-neighbour upsampling + conv (+ act): ESRGAN, EnhanceNet."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, factors: Factors,
                 kernel_size: int = 3, act: str | None = None):
        super().__init__(Interpolate(factors, "nearest"),
                         conv(spatial_dims, in_channels, out_channels, kernel_size),
                         make_act(act, out_channels))


MODES = ("pixelshuffle", "deconv", "resize_conv")


def make_upsampler(spatial_dims: int, channels: int, factors: Factors,
                   mode: str = "pixelshuffle", out_channels: int | None = None,
                   kernel_size: int | None = 3, act: str | None = None, groups: int = 1,
                   decompose: bool = True) -> nn.Sequential:
    """The upsampler factory: one step per prime factor (or one step if not
    ``decompose``); every step keeps ``channels`` except the last, which maps to
    ``out_channels`` when given. Factors all 1 give an empty (identity) Sequential."""
    if mode not in MODES:
        raise UserError(f"unknown upsampler {mode!r}; choose from {', '.join(MODES)}")
    f = tuple(int(k) for k in factors)
    steps = prime_steps(f) if decompose else ([f] if any(k > 1 for k in f) else [])
    out_channels = channels if out_channels is None else out_channels
    if not steps and out_channels != channels:
        return nn.Sequential(conv(spatial_dims, channels, out_channels, kernel_size or 3))
    layers = []
    for i, step in enumerate(steps):
        c_out = out_channels if i == len(steps) - 1 else channels
        if mode == "pixelshuffle":
            layers.append(SubpixelConv(spatial_dims, channels, c_out, step, kernel_size or 3,
                                       act, groups))
        elif mode == "deconv":
            layers.append(TransposedConvUpsample(spatial_dims, channels, c_out, step,
                                                 kernel_size, act))
        else:
            layers.append(ResizeConv(spatial_dims, channels, c_out, step, kernel_size or 3, act))
    return nn.Sequential(*layers)
