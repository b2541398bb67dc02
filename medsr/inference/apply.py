"""Apply an SR network to a whole volume: slice-wise 2D along planes, or 3D, tiled.

A 2D network with scale (1, k) super-resolves one axis t: it runs on the planes that
contain t and one in-plane axis u, for both choices of u, and the two results are
averaged (through-plane fusion). A 2D network with scale (k, k) runs on the planes
perpendicular to the unchanged axis. A 3D network with scale (k1, k2, k3) runs on the
volume. Work is chunked over slices and tiles, so the process holds one float32 output
array plus small tile buffers whatever the volume size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from medsr.errors import UserError
from medsr.inference.receptive_field import conv_layers, receptive_halo
from medsr.inference.tiling import n_tiles, plan_work, tiled_forward
from medsr.intensity import Normalisation


@dataclass
class PlaneJob:
    """One pass of a 2D network: slices along ``slice_axis``, planes (u, t) of the volume."""

    slice_axis: int
    plane_axes: tuple[int, int]
    scale: tuple[int, int]
    weight: float


def plan_planes(model_scale: Sequence[int], factors: Sequence[int],
                shape: Sequence[int], fuse: bool = True) -> list[PlaneJob]:
    """Which planes a 2D network with ``model_scale`` must run on to realise ``factors``."""
    f = [int(k) for k in factors]
    ms = tuple(int(s) for s in model_scale)
    up = [ax for ax in range(3) if f[ax] > 1]
    if len(up) == 1:
        t = up[0]
        k = f[t]
        if ms not in ((1, k), (k, k)) and ms != (k, 1):
            raise UserError(f"a 2D model with scale {ms} cannot give factor {k} along axis {t}")
        others = [ax for ax in range(3) if ax != t and shape[ax] > 1]
        if not others:
            raise UserError("nothing to super-resolve: the volume is a single line of voxels")
        if not fuse:
            others = others[:1]
        jobs = []
        for u in others:
            w = next(ax for ax in range(3) if ax not in (u, t))
            if ms == (k, 1):
                jobs.append(PlaneJob(w, (t, u), (k, 1), 1.0 / len(others)))
            elif ms == (1, k):
                jobs.append(PlaneJob(w, (u, t), (1, k), 1.0 / len(others)))
            else:
                raise UserError(f"a 2D model with isotropic scale {ms} cannot super-resolve "
                                "one axis only; use a through-plane model")
        return jobs
    if len(up) == 2:
        a, b = up
        if ms != (f[a], f[b]):
            raise UserError(f"a 2D model with scale {ms} cannot give factors {tuple(f)}")
        w = next(ax for ax in range(3) if ax not in up)
        return [PlaneJob(w, (a, b), ms, 1.0)]
    if len(up) == 0:
        return []
    raise UserError("a 2D model cannot upsample all three axes at once; use a 3D model or "
                    "two passes")


def _slab_iter(n: int, batch: int):
    for a in range(0, n, batch):
        yield a, min(a + batch, n)


def width_of(model: nn.Module) -> int:
    """The widest convolution, for the memory estimate."""
    widths = [m.out_channels for m in conv_layers(model)]
    return max(widths) if widths else 64


@torch.inference_mode()
def apply_2d(model: nn.Module, data: np.ndarray, factors: Sequence[int], *,
             device: torch.device | str = "cpu", batch: int | None = None,
             halo: int | None = None, max_memory: float = 1.5e9,
             tile: Sequence[int] | None = None, fuse: bool = True,
             progress: Callable[[int, int], None] | None = None,
             channels_last: bool = False, blend: str = "crop",
             on_device: bool | None = None,
             normalise: Normalisation | None = None) -> np.ndarray:
    """Run a 2D network over the planes of ``data`` (I, J, K), float32 in, float32 out.

    ``tile`` / ``batch`` default to :func:`medsr.inference.tiling.plan_work`'s choice
    for the device (cache-sized on the CPU, memory-sized on a GPU).

    ``on_device`` (default: on any device but the CPU) keeps the work on the device:
    the input goes over once, the fusion of the planes accumulates in a device tensor,
    tiles are written there (no host copy or synchronisation inside the loop), and the
    output comes back once. The arithmetic is the CPU's (float32, the same order), so
    on the CPU both ways give the same bits.

    ``normalise``: the network sees ``normalise.apply(data)``, computed slab by slab (on
    the device, there), so no normalised copy of the volume is made."""
    shape = data.shape
    jobs = plan_planes(model.scale, factors, shape, fuse=fuse)
    halo = receptive_halo(model) if halo is None else int(halo)
    out_shape = tuple(n * int(k) for n, k in zip(shape, factors))
    dev = torch.device(device)
    if on_device is None:
        on_device = dev.type != "cpu"
    if on_device:
        return _apply_2d_on_device(model, data, jobs, out_shape, dev, halo, batch,
                                   max_memory, tile, progress, channels_last, blend,
                                   normalise)
    out = np.zeros(out_shape, dtype=np.float32)
    width = width_of(model)
    total = sum(shape[j.slice_axis] for j in jobs)
    done = 0
    for job in jobs:
        u, t = job.plane_axes
        plane = (shape[u], shape[t])
        tile2, nb = plan_work(plane, job.scale, (halo, halo), width, device, max_memory,
                              batch, tile, n_items=shape[job.slice_axis])
        # (slice, u, t) view of the input
        src = np.moveaxis(data, (job.slice_axis, u, t), (0, 1, 2))
        dst = np.moveaxis(out, (job.slice_axis, u, t), (0, 1, 2))
        for a, b in _slab_iter(src.shape[0], nb):
            if normalise is None:
                x = torch.from_numpy(np.ascontiguousarray(src[a:b]))[:, None]
            else:
                xs = np.array(src[a:b], dtype=np.float32, order="C")  # a copy, always
                x = torch.from_numpy(normalise.apply_(xs))[:, None]
            y = tiled_forward(model, x, job.scale, tile2, (halo, halo), device=device,
                              channels_last=channels_last, blend=blend)
            if job.weight == 1.0:
                dst[a:b] = y[:, 0].numpy()
            else:
                dst[a:b] += job.weight * y[:, 0].numpy()
            done += b - a
            if progress is not None:
                progress(done, total)
    return out


def _apply_2d_on_device(model: nn.Module, data: np.ndarray, jobs: list[PlaneJob],
                        out_shape: tuple[int, ...], dev: torch.device, halo: int,
                        batch: int | None, max_memory: float, tile: Sequence[int] | None,
                        progress: Callable[[int, int], None] | None, channels_last: bool,
                        blend: str, normalise: Normalisation | None) -> np.ndarray:
    """:func:`apply_2d` with the input, its normalisation, the fused output and every
    tile on ``dev``. The input goes over in its own dtype (an int16 scan: half the
    bytes of float32)."""
    shape = data.shape
    host = np.ascontiguousarray(data)
    if host.dtype not in (np.float32, np.float64, np.int16, np.uint8, np.int8, np.int32):
        host = host.astype(np.float32)
    src_all = torch.from_numpy(host)
    if dev.type == "cuda":
        src_all = src_all.pin_memory()
    src_all = src_all.to(dev, non_blocking=True).to(torch.float32)
    if normalise is not None:  # in place on the device
        if src_all.data_ptr() == torch.from_numpy(host).data_ptr():
            src_all = src_all.clone()  # the CPU: never write the caller's array
        normalise.apply_(src_all)
    out = torch.zeros(out_shape, dtype=torch.float32, device=dev)
    width = width_of(model)
    total = sum(shape[j.slice_axis] for j in jobs)
    done = 0
    for job in jobs:
        u, t = job.plane_axes
        tile2, nb = plan_work((shape[u], shape[t]), job.scale, (halo, halo), width, dev,
                              max_memory, batch, tile, n_items=shape[job.slice_axis])
        src = torch.movedim(src_all, (job.slice_axis, u, t), (0, 1, 2))
        dst = torch.movedim(out, (job.slice_axis, u, t), (0, 1, 2))
        for a, b in _slab_iter(src.shape[0], nb):
            x = src[a:b].contiguous()[:, None]
            y = tiled_forward(model, x, job.scale, tile2, (halo, halo), device=dev,
                              channels_last=channels_last, blend=blend, out_on_device=True)
            if job.weight == 1.0:
                dst[a:b] = y[:, 0]
            else:
                dst[a:b] += job.weight * y[:, 0]
            done += b - a
            if progress is not None:
                progress(done, total)
    return out.cpu().numpy()


@torch.inference_mode()
def apply_3d(model: nn.Module, data: np.ndarray, factors: Sequence[int], *,
             device: torch.device | str = "cpu", halo: int | None = None,
             max_memory: float = 1.5e9,
             tile: Sequence[int] | None = None,
             progress: Callable[[int, int], None] | None = None,
             channels_last: bool = False, blend: str = "crop") -> np.ndarray:
    """Run a 3D network over ``data`` (I, J, K) in tiles (sized by ``plan_work``)."""
    ms = tuple(int(s) for s in model.scale)
    halo = receptive_halo(model) if halo is None else int(halo)
    if ms != tuple(int(k) for k in factors):
        raise UserError(f"a 3D model with scale {ms} cannot give factors {tuple(factors)}")
    tile3, _ = plan_work(data.shape, ms, (halo,) * 3, width_of(model), device, max_memory,
                         1, tile)
    x = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))[None, None]
    total = n_tiles(data.shape, tile3)
    y = tiled_forward(model, x, ms, tile3, (halo,) * 3, device=device,
                      progress=(lambda n: progress(n, total)) if progress else None,
                      channels_last=channels_last, blend=blend,
                      out_on_device=torch.device(device).type != "cpu")
    return y[0, 0].cpu().numpy()  # one copy back, after the loop
