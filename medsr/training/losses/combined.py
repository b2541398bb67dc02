"""The weighted sum of loss terms named in a config's ``loss`` section."""

from __future__ import annotations

import torch
from torch import nn

from medsr.errors import UserError
from medsr.training.losses.adversarial import generator_loss
from medsr.training.losses.gradient import GradientLoss, TVLoss
from medsr.training.losses.perceptual import PerceptualLoss, TextureLoss, VGG19Features
from medsr.training.losses.pixel import CharbonnierLoss, L1Loss, L2Loss
from medsr.training.losses.ssim import SSIMLoss

TERMS = ("l1", "l2", "charbonnier", "gradient", "ssim", "tv", "perceptual", "texture",
         "adversarial")


class CombinedLoss(nn.Module):
    """sum_i w_i * loss_i(sr, hr) (+ w_adv * adversarial(D(sr))); returns (total, parts)."""

    def __init__(self, weights: dict[str, float], *, feature_weights: str | None = None,
                 perceptual_layer: str = "relu5_4", texture_layers: list[str] | None = None,
                 adversarial_kind: str = "standard", charbonnier_eps: float = 1e-3) -> None:
        super().__init__()
        unknown = [k for k in weights if k not in TERMS]
        if unknown:
            raise UserError(f"unknown loss term(s) {unknown}; allowed: {', '.join(TERMS)}")
        self.weights = {k: float(w) for k, w in weights.items() if float(w) > 0}
        self.adversarial_kind = adversarial_kind
        if adversarial_kind == "enhancenet" and self.weights.get("adversarial", 0) > 0 \
                and self.weights.get("texture", 0) <= 0:
            raise UserError("EnhanceNet training combines adversarial and texture losses: "
                            "set loss.texture > 0")
        terms: dict[str, nn.Module] = {}
        simple = {"l1": L1Loss, "l2": L2Loss, "gradient": GradientLoss, "ssim": SSIMLoss,
                  "tv": TVLoss}
        for name, cls in simple.items():
            if name in self.weights:
                terms[name] = cls()
        if "charbonnier" in self.weights:
            terms["charbonnier"] = CharbonnierLoss(charbonnier_eps)
        if "perceptual" in self.weights or "texture" in self.weights:
            tex = list(texture_layers or ["relu2_1", "relu3_1"])
            layers = sorted({perceptual_layer, *tex} if "texture" in self.weights
                            else {perceptual_layer})
            net = VGG19Features(feature_weights, layers)
            if "perceptual" in self.weights:
                terms["perceptual"] = PerceptualLoss(net, perceptual_layer)
            if "texture" in self.weights:
                terms["texture"] = TextureLoss(net, tex)
        self.terms = nn.ModuleDict(terms)

    @property
    def adversarial(self) -> bool:
        return self.weights.get("adversarial", 0.0) > 0

    def forward(self, sr: torch.Tensor, hr: torch.Tensor,
                fake_logits: torch.Tensor | None = None,
                real_logits: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        total = sr.new_zeros((), dtype=torch.float32)
        parts: dict[str, float] = {}
        for name, fn in self.terms.items():
            value = fn(sr.float(), hr.float())
            parts[name] = float(value.detach())
            total = total + self.weights[name] * value
        if self.adversarial and fake_logits is not None:
            value = generator_loss(self.adversarial_kind, fake_logits.float(),
                                   None if real_logits is None else real_logits.float())
            parts["adversarial"] = float(value.detach())
            total = total + self.weights["adversarial"] * value
        return total, parts


def build_loss(loss_cfg: dict) -> CombinedLoss:
    """A :class:`CombinedLoss` from the ``loss`` section of a config."""
    weights = {k: loss_cfg.get(k, 0.0) for k in TERMS}
    return CombinedLoss(weights, feature_weights=loss_cfg.get("feature_weights"),
                        perceptual_layer=loss_cfg.get("perceptual_layer", "relu5_4"),
                        texture_layers=loss_cfg.get("texture_layers"),
                        adversarial_kind=loss_cfg.get("adversarial_kind", "standard"),
                        charbonnier_eps=loss_cfg.get("charbonnier_eps", 1e-3))
