"""Mixed precision for training: what ``train.amp`` may say (:func:`check_amp`) and what
it means on a device (:func:`training_precision`)."""

from __future__ import annotations

from typing import Any

import torch

from medsr.errors import UserError

AMP_CHOICES = (True, False, "bf16")


def check_amp(amp: Any) -> None:
    """``train.amp`` is true, false or "bf16" (see :func:`training_precision`)."""
    if not any(amp is c if isinstance(c, bool) else amp == c for c in AMP_CHOICES):
        raise UserError(f"config key 'train.amp' must be true, false or bf16; got {amp!r}")


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
