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


DEFAULTS = Path(__file__).resolve().parents[1] / "configs" / "default"
WEIGHTS = Path(__file__).resolve().parents[1] / "medsr" / "weights"


@pytest.mark.parametrize("path", sorted(DEFAULTS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_defaults_are_what_their_configs_train(path):
    """Each shipped default's network (name, scale, hyper-parameters) is the one its
    config in configs/default trains: the model card's regenerate command holds."""
    import json

    sidecar = WEIGHTS / f"{path.stem}.json"
    if not sidecar.exists():
        pytest.skip(f"{path.stem} is not shipped")
    info, model = json.loads(sidecar.read_text()), load_config(path, [])["model"]
    assert info["architecture"] == model["name"]
    assert info["scale"] == list(model["scale"])
    assert model.get("hparams", {}).items() <= info["hparams"].items()


def test_fine_tuning_starts_only_from_the_same_architecture(tmp_path):
    """pipelines/train_default.py --init: a model whose config changed network trains
    from scratch; a missing sidecar is an error, not a silent from-scratch run."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location(
        "train_default", DEFAULTS.parents[1] / "pipelines" / "train_default.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    name = "thick_slice_x4"
    arch = load_config(DEFAULTS / f"{name}.yaml", [])["model"]["name"]
    (tmp_path / f"{name}.json").write_text(json.dumps({"architecture": arch}))
    assert mod.same_architecture(name, tmp_path)
    (tmp_path / f"{name}.json").write_text(json.dumps({"architecture": "not_" + arch}))
    assert not mod.same_architecture(name, tmp_path)
    with pytest.raises(SystemExit, match="missing"):
        mod.same_architecture("in_plane_x2", tmp_path)
