"""Every shipped config loads against the schema, builds its network, and takes one
training step on a patch of its own size (LR patch -> HR patch shape)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medsr.models import available
from medsr.training.build import build_degradation, create_model, sampling_spec
from medsr.training.config import load_config
from medsr.training.losses import build_loss

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml"))
CONFIGS = [p for p in CONFIGS if "degradations" not in p.parts]


def test_a_config_for_every_network():
    names = {p.stem for p in CONFIGS}
    assert {f"{n}_2d" for n in available()} <= names
    assert {"edsr_3d", "rcan_3d", "rdn_3d", "srresnet_3d", "smoke"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_builds_and_steps(path):
    torch.manual_seed(0)
    cfg = load_config(path, ["device=cpu"])
    spec = sampling_spec(cfg)
    build_degradation(cfg, spec.scale)
    model = create_model(cfg, 1, 1)
    loss_fn = build_loss(cfg["loss"])
    lr = torch.rand(1, 1, *(p // k for p, k in zip(spec.patch, spec.scale)))
    hr = torch.rand(1, 1, *spec.patch)
    sr = model(lr)
    assert sr.shape == hr.shape
    loss, _ = loss_fn(sr, hr)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads[:1])
