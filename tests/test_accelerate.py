"""Inference speed settings change speed, not results: fusion, layout, batching, tiling
blend, precision, torch.compile; and the work planner's choices."""

import copy
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from medsr import models
from medsr.errors import UserError
from medsr.inference import model_sr
from medsr.inference.accelerate import prepare, resolve_precision
from medsr.inference.fusion import FusedConvAct, fuse_conv_act, fusion_available
from medsr.inference.receptive_field import receptive_halo
from medsr.inference.tiling import MAX_HALO_OVERHEAD, plan_work, tiled_forward
from medsr.models.upsample import Interpolate

needs_onednn = pytest.mark.skipif(not fusion_available(), reason="no oneDNN in this build")


def _bn_net(nd: int) -> nn.Module:
    """conv -> BN -> LeakyReLU, conv -> ReLU, conv (the last one stays unfused)."""
    conv, bn = (nn.Conv2d, nn.BatchNorm2d) if nd == 2 else (nn.Conv3d, nn.BatchNorm3d)
    torch.manual_seed(0)
    net = nn.Sequential(conv(1, 6, 3, padding=1, bias=False), bn(6), nn.LeakyReLU(0.2),
                        conv(6, 6, 3, padding=2, dilation=2), nn.ReLU(),
                        conv(6, 1, 3, padding=1))
    with torch.no_grad():  # non-trivial running statistics, so folding is really tested
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
        net[1].weight.uniform_(0.5, 1.5)
        net[1].bias.uniform_(-0.2, 0.2)
    return net.eval()


@needs_onednn
@pytest.mark.parametrize("nd", [2, 3])
def test_fusion_matches_unfused_and_keeps_the_receptive_field(nd):
    net = _bn_net(nd)
    fused = copy.deepcopy(net)
    assert fuse_conv_act(fused) == 2
    assert sum(isinstance(m, FusedConvAct) for m in fused.modules()) == 2
    assert receptive_halo(fused) == receptive_halo(net) == 1 + 2 + 1 + 3
    x = torch.randn(2, 1, *([11] * nd))
    with torch.inference_mode():
        np.testing.assert_allclose(fused(x).numpy(), net(x).numpy(), atol=2e-6)


@needs_onednn
def test_fusion_leaves_training_batchnorm_alone():
    net = _bn_net(2).train()
    assert fuse_conv_act(net) == 1  # only conv -> ReLU; conv -> BN(train) stays as it is
    assert isinstance(net[1], nn.BatchNorm2d)


@needs_onednn
def test_prepare_fuses_a_copy_of_the_shipped_default():
    net, _ = model_sr.load("thick-slice-x4", torch.device("cpu"))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fast = prepare(net, "cpu")
    assert sum(isinstance(m, FusedConvAct) for m in fast.modules()) >= 8
    assert not any(isinstance(m, FusedConvAct) for m in net.modules())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    x = torch.rand(3, 1, 40, 17)
    with torch.inference_mode():
        np.testing.assert_allclose(fast(x.contiguous(memory_format=torch.channels_last)),
                                   net(x), atol=1e-5)


def test_plan_work_cpu_batches_small_planes_and_tiles_big_ones():
    tile, batch = plan_work((256, 64), (1, 4), (14, 14), 32, "cpu", 1.5e9, n_items=256)
    assert tile == [256, 64] and batch >= 2  # whole planes, several per call
    tile, batch = plan_work((512, 512), (2, 2), (14, 14), 32, "cpu", 1.5e9, n_items=128)
    assert tile[0] < 512 and batch == 1
    assert np.prod([(t + 28) / t for t in tile]) <= MAX_HALO_OVERHEAD
    # memory always bounds the tile, and the caller's choices are kept
    tiny, _ = plan_work((512, 512), (2, 2), (14, 14), 32, "cpu", 2e7)
    assert np.prod([t + 28 for t in tiny]) * 4 * 32 * 4 * 4 <= 2e7
    assert plan_work((50, 60), (2, 2), (4, 4), 8, "cpu", 1e9, batch=5, tile=[7]) == ([7, 7], 5)
    assert plan_work((50, 60), (2, 2), (4, 4), 8, "cpu", 1e9, n_items=3)[1] <= 3
    with pytest.raises(UserError):
        plan_work((50, 60), (2, 2), (4, 4), 8, "cpu", 1e9, tile=[7, 7, 7])


def _volume(shape=(40, 33, 12), seed=0) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    return (gaussian_filter(rng.random(shape), 1.5) * 1000).astype(np.float32)


def _passes(name: str) -> list:
    net, info = model_sr.load(name, torch.device("cpu"))
    return [model_sr.Pass(net, info, model_sr.pass_factors(net, 2))]


def test_run_passes_speed_settings_do_not_change_the_result():
    data = _volume((28, 21, 8))
    passes = _passes("thick-slice-x2")
    cpu = torch.device("cpu")
    ref = model_sr.run_passes(data, passes, device=cpu, channels_last=False, batch=1,
                              tile=(1000, 1000))
    scale = float(np.ptp(ref))
    for kw in ({}, {"batch": 5}, {"tile": (9, 5)}, {"tile": (16,), "batch": 3}):
        y = model_sr.run_passes(data, passes, device=cpu, **kw)
        assert y.shape == ref.shape
        assert np.abs(y - ref).max() <= 1e-5 * scale, kw


def test_bf16_autocast_on_cpu_is_close_and_fp16_is_refused():
    data = _volume()
    passes = _passes("thick-slice-x2")
    cpu = torch.device("cpu")
    ref = model_sr.run_passes(data, passes, device=cpu)
    y = model_sr.run_passes(data, passes, device=cpu, precision="bf16")
    err = np.sqrt(np.mean((y - ref) ** 2)) / np.ptp(ref)
    assert 0 < err < 5e-3  # really reduced precision, and still close
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("auto", "cuda") == "fp16"
    with pytest.raises(UserError):
        resolve_precision("fp16", "cpu")
    with pytest.raises(UserError):
        resolve_precision("half", "cpu")


def test_gaussian_blend_normalises_exactly_and_hides_nothing_for_local_nets():
    """Blend weights sum to one everywhere (a pointwise network is reproduced exactly),
    and a finite-receptive-field network stays close to the whole-volume result."""
    x = torch.rand(2, 1, 37, 29)
    up = Interpolate((2, 3), "nearest")
    with torch.inference_mode():
        whole = up(x)
        blended = tiled_forward(up, x, (2, 3), (10, 7), (3, 3), blend="gaussian")
        np.testing.assert_allclose(blended, whole, atol=1e-6)
        torch.manual_seed(0)
        net = models.create("sp_vdsr", spatial_dims=2, scale=(2, 2), depth=3, features=8).eval()
        ref = tiled_forward(net, x, (2, 2), (37, 29), (8, 8))
        g = tiled_forward(net, x, (2, 2), (10, 7), (8, 8), blend="gaussian")
    assert (g - ref).abs().max() < 0.01 * (ref.max() - ref.min())


def test_gaussian_blend_smooths_seams_of_a_global_context_network():
    """Channel attention sees the whole tile, so no tiling is exact: with cropped tiles
    the error against the whole-image output jumps at tile borders; Gaussian-blended
    tiles spread it smoothly (and the worst error shrinks too)."""
    torch.manual_seed(0)
    net = models.create("rcan", spatial_dims=2, scale=(2, 2), n_groups=1, n_blocks=1,
                        features=8, reduction=4).eval()
    x = torch.rand(1, 1, 48, 48)
    x[..., 24:, :] *= 4  # tiles of different content -> different attention
    with torch.inference_mode():
        whole = tiled_forward(net, x, (2, 2), (48, 48), (4, 4))
        crop = tiled_forward(net, x, (2, 2), (12, 48), (4, 4))
        gauss = tiled_forward(net, x, (2, 2), (12, 48), (4, 4), blend="gaussian")

    def seam_jumps(y):  # |step of the error| between HR rows 24k-1 and 24k (tile borders)
        e = (y - whole)[0, 0]
        steps = (e[1:] - e[:-1]).abs().mean(dim=1)
        return steps[[23, 47, 71]]

    assert torch.all(seam_jumps(gauss) < 0.5 * seam_jumps(crop))
    assert (gauss - whole).abs().max() < (crop - whole).abs().max()


def test_resize_operator_cache_keeps_autograd_working_after_inference():
    up = Interpolate((1, 4), "lanczos")
    x = torch.rand(1, 1, 8, 6)
    with torch.inference_mode():
        a = up(x)
    xg = x.clone().requires_grad_(True)
    b = up(xg)
    b.sum().backward()
    assert xg.grad is not None and torch.allclose(a, b.detach())


@needs_onednn
def test_compiled_network_matches_eager():
    pytest.importorskip("torch._inductor")
    data = _volume((24, 20, 8))
    passes = _passes("thick-slice-x2")
    cpu = torch.device("cpu")
    ref = model_sr.run_passes(data, passes, device=cpu)
    y = model_sr.run_passes(data, passes, device=cpu, compile_model=True)
    assert np.abs(y - ref).max() <= 1e-4 * np.ptp(ref)


def test_cli_speed_flags(tmp_path):
    import nibabel as nib

    src = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(_volume((24, 20, 6)), np.diag([1.0, 1.0, 2.0, 1.0])), src)
    base = [sys.executable, "-m", "medsr", "infer", str(src), "--scale", "1,1,2"]
    out = tmp_path / "a.nii.gz"
    r = subprocess.run([*base, "-o", str(out), "--tile", "9", "--batch", "3",
                        "--tile-blend", "gaussian"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert nib.load(out).shape == (24, 20, 12)
    r = subprocess.run([*base, "-o", str(tmp_path / "b.nii.gz"), "--precision", "fp16",
                        "--device", "cpu"], capture_output=True, text=True)
    assert r.returncode == 2 and "fp16" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "b.nii.gz").exists()


@pytest.mark.parametrize("name", ["sp_vdsr", "vdsr", "fsrcnn", "lapsrn", "carn", "srcnn"])
def test_measured_halo_tiles_the_zoo_exactly(name):
    """The probed receptive field (smaller than the summed-radii bound) still makes
    tiled output equal whole-image output: it is the field, not an underestimate."""
    torch.manual_seed(0)
    net = models.create(name, spatial_dims=2, scale=(2, 2), **models.PRESETS.get(
        name, {}).get("light", {})).eval()
    halo = receptive_halo(net)
    assert halo <= receptive_halo(net, probe=False)
    x = torch.rand(1, 1, 41, 37)
    with torch.inference_mode():
        whole = tiled_forward(net, x, (2, 2), (41, 37), (halo, halo))
        tiled = tiled_forward(net, x, (2, 2), (9, 11), (halo, halo))
    assert (tiled - whole).abs().max() <= 1e-5 * (whole.max() - whole.min())


def test_measured_halo_ignores_the_weights():
    """A zero last layer hides the body from the output; the probe must not be fooled."""
    torch.manual_seed(0)
    net = models.create("sp_vdsr", spatial_dims=2, scale=(1, 4), depth=4, features=8).eval()
    trained = receptive_halo(net)
    with torch.no_grad():
        for m in net.upsample.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.zero_()
    net._medsr_halo = None  # drop the cache
    assert receptive_halo(net) == trained == 4 + 1


def test_plan_work_sizes_gpu_batches_from_free_memory(monkeypatch):
    """No GPU here: the planner's arithmetic is checked with a reported free memory."""
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (4e9, 16e9))
    tile, batch = plan_work((256, 64), (1, 4), (11, 11), 32, "cuda", 1e12, n_items=1000)
    per_item = 4 * 32 * 4 * 4 * (256 + 22) * (64 + 22)
    assert tile == [256, 64] and batch == min(64, int(2e9 // per_item))
    assert plan_work((256, 64), (1, 4), (11, 11), 32, "cuda", 1e12, n_items=5)[1] == 5
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (5e7, 16e9))
    tile, batch = plan_work((512, 512), (2, 2), (11, 11), 64, "cuda", 1e12, n_items=100)
    assert batch >= 1 and np.prod([t + 22 for t in tile]) * 4 * 64 * 4 * 4 * batch <= 2.5e7
