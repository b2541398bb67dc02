"""D(I; sigma): the degradation model LR = N(down_k(h * I)), as MONAI transforms.

    >>> from medsr.degrade import load_preset
    >>> d = load_preset("mri-thick-slice", scale=(1, 1, 4))
    >>> d.set_random_state(0)
    >>> lr = d(hr[None], spacing=(1.0, 1.0, 1.0))   # channel-first numpy or torch
    >>> d.last_params                               # everything needed to replay the call
"""

from __future__ import annotations

from medsr._lazy import lazy_exports

# name -> submodule, imported on first use (PEP 562): ``medsr infer`` needs only the
# slice-profile kernels (:mod:`medsr.degrade.profiles`, numpy only), not the MONAI
# transforms (torch, monai.transforms) that the other submodules build on.
_WHERE = {
    "SliceProfileBlur": "blur",
    **dict.fromkeys(("Degradation", "degrade_volume"), "compose"),
    **dict.fromkeys(("Degradationd", "Downsampled", "RandNoised", "SliceProfileBlurd"),
                    "dictionary"),
    **dict.fromkeys(("Downsample", "lr_affine", "lr_shape"), "downsample"),
    **dict.fromkeys(("degrade_file", "sidecar_path"), "file"),
    "RandNoise": "noise",
    **dict.fromkeys(("available_presets", "load_preset"), "presets"),
}

__all__ = sorted(_WHERE)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _WHERE)
