"""Microscopy stacks: z-isotropic plans in the file's unit, per-channel percentile
normalisation, axis orders, dtypes and spacing metadata read back with tifffile."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from medsr import io
from medsr.adapters import kind_of
from medsr.adapters.microscopy import percentile_normalise, super_resolve_stack
from medsr.geometry import plan_grid, plan_isotropic
from medsr.inference.classical import super_resolve
from medsr.inference.resolvers import default_model_for
from medsr.pipeline import infer_file
from medsr.volume import Volume


def _write_ij(path, arr, axes, dxy=0.2, dz=0.8):
    tifffile.imwrite(path, arr, imagej=True, resolution=(1 / dxy, 1 / dxy),
                     metadata={"axes": axes, "spacing": dz, "unit": "micron"})


def _read_back(path):
    with tifffile.TiffFile(path) as tif:
        s = tif.series[0]
        ij = tif.imagej_metadata or {}
        xres = tif.pages.first.tags["XResolution"].value
        return s.asarray(), s.axes, ij, xres[1] / xres[0]


def test_16bit_zyx_becomes_isotropic_with_right_spacing(tmp_path):
    # a linear ramp along z (reproduced exactly by cubic interpolation away from the ends)
    z = np.arange(8, dtype=float)
    arr = (1000 + 500 * z)[:, None, None] + np.zeros((8, 12, 10))
    arr[:, 5, 5] += 3000  # a bright line so the percentiles are not the ramp's ends
    _write_ij(tmp_path / "in.tif", arr.astype(np.uint16), "ZYX")
    infer_file(tmp_path / "in.tif", tmp_path / "out.tif", method="catmull-rom")
    out, axes, ij, dx = _read_back(tmp_path / "out.tif")
    assert axes == "ZYX" and out.shape == (32, 12, 10) and out.dtype == np.uint16
    assert ij["spacing"] == pytest.approx(0.2) and dx == pytest.approx(0.2, rel=1e-6)
    assert ij["unit"] in ("micron", "\\u00B5m", "µm")
    # output slice j lies at input position (j + 0.5) / 4 - 0.5 (A @ S geometry)
    j = np.arange(8, 24)
    expected = 1000 + 500 * ((j + 0.5) / 4 - 0.5)
    np.testing.assert_allclose(out[8:24, 0, 0], expected, atol=1)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_zcyx_channels_processed_independently(tmp_path, dtype, rng):
    top = 200 if dtype == "uint8" else 60000 if dtype == "uint16" else 5.0
    arr = np.empty((6, 2, 10, 9))
    arr[:, 0] = rng.random((6, 10, 9)) * top
    arr[:, 1] = rng.random((6, 10, 9)) * top * 0.01
    _write_ij(tmp_path / "in.tif", arr.astype(dtype), "ZCYX", dxy=0.1, dz=0.4)
    infer_file(tmp_path / "in.tif", tmp_path / "out.tif", method="catmull-rom")
    out, axes, ij, _ = _read_back(tmp_path / "out.tif")
    assert axes == "ZCYX" and out.shape == (24, 2, 10, 9) and out.dtype == np.dtype(dtype)
    assert ij["spacing"] == pytest.approx(0.1)
    # each channel keeps its own range, and is not affected by the other one
    assert out[:, 1].max() < 0.05 * top and out[:, 0].max() > 0.5 * top
    arr2 = arr.copy()
    arr2[:, 0] = rng.random((6, 10, 9)) * top
    _write_ij(tmp_path / "in2.tif", arr2.astype(dtype), "ZCYX", dxy=0.1, dz=0.4)
    infer_file(tmp_path / "in2.tif", tmp_path / "out2.tif", method="catmull-rom")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out2.tif")[:, 1], out[:, 1])


def test_tzcyx_time_points_and_ome_spacing(tmp_path, rng):
    arr = (rng.random((2, 5, 2, 8, 7)) * 4000).astype(np.uint16)
    arr[1] = arr[1] // 4  # a dimmer time point: normalised separately, restored
    _write_ij(tmp_path / "t.tif", arr, "TZCYX", dxy=0.25, dz=0.75)
    infer_file(tmp_path / "t.tif", tmp_path / "t_out.tif", method="catmull-rom")
    out, axes, ij, _ = _read_back(tmp_path / "t_out.tif")
    assert axes == "TZCYX" and out.shape == (2, 15, 2, 8, 7) and out.dtype == np.uint16
    assert ij["spacing"] == pytest.approx(0.25)
    assert out[1].max() < 0.3 * out[0].max()
    # OME-TIFF (float64 keeps OME on output) with PhysicalSize in micrometres
    ome = rng.random((4, 6, 6))
    tifffile.imwrite(tmp_path / "o.ome.tif", ome, ome=True,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5,
                               "PhysicalSizeZ": 1.0})
    vol = io.read(tmp_path / "o.ome.tif")
    assert vol.meta["unit"] == "um"
    plan = plan_isotropic(vol)
    assert plan.shape_out == (6, 6, 8)
    infer_file(tmp_path / "o.ome.tif", tmp_path / "o_out.ome.tif", method="linear")
    with tifffile.TiffFile(tmp_path / "o_out.ome.tif") as tif:
        assert tif.series[0].shape == (8, 6, 6) and tif.series[0].dtype == np.float64
        assert 'PhysicalSizeZ="0.5"' in tif.ome_metadata


def test_plan_isotropic_units_and_errors():
    vol = Volume(np.zeros((10, 10, 4), np.float32), np.diag([0.2, 0.2, 0.5, 1.0]),
                 {"format": "tiff", "unit": "um"})
    plan = plan_isotropic(vol)
    np.testing.assert_allclose(plan.factors, [1, 1, 2.5])
    np.testing.assert_allclose(plan.spacing_out, [0.2, 0.2, 0.2])
    assert plan.shape_out == (10, 10, 10)
    np.testing.assert_allclose(plan_isotropic(vol, spacing=0.25).spacing_out[2], 0.25)
    from medsr.errors import UserError

    with pytest.raises(UserError, match="already finer"):
        plan_isotropic(vol, spacing=1.0)


def test_percentile_normalisation_restored(rng):
    x = rng.gamma(2.0, 300.0, size=(12, 11, 5)).astype(np.float32)
    y, lo, hi = percentile_normalise(x)
    assert lo == pytest.approx(np.percentile(x, 1.0)) and hi == pytest.approx(
        np.percentile(x, 99.8))
    vol = Volume(x, np.diag([1, 1, 3, 1.0]), {"format": "tiff"})
    plan = plan_isotropic(vol)
    seen = []

    def ident(v, p):
        seen.append((float(np.percentile(v.data, 1.0)), float(np.percentile(v.data, 99.8))))
        return super_resolve(v, p, method="nearest")

    out = super_resolve_stack(vol, plan, ident)
    assert seen[0] == pytest.approx((0.0, 1.0), abs=1e-5)  # the SR saw normalised data
    np.testing.assert_allclose(out.data[:, :, ::3], x, rtol=1e-5, atol=1e-3)  # restored


def test_default_model_names_follow_the_plan():
    from medsr import pretrained

    stack = Volume(np.zeros((8, 8, 4), np.uint16), np.diag([0.2, 0.2, 0.8, 1.0]),
                   {"format": "tiff"})
    frames = Volume(np.zeros((8, 8, 3, 3), np.uint8), np.eye(4), {"format": "frames"})
    z4 = default_model_for(kind_of(stack), plan_isotropic(stack))
    f4 = default_model_for(kind_of(frames), plan_grid(frames, scale=(4, 4, 1)))
    have = {p.name for p in pretrained.shipped()}
    z_file = pretrained.WEIGHTS_DIR / "microscopy_z4.safetensors"
    f_file = pretrained.WEIGHTS_DIR / "frames_x4.safetensors"
    assert z4 in (("microscopy-z4" if "microscopy-z4" in have else str(z_file))
                  if z_file.is_file() else None,)
    assert f4 in (("frames-x4" if "frames-x4" in have else str(f_file))
                  if f_file.is_file() else None,)
    assert default_model_for(kind_of(stack), plan_grid(stack, scale=(2, 2, 1))) is None
    assert default_model_for(kind_of(frames), plan_grid(frames, scale=(1, 1, 4))) is None


def test_shipped_microscopy_model_end_to_end(tmp_path, rng):
    from medsr import pretrained

    if not (pretrained.WEIGHTS_DIR / "microscopy_z4.safetensors").is_file():
        pytest.skip("microscopy_z4 weights not trained yet (pipelines/train_microscopy.py)")
    import torch

    torch.set_num_threads(1)
    arr = (rng.random((5, 16, 14)) * 3000 + 100).astype(np.uint16)
    _write_ij(tmp_path / "s.tif", arr, "ZYX")
    infer_file(tmp_path / "s.tif", tmp_path / "s_out.tif")  # auto: the shipped model
    out, axes, ij, _ = _read_back(tmp_path / "s_out.tif")
    assert out.shape == (20, 16, 14) and out.dtype == np.uint16
    assert ij["spacing"] == pytest.approx(0.2)
    assert 0.5 * arr.mean() < out.mean() < 1.5 * arr.mean()


def test_kind_of_tells_rgb_frames_from_channel_stacks(tmp_path, rng):

    rgb = (rng.random((3, 8, 9, 3)) * 255).astype(np.uint8)       # multi-page RGB TIFF
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    three = (rng.random((4, 3, 8, 9)) * 4000).astype(np.uint16)   # 3-channel z stack
    _write_ij(tmp_path / "zcyx.tif", three, "ZCYX")
    assert kind_of(io.read(tmp_path / "rgb.tif")) == "frames"
    assert kind_of(io.read(tmp_path / "zcyx.tif")) == "stack"
    assert kind_of(Volume(np.zeros((4, 4, 4)), np.eye(4), {"format": "nifti"})) is None
    for fmt in ("image", "frames", "video"):
        assert kind_of(Volume(np.zeros((4, 4, 1, 3)), np.eye(4), {"format": fmt})) == "frames"
