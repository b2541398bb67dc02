"""The receptive field of an SR network: the tile halo (input voxels) that covers it.

:func:`receptive_halo` bounds the field analytically from the convolutions and, with a
probe (:func:`measured_radius`: an impulse through a random-weight copy), measures it;
the smaller covers the field, so outputs do not change. Halos are cached on the module,
per process by architecture (:func:`architecture_key`), and stored with a model's
weights (:data:`FIELD_KEY`, :func:`receptive_field_info`) so loading it needs no probe
(:func:`remember_receptive_field`). The tiler (:mod:`medsr.inference.tiling`) cuts
tiles with this halo.
"""

from __future__ import annotations

import torch


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
