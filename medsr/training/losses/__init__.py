"""Loss functions for SR training: pixel, edge, SSIM, TV, perceptual/texture, adversarial."""

from medsr.training.losses.adversarial import discriminator_loss, generator_loss
from medsr.training.losses.combined import CombinedLoss, build_loss
from medsr.training.losses.gradient import GradientLoss, TVLoss, sobel
from medsr.training.losses.pixel import CharbonnierLoss, L1Loss, L2Loss
from medsr.training.losses.ssim import SSIMLoss, ssim

__all__ = ["CharbonnierLoss", "CombinedLoss", "GradientLoss", "L1Loss", "L2Loss", "SSIMLoss",
           "TVLoss", "build_loss", "discriminator_loss", "generator_loss", "sobel", "ssim"]
