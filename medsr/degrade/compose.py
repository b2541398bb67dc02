"""The composed degradation LR = JPEG(N(A(down_k(h * I)))) with recorded, replayable parameters.

``Degradation.to_dict()`` is the specification (ranges included); ``last_params`` is what
one call used (every random value drawn, the noise seed, and a ``resolved`` block with
per-axis factors, widths in voxels and absolute noise levels). ``from_dict(last_params)``
replays that call exactly.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import Randomizable, Transform

from medsr.degrade import _array
from medsr.degrade.blur import UNITS, blur, blur_widths
from medsr.degrade.downsample import (
    MODES,
    WINDOWS,
    acquire,
    downsample,
    lr_affine,
    resolve_factors,
)
from medsr.degrade.jpeg import jpeg
from medsr.degrade.noise import MAX_PHOTONS, NOISES, absolute_levels, add_noise
from medsr.degrade.profiles import PROFILES, load_kernel
from medsr.degrade.randomize import sample
from medsr.errors import UserError
from medsr.volume import Volume

DEFAULTS: dict[str, Any] = {
    "scale": 1,
    "profile": "gaussian",
    "fwhm": None,
    "thickness": None,
    "units": "voxel",
    "kernel": None,
    "downsample": "area",
    "window": None,
    "window_alpha": 0.5,
    "zero_filled": False,
    "artefacts": [],
    "noise": "none",
    "sigma": 0.0,
    "relative": False,
    "gain": None,
    "jpeg_quality": None,
    "noise_seed": None,
}
MAX_FACTOR = 1000      # a larger HR -> LR factor leaves no voxel of any real image
MAX_WIDTH = 1.0e4      # a wider profile (voxels, mm or LR spacings) is a typo, not physics
MAX_SIGMA = 1.0e30     # noise std / gain in intensity units (float32 stays finite)
MAX_RELATIVE_SIGMA = 10.0  # relative: 10 x the 1-99 percentile range already drowns the image
META_KEYS = ("kind", "name", "description", "resolved", "medsr_version", "seed")


class _TorchIOArtefact:
    """A TorchIO random transform (motion, ghosting) on a channel-first tensor, seeded.

    TorchIO draws from torch's global generator, so the draw runs inside a forked RNG
    seeded with ``seed``: the same seed gives the same artefact, and the caller's random
    state is untouched. 2D images get a singleton third axis for TorchIO.
    """

    def __init__(self, cls: Any, kwargs: dict[str, Any], seed: int) -> None:
        self.cls, self.kwargs, self.seed = cls, kwargs, int(seed)

    def __call__(self, y: Any) -> torch.Tensor:
        t = torch.as_tensor(y).detach().to("cpu", torch.float32)
        two_d = t.dim() == 3
        if two_d:
            t = t.unsqueeze(-1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            out = self.cls(**self.kwargs)(t)
        out = torch.as_tensor(out)
        return out[..., 0] if two_d else out


TORCHIO_ARTEFACTS = {"motion": "RandomMotion", "ghosting": "RandomGhosting"}


def _artefact(spec: dict[str, Any], seed: int) -> Transform:
    """An artefact transform (probability 1) from {"type": ..., **kwargs}: MONAI's Gibbs
    ringing, bias field and k-space spikes, TorchIO's motion and ghosting."""
    from monai.transforms import RandBiasField, RandGibbsNoise, RandKSpaceSpikeNoise

    classes = {"gibbs": RandGibbsNoise, "bias_field": RandBiasField,
               "kspace_spike": RandKSpaceSpikeNoise}
    kwargs = dict(spec)
    kind = kwargs.pop("type", None)
    if kind not in classes and kind not in TORCHIO_ARTEFACTS:
        raise UserError(f"unknown artefact {kind!r}; choose one of "
                        f"{', '.join([*classes, *TORCHIO_ARTEFACTS])}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    if kind in TORCHIO_ARTEFACTS:
        try:
            import torchio
        except ImportError as exc:
            raise UserError(f"artefact {kind} needs TorchIO: pip install torchio") from exc
        cls = getattr(torchio, TORCHIO_ARTEFACTS[kind])
        try:
            cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise UserError(f"artefact {kind}: {exc}") from exc
        return _TorchIOArtefact(cls, kwargs, seed)
    try:
        t = classes[kind](prob=1.0, **kwargs)
    except TypeError as exc:
        raise UserError(f"artefact {kind}: {exc}") from exc
    t.set_random_state(seed)
    return t


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def _check(p: dict[str, Any]) -> None:
    """Validate one concrete parameter set (shape-independent checks)."""
    if p["profile"] not in PROFILES:
        raise UserError(f"unknown profile {p['profile']!r}; choose one of {', '.join(PROFILES)}")
    if p["downsample"] not in MODES:
        raise UserError(f"unknown downsampling {p['downsample']!r}; "
                        f"choose one of {', '.join(MODES)}")
    if p["noise"] not in NOISES:
        raise UserError(f"unknown noise {p['noise']!r}; choose one of {', '.join(NOISES)}")
    if p["window"] not in WINDOWS:
        raise UserError(f"unknown k-space window {p['window']!r}; choose none, hann or tukey")
    if p["units"] not in UNITS:
        raise UserError(f"units must be one of {', '.join(UNITS)}, got {p['units']!r}")
    scale = p["scale"] if np.ndim(p["scale"]) else [p["scale"]]
    for k in scale:
        if not (isinstance(k, int | float) and math.isfinite(k) and 1 <= k <= MAX_FACTOR):
            raise UserError(f"downsampling factors must be numbers >= 1 (HR -> LR) and at "
                            f"most {MAX_FACTOR}, got {p['scale']}")
    for name in ("fwhm", "thickness"):
        vals = p[name] if np.ndim(p[name]) else [p[name]]
        if any(v is not None and not (math.isfinite(float(v)) and 0 <= float(v) <= MAX_WIDTH)
               for v in vals):
            raise UserError(f"{name} must be a number in [0, {MAX_WIDTH:g}], got {p[name]}")
    sig = p["sigma"] if np.ndim(p["sigma"]) else [p["sigma"]]
    hi = MAX_RELATIVE_SIGMA if p["relative"] else MAX_SIGMA
    if not all(math.isfinite(float(s)) and 0 <= float(s) <= hi for s in sig):
        raise UserError(f"noise sigma must be a number in [0, {hi:g}]"
                        f"{' (relative)' if p['relative'] else ''}, got {p['sigma']}")
    if p["gain"] is not None:
        g = p["gain"] if np.ndim(p["gain"]) else [p["gain"]]
        if not all(math.isfinite(float(v)) and 0 < float(v) <= hi for v in g):
            raise UserError(f"Poisson gain must be a number in (0, {hi:g}]"
                            f"{' (relative)' if p['relative'] else ''}, got {p['gain']}")
    q = p["jpeg_quality"]
    if q is not None and not 1 <= int(q) <= 100:
        raise UserError(f"JPEG quality must be in 1..100, got {q}")
    if p["zero_filled"] and p["downsample"] != "kspace":
        raise UserError("zero_filled applies to downsample: kspace only")
    if p["downsample"] == "acquire" and p["profile"] == "kernel":
        raise UserError("downsample 'acquire' needs a named profile (gaussian, rect or none), "
                        "not a kernel; use decimate after the kernel")
    if p["profile"] == "kernel" and not p["kernel"]:
        raise UserError("profile 'kernel' needs kernel: a .npy file")


class Degradation(Randomizable, Transform):
    """D(I; sigma) on a channel-first image (C, *spatial), 2D or 3D, numpy or torch.

    Parameters (see docs/degradation.md; any number may be a range for randomisation):
        scale: HR -> LR factor, scalar (every axis longer than 1 voxel) or per axis.
        profile: "gaussian" | "rect" | "none" | "kernel"; fwhm / thickness per axis
            (None: k where k > 1, i.e. thickness = spacing), in ``units`` "voxel", "mm"
            or "lr" (multiples of the LR spacing).
        downsample: "decimate" | "area" | "kspace" | "bicubic" | "acquire" (the profile
            centred on each LR sample, integer k: an exact slice acquisition); window
            (kspace): None | "hann" | "tukey" (``window_alpha``); zero_filled: kspace
            result on the HR grid.
        artefacts: MONAI artefacts applied to the LR image, e.g. [{"type": "gibbs",
            "alpha": [0.2, 0.5]}, {"type": "bias_field", "coeff_range": [0, 0.1]}].
        noise: "none" | "gaussian" | "rician" | "poisson-gaussian"; sigma, gain (Poisson,
            intensity per photon), one value or {"per_channel": [...]}; relative: both are
            fractions of each channel's 1-99 percentile range of the input.
        jpeg_quality: JPEG round trip (Pillow) after the noise, or None.
        noise_seed: fixes the noise; None draws one per call from the random state.
    """

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(DEFAULTS))
        if unknown:
            raise UserError(f"unknown degradation parameter(s) {', '.join(unknown)}; "
                            f"known: {', '.join(DEFAULTS)}")
        spec = copy.deepcopy(DEFAULTS)
        spec.update(_jsonable(params))
        self.spec = spec
        _check(sample(spec, np.random.RandomState(0)))  # fail at construction, not mid-epoch
        if spec["profile"] == "kernel" and isinstance(spec["kernel"], str):
            load_kernel(spec["kernel"])  # a bad kernel file fails here too
        self.last_params: dict[str, Any] = {}
        self._params: dict[str, Any] | None = None

    # -- serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The complete specification (JSON-able; ranges kept)."""
        return copy.deepcopy(self.spec)

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> Degradation:
        """Build from ``to_dict()``, a preset or ``last_params`` (meta keys ignored)."""
        return cls(**{k: v for k, v in params.items() if k not in META_KEYS})

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.spec.items() if v != DEFAULTS[k]}
        return f"Degradation({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    # -- randomness ------------------------------------------------------------------------
    def randomize(self, data: Any = None) -> None:
        p = sample(self.spec, self.R)
        _check(p)
        seed = self.R.randint(2**31)  # drawn every call so the stream does not depend on spec
        if p["noise_seed"] is None:
            p["noise_seed"] = int(seed)
        self._params = p

    # -- the work --------------------------------------------------------------------------
    def __call__(self, img: Any, spacing: Sequence[float] | None = None,
                 randomize: bool = True) -> Any:
        x = _array.to_work(img)
        nd = _array.check_channel_first(x)
        if spacing is None and hasattr(img, "pixdim"):
            spacing = [float(s) for s in img.pixdim[:nd]]
        if randomize or self._params is None:
            self.randomize()
        p = self._params
        shape = tuple(x.shape[1:])
        factors = resolve_factors(p["scale"], shape)
        widths = blur_widths(p["profile"], p["fwhm"], p["thickness"], p["units"], factors,
                             spacing)
        if p["profile"] == "kernel" and p["fwhm"] is None and p["thickness"] is None:
            widths = [1.0 if k > 1 else 0.0 for k in factors]
        elif p["profile"] == "none":
            widths = [0.0] * nd
        sigma_abs, gain_abs = absolute_levels(x, p["sigma"], p["gain"], p["relative"])
        if p["noise"] == "poisson-gaussian" and x.numel():  # refuse before any warning
            peak = float(torch.clamp(x, min=0).amax())
            if not peak / min(gain_abs) <= MAX_PHOTONS:
                raise UserError(f"Poisson gain {min(gain_abs):g} is too small for intensities "
                                f"up to {peak:g} (over {MAX_PHOTONS:g} photons per voxel)")

        if p["downsample"] == "acquire":  # the profile centred on each LR sample itself
            y = blur(x, p["profile"], [w if k == 1.0 else 0.0 for w, k in zip(widths, factors)],
                     p["kernel"])
            y = acquire(y, factors, p["profile"], widths)
        else:
            y = blur(x, p["profile"], widths, p["kernel"])
            y = downsample(y, factors, p["downsample"], p["window"], p["window_alpha"],
                           p["zero_filled"])
        seeds = np.random.RandomState(p["noise_seed"] % (2**32)).randint(2**31, size=1 + len(
            p["artefacts"]))
        for spec, s in zip(p["artefacts"], seeds[1:]):
            y = _artefact(spec, int(s))(y)
            y = (y.as_tensor() if hasattr(y, "as_tensor") else torch.as_tensor(y)).to(
                dtype=x.dtype, device=x.device)
        y = add_noise(y, p["noise"], sigma_abs, gain_abs, int(seeds[0]))
        resolved: dict[str, Any] = {"scale": factors, "widths_voxel": widths,
                                    "sigma_abs": sigma_abs, "lr_shape": list(y.shape[1:])}
        if p["noise"] == "poisson-gaussian":
            resolved["gain_abs"] = gain_abs
        if p["jpeg_quality"] is not None:

            y, resolved["jpeg_range"] = jpeg(y, int(p["jpeg_quality"]))
        self.last_params = _jsonable({**p, "resolved": resolved})

        out = _array.restore(y, img)
        if hasattr(out, "affine") and hasattr(img, "affine") and not p["zero_filled"]:
            out.affine = torch.as_tensor(lr_affine(np.asarray(img.affine), shape, factors),
                                         dtype=torch.float64)
        return out


def degrade_volume(vol: Volume, d: Degradation) -> Volume:
    """Degrade a :class:`Volume`; the result carries the LR affine A_hr @ S^-1 (or the HR
    affine for zero-filled k-space) and ``meta["degradation"] = d.last_params``."""
    data = vol.data
    x = data[None] if data.ndim == 3 else np.moveaxis(data, -1, 0)
    y = d(x, spacing=tuple(vol.spacing))
    out = y[0] if data.ndim == 3 else np.moveaxis(y, 0, -1)
    factors = d.last_params["resolved"]["scale"]
    affine = vol.affine if d.last_params["zero_filled"] else lr_affine(
        vol.affine, vol.spatial_shape, factors)
    return vol.with_data(out, affine=affine, degradation=d.last_params)
