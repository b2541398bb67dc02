"""Tiled application of an SR network with bounded memory and invisible seams.

Overlap-tile strategy: the input is cut into core tiles; each tile is run with a halo of
``halo`` extra input voxels on every side (clipped at the volume edge), and the halo's
output is thrown away. When the halo covers the network's effective receptive field the
stitched output equals the whole-volume output to float rounding, so no seam can show.
At the volume edges the input is padded reflectively by the halo (the same for tiled and
whole-volume runs) so the border is not darkened by the convolutions' zero padding.

Each output voxel is computed from its full receptive field, so for feed-forward
convolutional networks no blending of overlapping tiles is needed (``blend="crop"``, the
default). Networks with global context (channel attention pools over the whole input:
RCAN, SelNet) cannot be tiled exactly; for them ``blend="gaussian"`` keeps each tile's
whole output, overlap included, weighted by a Gaussian centred on the tile (sigma = 1/8
of its extent, as MONAI's ``sliding_window_inference``) and normalised, so tile borders
fade into their neighbours instead of showing as seams. The normaliser of a product
grid of tiles is the outer product of one-dimensional sums, so blending needs no
volume-sized weight array. The halo that covers a network's receptive field comes from
:mod:`medsr.inference.receptive_field`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from medsr.errors import UserError
from medsr.inference import BLENDS

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
                  channels_last: bool = False, blend: str = "crop",
                  out_on_device: bool = False) -> torch.Tensor:
    """Apply ``net`` (LR (N,C,*sp) -> HR (N,C,*sp*scale)) tile by tile.

    ``x`` may live on the CPU while ``net`` runs on ``device``: each tile is copied over
    (pinned, non-blocking on CUDA) and its core copied into ``out`` (float32, allocated
    here unless given: on the CPU, or on ``device`` with ``out_on_device``, where the
    loop then makes no host copy and no host synchronisation; ``x`` may already live
    there). ``progress`` is called with the number of tiles done.
    ``channels_last`` feeds tiles in channels-last layout (faster oneDNN convolutions on
    CPU; the network should be converted with :func:`to_channels_last` too).
    ``blend``: ``"crop"`` keeps each tile's core (exact for receptive fields within the
    halo), ``"gaussian"`` blends whole overlapping tile outputs (see the module doc).
    """
    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {BLENDS}, not {blend!r}")
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
    home = device if out_on_device else (out.device if out is not None else torch.device("cpu"))
    ranges = [_starts(n, t) for n, t in zip(spatial, tile)]
    gaussian = blend == "gaussian"
    if gaussian:  # per-axis weights of each tile and their sums (the separable normaliser)
        weights = [[_axis_window(a, b, h, n, s).to(home) for a, b in r]
                   for r, h, n, s in zip(ranges, halo, spatial, scale)]
        norms = [sum(ws) for ws in weights]
    for count, cores in enumerate(itertools.product(*ranges), start=1):
        src = []
        keep = []
        dst = []
        for ax, (a, b) in enumerate(cores):
            lo = max(a + offset[ax] - halo[ax], 0)
            hi = min(b + offset[ax] + halo[ax], x.shape[2 + ax])
            src.append(slice(lo, hi))
            if gaussian:  # the whole tile inside the volume
                v0, v1 = max(lo - offset[ax], 0), min(hi - offset[ax], spatial[ax])
            else:  # the core only
                v0, v1 = a, b
            first = (v0 + offset[ax] - lo) * scale[ax]
            keep.append(slice(first, first + (v1 - v0) * scale[ax]))
            dst.append(slice(v0 * scale[ax], v1 * scale[ax]))
        piece = x[(slice(None), slice(None), *src)]
        if piece.device == device:
            pass
        elif device.type == "cuda":
            piece = piece.pin_memory().to(device, non_blocking=True)
        else:
            piece = piece.to(device)
        if channels_last:
            piece = piece.contiguous(memory_format=memory_format(nd))
        y = net(piece)
        core = y[(slice(None), slice(None), *keep)]
        if out is None:
            n_out_ch = y.shape[1]
            alloc = torch.zeros if gaussian else torch.empty
            out = alloc((x.shape[0], n_out_ch, *[n * s for n, s in zip(spatial, scale)]),
                        dtype=torch.float32, device=home)
        region = (slice(None), slice(None), *dst)
        if gaussian:
            index = [r.index(c) for r, c in zip(ranges, cores)]
            w = None
            for ax, i in enumerate(index):
                wa = weights[ax][i][dst[ax]].reshape([-1 if d == ax else 1 for d in range(nd)])
                w = wa if w is None else w * wa
            out[region] += core.float().to(out.device) * w
        else:
            out[region] = core.float().to(out.device)
        if progress is not None:
            progress(count)
    assert out is not None
    if gaussian:
        for ax, norm in enumerate(norms):
            out /= norm.reshape([-1 if d == ax else 1 for d in range(nd)])
    return out


def _axis_window(a: int, b: int, halo: int, n: int, scale: int) -> torch.Tensor:
    """Gaussian weight over the HR axis (length n * scale) of the tile with core [a, b) and
    ``halo`` (sigma = 1/8 of the tile's extent; zero outside the tile; floor 1e-3 inside
    so every voxel has weight)."""
    lo, hi = max(a - halo, 0) * scale, min(b + halo, n) * scale
    pos = torch.arange(n * scale, dtype=torch.float32) + 0.5
    centre = (a + b) / 2 * scale
    sigma = 0.125 * (b - a + 2 * halo) * scale
    w = torch.exp(-0.5 * ((pos - centre) / sigma) ** 2).clamp_min(1e-3)
    w[:lo] = 0
    w[hi:] = 0
    return w


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


# Bytes of one activation tensor per forward call that keep a narrow conv net's layers
# cache-resident on a CPU (oneDNN): 32-channel 3x3 convolutions on this project's 2-core
# test machine ran at 74-92% of the matmul rate from 16k to 80k pixels per call and at
# 38-61% from 210k up (`pipelines/benchmark_speed.py --sweep`, docs/benchmarks/sweep.txt).
CPU_WORKING_SET = 12e6
# Shrinking tiles for the cache stops once halo voxels would add more than this factor.
MAX_HALO_OVERHEAD = 1.35


def _halo_overhead(tile: Sequence[int], halo: Sequence[int]) -> float:
    return math.prod((t + 2 * h) / t for t, h in zip(tile, halo))


def plan_work(spatial: Sequence[int], scale: Sequence[int], halo: Sequence[int], width: int,
              device: torch.device | str, max_memory: float, batch: int | None = None,
              tile: Sequence[int] | None = None, n_items: int = 1) -> tuple[list[int], int]:
    """Tile and batch size for running a network over ``n_items`` inputs of ``spatial``.

    CPU: tiles and batch sized so one activation tensor is ~:data:`CPU_WORKING_SET`
    bytes (cache-resident layers; halo overhead kept low by preferring whole planes).
    CUDA: as large as fits in half the free GPU memory (and ``max_memory``), since GPUs
    want big batches. ``tile`` / ``batch`` given by the caller are kept; memory always
    bounds the result (:func:`tile_for_memory`).
    """
    dev = torch.device(device)
    budget = float(max_memory)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        budget = min(budget, 0.5 * free)
    per_act = 4.0 * max(width, 1)  # bytes per input voxel of one activation tensor
    if tile is None:
        if dev.type == "cpu":
            t = [int(n) for n in spatial]
            target = CPU_WORKING_SET / per_act
            while math.prod(ti + 2 * h for ti, h in zip(t, halo)) > target:
                ax = int(np.argmax(t))
                smaller = list(t)
                smaller[ax] = (t[ax] + 1) // 2
                if t[ax] <= 16 or _halo_overhead(smaller, halo) > MAX_HALO_OVERHEAD:
                    break  # the halo would cost more than the cache saves
                t = smaller
            mem = tile_for_memory(spatial, scale, halo, width, budget, batch or 1)
            tile = [min(a, b) for a, b in zip(t, mem)]
        else:
            tile = tile_for_memory(spatial, scale, halo, width, budget, batch or 1)
    tile = [int(t) for t in tile]
    if len(tile) == 1:
        tile = tile * len(spatial)
    if len(tile) != len(spatial) or min(tile) < 1:
        raise UserError(f"tile {tile} does not fit {len(spatial)}-D inputs; give one size or "
                        f"{len(spatial)} positive sizes")
    if batch is None:
        padded = math.prod(min(t, n) + 2 * h for t, n, h in zip(tile, spatial, halo))
        per_item = per_act * 4 * math.prod(scale) * padded  # tile_for_memory's estimate
        fit = max(1, int(budget // per_item))
        if dev.type == "cpu":
            fit = min(fit, max(1, int(CPU_WORKING_SET / per_act // padded)))
        batch = int(max(1, min(fit, n_items, 64)))
    return tile, int(batch)
