"""Inference-time fusion of convolution + activation into one oneDNN kernel on the CPU.

A ReLU after a convolution is a separate pass over memory: in a narrow SR network (32-64
channels) that pass cost a fifth of the run time (torch.profiler, by hand, on the shipped
thick-slice-x4; the speed-up shows in pipelines/benchmark_speed.py). oneDNN
can apply the activation as a post-op while the convolution's output is still in
registers; PyTorch exposes that kernel as ``torch.ops.mkldnn._convolution_pointwise``
(the op ``torch.compile``'s CPU backend emits for the same pattern). :func:`fuse_conv_act`
swaps each ``Conv -> [Identity | eval BatchNorm] -> activation`` run inside an
``nn.Sequential`` for a :class:`FusedConvAct` with identical outputs (BatchNorm is
folded into the convolution's weights). Only for inference: the op has no autograd.
"""

from __future__ import annotations

import torch
from torch import nn

_ACTS: dict[type, str] = {nn.ReLU: "relu", nn.LeakyReLU: "leaky_relu", nn.GELU: "gelu",
                          nn.SiLU: "swish", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh"}


def fusion_available() -> bool:
    """Whether this PyTorch build has oneDNN's fused convolution op."""
    return (torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_convolution_pointwise"))


def _attr(act: nn.Module) -> tuple[str, list[float], str] | None:
    kind = _ACTS.get(type(act))
    if kind is None:
        return None
    if kind == "leaky_relu":
        return kind, [float(act.negative_slope)], ""
    if kind == "gelu":
        return kind, [], str(act.approximate)
    return kind, [], ""


class FusedConvAct(nn.Module):
    """``act(conv(x))`` as one oneDNN convolution with a post-op (CPU, inference)."""

    def __init__(self, conv: nn.Module, attr: tuple[str, list[float], str],
                 bn: nn.Module | None = None) -> None:
        super().__init__()
        weight = conv.weight.detach()
        bias = conv.bias.detach() if conv.bias is not None else None
        if bn is not None:  # fold an eval-mode BatchNorm: w' = w * g / s, b' = (b - m) g / s + beta
            scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
            weight = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
            bias = (bias if bias is not None else torch.zeros_like(bn.running_mean))
            bias = (bias - bn.running_mean) * scale + bn.bias.detach()
        self.weight = nn.Parameter(weight.clone(), requires_grad=False)
        self.bias = nn.Parameter(bias.clone(), requires_grad=False) if bias is not None else None
        self.padding = list(conv.padding)
        self.stride = list(conv.stride)
        self.dilation = list(conv.dilation)
        self.groups = int(conv.groups)
        self.out_channels = int(conv.out_channels)
        self.kernel_size = tuple(conv.kernel_size)
        self.attr, self.scalars, self.algorithm = attr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(
            x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups,
            self.attr, self.scalars, self.algorithm)


def _fusable_conv(m: nn.Module) -> bool:
    return (isinstance(m, (nn.Conv2d, nn.Conv3d)) and m.padding_mode == "zeros"
            and isinstance(m.padding, tuple) and m.weight.dtype == torch.float32)


def _fuse_sequential(seq: nn.Sequential) -> int:
    names = list(seq._modules)
    mods = [seq._modules[n] for n in names]
    fused = 0
    i = 0
    while i < len(mods):
        m = mods[i]
        if not _fusable_conv(m):
            i += 1
            continue
        j = i + 1
        bn = None
        while j < len(mods) and isinstance(mods[j], (nn.Identity, nn.BatchNorm2d, nn.BatchNorm3d)):
            if not isinstance(mods[j], nn.Identity):
                if bn is not None or mods[j].training or not mods[j].track_running_stats:
                    break
                bn = mods[j]
            j += 1
        attr = _attr(mods[j]) if j < len(mods) else None
        if attr is None:
            i += 1
            continue
        seq._modules[names[i]] = FusedConvAct(m, attr, bn)
        for k in range(i + 1, j + 1):
            seq._modules[names[k]] = nn.Identity()
        fused += 1
        i = j + 1
    return fused


def fuse_conv_act(model: nn.Module) -> int:
    """Fuse conv + activation runs in ``model`` in place; returns how many were fused.

    A no-op (returns 0) without oneDNN, and for layers it cannot prove equivalent
    (non-zero padding modes, string padding, non-float32 weights, training-mode norms).
    """
    if not fusion_available():
        return 0
    return sum(_fuse_sequential(m) for m in list(model.modules())
               if isinstance(m, nn.Sequential))
