"""The block library every network is built from, 2D or 3D through ``spatial_dims``.

Convolution / normalisation / activation factories, residual blocks with residual
scaling and optional channel attention (EDSR, SRResNet, RCAN, CARN), dense and
residual-dense blocks (RDN, ESRGAN), recursive shared-weight units (DRCN, DRRN,
MS-LapSRN), cascading blocks (CARN) and the selection unit (SelNet). Network files only
arrange these; none defines its own residual block or upsampler.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medsr.errors import UserError

KernelSize = int | Sequence[int]

# torch.nn's layers by spatial_dims (what MONAI's Conv/Norm factories return; importing
# any of MONAI imports all of it, its networks included, which medsr infer does not need).
CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
CONV_TRANSPOSE = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
NORM = {"batch": {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d},
        "instance": {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}}


def layer(table: dict, spatial_dims: int) -> type[nn.Module]:
    """``table[spatial_dims]``, or a UserError naming the dimensions that exist."""
    try:
        return table[int(spatial_dims)]
    except (KeyError, TypeError, ValueError):
        raise UserError(f"spatial_dims must be one of {sorted(table)}, "
                        f"got {spatial_dims!r}") from None


def _same_padding(kernel_size: KernelSize, spatial_dims: int, dilation: int = 1):
    ks = (kernel_size,) * spatial_dims if isinstance(kernel_size, int) else tuple(kernel_size)
    return tuple(dilation * (k - 1) // 2 for k in ks)


def conv(spatial_dims: int, in_channels: int, out_channels: int, kernel_size: KernelSize = 3,
         stride: int = 1, groups: int = 1, bias: bool = True, dilation: int = 1) -> nn.Module:
    """A 2D/3D convolution with 'same' padding for odd kernels."""
    return layer(CONV, spatial_dims)(
        in_channels, out_channels, kernel_size, stride=stride, groups=groups, bias=bias,
        dilation=dilation, padding=_same_padding(kernel_size, spatial_dims, dilation))


def norm(kind: str | None, spatial_dims: int, channels: int) -> nn.Module:
    """``None`` (identity), ``"batch"`` or ``"instance"`` normalisation."""
    if kind in (None, "none"):
        return nn.Identity()
    if kind not in NORM:
        raise UserError(f"unknown norm {kind!r}; choose from none, batch, instance")
    return layer(NORM[kind], spatial_dims)(channels)


def act(kind: str | None, channels: int = 1) -> nn.Module:
    """Activation by name: none, relu, prelu (one slope per channel), lrelu (slope 0.2, or
    ``lrelu:0.05``), tanh, sigmoid."""
    if kind in (None, "none"):
        return nn.Identity()
    if kind.startswith("lrelu:"):
        return nn.LeakyReLU(float(kind.split(":", 1)[1]))
    makers = {
        "relu": lambda: nn.ReLU(inplace=False),
        "prelu": lambda: nn.PReLU(channels),
        "lrelu": lambda: nn.LeakyReLU(0.2),
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
    }
    if kind not in makers:
        raise UserError(f"unknown activation {kind!r}; choose from {', '.join(makers)}")
    return makers[kind]()


class ConvNormAct(nn.Sequential):
    """conv -> norm -> act, or norm -> act -> conv with ``preact=True`` (DRRN)."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int,
                 kernel_size: KernelSize = 3, act: str | None = "relu", norm: str | None = None,
                 stride: int = 1, groups: int = 1, preact: bool = False):
        c = conv(spatial_dims, in_channels, out_channels, kernel_size, stride, groups,
                 bias=norm in (None, "none"))
        if preact:
            super().__init__(_norm(norm, spatial_dims, in_channels), _act(act, in_channels), c)
        else:
            super().__init__(c, _norm(norm, spatial_dims, out_channels), _act(act, out_channels))


_norm, _act = norm, act


class ConvStack(nn.Sequential):
    """Plain chain of ConvNormAct through ``channels`` (SRCNN, VDSR, LapSRN, ...).

    ``kernel_sizes`` is one size or one per layer; the last layer has no activation
    unless ``last_act``.
    """

    def __init__(self, spatial_dims: int, channels: Sequence[int],
                 kernel_sizes: KernelSize | Sequence[int] = 3, act: str | None = "relu",
                 last_act: bool = False, norm: str | None = None):
        n = len(channels) - 1
        ks = [kernel_sizes] * n if isinstance(kernel_sizes, int) else list(kernel_sizes)
        layers = [ConvNormAct(spatial_dims, channels[i], channels[i + 1], ks[i],
                              act if (i < n - 1 or last_act) else None,
                              norm if (i < n - 1 or last_act) else None)
                  for i in range(n)]
        super().__init__(*layers)


class Residual(nn.Module):
    """``x + res_scale * body(x)``: the global / group skip of EDSR, RCAN, RRDB."""

    def __init__(self, body: nn.Module, res_scale: float = 1.0):
        super().__init__()
        self.body = body
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.body(x)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation channel attention (RCAN): global pool, 1x1 down, 1x1 up."""

    def __init__(self, spatial_dims: int, channels: int, reduction: int = 16):
        super().__init__()
        mid = max(1, channels // reduction)
        pool = nn.AdaptiveAvgPool2d(1) if spatial_dims == 2 else nn.AdaptiveAvgPool3d(1)
        self.gate = nn.Sequential(pool, conv(spatial_dims, channels, mid, 1), nn.ReLU(),
                                  conv(spatial_dims, mid, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class ResBlock(nn.Module):
    """Residual block: conv-(norm)-act-conv-(norm) [-> channel attention], scaled skip.

    Covers EDSR (no norm, ``res_scale``), SRResNet (batch norm, PReLU), RCAB
    (``reduction`` adds channel attention), CARN (``post_act`` after the sum) and CARN-M's
    efficient block (``groups`` > 1 and ``pointwise`` adds act + 1x1 conv).
    """

    def __init__(self, spatial_dims: int, channels: int, kernel_size: KernelSize = 3,
                 act: str | None = "relu", norm: str | None = None, res_scale: float = 1.0,
                 reduction: int | None = None, post_act: str | None = None, groups: int = 1,
                 pointwise: bool = False):
        super().__init__()
        layers = [ConvNormAct(spatial_dims, channels, channels, kernel_size, act, norm,
                              groups=groups),
                  ConvNormAct(spatial_dims, channels, channels, kernel_size,
                              act if pointwise else None, norm, groups=groups)]
        if pointwise:
            layers.append(conv(spatial_dims, channels, channels, 1))
        if reduction:
            layers.append(ChannelAttention(spatial_dims, channels, reduction))
        self.body = nn.Sequential(*layers)
        self.res_scale = res_scale
        self.post_act = _act(post_act, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post_act(x + self.res_scale * self.body(x))


class ResidualDenseBlock(nn.Module):
    """Densely connected convs + fusion conv + scaled local skip (RDN's RDB, ESRGAN's RDB).

    Layer i maps ``channels + i * growth`` -> ``growth`` (with ``act``); the fusion conv
    (1x1 in RDN, 3x3 without activation in ESRGAN) maps everything back to ``channels``.
    """

    def __init__(self, spatial_dims: int, channels: int, growth: int, n_layers: int,
                 act: str | None = "relu", fusion_kernel: int = 1, res_scale: float = 1.0):
        super().__init__()
        self.layers = nn.ModuleList(
            ConvNormAct(spatial_dims, channels + i * growth, growth, 3, act)
            for i in range(n_layers))
        self.fusion = conv(spatial_dims, channels + n_layers * growth, channels, fusion_kernel)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, 1)))
        return x + self.res_scale * self.fusion(torch.cat(feats, 1))


class RecursiveUnit(nn.Module):
    """Apply one module (shared weights) ``times`` times.

    ``shared_source=True`` adds the unit's input to every recursion (DRRN, MS-LapSRN);
    ``forward(x, return_all=True)`` returns every intermediate output (DRCN).
    """

    def __init__(self, module: nn.Module, times: int, shared_source: bool = False):
        super().__init__()
        self.module = module
        self.times = int(times)
        self.shared_source = shared_source

    def forward(self, x: torch.Tensor, return_all: bool = False):
        out, outs = x, []
        for _ in range(self.times):
            out = self.module(out) + x if self.shared_source else self.module(out)
            outs.append(out)
        return outs if return_all else out


class CascadingBlock(nn.Module):
    """CARN's cascade: each unit's output is concatenated with all earlier features and
    fused by a 1x1 conv + ReLU; pass the same module several times to share weights."""

    def __init__(self, spatial_dims: int, channels: int, units: Sequence[nn.Module]):
        super().__init__()
        shared = all(u is units[0] for u in units)
        self.units = nn.ModuleList([units[0]] if shared else units)
        self.n = len(units)
        self.fuse = nn.ModuleList(ConvNormAct(spatial_dims, (i + 2) * channels, channels, 1)
                                  for i in range(self.n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cat, out = x, x
        for i in range(self.n):
            unit = self.units[0] if len(self.units) == 1 else self.units[i]
            cat = torch.cat([cat, unit(out)], 1)
            out = self.fuse[i](cat)
        return out


class SelectionUnit(nn.Module):
    """SelNet's switch: ReLU(x) gated by sigmoid(1x1 conv(ReLU(x)))."""

    def __init__(self, spatial_dims: int, channels: int):
        super().__init__()
        self.gate = nn.Sequential(conv(spatial_dims, channels, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(x)
        return x * self.gate(x)
