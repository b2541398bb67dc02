"""One explicit table name -> network class, the presets, and the factory.

No decorators, no import side effects: adding a network means adding a line here.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from medsr.errors import UserError
from medsr.models.base import Scale
from medsr.models.btsrn import BTSRN
from medsr.models.carn import CARN, CARNM
from medsr.models.cmsc import CMSC
from medsr.models.discriminators import VARIANTS, VGGDiscriminator
from medsr.models.drcn import DRCN
from medsr.models.drrn import DRRN
from medsr.models.edsr import EDSR, MDSR
from medsr.models.enhancenet import EnhanceNet
from medsr.models.espcn import ESPCN
from medsr.models.fsrcnn import FSRCNN
from medsr.models.idn import IDN
from medsr.models.lapsrn import LapSRN
from medsr.models.rcan import RCAN
from medsr.models.rdn import RDN
from medsr.models.rrdbnet import RRDBNet
from medsr.models.selnet import SelNet
from medsr.models.srcnn import SRCNN
from medsr.models.srresnet import SRResNet
from medsr.models.vdsr import SPVDSR, VDSR

NETWORKS: dict[str, type[nn.Module]] = {
    "srcnn": SRCNN, "fsrcnn": FSRCNN, "espcn": ESPCN, "vdsr": VDSR, "sp_vdsr": SPVDSR,
    "drcn": DRCN, "drrn": DRRN, "edsr": EDSR, "mdsr": MDSR, "carn": CARN, "carn_m": CARNM,
    "btsrn": BTSRN, "lapsrn": LapSRN, "cmsc": CMSC, "idn": IDN, "selnet": SelNet,
    "rcan": RCAN, "srresnet": SRResNet, "rrdbnet": RRDBNet, "rdn": RDN,
    "enhancenet": EnhanceNet,
}

# Named hyperparameter sets. "light" = affordable in 3D (documented in docs/models.md).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "vdsr": {"light": {"depth": 10, "features": 32}},
    "sp_vdsr": {"light": {"depth": 6, "features": 32}},
    "drcn": {"light": {"features": 64, "recursions": 8}},
    "drrn": {"light": {"features": 32, "units": 9}},
    "edsr": {"baseline": {"n_blocks": 16, "features": 64, "res_scale": 1.0},
             "light": {"n_blocks": 8, "features": 32, "res_scale": 1.0}},
    "mdsr": {"light": {"n_blocks": 16, "features": 32}},
    "carn": {"light": {"features": 32}},
    "carn_m": {"light": {"features": 32}},
    "btsrn": {"light": {"features": 32}},
    "lapsrn": {"ms": {"recursive": True, "depth": 5, "recursions": 8},
               "light": {"features": 32, "depth": 5}},
    "cmsc": {"light": {"features": 32, "subnets": 2, "modules": 2}},
    "idn": {"light": {"features": 32, "distill": 8, "deconv_kernel": 9}},
    "selnet": {"light": {"depth": 10, "features": 32}},
    "rcan": {"light": {"n_groups": 3, "n_blocks": 5, "features": 32, "reduction": 8}},
    "srresnet": {"light": {"n_blocks": 8, "features": 32}},
    "rrdbnet": {"light": {"n_blocks": 4, "features": 32, "growth": 16}},
    "rdn": {"light": {"D": 4, "C": 4, "G": 32, "G0": 32}},
    "enhancenet": {"light": {"features": 32}},
}


def available() -> list[str]:
    """The SR networks, in the order of the literature."""
    return list(NETWORKS)


def discriminators() -> list[str]:
    """The discriminator variants for :func:`create_discriminator`."""
    return list(VARIANTS)


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple | list):
        return [_jsonable(x) for x in v]
    return v


def _check_kwargs(cls: type, name: str, kwargs: dict) -> dict[str, Any]:
    params = inspect.signature(cls.__init__).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        allowed = ", ".join(p for p in params if p != "self")
        raise UserError(f"{name} has no hyperparameter {', '.join(unknown)}; it takes {allowed}")
    return {k: p.default for k, p in params.items()
            if k != "self" and p.default is not inspect.Parameter.empty}


def create(name: str, spatial_dims: int = 2, scale: Scale = 2, in_channels: int = 1,
           out_channels: int = 1, preset: str | None = None, **hyperparameters) -> nn.Module:
    """Build network ``name`` (LR in, HR out); ``model.hparams`` rebuilds it via
    ``create(name, **model.hparams)``."""
    if name not in NETWORKS:
        raise UserError(f"unknown network {name!r}; available: {', '.join(NETWORKS)}")
    cls = NETWORKS[name]
    if preset is not None:
        presets = PRESETS.get(name, {})
        if preset not in presets:
            raise UserError(f"{name} has no preset {preset!r}; presets: "
                            f"{', '.join(presets) or 'none'}")
        hyperparameters = {**presets[preset], **hyperparameters}
    kwargs = {"spatial_dims": spatial_dims, "scale": scale, "in_channels": in_channels,
              "out_channels": out_channels, **hyperparameters}
    defaults = _check_kwargs(cls, name, kwargs)
    model = cls(**kwargs)
    hparams = {**defaults, **kwargs, "scale": list(model.scale)}
    if hasattr(model, "scales"):
        hparams["scales"] = [list(s) for s in model.scales]
    model.hparams = {k: _jsonable(v) for k, v in hparams.items()}
    return model


def create_discriminator(name: str = "vgg", spatial_dims: int = 2, in_channels: int = 1,
                         patch_size: int | tuple[int, ...] | None = None, **hp) -> nn.Module:
    """VGG-style discriminator: ``vgg`` / ``srgan`` (4 stages, 3x3 strided convs, dense
    1024, default patch 96) or ``esrgan`` (5 stages, 4x4 strided convs, dense 100, 128)."""
    if name not in VARIANTS:
        raise UserError(f"unknown discriminator {name!r}; available: {', '.join(VARIANTS)}")
    cfg = {**VARIANTS[name], **hp}
    if patch_size is not None:
        cfg["patch_size"] = patch_size
    _check_kwargs(VGGDiscriminator, name, cfg)
    return VGGDiscriminator(spatial_dims, in_channels, **cfg)
