"""Adversarial losses: standard GAN (SRGAN, EnhanceNet) and relativistic average (ESRGAN).

The discriminator ``D`` returns logits. Relativistic average (Jolicoeur-Martineau 2018):
D_ra(a, b) = sigmoid(C(a) - mean C(b)); the generator is trained to make SR look more
real than HR on average, and the discriminator the other way round.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def generator_loss(kind: str, fake_logits: torch.Tensor,
                   real_logits: torch.Tensor | None = None) -> torch.Tensor:
    """Adversarial term of the generator loss."""
    if kind in ("standard", "enhancenet"):
        return _bce(fake_logits, 1.0)
    if kind == "relativistic":
        assert real_logits is not None
        real = real_logits.detach()
        return 0.5 * (_bce(real - fake_logits.mean(), 0.0) + _bce(fake_logits - real.mean(), 1.0))
    raise ValueError(f"unknown adversarial kind {kind!r}")


def discriminator_loss(kind: str, real_logits: torch.Tensor,
                       fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss (``fake_logits`` computed on detached SR)."""
    if kind in ("standard", "enhancenet"):
        return 0.5 * (_bce(real_logits, 1.0) + _bce(fake_logits, 0.0))
    if kind == "relativistic":
        return 0.5 * (_bce(real_logits - fake_logits.mean(), 1.0)
                      + _bce(fake_logits - real_logits.mean(), 0.0))
    raise ValueError(f"unknown adversarial kind {kind!r}")
