"""Training and validation datasets: cached normalised volumes -> on-the-fly LR/HR pairs.

Volumes are loaded and normalised once through a MONAI ``CacheDataset``; the patch
dataset then degrades each HR patch on the fly (domain randomisation comes from the
degradation's random ranges). Sample ``i`` uses a generator seeded by ``(seed, stream, i)``
and step ``s`` of a run consumes indices ``s*B .. s*B+B-1`` (:class:`IndexRangeSampler`),
which is what makes a resumed run byte-identical to an uninterrupted one. Under torchrun
each rank takes its block of those indices (:class:`StepShardSampler`).
"""

from __future__ import annotations

import fnmatch
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import CacheDataset
from monai.data import Dataset as MonaiDataset
from monai.transforms import Compose, MapTransform
from torch.utils.data import Dataset, Sampler

from medsr.errors import UserError
from medsr.training.data.normalise import RobustNormalised
from medsr.training.data.sampling import SamplingSpec, check_volume, draw
from medsr.training.data.sources import read_item
from medsr.training.determinism import sample_rng


class LoadVolumed(MapTransform):
    """Read ``image`` (and optional ``lr``, ``mask``) with medsr.io into (C, I, J, K) float32.

    Adds ``spacing`` (mm, from the affine of ``image``) and ``affine``.
    """

    def __init__(self, keys=("image", "lr", "mask"), allow_missing_keys: bool = True) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            if d[key] is None:
                continue
            vol = read_item(d[key])
            arr = np.asarray(vol.data, dtype=np.float32)
            arr = arr[None] if arr.ndim == 3 else np.moveaxis(arr, -1, 0)
            if key == "mask":
                arr = arr[0] > 0
            if key == "image":
                d["spacing"] = tuple(float(s) for s in vol.spacing)
                d["affine"] = np.asarray(vol.affine)
                d["source"] = data[key]
            d[key] = np.ascontiguousarray(arr)
        return d


def load_volumes(items: list[dict], lower: float, upper: float, cache: bool = True) -> list[dict]:
    """Read and normalise every item (through a MONAI CacheDataset when ``cache``)."""

    transform = Compose([LoadVolumed(), RobustNormalised(("image", "lr"), lower, upper)])
    items = [{k: v for k, v in it.items() if v is not None} for it in items]
    try:
        ds = (CacheDataset(items, transform, cache_rate=1.0, num_workers=0, progress=False)
              if cache else MonaiDataset(items, transform))
        return [ds[i] for i in range(len(ds))]
    except RuntimeError as exc:
        # MONAI wraps a transform's exception in RuntimeError("applying transform ..."):
        # report the reason (an unreadable volume is an InputError naming the file)
        cause = _user_cause(exc)
        if cause is None:
            raise
        raise cause from None


def _user_cause(exc: BaseException) -> BaseException | None:
    """The UserError, OSError or MemoryError that ``exc`` was raised from, if any."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        if isinstance(e, (UserError, OSError, MemoryError)):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


class SRPatchDataset(Dataset):
    """Map-style dataset of ``{"lr", "hr"}`` tensor pairs; index ``i`` is deterministic."""

    def __init__(self, volumes: list[dict], spec: SamplingSpec, degradation: Any, seed: int,
                 stream: int = 0, augment: bool = True,
                 target_noise: dict | None = None) -> None:
        if not volumes:
            raise UserError("no volumes to sample from")
        for v in volumes:
            where = f"{v['source']}: " if v.get("source") else ""
            try:
                check_volume(v["image"].shape[1:], spec, v.get("spacing"))
            except UserError as exc:
                raise UserError(f"{where}{exc}") from exc
            if spec.mode == "2.5d" and v["image"].shape[0] != 1:
                raise UserError(f"{where}2.5d sampling needs single-channel volumes")
        self.volumes, self.spec, self.degradation = volumes, spec, degradation
        self.seed, self.stream, self.augment = int(seed), int(stream), augment
        tn = target_noise or {}
        self.target_noise = tn if tn.get("kind", "none") != "none" else None
        self.noisy_target = [self.target_noise is not None
                             and matches(v.get("source"), tn.get("match") or [])
                             for v in volumes]

    def __len__(self) -> int:
        return sys.maxsize

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = sample_rng(self.seed, index, self.stream)
        vi = int(rng.integers(len(self.volumes)))
        vol = self.volumes[vi]
        s = draw(vol, self.spec, rng, self.augment)
        hr, lr = s["hr"], s["lr"]
        if lr is None and self.noisy_target[vi]:
            hr = add_target_noise(hr, self.target_noise, rng)
        if lr is None:
            lr = degrade_patch(self.degradation, hr, s["spacing"], int(rng.integers(2**31 - 1)))
        expected = tuple(p // k for p, k in zip(hr.shape[1:], self.spec.scale))
        if tuple(lr.shape[1:]) != expected:
            raise UserError(f"degradation gives LR patches of shape {tuple(lr.shape[1:])}, "
                            f"expected {expected} (HR patch / scale); check the degradation "
                            "scale and sampling.patch_size")
        if self.spec.mode == "2.5d":
            c = self.spec.context
            hr = hr[c:c + 1]
        return {"lr": torch.from_numpy(np.ascontiguousarray(lr, dtype=np.float32)),
                "hr": torch.from_numpy(np.ascontiguousarray(hr, dtype=np.float32))}


def matches(source: Any, patterns: list[str]) -> bool:
    """True if the file name of ``source`` matches one of the glob ``patterns`` ([]: any)."""

    if not patterns:
        return True
    if isinstance(source, dict):
        source = source.get("image")
    name = Path(str(source)).name if source is not None else ""
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def add_target_noise(hr: np.ndarray, spec: dict, rng: np.random.Generator) -> np.ndarray:
    """The HR patch with Gaussian or Rician noise of std ``spec["sigma"]`` (a value or
    [lo, hi], uniform) in normalised units, drawn from ``rng`` (before the degradation,
    so the LR input carries what the degradation leaves of it)."""
    sig = spec["sigma"]
    sigma = float(rng.uniform(sig[0], sig[1])) if isinstance(sig, list | tuple) else float(sig)
    x = np.asarray(hr, dtype=np.float32)
    n1 = rng.standard_normal(x.shape).astype(np.float32) * sigma
    if spec["kind"] == "gaussian":
        return x + n1
    if spec["kind"] == "rician":
        n2 = rng.standard_normal(x.shape).astype(np.float32) * sigma
        return np.sqrt((x + n1) ** 2 + n2 ** 2)
    raise UserError(f"unknown target noise {spec['kind']!r}; choose gaussian or rician")


def degrade_patch(degradation: Any, hr: np.ndarray, spacing: tuple, seed: int) -> np.ndarray:
    """LR = D(HR) with the degradation's random state set from ``seed``."""
    degradation.set_random_state(seed)
    out = degradation(hr, spacing=tuple(spacing))
    if isinstance(out, torch.Tensor):
        out = out.detach().cpu().numpy()
    return np.asarray(out, dtype=np.float32)


class IndexRangeSampler(Sampler[int]):
    """Yields ``start, start+1, ..., stop-1`` (sample indices of steps ``start/B ..``)."""

    def __init__(self, start: int, stop: int) -> None:
        self.start, self.stop = int(start), int(stop)

    def __iter__(self):
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


class StepShardSampler(Sampler[int]):
    """This rank's share of the global sample indices of steps ``start_step .. stop_step-1``.

    Step ``s`` of a run owns the global indices ``s*B .. s*B+B-1`` (``B`` = global batch);
    rank ``r`` of ``W`` takes the contiguous block ``s*B + r*b .. s*B + r*b + b-1`` with
    ``b = B / W``. The union over ranks is the single-process step's batch, the shares are
    disjoint, and with ``W = 1`` this is :class:`IndexRangeSampler`. Every index is a fresh
    random draw (:class:`SRPatchDataset`), so there is no epoch to reshuffle.
    """

    def __init__(self, start_step: int, stop_step: int, global_batch: int, rank: int = 0,
                 world_size: int = 1) -> None:
        if global_batch % world_size:
            raise UserError(f"global batch {global_batch} is not divisible by {world_size} "
                            "processes")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
        self.start, self.stop = int(start_step), int(stop_step)
        self.global_batch, self.rank, self.world = int(global_batch), int(rank), int(world_size)
        self.local = self.global_batch // self.world

    def __iter__(self):
        for s in range(self.start, self.stop):
            first = s * self.global_batch + self.rank * self.local
            yield from range(first, first + self.local)

    def __len__(self) -> int:
        return max(0, self.stop - self.start) * self.local


def fixed_batch(dataset: SRPatchDataset, n: int) -> dict[str, torch.Tensor]:
    """The first ``n`` samples of ``dataset`` stacked (the fixed validation set)."""
    samples = [dataset[i] for i in range(n)]
    return {k: torch.stack([s[k] for s in samples]) for k in ("lr", "hr")}
