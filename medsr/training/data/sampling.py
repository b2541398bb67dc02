"""Patch sampling from normalised HR volumes: 2D slices, 2.5D slice stacks, 3D patches.

Every draw takes its randomness from the generator it is given, so a sample is a pure
function of (volume list, spec, generator seed). Augmentation flips patch axes and
permutes patch axes only within groups that share scale factor and voxel spacing (where
the physics allows: swapping a thick-slice axis with an in-plane one would not).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.interpolate import PchipInterpolator

from medsr.errors import UserError


@dataclass(frozen=True)
class SamplingSpec:
    """What to cut out of a volume; ``patch`` and ``scale`` are per patch axis (HR)."""

    mode: str                  # "2d" | "2.5d" | "3d"
    axes: tuple[int, ...]      # slice normals for 2d / 2.5d
    context: int               # 2.5d neighbours on each side
    patch: tuple[int, ...]
    scale: tuple[int, ...]
    flips: bool = True
    permute: bool = True
    min_foreground: float = 0.0
    gamma: tuple[float, float] | None = None  # HR intensity x -> x ** g, log g uniform
    remap: float = 0.0                        # probability of a random smooth intensity LUT
    max_anisotropy: float | None = None       # 2d / 2.5d: planes coarser than this x finest

    def normals_for(self, spacing) -> tuple[int, ...]:
        """The slice normals of ``axes`` whose planes are a sharp truth for a volume of
        voxel ``spacing``: every patch axis at most ``max_anisotropy`` times the volume's
        finest spacing (all of ``axes`` when it is None). A scan of 5 mm slices gives only
        its acquired planes: a patch across its slices would teach the network a blurred
        target."""
        if self.mode == "3d" or self.max_anisotropy is None:
            return self.axes
        sp = np.asarray(spacing, dtype=np.float64)
        limit = float(sp.min()) * self.max_anisotropy * (1 + 1e-6)
        return tuple(n for n in self.axes if all(sp[a] <= limit for a in self.patch_axes(n)))

    @property
    def spatial_dims(self) -> int:
        return 3 if self.mode == "3d" else 2

    def patch_axes(self, normal: int | None) -> tuple[int, ...]:
        """Volume axes that become the patch axes (in increasing order)."""
        return (0, 1, 2) if normal is None else tuple(a for a in range(3) if a != normal)

    def volume_scale(self, normal: int | None) -> tuple[int, int, int]:
        """Per-volume-axis factors: the patch scale on patch axes, 1 along the normal."""
        out = [1, 1, 1]
        for ax, k in zip(self.patch_axes(normal), self.scale):
            out[ax] = int(k)
        return tuple(out)  # type: ignore[return-value]


def check_volume(shape: tuple[int, ...], spec: SamplingSpec, spacing=None) -> None:
    """UserError when a volume is too small for the patch along a sampled orientation
    (the orientations ``spec.normals_for(spacing)`` allows, when ``spacing`` is given)."""
    normals = [None] if spec.mode == "3d" else list(
        spec.axes if spacing is None else spec.normals_for(spacing))
    for normal in normals:
        for ax, p in zip(spec.patch_axes(normal), spec.patch):
            if shape[ax] < p:
                raise UserError(f"volume of shape {tuple(shape)} is smaller than the patch "
                                f"size {p} along axis {ax}; lower sampling.patch_size")


def _take(arr: np.ndarray, normal: int | None, pos: int, pax, starts, patch, mode, context):
    """Crop a (C, I, J, K) array; returns (C', *patch)."""
    sl: list = [slice(None)] * 4
    for ax, s, p in zip(pax, starts, patch):
        sl[1 + ax] = slice(s, s + p)
    if normal is None:
        return arr[tuple(sl)]
    if mode == "2d":
        sl[1 + normal] = pos
        return arr[tuple(sl)]
    n = arr.shape[1 + normal]
    idx = np.clip(np.arange(pos - context, pos + context + 1), 0, n - 1)
    sl[1 + normal] = slice(None)
    sub = np.take(arr[tuple(sl)], idx, axis=1 + normal)       # (C, ..., 2c+1, ...)
    sub = np.moveaxis(sub, 1 + normal, 1)                       # (C, 2c+1, p, p)
    return sub.reshape((-1,) + sub.shape[2:])


def draw(vol: dict, spec: SamplingSpec, rng: np.random.Generator, augment: bool = True) -> dict:
    """One training example from ``vol`` (``image`` (C,I,J,K), ``spacing``, ``lr``, ``mask``).

    Returns ``hr`` (C', *patch), ``lr`` (paired LR crop or None), ``spacing`` of the patch
    axes, ``normal`` (slice normal or None).
    """
    img = vol["image"]
    shape = img.shape[1:]
    paired = vol.get("lr")
    mask = vol.get("mask")
    tries = 20 if (spec.min_foreground > 0 or mask is not None) else 1
    normals = spec.normals_for(vol["spacing"])
    if not normals:
        raise UserError(f"no plane of sampling.axes {list(spec.axes)} is within "
                        f"sampling.max_anisotropy {spec.max_anisotropy} of the finest "
                        f"spacing {tuple(vol['spacing'])}")
    for _ in range(tries):
        normal = None if spec.mode == "3d" else int(normals[rng.integers(len(normals))])
        pax = spec.patch_axes(normal)
        vscale = spec.volume_scale(normal)
        align = vscale if paired is not None else (1, 1, 1)
        starts = []
        for ax, p in zip(pax, spec.patch):
            hi = (shape[ax] - p) // align[ax]
            starts.append(int(rng.integers(hi + 1)) * align[ax])
        pos = int(rng.integers(shape[normal])) if normal is not None else 0
        hr = _take(img, normal, pos, pax, starts, spec.patch, spec.mode, spec.context)
        if mask is not None:
            m = _take(mask[None], normal, pos, pax, starts, spec.patch, "2d" if normal is not None
                      else "3d", 0)
            ok = m.mean() > 0 and m[(0,) + tuple(p // 2 for p in spec.patch)] > 0
        else:
            ok = spec.min_foreground <= 0 or float(np.mean(hr > 0.1)) >= spec.min_foreground
        if ok:
            break
    lr = None
    if paired is not None:
        if normal is not None and vscale[normal] != 1:
            raise UserError("paired LR needs factor 1 along the slice normal")
        lstarts = [s // vscale[ax] for ax, s in zip(pax, starts)]
        lpatch = [p // vscale[ax] for ax, p in zip(pax, spec.patch)]
        lr = _take(paired, normal, pos, pax, lstarts, lpatch, spec.mode, spec.context)
    spacing = np.asarray(vol["spacing"], dtype=np.float64)[list(pax)]
    if augment:
        hr, lr, spacing = _augment(hr, lr, spacing, spec, rng)
    return {"hr": np.ascontiguousarray(hr, dtype=np.float32),
            "lr": None if lr is None else np.ascontiguousarray(lr, dtype=np.float32),
            "spacing": tuple(float(s) for s in spacing), "normal": normal}


def _augment(hr, lr, spacing, spec: SamplingSpec, rng: np.random.Generator):
    nd = hr.ndim - 1
    if spec.flips:
        for ax in range(nd):
            if rng.random() < 0.5:
                hr = np.flip(hr, axis=1 + ax)
                lr = None if lr is None else np.flip(lr, axis=1 + ax)
    if spec.permute and nd > 1:
        order = np.arange(nd)
        keys = [(int(spec.scale[a]), round(float(spacing[a]), 4), int(spec.patch[a]))
                for a in range(nd)]
        for key in sorted(set(keys)):
            group = [a for a in range(nd) if keys[a] == key]
            if len(group) > 1:
                order[group] = np.asarray(group)[rng.permutation(len(group))]
        if not np.array_equal(order, np.arange(nd)):
            perm = (0, *(1 + order))
            hr = np.transpose(hr, perm)
            lr = None if lr is None else np.transpose(lr, perm)
            spacing = spacing[order]
    if spec.gamma is not None or spec.remap > 0:
        if lr is not None:
            raise UserError("sampling.gamma / sampling.remap need unpaired data (the LR is "
                            "simulated from the augmented HR); set them off for paired LR")
        hr = _intensity(hr, spec, rng)
    return hr, lr, spacing


REMAP_KNOTS = 6


def _intensity(hr: np.ndarray, spec: SamplingSpec, rng: np.random.Generator) -> np.ndarray:
    """Intensity augmentation of an HR patch normalised to about [0, 1], before the
    degradation is simulated from it (so LR and HR stay consistent): a random gamma and,
    with probability ``spec.remap``, a random smooth look-up table over [0, 1] (PCHIP
    through REMAP_KNOTS knots, 0 kept at 0, the others uniform in [0, 1], so tissue
    contrasts may reorder, as between T1, T2 and other sequences). Values outside [0, 1]
    keep their excess. It teaches the network edges and profiles rather than one scan's
    intensity levels."""

    inside = np.clip(hr, 0.0, 1.0)
    excess = hr - inside
    if spec.gamma is not None:
        lo, hi = spec.gamma
        inside = inside ** float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    if spec.remap > 0 and rng.random() < spec.remap:
        knots = np.linspace(0.0, 1.0, REMAP_KNOTS)
        values = np.concatenate([[0.0], rng.uniform(0.0, 1.0, REMAP_KNOTS - 1)])
        inside = PchipInterpolator(knots, values)(inside)
    return (inside + excess).astype(np.float32)
