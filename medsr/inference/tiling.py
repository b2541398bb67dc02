"""Tiled application of an SR network with bounded memory and invisible seams.

Overlap-tile strategy: the input is cut into core tiles; each tile is run with a halo of
``halo`` extra input voxels on every side (clipped at the volume edge), and the halo's
output is thrown away. When the halo covers the network's effective receptive field the
stitched output equals the whole-volume output to float rounding, so no seam can show.
At the volume edges the input is padded reflectively by the halo (the same for tiled and
whole-volume runs) so the border is not darkened by the convolutions' zero padding.

Each output voxel is computed from its full receptive field, so no blending of
overlapping tiles (e.g. MONAI's Gaussian-weighted ``sliding_window_inference``) is needed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

Net = Callable[[torch.Tensor], torch.Tensor]


def _starts(n: int, tile: int) -> list[tuple[int, int]]:
    return [(a, min(a + tile, n)) for a in range(0, n, tile)]


def reflect_pad(x: torch.Tensor, halo: Sequence[int]) -> torch.Tensor:
    """Pad the spatial axes of (N, C, *sp) by ``halo`` (symmetric reflection, any size)."""
    for ax, h in enumerate(halo):
        if h <= 0:
            continue
        dim = 2 + ax
        n = x.shape[dim]
        # mirror indices (half-sample symmetric), valid for h > n too
        idx = np.arange(-h, n + h)
        period = 2 * n
        idx = np.mod(idx, period)
        idx = np.where(idx >= n, period - 1 - idx, idx)
        x = x.index_select(dim, torch.as_tensor(idx, device=x.device))
    return x


def tiled_forward(net: Net, x: torch.Tensor, scale: Sequence[int], tile: Sequence[int],
                  halo: Sequence[int], out: torch.Tensor | None = None,
                  device: torch.device | str = "cpu", pad_edges: bool = True,
                  progress: Callable[[int], None] | None = None,
                  channels_last: bool = False) -> torch.Tensor:
    """Apply ``net`` (LR (N,C,*sp) -> HR (N,C,*sp*scale)) tile by tile.

    ``x`` may live on the CPU while ``net`` runs on ``device``: each tile is copied over
    (pinned, non-blocking on CUDA) and its core copied back into ``out`` (CPU float32,
    allocated here unless given). ``progress`` is called with the number of tiles done.
    ``channels_last`` feeds tiles in channels-last layout (faster oneDNN convolutions on
    CPU; the network should be converted with :func:`to_channels_last` too).
    """
    nd = x.dim() - 2
    scale = [int(s) for s in scale]
    tile = [int(t) for t in tile]
    halo = [int(h) for h in halo]
    spatial = list(x.shape[2:])
    if pad_edges:
        x = reflect_pad(x, halo)
    offset = halo if pad_edges else [0] * nd
    n_out_ch = None
    device = torch.device(device)
    ranges = [_starts(n, t) for n, t in zip(spatial, tile)]
    for count, cores in enumerate(itertools.product(*ranges), start=1):
        src = []
        keep = []
        for ax, (a, b) in enumerate(cores):
            lo = max(a + offset[ax] - halo[ax], 0)
            hi = min(b + offset[ax] + halo[ax], x.shape[2 + ax])
            src.append(slice(lo, hi))
            first = (a + offset[ax] - lo) * scale[ax]
            keep.append(slice(first, first + (b - a) * scale[ax]))
        piece = x[(slice(None), slice(None), *src)]
        if device.type == "cuda":
            piece = piece.pin_memory().to(device, non_blocking=True)
        else:
            piece = piece.to(device)
        if channels_last:
            piece = piece.contiguous(memory_format=memory_format(nd))
        y = net(piece)
        core = y[(slice(None), slice(None), *keep)]
        if out is None:
            n_out_ch = y.shape[1]
            out = torch.empty((x.shape[0], n_out_ch, *[n * s for n, s in zip(spatial, scale)]),
                              dtype=torch.float32)
        dst = tuple(slice(a * s, b * s) for (a, b), s in zip(cores, scale))
        out[(slice(None), slice(None), *dst)] = core.float().cpu()
        if progress is not None:
            progress(count)
    assert out is not None
    return out


def receptive_halo(net: torch.nn.Module, extra: int = 3, cap: int = 32) -> int:
    """A tile halo covering the receptive field: the summed radii of the convolutions (an
    upper bound for a feed-forward network; HR-side convolutions count at LR scale too)
    plus ``extra`` for an interpolation skip (Lanczos-3), within [4, ``cap``]."""
    radius = 0
    for m in net.modules():
        if isinstance(m, torch.nn.modules.conv._ConvNd):
            radius += max((k - 1) // 2 * d for k, d in zip(m.kernel_size, m.dilation))
    return int(min(cap, max(4, radius + extra)))


def memory_format(spatial_dims: int) -> torch.memory_format:
    return torch.channels_last if spatial_dims == 2 else torch.channels_last_3d


def to_channels_last(net: torch.nn.Module, spatial_dims: int) -> torch.nn.Module:
    """Convert a network's weights to channels-last layout (in place)."""
    return net.to(memory_format=memory_format(spatial_dims))


def n_tiles(spatial: Sequence[int], tile: Sequence[int]) -> int:
    return math.prod(math.ceil(n / t) for n, t in zip(spatial, tile))


def tile_for_memory(spatial: Sequence[int], scale: Sequence[int], halo: Sequence[int],
                    width: int, max_bytes: float, batch: int = 1) -> list[int]:
    """The largest cubic-ish tile whose activations fit in ``max_bytes``.

    Activation memory is estimated as 4 bytes x ``width`` channels x 4 live tensors per
    output voxel of the (halo-padded) tile, the peak of a residual conv net in
    ``inference_mode``. Tiles never exceed the volume.
    """
    per_voxel = 4.0 * max(width, 1) * 4 * math.prod(scale) * batch
    budget_voxels = max(max_bytes / per_voxel, 1.0)
    nd = len(spatial)
    t = [int(n) for n in spatial]
    # shrink the largest tile axis until the padded tile fits
    while math.prod(ti + 2 * h for ti, h in zip(t, halo)) > budget_voxels:
        ax = int(np.argmax(t))
        if t[ax] <= 8:
            break
        t[ax] = max(8, t[ax] // 2)
    return t[:nd]
