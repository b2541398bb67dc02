"""MONAI transforms: :class:`SuperResolve` (array) and :class:`SuperResolved` (dictionary).

They follow MONAI's conventions: the input is channel-first, ``(C, I, J, K)`` as after
``EnsureChannelFirst(d)``; a ``MetaTensor``'s ``affine`` (in whatever space its meta says:
A @ S holds in any) becomes ``A @ S`` (:func:`medsr.geometry.upsampled_affine`) in the
tensor and in ``meta["affine"]``, the rest of the meta is kept (``original_affine`` too,
as MONAI's spatial transforms keep it), and the output sits on the input's device. A
plain tensor or array is taken with an identity affine (1 mm voxels), as MONAI does. The
dictionary form is a thin ``MapTransform`` over ``keys`` with ``allow_missing_keys``.
The work is :func:`medsr.super_resolve` (the runner of ``medsr infer``), one channel set
per call::

    Compose([LoadImaged("image"), EnsureChannelFirstd("image"),
             SuperResolved("image", spacing=1.0), SaveImaged("image")])
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends

from medsr.api import super_resolve
from medsr.errors import UserError

__all__ = ["SuperResolve", "SuperResolved", "super_resolve_channel_first"]

Factors = float | Sequence[float] | None


def super_resolve_channel_first(img: Any, scale: Factors = None, spacing: Factors = None,
                                model: str | os.PathLike | None = None,
                                **options: Any) -> torch.Tensor:
    """The pure function of :class:`SuperResolve`: ``img`` (C, I, J, K) super-resolved,
    a MetaTensor with the affine A @ S (a plain tensor when meta tracking is off)."""

    if not isinstance(img, MetaTensor):
        img = MetaTensor(torch.as_tensor(np.asarray(img) if not torch.is_tensor(img) else img))
    if img.ndim != 4:
        raise UserError(f"SuperResolve takes channel-first 3D images (C, I, J, K); got shape "
                        f"{tuple(img.shape)} (add EnsureChannelFirst before it)")
    out = super_resolve(img, scale=scale, spacing=spacing, model=model, **options)
    return out if get_track_meta() else out.as_tensor()


class SuperResolve(Transform):
    """Super-resolve a channel-first image onto a finer grid (``scale`` factors or target
    ``spacing`` in mm; neither: isotropic at the finest spacing).

    ``model`` (a shipped name or a checkpoint) forces a network; ``method`` "auto" (the
    shipped network that fits, else cubic) or a classical method ("cubic", "lanczos",
    ...); ``device`` "auto", "cpu" or "cuda" for the network; ``options`` go to
    :func:`medsr.super_resolve` (``tta``, ``slice_profile``, ``precision`` ...).
    Arguments given to ``__call__`` override these for that call.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, scale: Factors = None, spacing: Factors = None,
                 model: str | os.PathLike | None = None, method: str = "auto",
                 device: str | torch.device = "auto", **options: Any) -> None:
        self.scale, self.spacing, self.model = scale, spacing, model
        self.options = {"method": method, "device": _device(device), **options}

    def __call__(self, img: Any, **overrides: Any) -> torch.Tensor:
        kw = {"scale": self.scale, "spacing": self.spacing, "model": self.model,
              **self.options, **overrides}
        if "device" in overrides:
            kw["device"] = _device(overrides["device"])
        return super_resolve_channel_first(img, **kw)


class SuperResolved(MapTransform):
    """Dictionary form of :class:`SuperResolve`: the images under ``keys`` super-resolved
    (a missing key is an error unless ``allow_missing_keys``)."""

    backend = SuperResolve.backend

    def __init__(self, keys: KeysCollection, scale: Factors = None, spacing: Factors = None,
                 model: str | os.PathLike | None = None, method: str = "auto",
                 device: str | torch.device = "auto", allow_missing_keys: bool = False,
                 **options: Any) -> None:
        super().__init__(keys, allow_missing_keys)
        self.sr = SuperResolve(scale=scale, spacing=spacing, model=model, method=method,
                               device=device, **options)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.sr(d[key])
        return d


def _device(device: str | torch.device) -> str:
    """"auto", "cpu" or "cuda" (medsr's names) from a string or a torch.device."""
    text = str(device)
    return "cuda" if text.startswith("cuda") else text
