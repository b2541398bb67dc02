"""Which shipped model `medsr infer` picks for a plan, and that shipped files are complete."""

import json

import pytest

from medsr import pretrained
from medsr.models.checkpoint import read_checkpoint


@pytest.fixture
def ship(monkeypatch):
    def set_shipped(names):
        monkeypatch.setattr(pretrained, "shipped",
                            lambda: [pretrained.PRETRAINED[n] for n in names])
    return set_shipped


def test_one_axis_uses_through_plane_model_and_rounds_up(ship):
    ship(["thick-slice-x2", "thick-slice-x4", "thick-slice-x6", "in-plane-x2"])
    assert [(p.name, ax) for p, ax in pretrained.choose([1, 1, 4])] == [("thick-slice-x4", 2)]
    assert [(p.name, ax) for p, ax in pretrained.choose([1, 3, 1])] == [("thick-slice-x4", 1)]
    assert [p.name for p, _ in pretrained.choose([1, 1, 4.5])] == ["thick-slice-x6"]
    assert pretrained.choose([1, 1, 7]) == []


def test_in_plane_and_isotropic(ship):
    ship(["thick-slice-x2", "in-plane-x2", "in-plane-x4"])
    assert [(p.name, ax) for p, ax in pretrained.choose([2, 2, 1])] == [("in-plane-x2", (0, 1))]
    assert [(p.name, ax) for p, ax in pretrained.choose([1, 4, 4])] == [("in-plane-x4", (1, 2))]
    assert [(p.name, ax) for p, ax in pretrained.choose([2, 2, 2])] == [
        ("in-plane-x2", (0, 1)), ("thick-slice-x2", 2)]
    assert pretrained.choose([2, 3, 1]) == []  # unequal in-plane factors: no network


def test_nothing_shipped_means_no_passes(ship):
    ship([])
    assert pretrained.choose([1, 1, 4]) == []


@pytest.mark.parametrize("p", pretrained.shipped(), ids=lambda p: p.name)
def test_shipped_weights_are_complete_medsr_checkpoints(p):
    state, info = read_checkpoint(p.path)
    assert state and info["spatial_dims"] == 2
    card = p.path.with_suffix(".md")
    assert card.is_file() and "pipelines/train_" in card.read_text()
    sidecar = json.loads(p.path.with_suffix(".json").read_text())
    assert sidecar["architecture"] == info["architecture"]
    through = p.kind in ("through-plane", "microscopy")
    expect = [1, p.factor] if through else [p.factor, p.factor]
    assert info["scale"] == expect


@pytest.mark.parametrize("name", ["thick-slice-x4", "in-plane-x2"])
def test_shipped_models_tiled_equal_whole_volume(name):
    """Seams do not show: small tiles give the whole-plane result within 1e-4."""
    import numpy as np

    from medsr.inference.apply import apply_2d
    from medsr.inference.model_sr import load

    p = pretrained.PRETRAINED[name]
    if not p.available:
        pytest.skip(f"{name} is not shipped")
    net, _ = load(name, "cpu")
    rng = np.random.default_rng(0)
    x = rng.random((24, 40, 12), dtype=np.float32)
    factors = (1, 1, 4) if p.kind == "through-plane" else (2, 2, 1)
    whole = apply_2d(net, x, factors, tile=(512, 512))
    tiled = apply_2d(net, x, factors, tile=(7, 5))
    np.testing.assert_allclose(tiled, whole, atol=1e-4)
