"""Rank, world size and the process group: everything torchrun-specific, for training and
for cohorts, in one place.

Without torchrun every process is rank 0 of a world of 1 and nothing here talks to
anybody. Under ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``) :func:`setup` joins the process group: NCCL when the
device is a GPU (``cuda:LOCAL_RANK``), gloo on CPU (or gloo wherever the caller asks for
it: a cohort's shards need no GPU collectives). Only rank 0 writes files.

The global batch is split evenly: each rank takes ``global_batch / world_size`` samples
of every step (:func:`local_batch`), so DDP's gradient average over ranks equals the
gradient of the single-process step over the whole global batch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

from medsr.errors import UserError

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def rank() -> int:
    """Global rank of this process (0 when not launched by torchrun)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Number of processes in the job (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    """Rank on this machine (selects the CUDA device under torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """True on the process that writes manifests, metrics and checkpoints."""
    return rank() == 0


def is_active() -> bool:
    """True when a process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    """Synchronise processes when a process group is running; a no-op otherwise."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def check_env() -> None:
    """UserError (one line) when torchrun's environment is missing or inconsistent.

    A world of 1 without the variables is the ordinary single-process case.
    """
    env = {k: os.environ.get(k) for k in TORCHRUN_VARS}
    numbers: dict[str, int] = {}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        if env[k] is None:
            continue
        try:
            numbers[k] = int(env[k])  # type: ignore[arg-type]
        except ValueError:
            raise UserError(f"environment variable {k}={env[k]!r} is not an integer; "
                            "launch distributed runs with torchrun") from None
    world = numbers.get("WORLD_SIZE", 1)
    if world < 1:
        raise UserError(f"WORLD_SIZE={world} must be >= 1")
    if world == 1:
        if numbers.get("RANK", 0) != 0:
            raise UserError(f"RANK={numbers['RANK']} with WORLD_SIZE=1; launch distributed "
                            "runs with torchrun")
        return
    missing = [k for k, v in env.items() if v is None]
    if missing:
        raise UserError(f"WORLD_SIZE={world} but {', '.join(missing)} not set; launch "
                        "distributed runs with torchrun (it sets all of "
                        f"{', '.join(TORCHRUN_VARS)})")
    if not 0 <= numbers["RANK"] < world:
        raise UserError(f"RANK={numbers['RANK']} is outside 0..{world - 1} (WORLD_SIZE={world})")
    if numbers["LOCAL_RANK"] < 0 or numbers["LOCAL_RANK"] > numbers["RANK"]:
        raise UserError(f"LOCAL_RANK={numbers['LOCAL_RANK']} is inconsistent with "
                        f"RANK={numbers['RANK']}")


def check_device(device: torch.device) -> None:
    """UserError when torchrun starts more processes on a node than it has GPUs."""
    if device.type == "cuda" and world_size() > 1:
        n = torch.cuda.device_count()
        if local_rank() >= n:
            raise UserError(f"LOCAL_RANK={local_rank()} but this node has {n} GPU(s); "
                            "--nproc_per_node must not exceed the GPUs per node")


def backend_for(device: torch.device) -> str:
    """NCCL for GPUs, gloo for CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def setup(device: torch.device, backend: str | None = None) -> bool:
    """Join torchrun's process group (when WORLD_SIZE > 1); True if this call created it.

    ``backend`` defaults to :func:`backend_for` the device; NCCL needs a GPU of its own
    per process (:func:`check_device`), gloo lets processes share one. A CUDA ``device``
    becomes this process's current GPU. The caller that created the group destroys it
    with :func:`cleanup`.
    """
    check_env()
    if world_size() <= 1 or dist.is_initialized():
        return False
    backend = backend or backend_for(device)
    if backend == "nccl":
        check_device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    kwargs = {"device_id": device} if backend == "nccl" else {}
    dist.init_process_group(backend, **kwargs)
    if dist.get_world_size() != world_size() or dist.get_rank() != rank():
        raise UserError("the process group does not match RANK / WORLD_SIZE of the environment")
    return True


def cleanup(created: bool = True) -> None:
    """Destroy the process group (if there is one) when :func:`setup` created it."""
    if created and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_batch(global_batch: int, world: int | None = None) -> int:
    """Samples per rank and step: the global batch split evenly, or a UserError."""
    world = world_size() if world is None else world
    if global_batch % world:
        raise UserError(f"sampling.batch_size {global_batch} (the global batch, summed over "
                        f"processes) is not divisible by the {world} processes; choose a "
                        "multiple of the process count")
    return global_batch // world


def shard(n: int, world: int | None = None, rnk: int | None = None) -> range:
    """This rank's contiguous block of ``range(n)`` (blocks differ in size by at most 1)."""
    world = world_size() if world is None else world
    rnk = rank() if rnk is None else rnk
    base, extra = divmod(n, world)
    start = rnk * base + min(rnk, extra)
    return range(start, start + base + (1 if rnk < extra else 0))


def all_reduce_sum(values: Sequence[float] | torch.Tensor, device: torch.device) -> torch.Tensor:
    """Element-wise float64 sum over ranks (the values themselves without a group)."""
    t = torch.as_tensor(values, dtype=torch.float64).to(device)
    if is_active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu()


def all_gather_objects(obj: Any) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` without a group)."""
    if not is_active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
