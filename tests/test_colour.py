"""Colour via YCbCr (BT.601, MATLAB rgb2ycbcr): conversion, Y-only SR, dtypes, files."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.color
from PIL import Image

from medsr.adapters.colour import (
    luma,
    rgb_to_ycbcr,
    super_resolve_colour,
    ycbcr_to_rgb,
)
from medsr.geometry import plan_grid
from medsr.inference.classical import super_resolve
from medsr.interpolate import resize
from medsr.pipeline import infer_file
from medsr.volume import Volume


def _bicubic(v: Volume, p) -> Volume:
    return super_resolve(v, p, method="catmull-rom")


def test_ycbcr_matches_scikit_image(rng):
    rgb = rng.random((7, 9, 3))
    np.testing.assert_allclose(rgb_to_ycbcr(rgb), skimage.color.rgb2ycbcr(rgb), atol=1e-9)
    u8 = (rgb * 255).astype(np.uint8)
    np.testing.assert_allclose(rgb_to_ycbcr(u8), skimage.color.rgb2ycbcr(u8), atol=1e-9)
    np.testing.assert_allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-12)
    # studio swing: black -> 16, white -> 235 for 8-bit, also for 16-bit data
    assert luma(np.array([[0, 0, 0], [255, 255, 255]], np.uint8)).tolist() == \
        pytest.approx([16.0, 235.0])
    assert luma(np.array([[65535, 65535, 65535]], np.uint16)).tolist() == pytest.approx([235.0])


def test_linear_luma_sr_equals_rgb_resampling(rng):
    """With a linear luma SR the whole chain is linear: it must equal bicubic on RGB."""
    rgb = rng.random((10, 12, 2, 3)).astype(np.float32)
    vol = Volume(rgb, np.eye(4), {"format": "frames"})
    plan = plan_grid(vol, scale=(4, 4, 1))
    out = super_resolve_colour(vol, plan, _bicubic)
    ref = resize(rgb, (4, 4, 1), "catmull-rom")
    assert out.data.shape == (40, 48, 2, 3) and out.data.dtype == np.float32
    np.testing.assert_allclose(out.data, ref, atol=2e-5)
    np.testing.assert_allclose(out.affine, plan.affine_out)


def test_network_sees_only_luma_and_chroma_is_bicubic(rng):
    rgb = (rng.random((8, 8, 1, 3)) * 200 + 20).astype(np.uint8)
    vol = Volume(rgb, np.eye(4), {"format": "image"})
    plan = plan_grid(vol, scale=(2, 2, 1))
    seen = []

    def brighter(v: Volume, p) -> Volume:  # a "network" that adds 10 to Y
        seen.append(v.data)
        return v.with_data(_bicubic(v, p).data + 10.0, affine=p.affine_out)

    out = super_resolve_colour(vol, plan, brighter)
    plain = super_resolve_colour(vol, plan, _bicubic)
    assert len(seen) == 1 and seen[0].ndim == 3  # one call, on one channel
    np.testing.assert_allclose(seen[0][..., 0], skimage.color.rgb2ycbcr(rgb[:, :, 0])[..., 0],
                               atol=1e-4)
    d = rgb_to_ycbcr(out.data[:, :, 0]) - rgb_to_ycbcr(plain.data[:, :, 0])
    assert np.mean(d[..., 0]) == pytest.approx(10.0, abs=0.7)     # luma changed
    assert np.abs(np.mean(d[..., 1:])) < 0.7                       # chroma untouched
    assert out.data.dtype == np.uint8


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_dtypes_grey_and_alpha_kept(dtype, rng):
    top = 1.0 if dtype == "float32" else np.iinfo(dtype).max
    grey = (rng.random((6, 5, 1)) * top).astype(dtype)
    vol = Volume(grey, np.eye(4), {})
    plan = plan_grid(vol, scale=(2, 2, 1))
    calls = []

    def record(v, p):
        calls.append(v.data.dtype)
        return _bicubic(v, p)

    out = super_resolve_colour(vol, plan, record)
    assert out.data.dtype == np.dtype(dtype) and out.data.shape == (12, 10, 1)
    assert calls == [np.dtype(dtype)]  # grey goes to the SR as it is
    rgba = (rng.random((6, 5, 1, 4)) * top).astype(dtype)
    out = super_resolve_colour(Volume(rgba, np.eye(4), {}), plan, _bicubic)
    assert out.data.shape == (12, 10, 1, 4) and out.data.dtype == np.dtype(dtype)
    np.testing.assert_allclose(out.data[..., 3].astype(float),
                               np.clip(np.rint(resize(rgba[..., 3].astype(np.float32),
                                                      (2, 2, 1), "catmull-rom")), 0, top)
                               if dtype != "float32" else
                               resize(rgba[..., 3], (2, 2, 1), "catmull-rom"), atol=1e-5)


def test_rgb_png_and_frames_folder_x4(tmp_path):
    import skimage.data

    img = skimage.data.astronaut()[100:130, 200:240]
    Image.fromarray(img).save(tmp_path / "a.png")
    infer_file(tmp_path / "a.png", tmp_path / "a_sr.png", method="catmull-rom")
    back = Image.open(tmp_path / "a_sr.png")
    assert back.mode == "RGB" and back.size == (160, 120)
    # the x4 picture shrunk back by area averaging is close to the input
    small = np.asarray(back, dtype=float).reshape(30, 4, 40, 4, 3).mean(axis=(1, 3))
    assert np.abs(small - img).mean() < 6

    frames = tmp_path / "frames"
    frames.mkdir()
    colours = {"f1.png": (200, 30, 30), "f2.png": (30, 200, 30), "f10.png": (30, 30, 200)}
    for name, c in colours.items():
        arr = np.zeros((9, 11, 3), np.uint8) + np.array(c, np.uint8)
        arr[3:6, 4:7] = 255
        Image.fromarray(arr).save(frames / name)
    infer_file(frames, tmp_path / "frames_sr", method="catmull-rom")
    names = sorted(p.name for p in (tmp_path / "frames_sr").glob("*.png"))  # + marker
    assert names == sorted(colours)
    for name, c in colours.items():
        out = np.asarray(Image.open(tmp_path / "frames_sr" / name))
        assert out.shape == (36, 44, 3)
        np.testing.assert_allclose(out[0, 0], c, atol=2)  # each frame kept its own colour


def test_video_round_trip_keeps_count_and_fps(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    from medsr.io.video import read_video, write_video

    rng = np.random.default_rng(0)
    base = (rng.random((4, 6, 3)) * 255).astype(np.uint8)
    frames = np.stack([np.kron(np.roll(base, i, axis=1), np.ones((4, 4, 1), np.uint8))
                       for i in range(5)], axis=2)  # (16, 24, 5, 3) blocky frames
    write_video(Volume(frames, np.eye(4), {"fps": 6.0}), tmp_path / "in.mp4")
    infer_file(tmp_path / "in.mp4", tmp_path / "out.mp4", scale=2, method="catmull-rom")
    out = read_video(tmp_path / "out.mp4")
    assert out.data.shape == (32, 48, 5, 3) and out.meta["fps"] == pytest.approx(6.0)
    for k in range(5):  # order kept: each output frame matches its own input frame best
        small = out.data[:, :, k].astype(float).reshape(16, 2, 24, 2, 3).mean(axis=(1, 3))
        errs = [np.abs(small - frames[:, :, j]).mean() for j in range(5)]
        assert int(np.argmin(errs)) == k


def test_shipped_frames_model_on_rgb_png(tmp_path):
    from medsr import pretrained

    if not (pretrained.WEIGHTS_DIR / "frames_x4.safetensors").is_file():
        pytest.skip("frames_x4 weights not trained yet (pipelines/train_frames.py)")
    import skimage.data
    import torch

    torch.set_num_threads(1)
    hr = skimage.data.coffee()[100:148, 200:264]          # held out from training
    lr = hr.reshape(12, 4, 16, 4, 3).mean(axis=(1, 3)).round().astype(np.uint8)
    Image.fromarray(lr).save(tmp_path / "lr.png")
    infer_file(tmp_path / "lr.png", tmp_path / "net.png")   # auto: the shipped model
    infer_file(tmp_path / "lr.png", tmp_path / "cub.png", method="catmull-rom")
    net = np.asarray(Image.open(tmp_path / "net.png"))
    cub = np.asarray(Image.open(tmp_path / "cub.png"))
    assert net.shape == cub.shape == (48, 64, 3) and net.dtype == np.uint8
    # chroma comes from the same bicubic path: only luma may differ
    d = rgb_to_ycbcr(net) - rgb_to_ycbcr(cub)
    assert np.abs(d[..., 1:]).mean() < 1.0 < np.abs(d[..., 0]).mean()


def test_video_without_the_extra_says_how_to_install(tmp_path, monkeypatch):
    import sys

    from medsr.errors import UserError
    from medsr.io.video import read_video

    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # as if not installed
    with pytest.raises(UserError, match=r"pip install 'medsr\[video\]'"):
        read_video(tmp_path / "clip.mp4")
