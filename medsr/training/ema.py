"""Exponential moving average of model weights (kept in fp32, saved with the run)."""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """shadow <- decay * shadow + (1 - decay) * weights, after every optimiser step.

    Buffers (e.g. batch-norm statistics) are copied, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.shadow = {k: (v.detach().clone().float() if v.is_floating_point()
                           else v.detach().clone())
                       for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if v.is_floating_point():
                s.lerp_(v.detach().float(), 1.0 - self.decay)  # exact when s == v
            else:
                s.copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k in self.shadow:
            self.shadow[k].copy_(state[k])

    def weights_for(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The averaged weights cast to the model's dtypes (what gets exported)."""
        ref = model.state_dict()
        return {k: self.shadow[k].to(ref[k].dtype) for k in ref}
