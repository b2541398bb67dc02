"""D(I; sigma): the degradation model LR = N(down_k(h * I)), as MONAI transforms.

    >>> from medsr.degrade import load_preset
    >>> d = load_preset("mri-thick-slice", scale=(1, 1, 4))
    >>> d.set_random_state(0)
    >>> lr = d(hr[None], spacing=(1.0, 1.0, 1.0))   # channel-first numpy or torch
    >>> d.last_params                               # everything needed to replay the call
"""

from medsr.degrade.blur import SliceProfileBlur
from medsr.degrade.compose import Degradation, degrade_volume
from medsr.degrade.dictionary import Degradationd, Downsampled, RandNoised, SliceProfileBlurd
from medsr.degrade.downsample import Downsample, lr_affine, lr_shape
from medsr.degrade.noise import RandNoise
from medsr.degrade.presets import available_presets, load_preset

__all__ = [
    "Degradation", "Degradationd", "Downsample", "Downsampled", "RandNoise", "RandNoised",
    "SliceProfileBlur", "SliceProfileBlurd", "available_presets", "degrade_volume",
    "load_preset", "lr_affine", "lr_shape",
]
