"""Device selection (:func:`select_device`), in one place for training, inference,
self-supervised SR and cohorts; it imports nothing of training."""

from __future__ import annotations

import os

import torch

from medsr.errors import UserError


def select_device(device: str | torch.device = "auto") -> torch.device:
    """auto -> CUDA when PyTorch sees a GPU, else the CPU; "cuda" without a GPU is a
    UserError. A bare "cuda" means this process's GPU: cuda:LOCAL_RANK under torchrun."""
    if isinstance(device, torch.device):
        name = str(device)
    else:
        name = str(device)
        if name not in ("auto", "cpu", "cuda") and not name.startswith("cuda:"):
            raise UserError(f"device must be auto, cpu or cuda, got {device!r}")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError(f"device {name} requested but no CUDA device is available (torch "
                        f"{torch.__version__} sees none); use --device cpu")
    if name.startswith("cuda:"):
        return torch.device(name)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return torch.device("cuda", local % torch.cuda.device_count())
