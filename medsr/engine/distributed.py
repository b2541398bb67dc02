"""Rank and world size in one place, so DDP (torchrun) can be added without touching the loop.

Today every process is rank 0 of a world of 1 unless torchrun's environment says
otherwise; only the main process writes files.
"""

from __future__ import annotations

import os


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


def barrier() -> None:
    """Synchronise processes when a process group is running; a no-op otherwise."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
