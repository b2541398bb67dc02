"""Multi-frame SR (neighbouring frames as channels), video in cohorts, spacing units."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio as psnr

from medsr import models
from medsr.errors import UserError
from medsr.infer import plan_grid
from medsr.multiframe import frame_context, multiframe_sr, neighbour_stack
from medsr.volume import Volume


def test_neighbour_stack_repeats_the_edge_frames():
    frames = np.arange(4, dtype=np.float32)[None, None, :] * np.ones((2, 3, 1), np.float32)
    st = neighbour_stack(frames, np.arange(4), 2)
    assert st.shape == (4, 5, 2, 3)
    assert st[:, :, 0, 0].tolist() == [[0, 0, 0, 1, 2], [0, 0, 1, 2, 3],
                                       [0, 1, 2, 3, 3], [1, 2, 3, 3, 3]]
    assert frame_context({"in_channels": 5, "out_channels": 1}) == 2
    assert frame_context({"in_channels": 1, "out_channels": 1}) == 0
    with pytest.raises(UserError, match="2r\\+1"):
        frame_context({"in_channels": 4, "out_channels": 1})


def test_sp_vdsr_takes_odd_frame_stacks_only():
    net = models.create("sp_vdsr", scale=2, in_channels=3, out_channels=1, depth=2, features=4)
    assert net(torch.rand(1, 3, 5, 6)).shape == (1, 1, 10, 12)
    with pytest.raises(UserError, match="odd multiple"):
        models.create("sp_vdsr", in_channels=2, out_channels=1)


def test_multiframe_sr_is_the_network_on_each_window(rng):
    """Tiled, batched, normalised application = the network on each frame's window
    (built independently here), away from the in-plane border (reflect vs zero padding)."""
    torch.manual_seed(0)
    net = models.create("sp_vdsr", scale=2, in_channels=3, out_channels=1, depth=3,
                        features=8).eval()
    info = {"in_channels": 3, "out_channels": 1, "normalisation": {"lower": 0.5, "upper": 99.5}}
    data = (rng.random((20, 22, 4)) * 200 + 10).astype(np.float32)
    vol = Volume(data, np.eye(4), {"format": "frames"})
    plan = plan_grid(vol, scale=(2, 2, 1))
    out = multiframe_sr(vol, plan, net, info, batch=3, max_memory=2e5)  # forces tiles
    assert out.data.shape == (40, 44, 4)
    from medsr.data.normalise import input_range

    lo, hi = input_range(data, 0.5, 99.5)
    x = (data - lo) / (hi - lo)
    for t, window in enumerate([(0, 0, 1), (0, 1, 2), (1, 2, 3), (2, 3, 3)]):
        inp = torch.from_numpy(np.stack([x[:, :, i] for i in window])[None])
        with torch.no_grad():
            ref = net(inp)[0, 0].numpy() * (hi - lo) + lo
        m = 2 * 8  # receptive radius (3 convs + Lanczos skip) on the output grid
        np.testing.assert_allclose(out.data[m:-m, m:-m, t], ref[m:-m, m:-m], rtol=1e-4,
                                   atol=1e-2)
    np.testing.assert_allclose(out.affine, plan.affine_out)


def _shifted_chelsea(n: int = 5):
    """Held-out chelsea (luma crop) under whole-pixel camera motion, and its x4 LR."""
    import skimage.data

    from medsr.colour import luma
    from medsr.degrade import Degradation, degrade_volume

    y = luma(skimage.data.chelsea())[60:60 + 176, 150:150 + 176]
    offs = [(2 * i, 3 * i) for i in range(n)]   # 0.5 / 0.75 LR pixels per frame
    hr = np.stack([y[dy:dy + 160, dx:dx + 160] for dy, dx in offs], axis=-1)
    d = Degradation.from_dict({"scale": [4, 4, 1], "profile": "none", "downsample": "bicubic",
                               "noise": "none"})
    lr = degrade_volume(Volume(hr.astype(np.float32), np.eye(4), {"format": "frames"}), d)
    return hr, np.round(lr.data)


def test_shipped_multiframe_model_uses_the_neighbours():
    from medsr import pretrained
    from medsr.infer import super_resolve
    from medsr.inference.model_sr import load

    if not pretrained.PRETRAINED["frames-x4-mf"].available:
        pytest.skip("frames_x4_mf weights not trained (pipelines/train_frames.py --multi-frame)")
    torch.set_num_threads(1)
    net, info = load("frames-x4-mf", torch.device("cpu"))
    assert frame_context(info) == 2 and net.in_channels == 5
    hr, lr = _shifted_chelsea()
    vol = Volume(lr.astype(np.float32), np.eye(4), {"format": "frames"})
    plan = plan_grid(vol, scale=(4, 4, 1))
    out = multiframe_sr(vol, plan, net, info).data
    still = multiframe_sr(vol.with_data(np.repeat(lr[:, :, 2:3], 5, axis=2)), plan, net,
                          info).data
    bic = super_resolve(vol, plan, method="catmull-rom").data
    s = slice(8, -8)

    def score(a):
        return psnr(hr[s, s, 2], a[s, s, 2], data_range=255)

    # the centre frame from its moving neighbours beats the same frame seen five times,
    # which (a still scene) is what a single-frame model gets
    assert score(out) > score(still) + 0.3
    assert score(out) > score(bic) + 1.0


def test_multiframe_model_through_the_colour_path(tmp_path):
    """RGB frames folder -> Y by the multi-frame model, chroma bicubic, same form out."""
    from PIL import Image

    from medsr import pretrained
    from medsr.colour import infer_frames
    from medsr.io.image2d import read_frames

    if not pretrained.PRETRAINED["frames-x4-mf"].available:
        pytest.skip("frames_x4_mf weights not trained (pipelines/train_frames.py --multi-frame)")
    import skimage.data

    torch.set_num_threads(1)
    rgb = skimage.data.chelsea()[60:60 + 64, 150:150 + 64]
    src = tmp_path / "clip"
    src.mkdir()
    for i in range(3):
        Image.fromarray(np.ascontiguousarray(rgb[:, ::-1] if i == 1 else rgb)).save(
            src / f"f{i:02d}.png")
    out = infer_frames(src, tmp_path / "clip_sr", scale=4, model="frames-x4-mf")
    assert out.data.shape == (256, 256, 3, 3) and out.data.dtype == np.uint8
    back = read_frames(tmp_path / "clip_sr")
    assert back.data.shape == (256, 256, 3, 3)
    # colour kept: mean RGB of each frame within 3 levels of the input's
    for i in range(3):
        np.testing.assert_allclose(back.data[:, :, i].reshape(-1, 3).mean(0),
                                   rgb.reshape(-1, 3).mean(0), atol=3)


def test_cohort_writes_videos_as_videos(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    import csv

    from PIL import Image

    from medsr.cli import main
    from medsr.io.video import read_video, write_video

    src = tmp_path / "in"
    src.mkdir()
    frames = np.kron(np.arange(12, dtype=np.uint8).reshape(3, 4) * 20,
                     np.ones((4, 4), np.uint8))[:, :, None, None] * np.ones((1, 1, 3, 3),
                                                                             np.uint8)
    write_video(Volume(frames, np.eye(4), {"fps": 5.0}), src / "clip.mp4")
    Image.fromarray(frames[:, :, 0]).save(src / "still.png")
    code = main(["infer", str(src / "*"), "-o", str(tmp_path / "out"), "--scale", "2",
                 "--method", "catmull-rom"])
    assert code == 0
    with (tmp_path / "out" / "medsr_summary.csv").open() as f:
        rows = {r["input"].rsplit("/", 1)[-1]: r for r in csv.DictReader(f)}
    assert rows["clip.mp4"]["status"] == "ok" and rows["still.png"]["status"] == "ok"
    video = read_video(tmp_path / "out" / "clip_sr.mp4")
    assert video.data.shape == (24, 32, 3, 3) and video.meta["fps"] == pytest.approx(5.0)
    assert (tmp_path / "out" / "still_sr.png").is_file()


def test_spacing_unit_names_micrometres_pixels_and_millimetres():
    from medsr.microscopy import spacing_unit

    def vol(**meta):
        return Volume(np.zeros((2, 2, 2)), np.eye(4), meta)

    assert spacing_unit(vol(format="tiff", unit="um")) == "µm"
    assert spacing_unit(vol(format="tiff", unit=None)) == "px"
    assert spacing_unit(vol(format="video", unit=None)) == "px"
    assert spacing_unit(vol(format="nifti")) == "mm"
