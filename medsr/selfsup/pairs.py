"""Training pairs from the scan alone: fine in-plane data degraded like the thick axis.

For every fine axis a (the "degraded" axis) and each companion axis b (another fine axis,
and the thick axis t), the planes (b, a) of the volume
are blurred along a with the slice profile and sampled every k voxels, on the same grid
the acquisition used along t (LR voxel m at fine position k m + (k - 1) / 2, as in
:mod:`medsr.degrade.downsample`; for even k the profile is centred half-way between two
fine samples, :func:`medsr.selfsup.axes.profile_kernel`). A pair is an HR patch (P_b, k L)
and its LR patch (P_b, L): exactly what a 2D network with scale (1, k) sees when it is
applied to the planes (u, t) of the scan. Using both fine axes as a is the in-plane axis swap.

With several kernels (a *mixture* of candidate profiles, when the scan's own profile is
not known) every batch is degraded with one of them, drawn uniformly: the network learns
to undo any of them (:func:`medsr.selfsup.blind.blind_profiles`).

Patches are drawn with probability proportional to the local gradient magnitude (plus a
floor, so flat regions are not forgotten), with random flips of both plane axes.
Everything is drawn from one ``numpy.random.Generator``: a seed fixes the sample stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.ndimage as ndi
import torch

from medsr.degrade.blur import convolve_axis

GRADIENT_FLOOR = 0.1  # share of the mean weight every patch origin gets regardless
MIN_LR_SAMPLES = 4    # a fine axis degrades into pairs only if it gives this many LR samples


def degrade_lines(x: np.ndarray, kernel: np.ndarray, k: int, axis: int = -1) -> np.ndarray:
    """Blur ``x`` along ``axis`` with ``kernel`` and sample every k-th voxel (LR grid).

    LR sample m sits at fine position k m + (k - 1) / 2; ``n // k`` samples.
    """
    axis = axis % x.ndim
    src = _sampling_source(x, kernel, k, axis)
    n = x.shape[axis] // k
    idx = np.arange(n) * k + (k - 1) // 2
    return np.take(src, idx, axis=axis)


def _sampling_source(x: np.ndarray, kernel: np.ndarray, k: int, axis: int) -> np.ndarray:
    """The blurred signal at positions j + (k - 1) / 2 - (k - 1) // 2 (i.e. +0 or +0.5).

    For even k an even-length kernel is already centred at j + 1/2 (``convolve_axis``);
    an odd-length one is centred on j, and the mean of two neighbours moves it there."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    kernel = np.asarray(kernel, dtype=np.float64)
    b = convolve_axis(t, kernel, axis).numpy()
    if k % 2 == 0 and kernel.size % 2 == 1:  # mean of the two neighbours
        nxt = np.take(b, np.r_[1:b.shape[axis], b.shape[axis] - 1], axis=axis)
        b = 0.5 * (b + nxt)
    return np.ascontiguousarray(b, dtype=np.float32)


@dataclass(eq=False)
class _Source:
    hr: np.ndarray       # (slices, P_b axis, a axis) fine data
    lr_src: list[np.ndarray]  # per kernel: blurred (and half-shifted) along the last axis
    cdf: np.ndarray      # cumulative sampling weight over valid patch origins
    origins_shape: tuple[int, int, int]
    patch: tuple[int, int]  # (P_b, P_a) HR patch, P_a a multiple of k
    axes: tuple[int, int, int]  # (slice, b, a) axes of the original volume


class PairSampler:
    """Draws (LR, HR) patch batches for a network with scale (1, k).

    ``kernel``: the slice profile on the fine grid, or a list of them (a mixture: each
    batch is degraded with one, drawn uniformly; ``kernel`` is then the first)."""

    def __init__(self, data: np.ndarray, inplane_axes: tuple[int, ...], thick_axis: int,
                 kernel: np.ndarray | list[np.ndarray], k: int, patch: int = 48,
                 gradient_weighted: bool = True, thick_companion: bool = True):
        if data.ndim != 3:
            raise ValueError(f"expected (I, J, K) data, got shape {data.shape}")
        self.k = int(k)
        kernels = kernel if isinstance(kernel, (list, tuple)) else [kernel]
        self.kernels = [np.asarray(kk, dtype=np.float64) for kk in kernels]
        self.kernel = self.kernels[0]
        self.sources: list[_Source] = []
        # a thin slab's short fine axis (e.g. 10 slices at x4: 2 LR samples) would give
        # pairs unlike any plane the network is applied to: degrade only the long axes
        # (all of them when none is long enough)
        long = [a for a in inplane_axes if data.shape[a] // self.k >= MIN_LR_SAMPLES]
        self.degraded_axes = tuple(long or inplane_axes)
        for a in self.degraded_axes:
            # companions: the other fine axis (the planes the network meets there) and the
            # thick axis (planes (t, a): the scan's own coarse sampling across the patch,
            # as in the planes (u, t) it is applied to). Measured: docs/self-supervised.md
            others = [ax for ax in inplane_axes if ax != a and data.shape[ax] > 1]
            companions = others + ([thick_axis] if thick_companion or not others else [])
            for b in companions:
                w = next(ax for ax in range(3) if ax not in (a, b))
                self.sources.append(self._source(data, (w, b, a), patch, gradient_weighted))
        weights = np.array([s.cdf[-1] for s in self.sources], dtype=np.float64)
        self.source_p = weights / weights.sum()

    def _source(self, data: np.ndarray, axes: tuple[int, int, int], patch: int,
                gradient_weighted: bool) -> _Source:
        hr = np.ascontiguousarray(np.transpose(data, axes), dtype=np.float32)
        lr_src = [_sampling_source(hr, kk, self.k, axis=2) for kk in self.kernels]
        n_b, n_a = hr.shape[1], hr.shape[2]
        if n_a < self.k:
            raise ValueError(f"an in-plane axis of {n_a} voxels is shorter than the factor")
        p_b = min(patch, n_b)
        p_a = min(max(self.k * max(1, round(patch / self.k)), self.k), (n_a // self.k) * self.k)
        oshape = (hr.shape[0], n_b - p_b + 1, n_a - p_a + 1)
        if gradient_weighted:
            g = np.zeros_like(hr)
            for ax in (1, 2):
                if hr.shape[ax] > 1:
                    g += np.abs(np.gradient(hr, axis=ax))
            # mean gradient over the patch each origin starts
            g = ndi.uniform_filter(g, size=(1, p_b, p_a), mode="nearest",
                                   origin=(0, -(p_b // 2), -(p_a // 2)))
            w = g[:, : oshape[1], : oshape[2]].astype(np.float64)
            w = w + GRADIENT_FLOOR * max(float(w.mean()), 1e-12)
        else:
            w = np.ones(oshape)
        cdf = np.cumsum(w.reshape(-1))
        return _Source(hr, lr_src, cdf, oshape, (p_b, p_a), axes)

    @property
    def patch_shapes(self) -> list[tuple[int, int]]:
        return [s.patch for s in self.sources]

    def sample(self, rng: np.random.Generator, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(lr (B, 1, P_b, P_a / k), hr (B, 1, P_b, P_a)) float32, one source per batch."""
        which = int(rng.choice(len(self.sources), p=self.source_p))
        src = self.sources[which]
        # one kernel of a mixture per batch (no draw for one kernel: the stream is as before)
        kern = int(rng.integers(len(self.kernels))) if len(self.kernels) > 1 else 0
        lr_src = src.lr_src[kern]
        p_b, p_a = src.patch
        k, off = self.k, (self.k - 1) // 2
        u = rng.random(batch) * src.cdf[-1]
        flat = np.minimum(np.searchsorted(src.cdf, u, side="right"), src.cdf.size - 1)
        s_i, b_i, a_i = np.unravel_index(flat, src.origins_shape)
        flips = rng.random((batch, 2)) < 0.5
        self.last_draw = (which, s_i, b_i, a_i, flips)  # for inspection
        self.last_kernel = kern
        lr = np.empty((batch, 1, p_b, p_a // k), dtype=np.float32)
        hr = np.empty((batch, 1, p_b, p_a), dtype=np.float32)
        for n in range(batch):
            s, b0, a0 = int(s_i[n]), int(b_i[n]), int(a_i[n])
            h = src.hr[s, b0:b0 + p_b, a0:a0 + p_a]
            low = lr_src[s, b0:b0 + p_b, a0 + off:a0 + p_a:k]
            if flips[n, 0]:
                h, low = h[::-1], low[::-1]
            if flips[n, 1]:  # the LR grid is symmetric within the patch, so this is exact
                h, low = h[:, ::-1], low[:, ::-1]
            hr[n, 0], lr[n, 0] = h, low
        return torch.from_numpy(lr), torch.from_numpy(hr)
