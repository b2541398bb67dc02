"""The common face of every SR network: LR in, HR out, per-axis integer factors.

``SRNet`` only validates and stores the interface attributes (``spatial_dims``,
``scale`` as a per-axis tuple, channel counts); the factory adds ``hparams``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from medsr.errors import UserError
from medsr.models.upsample import Interpolate

Scale = int | Sequence[int]


def as_scale(scale: Scale, spatial_dims: int) -> tuple[int, ...]:
    """Broadcast an integer or per-axis factor to a tuple of ``spatial_dims`` ints >= 1."""
    if spatial_dims not in (1, 2, 3):
        raise UserError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    factors = (scale,) * spatial_dims if isinstance(scale, int) else tuple(scale)
    if len(factors) == 1:
        factors = factors * spatial_dims
    if len(factors) != spatial_dims:
        raise UserError(f"scale {scale!r} needs 1 or {spatial_dims} factors")
    bad = [f for f in factors if isinstance(f, bool) or int(f) != f or int(f) < 1]
    if bad:
        raise UserError(f"scale factors must be integers >= 1, got {scale!r}")
    return tuple(int(f) for f in factors)


class SRNet(nn.Module):
    """Base class: stores the interface attributes every medsr network carries."""

    def __init__(self, spatial_dims: int, scale: Scale, in_channels: int, out_channels: int):
        super().__init__()
        self.spatial_dims = int(spatial_dims)
        self.scale = as_scale(scale, self.spatial_dims)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.hparams: dict = {}


class PostUpsampleNet(SRNet):
    """head -> body -> upsample -> tail (+ optional fixed-interpolation skip of the input).

    EDSR, RCAN, SRResNet, RRDBNet, RDN, CARN, IDN and EnhanceNet only fill these four
    (five) slots; the forward pass lives here once.
    """

    head: nn.Module
    body: nn.Module
    upsample: nn.Module
    tail: nn.Module
    skip: nn.Module | None

    def __init__(self, spatial_dims: int, scale: Scale, in_channels: int, out_channels: int):
        super().__init__(spatial_dims, scale, in_channels, out_channels)
        # an instance attribute, not a class default: a class-level ``skip = None`` would
        # shadow the submodule that nn.Module keeps in _modules, silently dropping the skip
        self.skip = None

    def forward(self, x):
        out = self.tail(self.upsample(self.body(self.head(x))))
        return out if self.skip is None else out + self.skip(x)


def require_same_channels(net: SRNet, name: str) -> None:
    """Networks that add the interpolated input to their output need in == out channels."""
    if net.in_channels != net.out_channels:
        raise UserError(f"{name} adds the upsampled input to its output: in_channels "
                        f"({net.in_channels}) must equal out_channels ({net.out_channels})")


def interpolation_skip(net: SRNet, interpolation: str | None) -> nn.Module | None:
    """The optional global skip of a post-upsampling network: a fixed interpolation of
    the input (None: no skip, the paper's architecture)."""
    if interpolation is None:
        return None
    require_same_channels(net, type(net).__name__.lower())
    return Interpolate(net.scale, interpolation)


class PreUpsampleNet(SRNet):
    """Interpolate to the HR grid first, then refine: ``body(up)`` (+ ``up`` if residual).

    SRCNN (no residual), VDSR, DRRN and SelNet only set ``interp`` and ``body``.
    """

    interp: nn.Module
    body: nn.Module
    residual: bool = True

    def forward(self, x):
        up = self.interp(x)
        out = self.body(up)
        return out + up if self.residual else out
