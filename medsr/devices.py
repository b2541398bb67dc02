"""Device selection, in one place for training, inference and self-supervised SR."""

from __future__ import annotations

import os

import torch

from medsr.engine.config import check_amp
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


def training_precision(amp: bool | str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None for float32, whether to scale the loss) for ``train.amp``.

    ``True``: float16 autocast with a GradScaler on CUDA, float32 elsewhere (CPU float16
    is slow and underflows). ``"bf16"``: bfloat16 autocast on any device, no scaler (its
    exponent range is float32's); on CPUs with AMX or AVX512-BF16 a step is 2.4-2.8x
    faster than in float32 (``pipelines/benchmark_speed.py --training``). ``False``:
    float32. Weights, optimiser state and the loss stay float32.
    """
    check_amp(amp)
    if amp == "bf16":
        return torch.bfloat16, False
    if amp is True and device.type == "cuda":
        return torch.float16, True
    return None, False
