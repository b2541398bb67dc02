"""D(I; sigma): the degradation model LR = N(down_k(h * I)), as MONAI transforms.

    >>> from medsr.degrade import load_preset
    >>> d = load_preset("mri-thick-slice", scale=(1, 1, 4))
    >>> d.set_random_state(0)
    >>> lr = d(hr[None], spacing=(1.0, 1.0, 1.0))   # channel-first numpy or torch
    >>> d.last_params                               # everything needed to replay the call
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> submodule, imported on first use (PEP 562): ``medsr infer`` needs only the
# slice-profile kernels (:mod:`medsr.degrade.profiles`, numpy/scipy), not the MONAI
# transforms (torch, monai.transforms) that the other submodules build on.
_WHERE = {
    "SliceProfileBlur": "blur",
    **dict.fromkeys(("Degradation", "degrade_volume"), "compose"),
    **dict.fromkeys(("Degradationd", "Downsampled", "RandNoised", "SliceProfileBlurd"),
                    "dictionary"),
    **dict.fromkeys(("Downsample", "lr_affine", "lr_shape"), "downsample"),
    "RandNoise": "noise",
    **dict.fromkeys(("available_presets", "load_preset"), "presets"),
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
