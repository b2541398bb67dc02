"""Multi-frame SR (neighbouring frames as channels), video in cohorts, spacing units."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsr import models
from medsr.errors import UserError
from medsr.geometry import plan_grid
from medsr.inference.multiframe import frame_context, multiframe_sr, neighbour_stack
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
    from medsr.intensity import input_range

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


def _multiframe_checkpoint(tmp_path):
    """A real (untrained) 3-frame x2 sp_vdsr checkpoint, saved as the trainer would."""
    from medsr.models.checkpoint import save_model

    torch.manual_seed(0)
    net = models.create("sp_vdsr", scale=2, in_channels=3, out_channels=1, depth=2,
                        features=8)
    info = {"architecture": "sp_vdsr", "hparams": {"depth": 2, "features": 8},
            "scale": [2, 2], "spatial_dims": 2, "in_channels": 3, "out_channels": 1,
            "normalisation": {"method": "percentile", "lower": 0.5, "upper": 99.5},
            "sampling": {"mode": "2.5d", "axes": [2], "context": 1}}
    ckpt = save_model(tmp_path / "mf.safetensors", net.state_dict(), info)
    return ckpt


def test_multiframe_checkpoint_through_the_colour_path(tmp_path, rng):
    """An RGB frames folder with a multi-frame checkpoint: Y goes through the network with
    its neighbours (compared with multiframe_sr on the luma stack), chroma by bicubic,
    written back as a frames folder of the same count and dtype."""
    from PIL import Image

    from medsr.adapters.colour import luma, rgb_to_ycbcr
    from medsr.inference.model_sr import load
    from medsr.interpolate import resize
    from medsr.io.image2d import read_frames
    from medsr.pipeline import infer_file

    ckpt = _multiframe_checkpoint(tmp_path)
    src = tmp_path / "clip"
    src.mkdir()
    rgb = (rng.random((4, 12, 14, 3)) * 180 + 30).astype(np.uint8)
    for i in range(4):
        Image.fromarray(rgb[i]).save(src / f"f{i:02d}.png")
    infer_file(src, tmp_path / "clip_sr", scale=2, model=ckpt, progress=False)
    back = read_frames(tmp_path / "clip_sr")
    assert back.data.shape == (24, 28, 4, 3) and back.data.dtype == np.uint8
    stack = np.moveaxis(rgb, 0, 2)                                     # (12, 14, 4, 3)
    ycc = rgb_to_ycbcr(stack)
    model, minfo = load(ckpt, torch.device("cpu"))
    yvol = Volume(ycc[..., 0].astype(np.float32), np.eye(4), {"format": "frames"})
    y_ref = multiframe_sr(yvol, plan_grid(yvol, scale=(2, 2, 1)), model, minfo).data
    # where no RGB channel was clipped: Y of the output = the multi-frame network's Y and
    # chroma = bicubic chroma of the input (up to 8-bit rounding of RGB)
    inside = np.all((back.data > 0) & (back.data < 255), axis=-1)
    assert inside.mean() > 0.8
    np.testing.assert_allclose(luma(back.data)[inside], y_ref[inside], atol=1.5)
    cb_ref = resize(ycc[..., 1].astype(np.float32), (2, 2, 1), "catmull-rom")
    np.testing.assert_allclose(rgb_to_ycbcr(back.data)[..., 1][inside], cb_ref[inside],
                               atol=2.0)
    # and the network did see the neighbours: a frame alone gives another result
    alone = multiframe_sr(yvol.with_data(np.repeat(yvol.data[:, :, 1:2], 4, axis=2)),
                          plan_grid(yvol, scale=(2, 2, 1)), model, minfo).data[:, :, 1]
    assert np.abs(alone - y_ref[:, :, 1]).mean() > 0.1


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
    from medsr.adapters import spacing_unit

    def vol(**meta):
        return Volume(np.zeros((2, 2, 2)), np.eye(4), meta)

    assert spacing_unit(vol(format="tiff", unit="um")) == "µm"
    assert spacing_unit(vol(format="tiff", unit=None)) == "px"
    assert spacing_unit(vol(format="video", unit=None)) == "px"
    assert spacing_unit(vol(format="nifti")) == "mm"


def test_infer_file_routes_multiframe_models_and_names_the_unit(tmp_path, rng):
    """`medsr infer frames/ --model <multi-frame>` takes the multi-frame path (not a
    channel-count crash): grey frames come out as the network applied to each frame with
    its neighbours (computed here from the checkpoint, not by a second pipeline), and the
    summary names pixels, not millimetres."""
    from PIL import Image

    from medsr.inference.model_sr import load
    from medsr.io.image2d import read_frames
    from medsr.pipeline import infer_file

    ckpt = _multiframe_checkpoint(tmp_path)
    src = tmp_path / "clip"
    src.mkdir()
    grey = (rng.random((3, 10, 12)) * 200).astype(np.uint8)
    for i in range(3):
        Image.fromarray(grey[i]).save(src / f"{i}.png")
    res = infer_file(src, tmp_path / "a_sr", scale=2, model=ckpt, progress=False)
    got = read_frames(tmp_path / "a_sr").data
    model, info = load(ckpt, torch.device("cpu"))
    stack = Volume(np.moveaxis(grey, 0, 2).astype(np.float32), np.eye(4), {"format": "frames"})
    ref = multiframe_sr(stack, plan_grid(stack, scale=(2, 2, 1)), model, info).data
    expected = np.clip(np.rint(ref), 0, 255).astype(np.uint8)
    assert got.reshape(expected.shape).shape == (20, 24, 3)
    np.testing.assert_array_equal(got.reshape(expected.shape), expected)
    assert " px -> " in res.summary() and " mm" not in res.summary()
