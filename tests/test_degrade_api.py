"""Degradation as an object: seeds, JSON replay, presets, geometry, errors, MONAI forms."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medsr import geometry
from medsr.degrade import (
    Degradation,
    Degradationd,
    Downsample,
    RandNoised,
    available_presets,
    degrade_volume,
    load_preset,
)
from medsr.errors import UserError
from medsr.volume import Volume

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
OBLIQUE = np.array([[0.8, 0.3, 0.1, -40.0],
                    [-0.25, 0.9, 0.2, 12.0],
                    [0.05, -0.15, 2.4, 7.5],
                    [0, 0, 0, 1]])


def _img(shape=(1, 16, 16, 12), seed=0):
    return np.random.default_rng(seed).random(shape) * 100


def test_same_seed_same_output_different_seeds_differ():
    d = load_preset("mri-random")
    outs = []
    for seed in (5, 5, 6):
        d.set_random_state(seed)
        outs.append((d(_img()), d.last_params))
    (a, pa), (b, pb), (c, pc) = outs
    np.testing.assert_array_equal(a, b)
    assert pa == pb
    assert pa != pc
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_calls_draw_fresh_values():
    d = load_preset("mri-random")
    d.set_random_state(0)
    draws = []
    for _ in range(6):
        d(_img())
        draws.append(d.last_params["sigma"])
    assert len(set(draws)) == 6 and all(0 <= s <= 0.04 for s in draws)


@pytest.mark.parametrize("name", ["mri-random", "mri-thick-slice", "microscopy-axial",
                                  "mri-kspace"])
def test_json_replay_is_exact(name):
    d = load_preset(name)
    d.set_random_state(11)
    x = _img((1, 16, 16, 24))
    y = d(x)
    replay = Degradation.from_dict(json.loads(json.dumps(d.last_params)))
    for seed in (0, 1):  # the replay does not depend on its own random state
        replay.set_random_state(seed)
        np.testing.assert_array_equal(replay(x), y)


def test_to_dict_round_trip_keeps_ranges():
    d = load_preset("mri-random")
    spec = json.loads(json.dumps(d.to_dict()))
    assert Degradation.from_dict(spec).to_dict() == d.to_dict()
    assert spec["sigma"] == [0.0, 0.04]


def test_presets_ship_in_the_package_and_configs_copy_matches():
    names = available_presets()
    assert {"mri-thick-slice", "mri-kspace", "bicubic", "microscopy-axial", "video"} <= set(names)
    for name in names:
        pkg = ROOT / "medsr" / "presets" / f"{name}.yaml"
        cfg = ROOT / "configs" / "degradations" / f"{name}.yaml"
        assert cfg.read_text() == pkg.read_text(), f"configs/degradations/{name}.yaml differs"
    assert sorted(p.stem for p in (ROOT / "configs" / "degradations").glob("*.yaml")) == names


@pytest.mark.parametrize("name", ["mri-thick-slice", "mri-kspace", "bicubic",
                                  "microscopy-axial", "video", "mri-random"])
def test_every_preset_runs_in_3d_and_2d(name):
    d = load_preset(name)
    d.set_random_state(0)
    y = d(_img((1, 16, 16, 12)), spacing=(1, 1, 1))
    assert y.ndim == 4 and np.isfinite(y).all()
    if name in ("bicubic", "video", "mri-kspace"):
        y2 = d(_img((3, 32, 24)))
        assert y2.ndim == 3 and y2.shape[0] == 3


def test_preset_overrides_and_thick_slice_semantics():
    d = load_preset("mri-thick-slice", scale=(1, 1, 5), noise="none")
    y = d(_img((1, 8, 8, 20)))
    assert y.shape == (1, 8, 8, 4)
    assert d.last_params["resolved"]["widths_voxel"] == [0.0, 0.0, 5.0]


@pytest.mark.parametrize("factors", [(1, 1, 4), (2, 3, 1), (2, 2, 2)])
def test_lr_affine_is_a_times_s_inverse_metatensor_and_volume(factors):
    hr_shape = (12, 18, 16)
    x = MetaTensor(torch.from_numpy(_img((1, *hr_shape))).float(), affine=torch.as_tensor(OBLIQUE))
    d = Degradation(scale=list(factors), noise="gaussian", sigma=0.1)
    y = d(x)
    expected = geometry.downsampled_affine(OBLIQUE, factors)
    assert isinstance(y, MetaTensor)
    np.testing.assert_allclose(np.asarray(y.affine), expected, atol=1e-12)
    vol = Volume(_img(hr_shape, 1).astype(np.float32), OBLIQUE)
    lr = degrade_volume(vol, d)
    np.testing.assert_allclose(lr.affine, expected, atol=1e-12)
    # medsr infer's grid from the LR lands exactly on the HR grid
    assert geometry.output_shape(lr.spatial_shape, factors) == hr_shape
    np.testing.assert_allclose(geometry.upsampled_affine(lr.affine, factors), OBLIQUE, atol=1e-12)
    assert lr.meta["degradation"]["resolved"]["scale"] == [float(k) for k in factors]


def test_non_integer_lr_grid_is_the_inverse_of_upsampling():
    hr_shape = (20, 15, 10)
    factors = (2.5, 1.5, 1.0)
    lr = degrade_volume(Volume(_img(hr_shape).astype(np.float32), OBLIQUE),
                        Degradation(scale=list(factors)))
    assert lr.spatial_shape == (8, 10, 10)
    assert geometry.output_shape(lr.spatial_shape, factors) == hr_shape
    up = geometry.upsampled_affine(lr.affine, factors, lr.spatial_shape, hr_shape)
    np.testing.assert_allclose(up, OBLIQUE, atol=1e-12)


def test_zero_filled_keeps_hr_grid():
    vol = Volume(_img((16, 16, 8)).astype(np.float32), OBLIQUE)
    lr = degrade_volume(vol, Degradation(scale=[2, 2, 1], downsample="kspace", zero_filled=True))
    assert lr.spatial_shape == vol.spatial_shape
    np.testing.assert_array_equal(lr.affine, vol.affine)


def test_multichannel_volume_round_trip():
    vol = Volume(_img((16, 16, 4, 3)).astype(np.float32), np.eye(4))
    lr = degrade_volume(vol, load_preset("video"))
    assert lr.data.shape == (4, 4, 4, 3)


def test_2d_metatensor_with_4x4_affine():
    a = np.diag([0.5, 0.7, 1.0, 1.0])
    x = MetaTensor(torch.rand(1, 16, 12), affine=torch.as_tensor(a))
    y = Downsample(scale=2, mode="area")(x)
    assert y.shape == (1, 8, 6)
    np.testing.assert_allclose(np.asarray(y.affine), geometry.downsampled_affine(a, (2, 2, 1)))


@pytest.mark.parametrize("kwargs,match", [
    ({"noise": "gaussian", "sigma": -0.1}, "sigma"),
    ({"scale": 0.5}, ">= 1"),
    ({"scale": [1, 1, 0]}, ">= 1"),
    ({"downsample": "nearest"}, "downsampling"),
    ({"profile": "lorentz"}, "profile"),
    ({"noise": "speckle"}, "noise"),
    ({"jpeg_quality": 0}, "JPEG"),
    ({"sigma_mm": 1}, "unknown degradation parameter"),
    ({"zero_filled": True}, "kspace"),
    ({"sigma": [0.2, 0.1]}, "lo <= hi"),
])
def test_bad_parameters_are_user_errors(kwargs, match):
    with pytest.raises(UserError, match=match):
        Degradation(**kwargs)


def test_runtime_user_errors():
    with pytest.raises(UserError, match="unknown degradation preset 'nope'; known: .*bicubic"):
        load_preset("nope")
    with pytest.raises(UserError, match="spacing"):
        Degradation(scale=[1, 1, 2], fwhm=[0, 0, 3], units="mm")(_img())
    with pytest.raises(UserError, match="cannot be downsampled"):
        Degradation(scale=[1, 1, 20])(_img())
    with pytest.raises(UserError, match="channel-first"):
        Degradation()(np.zeros(5))


def test_artefacts_from_monai_are_seeded():
    spec = {"scale": [2, 2, 1], "artefacts": [{"type": "gibbs", "alpha": [0.3, 0.6]},
                                              {"type": "bias_field", "coeff_range": [0.1, 0.2]}]}
    d = Degradation(**spec)
    d.set_random_state(3)
    y1 = d(_img())
    d.set_random_state(3)
    np.testing.assert_array_equal(d(_img()), y1)
    plain = Degradation(scale=[2, 2, 1])(_img())
    assert np.abs(y1 - plain).max() > 1e-3
    np.testing.assert_array_equal(Degradation.from_dict(d.last_params)(_img()), y1)


def test_jpeg_changes_the_image_and_is_recorded():
    x = _img((3, 64, 64))
    d = load_preset("video", jpeg_quality=20, noise="none")
    y = d(x)
    plain = load_preset("video", noise="none")(x)
    assert y.shape == plain.shape == (3, 16, 16)
    assert 0 < np.abs(y - plain).mean() < 20
    assert len(d.last_params["resolved"]["jpeg_range"]) == 2


def test_dictionary_forms_keep_hr_and_share_draws():
    data = {"hr": _img(), "other": _img(seed=1)}
    t = Degradationd(keys=["hr", "other"], output_keys=["lr", "lr_other"],
                     degradation=load_preset("mri-random"))
    t.set_random_state(4)
    out = t(data)
    assert out["hr"] is data["hr"]
    assert out["lr"].shape == out["lr_other"].shape
    t.set_random_state(4)
    np.testing.assert_array_equal(t(data)["lr"], out["lr"])
    n = RandNoised(keys="hr", kind="rician", sigma=1.0)
    n.set_random_state(1)
    a = n({"hr": np.zeros((1, 8, 8, 8))})["hr"]
    n.set_random_state(1)
    np.testing.assert_array_equal(n({"hr": np.zeros((1, 8, 8, 8))})["hr"], a)


@pytest.mark.parametrize("kind", ["motion", "ghosting"])
@pytest.mark.parametrize("shape", [(1, 24, 20, 8), (1, 24, 20)])
def test_torchio_artefacts_in_the_pipeline_are_seeded(kind, shape):
    """TorchIO's motion and ghosting are reused (not rewritten): they change the image,
    replay exactly from last_params, and differ between seeds."""
    from medsr.degrade import Degradation

    x = np.random.default_rng(0).random(shape).astype(np.float32)
    spacing = (1.0,) * (len(shape) - 1)
    d = Degradation(scale=1, profile="none", artefacts=[{"type": kind}])
    d.set_random_state(3)
    a = d(x, spacing=spacing)
    assert a.shape == x.shape and np.all(np.isfinite(a))
    assert np.abs(a - x).max() > 1e-3
    replay = Degradation.from_dict(d.last_params)(x, spacing=spacing)
    np.testing.assert_array_equal(replay, a)
    d.set_random_state(4)
    assert np.abs(d(x, spacing=spacing) - a).max() > 1e-6
