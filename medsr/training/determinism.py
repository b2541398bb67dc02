"""Seeds and deterministic algorithms: a fixed seed on CPU gives byte-identical runs.

Data randomness in medsr does not flow from global generators: every training sample
draws from its own generator seeded by ``(seed, sample index)`` (:func:`sample_rng`), so
the sample stream is a pure function of the step and a resumed run sees exactly the
batches an uninterrupted run sees, whatever the number of DataLoader workers.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch
from monai.utils import set_determinism


def enable_determinism(seed: int) -> None:
    """Seed python/numpy/torch (and MONAI) and require deterministic algorithms."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

    set_determinism(seed=seed, use_deterministic_algorithms=True)
    seed_all(seed)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def seed_all(seed: int) -> None:
    """Seed the global python, numpy and torch generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def sample_rng(seed: int, index: int, stream: int = 0) -> np.random.Generator:
    """An independent generator for one sample, a pure function of its arguments."""
    return np.random.default_rng([int(seed), int(stream), int(index)])


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed each worker from torch's per-worker seed."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def make_generator(seed: int) -> torch.Generator:
    """A seeded torch generator for DataLoaders and samplers."""
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    """The python/numpy/torch RNG states as (tensors, JSON-able dict): no pickle needed."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    keys32 = np.asarray(keys, dtype=np.uint32).view(np.int32).copy()
    tensors["rng.numpy.keys"] = torch.from_numpy(keys32)
    version, pstate, gauss = random.getstate()
    meta = {"numpy": {"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss),
                      "cached_gaussian": float(cached)},
            "python": {"version": version, "state": list(pstate), "gauss": gauss}}
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(t for t in tensors if t.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    n = meta["numpy"]
    keys = tensors["rng.numpy.keys"].numpy().view(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = meta["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
