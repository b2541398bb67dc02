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
volume-sized weight array.
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


def conv_layers(net: torch.nn.Module) -> list[torch.nn.Module]:
    """The convolutions of ``net``, plain or fused with their activation."""
    from medsr.inference.fusion import FusedConvAct

    return [m for m in net.modules()
            if isinstance(m, (torch.nn.modules.conv._ConvNd, FusedConvAct))]


# Halos measured in this process, by architecture (see :func:`architecture_key`): the probe
# runs once per architecture and settings, not once per call or per loaded copy.
_HALOS: dict[tuple, int] = {}
# The checkpoint metadata key of a stored halo (written with the weights; see
# :func:`receptive_field_info`).
FIELD_KEY = "receptive_field"


def architecture_key(net: torch.nn.Module) -> tuple:
    """What a network's receptive field depends on, hashable: each module's class, its
    ``extra_repr`` (kernel sizes, dilations, strides, padding) and its plain settings
    (scale, interpolation method, centre-frame slice, ...), in module order. The
    weights do not enter: :func:`measured_radius` probes the architecture with random
    weights. Conv + activation fused for the CPU (:class:`~medsr.inference.fusion.
    FusedConvAct`) gives its own key, and the same halo."""
    net = getattr(net, "_orig_mod", net)
    parts = []
    for name, m in net.named_modules():
        plain = tuple(sorted(
            (k, repr(v)) for k, v in vars(m).items()
            if not k.startswith("_") and k != "training"
            and isinstance(v, (int, float, str, bool, tuple, slice, type(None)))))
        parts.append((name, type(m).__qualname__, m.extra_repr(), plain))
    return tuple(parts)


def receptive_field_info(net: torch.nn.Module) -> dict[str, int]:
    """The metadata to store with a model's weights (under :data:`FIELD_KEY`) so that
    loading it needs no probe: the halo of :func:`receptive_halo` with its defaults."""
    return {"halo": receptive_halo(net), "extra": 3, "cap": 32}


def remember_receptive_field(net: torch.nn.Module, info: dict | None) -> int | None:
    """Seed ``net``'s halo from its checkpoint metadata ``info`` (:data:`FIELD_KEY`), when
    present and plausible: an integer within [4, the analytic bound of the layers] (a
    halo beyond that bound would be a stale or edited value; the bound always covers the
    field). Returns the halo used, or None (then :func:`receptive_halo` measures)."""
    field = (info or {}).get(FIELD_KEY)
    if not isinstance(field, dict):
        return None
    halo, extra, cap = field.get("halo"), field.get("extra", 3), field.get("cap", 32)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (halo, extra, cap)):
        return None
    if not 4 <= halo <= _analytic_bound(net, extra, cap):
        return None
    try:
        net._medsr_halo = ((extra, cap, True), int(halo))
    except AttributeError:
        return None
    return int(halo)


def _analytic_bound(net: torch.nn.Module, extra: int, cap: int) -> int:
    radius = 0
    for m in conv_layers(net):
        radius += max((k - 1) // 2 * d for k, d in zip(m.kernel_size, m.dilation))
    return int(min(cap, max(4, radius + extra)))


def receptive_halo(net: torch.nn.Module, extra: int = 3, cap: int = 32,
                   probe: bool = True) -> int:
    """A tile halo (input voxels) covering ``net``'s receptive field, within [4, ``cap``].

    The bound: the summed radii of the convolutions (HR-side ones counted at LR scale)
    plus ``extra`` for an interpolation skip (Lanczos-3). It is loose for parallel
    branches (SP-VDSR's skip runs beside its body, not after it), so with ``probe`` the
    field is also measured (:func:`measured_radius`) and the smaller is used: outputs do
    not change, since both cover the field, but a smaller halo costs less compute at
    every tile and volume edge.

    Measured once: cached on the module, seeded from its checkpoint metadata
    (:func:`remember_receptive_field`; a deep copy keeps it), and cached per process by
    :func:`architecture_key`. A wrapper that runs its inner network on flipped inputs
    (``receptive_field_from`` names the inner module) has the inner network's halo.
    """
    inner = getattr(type(net), "receptive_field_from", None)
    if inner:
        return receptive_halo(getattr(net, inner), extra, cap, probe)
    cached = getattr(net, "_medsr_halo", None)
    key = (extra, cap, probe)
    if cached is not None and cached[0] == key:
        return cached[1]
    arch = (architecture_key(net), key)
    halo = _HALOS.get(arch)
    if halo is None:
        bound = _analytic_bound(net, extra, cap)
        halo = bound
        if probe:
            measured = measured_radius(net, bound)
            if measured is not None:
                halo = int(max(4, min(bound, measured)))
        _HALOS[arch] = halo
    try:
        net._medsr_halo = (key, halo)
    except AttributeError:  # modules that refuse attributes: the process cache serves
        pass
    return halo


@torch.no_grad()
def measured_radius(net: torch.nn.Module, bound: int, trials: int = 3) -> int | None:
    """The LR radius over which an input impulse changes ``net``'s output, or None when it
    cannot be probed (or reaches past ``bound``: global context, keep the bound).

    The probe is a copy of the network with random weights, so what is measured is the
    architecture's field, not an accident of the trained (or zero-initialised) weights.
    An impulse is added at the centre of random inputs of side 2 * (bound + 2) + 1; HR
    outputs that change (exactly: far outputs are computed by the same arithmetic from
    the same inputs) map to the LR voxels containing them. Several random backgrounds,
    so a ReLU that happens to be off cannot hide a dependence.
    """
    import copy

    net = copy.deepcopy(getattr(net, "_orig_mod", net))  # eager copy of a compiled net
    gen = torch.Generator().manual_seed(0)
    for p in net.parameters():
        fan_in = max(1, p[0].numel()) if p.dim() > 1 else 1
        p.copy_(torch.randn(p.shape, generator=gen).to(p) / fan_in ** 0.5)
    convs = conv_layers(net)
    scale = getattr(net, "scale", None)
    nd = getattr(net, "spatial_dims", None)
    if not convs or scale is None or nd not in (2, 3):
        return None
    global_ops = (torch.nn.AdaptiveAvgPool1d, torch.nn.AdaptiveAvgPool2d,
                  torch.nn.AdaptiveAvgPool3d, torch.nn.AdaptiveMaxPool2d,
                  torch.nn.AdaptiveMaxPool3d)
    if any(isinstance(m, global_ops) for m in net.modules()):
        return None  # channel attention: the field is the whole input
    scale = [int(k) for k in scale]
    param = convs[0].weight
    c_in = int(param.shape[1])
    n = 2 * (bound + 2) + 1
    c = n // 2
    radius = 0
    net.eval()
    for _ in range(trials):
        x = torch.rand((1, c_in, *([n] * nd)), generator=gen).to(param.device, param.dtype)
        x2 = x.clone()
        x2[(slice(None), slice(None), *([c] * nd))] += 100.0  # large: no change rounds away
        y1, y2 = net(x), net(x2)
        if isinstance(y1, (list, tuple)):
            y1, y2 = y1[-1], y2[-1]
        changed = (y1 != y2).reshape(-1, *y1.shape[2:]).any(dim=0)
        if changed.shape != tuple(n * k for k in scale):
            return None
        for ax in range(nd):
            other = [d for d in range(nd) if d != ax]
            hit = changed.any(dim=other) if other else changed
            idx = torch.nonzero(hit).flatten()
            if idx.numel() == 0:
                continue
            lr = idx // scale[ax]
            radius = max(radius, int((lr - c).abs().max()))
    return None if radius > bound else radius


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
