"""Perceptual (feature) and texture (Gram) losses on a VGG19 loaded from a LOCAL file.

Nothing is downloaded. Supply torchvision-layout VGG19 weights (keys
``features.<i>.weight`` / ``.bias``, or without the ``features.`` prefix) as a
``.safetensors`` file or a plain ``.pth`` state dict (read with ``weights_only=True``)
through the config key ``loss.feature_weights``. Grey images are repeated to 3 channels
and ImageNet-normalised (inputs are taken to lie in [0, 1]); 3D volumes are fed to the
2D network slice by slice along the last axis.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from medsr.errors import UserError
from medsr.models.checkpoint import read_checkpoint

_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
        512, 512, 512, 512, "M"]
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def _layer_names() -> dict[str, int]:
    """relu<block>_<n> -> index in torchvision's ``vgg19().features``."""
    names, idx, block, n = {}, 0, 1, 0
    for v in _CFG:
        if v == "M":
            idx += 1
            block, n = block + 1, 0
        else:
            n += 1
            names[f"conv{block}_{n}"] = idx
            names[f"relu{block}_{n}"] = idx + 1
            idx += 2
    return names


LAYERS = _layer_names()


class VGG19Features(nn.Module):
    """The convolutional part of VGG19 up to the deepest requested layer, frozen."""

    def __init__(self, weights: str | Path | None, layers: list[str]) -> None:
        super().__init__()
        if not weights:
            raise UserError("perceptual/texture losses need VGG19 weights from a local file: "
                            "set loss.feature_weights (see docs/training.md); nothing is "
                            "downloaded")
        unknown = [name for name in layers if name not in LAYERS]
        if unknown:
            raise UserError(f"unknown VGG19 layer(s) {unknown}; choose from {sorted(LAYERS)}")
        self.layers = list(layers)
        last = max(LAYERS[name] for name in layers)
        mods: list[nn.Module] = []
        cin = 3
        for v in _CFG:
            if len(mods) > last:
                break
            if v == "M":
                mods.append(nn.MaxPool2d(2, 2))
            else:
                mods += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=False)]
                cin = int(v)
        self.features = nn.Sequential(*mods[: last + 1])
        self._load(Path(weights))
        self.requires_grad_(False)
        self.eval()
        self.register_buffer("mean", torch.tensor(_MEAN).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_STD).reshape(1, 3, 1, 1))

    def _load(self, path: Path) -> None:
        if not path.is_file():
            raise UserError(f"feature network weights {path} do not exist")
        try:
            state, _ = read_checkpoint(path)
        except UserError:
            try:
                state = load_file(str(path))  # a plain safetensors file without medsr metadata
            except Exception as exc:
                raise UserError(f"cannot read VGG19 weights from {path}") from exc
        state = {k.removeprefix("features."): v for k, v in state.items()}
        own = self.features.state_dict()
        missing = [k for k in own if k not in state]
        if missing:
            raise UserError(f"{path} lacks VGG19 weights {missing[:3]}... (torchvision layout)")
        try:
            self.features.load_state_dict({k: state[k] for k in own})
        except RuntimeError as exc:
            raise UserError(f"{path} does not hold VGG19 weights: {exc}") from exc

    def train(self, mode: bool = True) -> VGG19Features:  # always frozen, always eval
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.ndim == 5:  # (N, C, I, J, K) -> slices along K
            n, c, i, j, k = x.shape
            x = x.permute(0, 4, 1, 2, 3).reshape(n * k, c, i, j)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        elif x.shape[1] != 3:
            x = x.mean(1, keepdim=True).repeat(1, 3, 1, 1)
        x = (x - self.mean) / self.std
        wanted = {LAYERS[name]: name for name in self.layers}
        out = {}
        for idx, mod in enumerate(self.features):
            x = mod(x)
            if idx in wanted:
                out[wanted[idx]] = x
        return out


def gram(f: torch.Tensor) -> torch.Tensor:
    """Gram matrix (N, C, C) of features (N, C, H, W), normalised by C*H*W."""
    n, c = f.shape[:2]
    flat = f.reshape(n, c, -1)
    return flat @ flat.transpose(1, 2) / flat.shape[-1] / c


class PerceptualLoss(nn.Module):
    """L1 distance of VGG19 features at one layer (SRGAN's VGG54 = ``relu5_4``)."""

    def __init__(self, net: VGG19Features, layer: str) -> None:
        super().__init__()
        self.net, self.layer = net, layer

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(self.net(sr)[self.layer], self.net(hr)[self.layer].detach())


class TextureLoss(nn.Module):
    """EnhanceNet's texture loss: squared distance of Gram matrices over ``layers``."""

    def __init__(self, net: VGG19Features, layers: list[str]) -> None:
        super().__init__()
        self.net, self.layers = net, list(layers)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        fs, fh = self.net(sr), self.net(hr)
        return sum(F.mse_loss(gram(fs[k]), gram(fh[k]).detach()) for k in self.layers)
