"""Make a trained network fast for inference on the device at hand.

One place for the speed knobs, so every caller (``medsr infer``, evaluation, cohorts,
benchmarks) runs networks the same way:

* CPU: convolution + activation fused into one oneDNN kernel (:mod:`.fusion`) and
  channels-last layout (both measured faster in pipelines/benchmark_speed.py; outputs
  unchanged to float rounding);
* CUDA: mixed precision (fp16 autocast by default, bf16 on request), pinned-memory
  non-blocking copies (in :func:`medsr.inference.tiling.tiled_forward`);
* optional ``torch.compile`` (any device), worth it for long runs: compiling takes
  tens of seconds.

The caller's model is never modified: :func:`prepare` returns a converted copy.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
from torch import nn

from medsr.errors import UserError
from medsr.inference import PRECISIONS
from medsr.inference.fusion import fuse_conv_act
from medsr.inference.tiling import memory_format

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``auto``: fp16 autocast on CUDA (inputs are normalised to [0, 1], so no overflow;
    11-bit mantissa keeps SR residuals accurate), fp32 elsewhere."""
    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    dev = torch.device(device)
    if precision == "auto":
        return "fp16" if dev.type == "cuda" else "fp32"
    if precision == "fp16" and dev.type == "cpu":
        raise UserError("fp16 inference is for GPUs; on the CPU use bf16 or fp32")
    return precision


@contextlib.contextmanager
def autocast(device: torch.device | str, precision: str) -> Iterator[None]:
    """Autocast to ``precision`` (fp32: no autocast) on ``device``."""
    dev = torch.device(device)
    if precision == "fp32":
        yield
        return
    with torch.autocast(device_type=dev.type, dtype=_DTYPES[precision]):
        yield


def prepare(model: nn.Module, device: torch.device | str, *, channels_last: bool | None = None,
            fuse: bool = True, compile_model: bool = False) -> nn.Module:
    """An inference copy of ``model`` on ``device``: eval mode, conv + activation fused
    (CPU), channels-last (default: on the CPU), optionally ``torch.compile``d."""
    dev = torch.device(device)
    net = copy.deepcopy(model).to(dev).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    if fuse and dev.type == "cpu" and not compile_model:  # inductor fuses by itself
        fuse_conv_act(net)
    if channels_last is None:
        channels_last = dev.type == "cpu"
    if channels_last:
        net = net.to(memory_format=memory_format(int(getattr(model, "spatial_dims", 2))))
    if compile_model:
        if not hasattr(torch, "compile"):
            raise UserError("--compile needs PyTorch >= 2.0")
        # tiles at the volume edge and the last batch differ in shape: compile for dynamic
        # shapes at once instead of recompiling per shape
        net = torch.compile(net, dynamic=True)
    return net
