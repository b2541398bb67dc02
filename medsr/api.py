"""The public Python API: ``medsr.read``, ``medsr.write`` and ``medsr.super_resolve``.

A thin face over :func:`medsr.io.read` / :func:`medsr.io.write` and the one runner of
``medsr infer`` (:func:`medsr.geometry.plan_grid` then
:func:`medsr.pipeline.super_resolve_volume`): internals may move, these names stay.

``super_resolve`` returns the kind of object it was given, each converted to a
:class:`~medsr.volume.Volume` and back by the adapters below:

- a :class:`medsr.Volume` -> a Volume;
- a nibabel image (NIfTI-1/2, MGH; RAS) -> the same class, header kept and updated;
- a SimpleITK image (LPS: origin, spacing, direction) -> a SimpleITK image;
- a MONAI ``MetaTensor``: (I, J, K) or channel-first (C, I, J, K), as after
  ``EnsureChannelFirst``; its affine is used in the space its meta says (A @ S holds in
  any world space) -> a MetaTensor with ``affine`` updated;
- a numpy array (I, J, K) or (I, J, K, C) with ``affine=A`` -> ``(array, affine)``.

The output affine is exactly ``A @ S`` (:func:`medsr.geometry.upsampled_affine`; the
field of view is kept), its dtype the input's (integers rounded and clipped, as
``medsr infer`` writes them). Nothing here imports torch, MONAI, nibabel or SimpleITK
until an object of theirs is handed in.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medsr import io
from medsr.errors import UserError
from medsr.geometry import DEFAULT_MAX_OUTPUT_VOXELS, RAS_TO_LPS, plan_grid
from medsr.io.dtype import cast_like
from medsr.pipeline import super_resolve_volume
from medsr.pipeline.modes import check_flags as check_options
from medsr.volume import Volume

__all__ = ["read", "write", "super_resolve", "to_volume", "from_volume"]

Factors = float | Sequence[float]


# --------------------------------------------------------------------------- adapters

def _is_sitk(image: Any) -> bool:
    sitk = sys.modules.get("SimpleITK")
    return sitk is not None and isinstance(image, sitk.Image)


def _is_nibabel(image: Any) -> bool:
    nib = sys.modules.get("nibabel")
    return nib is not None and isinstance(image, nib.spatialimages.SpatialImage)


def _is_metatensor(image: Any) -> bool:
    data = sys.modules.get("monai.data")
    return data is not None and isinstance(image, data.MetaTensor)


def kind_of(image: Any) -> str:
    """'volume', 'nibabel', 'sitk', 'metatensor' or 'array'; a UserError otherwise."""
    if isinstance(image, Volume):
        return "volume"
    if _is_metatensor(image):
        return "metatensor"
    if _is_nibabel(image):
        return "nibabel"
    if _is_sitk(image):
        return "sitk"
    if isinstance(image, np.ndarray):
        return "array"
    raise UserError(f"medsr cannot super-resolve a {type(image).__module__}."
                    f"{type(image).__name__}; give a medsr.Volume, a nibabel or SimpleITK "
                    "image, a MONAI MetaTensor or a numpy array with affine=")


def sitk_affine(image: Any) -> np.ndarray:
    """The RAS affine (index (x, y, z) -> mm) of a 3D SimpleITK image."""
    d = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    a = np.eye(4)
    a[:3, :3] = d * np.asarray(image.GetSpacing(), dtype=np.float64)
    a[:3, 3] = image.GetOrigin()
    return RAS_TO_LPS @ a


def to_volume(image: Any, affine: np.ndarray | None = None) -> Volume:
    """``image`` (any kind :func:`kind_of` knows) as a Volume; ``affine`` for arrays."""
    kind = kind_of(image)
    if kind != "array" and affine is not None:
        raise UserError(f"affine= is for numpy arrays; a {kind} image carries its own")
    if kind == "volume":
        return image
    if kind == "array":
        if affine is None:
            raise UserError("a numpy array needs affine= (4x4, voxel index -> mm; "
                            "numpy.eye(4) for 1 mm voxels)")
        return _volume(np.asarray(image), np.asarray(affine, dtype=np.float64), "array")
    if kind == "nibabel":
        data = np.asanyarray(image.dataobj)
        return _volume(data, np.asarray(image.affine, dtype=np.float64), "nibabel")
    if kind == "sitk":
        import SimpleITK as sitk

        if image.GetDimension() != 3:
            raise UserError(f"a {image.GetDimension()}D SimpleITK image; medsr takes 3D ones")
        arr = sitk.GetArrayFromImage(image)  # (z, y, x[, c])
        data = arr.transpose(2, 1, 0, *range(3, arr.ndim))
        return _volume(data, sitk_affine(image), "sitk")
    t = image  # MetaTensor: (I, J, K) or channel-first (C, I, J, K)
    arr = t.detach().cpu().numpy()
    if arr.ndim == 4:
        arr = np.moveaxis(arr, 0, -1)
    elif arr.ndim != 3:
        raise UserError(f"a MetaTensor of shape {tuple(t.shape)}; medsr takes (I, J, K) or "
                        "channel-first (C, I, J, K) (EnsureChannelFirst)")
    affine = np.asarray(t.affine.detach().cpu().numpy(), dtype=np.float64)
    if _lps(t):  # MONAI's ITK reader can leave the affine in LPS; a Volume is RAS
        affine = RAS_TO_LPS @ affine
    return _volume(arr, affine, "metatensor")


def _lps(t: Any) -> bool:
    """The MetaTensor's affine is in LPS (``meta["space"]``, MONAI's default is RAS)."""
    return str(getattr(t, "meta", {}).get("space", "RAS")).upper() == "LPS"


def _volume(data: np.ndarray, affine: np.ndarray, kind: str) -> Volume:
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise UserError(f"the affine must be a finite 4x4 matrix, got shape {affine.shape}")
    if data.ndim not in (3, 4):
        raise UserError(f"a {kind} of shape {data.shape}; medsr takes (I, J, K) or "
                        "(I, J, K, C) arrays")
    if data.size == 0:
        raise UserError(f"a {kind} of shape {data.shape} has no voxels")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise UserError("the affine is singular (a zero voxel size or collinear axes)")
    data = data.astype(data.dtype.newbyteorder("="), copy=False)
    return Volume(data, affine, {"dtype": data.dtype.name})


def from_volume(vol: Volume, like: Any) -> Any:
    """``vol`` as the kind of object ``like`` is (see the module doc)."""
    kind = kind_of(like)
    if kind == "volume":
        return vol
    if kind == "array":
        return vol.data, vol.affine.copy()
    if kind == "nibabel":
        header = like.header.copy()
        out = type(like)(vol.data, vol.affine, header)
        out.set_data_dtype(vol.data.dtype)
        return out
    if kind == "sitk":
        import SimpleITK as sitk

        data = vol.data.transpose(2, 1, 0, *range(3, vol.data.ndim))
        img = sitk.GetImageFromArray(np.ascontiguousarray(data), isVector=vol.data.ndim == 4)
        a = RAS_TO_LPS @ vol.affine
        spacing = np.linalg.norm(a[:3, :3], axis=0)
        img.SetSpacing([float(s) for s in spacing])
        img.SetDirection([float(v) for v in (a[:3, :3] / spacing).ravel()])
        img.SetOrigin([float(v) for v in a[:3, 3]])
        for key in like.GetMetaDataKeys():
            img.SetMetaData(key, like.GetMetaData(key))
        return img
    return metatensor_like(vol, like)


def metatensor_like(vol: Volume, like: Any) -> Any:
    """A MetaTensor of ``vol`` with ``like``'s meta, its affine replaced (channel-first
    when ``like`` is)."""
    import torch
    from monai.data import MetaTensor

    data = vol.data if vol.data.ndim == 3 else np.moveaxis(vol.data, -1, 0)
    if like.ndim == 4 and data.ndim == 3:
        data = data[None]
    meta = dict(like.meta)
    a = RAS_TO_LPS @ vol.affine if _lps(like) else vol.affine  # flip @ (A @ S) = (flip @ A) @ S
    affine = torch.as_tensor(a, dtype=like.affine.dtype)
    meta["affine"] = affine
    return MetaTensor(torch.as_tensor(np.ascontiguousarray(data), device=like.device),
                      meta=meta, applied_operations=list(like.applied_operations))


# --------------------------------------------------------------------------- the API

def read(path: str | os.PathLike, **options: Any) -> Volume:
    """Read a NIfTI/MGH file, DICOM series, TIFF stack, picture, frames folder or video
    into a :class:`~medsr.volume.Volume` (:func:`medsr.io.read`; ``options``: ``volume``,
    ``series``, ``input_spacing``, ``max_voxels``)."""

    return io.read(path, **options)


def write(image: Any, path: str | os.PathLike, *, affine: np.ndarray | None = None,
          overwrite: bool = False, dtype: str | None = None, **options: Any) -> Path:
    """Write ``image`` (any kind :func:`super_resolve` takes; ``affine=`` for arrays)
    atomically in the format the path's suffix names; returns the path written. An
    existing file is replaced only with ``overwrite`` (:func:`medsr.io.write`)."""

    return io.write(to_volume(image, affine), path, overwrite=overwrite, dtype=dtype,
                    **options)


def super_resolve(image: Any, scale: Factors | None = None, spacing: Factors | None = None,
                  model: str | os.PathLike | None = None, *, method: str = "auto",
                  device: str = "auto", affine: np.ndarray | None = None, tta: bool = False,
                  slice_profile: str | os.PathLike | None = None,
                  slice_thickness: float | None = None, keep_overshoot: bool = False,
                  precision: str = "auto", progress: bool = False,
                  max_output_voxels: int = DEFAULT_MAX_OUTPUT_VOXELS) -> Any:
    """Super-resolve ``image`` as ``medsr infer`` would, in memory.

    ``scale`` (one factor or one per axis) or ``spacing`` (target mm) sets the grid;
    neither: isotropic at the finest spacing, or x2 for isotropic input. ``model`` (a
    shipped name or a checkpoint) forces a network; ``method`` "auto" uses the shipped
    network that fits, a classical name ("cubic", "lanczos", ...) that method. A numpy
    array needs ``affine=`` and comes back as ``(array, affine)``; every other kind comes
    back as its own kind with the affine ``A @ S``.
    """
    vol = to_volume(image, affine)
    auto_profile = slice_profile is None or str(slice_profile) == "auto"
    profile = None if auto_profile else slice_profile
    _, model = check_options(model, method=method, scale=scale, spacing=spacing, tta=tta,
                             slice_thickness=slice_thickness, slice_profile=profile,
                             device=device, precision=precision)
    grid = plan_grid(vol, scale=scale, spacing=spacing, max_output_voxels=max_output_voxels)
    sr = super_resolve_volume(vol, grid, method=method, model=model, device=device, tta=tta,
                              precision=precision, slice_profile=profile,
                              slice_thickness=slice_thickness, auto_profile=auto_profile,
                              keep_overshoot=keep_overshoot, progress=progress,
                              label=str(vol.meta.get("path") or "image"))
    out = sr.volume
    if np.issubdtype(out.data.dtype, np.inexact) and not np.all(np.isfinite(out.data)):
        raise UserError(f"{sr.method} produced non-finite values; rescale the image")
    data = cast_like(out.data, vol.data.dtype)
    out = out.with_data(data, affine=grid.affine_out, medsr_method=sr.method,
                        medsr_model=sr.model, medsr_notes=list(sr.notes))
    return from_volume(out, image)
