"""Every network of the zoo, 2D and 3D: shapes for x2, x3 and anisotropic factors,
gradients, determinism, paper parameter counts, fitting one patch, the CLI table."""

import json
import math

import numpy as np
import pytest
import torch
from skimage import data as skdata

from medsr import models
from medsr.cli import main
from medsr.errors import UserError

torch.set_num_threads(1)

NAMES = ["srcnn", "fsrcnn", "espcn", "vdsr", "sp_vdsr", "drcn", "drrn", "edsr", "mdsr", "carn",
         "carn_m", "btsrn", "lapsrn", "cmsc", "idn", "selnet", "rcan", "srresnet", "rrdbnet",
         "rdn", "enhancenet"]

# Reduced widths/depths for the dynamic tests (architecture unchanged, just smaller).
SMALL = {
    "srcnn": {"channels": [8, 4]}, "fsrcnn": {"d": 8, "s": 4, "m": 1},
    "espcn": {"features": 8, "features2": 4}, "vdsr": {"depth": 4, "features": 8},
    "sp_vdsr": {"depth": 3, "features": 8}, "drcn": {"features": 8, "recursions": 3},
    "drrn": {"features": 8, "units": 2}, "edsr": {"n_blocks": 2, "features": 8},
    "mdsr": {"n_blocks": 2, "features": 8}, "carn": {"features": 8, "units": 2, "blocks": 2},
    "carn_m": {"features": 8, "units": 2, "blocks": 2}, "btsrn": {"features": 8,
                                                               "lr_blocks": 1, "hr_blocks": 1},
    "lapsrn": {"features": 8, "depth": 2}, "cmsc": {"features": 8, "subnets": 2, "modules": 1},
    "idn": {"features": 16, "distill": 4, "blocks": 2, "deconv_kernel": 5},
    "selnet": {"depth": 4, "features": 8},
    "rcan": {"n_groups": 2, "n_blocks": 2, "features": 8, "reduction": 4},
    "srresnet": {"n_blocks": 2, "features": 8}, "rrdbnet": {"n_blocks": 1, "features": 8,
                                                            "growth": 4},
    "rdn": {"D": 2, "C": 2, "G": 8, "G0": 8}, "enhancenet": {"n_blocks": 2, "features": 8},
}
LR = {2: (8, 8), 3: (6, 6, 6)}
FACTORS = {2: [2, 3, (1, 2)], 3: [2, 3, (1, 1, 4)]}


def small(name, d, scale=2, **kw):
    return models.create(name, spatial_dims=d, scale=scale, **{**SMALL[name], **kw})


def first_parameter(model):
    return next(p for p in model.parameters() if p.requires_grad)


def test_available_is_the_interface_list():
    assert models.available() == NAMES
    assert set(models.discriminators()) == {"vgg", "srgan", "esrgan"}
    with pytest.raises(UserError, match="unknown network"):
        models.create("srgan3000")
    with pytest.raises(UserError, match="no hyperparameter"):
        models.create("edsr", n_layers=3)
    with pytest.raises(UserError, match="scale"):
        models.create("edsr", scale=(2, 2, 2))
    with pytest.raises(UserError, match="in_channels"):
        models.create("vdsr", in_channels=3, out_channels=1)


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("name", NAMES)
def test_shapes_gradients_determinism(name, d):
    lr = LR[d]
    for factor in FACTORS[d]:
        torch.manual_seed(0)
        m = small(name, d, factor)
        f = (factor,) * d if isinstance(factor, int) else factor
        assert m.scale == f and m.spatial_dims == d
        x = torch.randn(2, 1, *lr)
        y = m(x)
        assert y.shape == (2, 1, *(n * k for n, k in zip(lr, f))), (name, factor)
    # gradients reach the first layer
    y.square().mean().backward()
    g = first_parameter(m).grad
    assert g is not None and g.abs().sum() > 0
    # deterministic: two calls equal, two creations under one seed equal
    with torch.no_grad():
        torch.manual_seed(0)
        a = small(name, d, factor).eval()
        torch.manual_seed(0)
        b = small(name, d, factor).eval()
        torch.testing.assert_close(a(x), a(x), rtol=0, atol=0)
        torch.testing.assert_close(b(x), a(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_hparams_rebuild_and_attributes(name):
    m = small(name, 3, (1, 2, 3), in_channels=1, out_channels=1)
    assert (m.in_channels, m.out_channels) == (1, 1)
    hp = json.loads(json.dumps(m.hparams))  # JSON-able
    torch.manual_seed(1)
    a = models.create(name, **hp)
    torch.manual_seed(1)
    b = small(name, 3, (1, 2, 3))
    assert a.hparams == m.hparams
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_paper_default_2d_forward(name):
    """The paper-size 2D network runs (x2, 8x8 grayscale)."""
    with torch.no_grad():
        assert models.create(name)(torch.rand(1, 1, 8, 8)).shape == (1, 1, 16, 16)


# (hyperparameters, the paper's count, what the paper counted)
PAPER = {
    "srcnn": ({}, 8_032, "9-1-5, Y channel, weights only"),
    "fsrcnn": ({"scale": 3}, 12_464, "FSRCNN(56,12,4), x3, Y, weights only"),
    "vdsr": ({}, 665_000, "20 layers, Y (665K as tabulated by DRRN/CARN)"),
    "drcn": ({}, 1_774_000, "Y, 16 recursions (1,774K, DRRN's table)"),
    "drrn": ({}, 297_000, "B1U25, Y"),
    "edsr": ({"scale": 4, "in_channels": 3, "out_channels": 3}, 43_000_000, "x4, RGB"),
    "edsr_baseline": ({"scale": 4, "in_channels": 3, "out_channels": 3,
                       "preset": "baseline"}, 1_500_000, "x4, RGB"),
    "mdsr": ({"scales": [2, 3, 4], "in_channels": 3, "out_channels": 3}, 8_000_000,
             "x2/x3/x4 branches, RGB"),
    "lapsrn": ({"scale": 4}, 812_000, "x4, Y"),
    "idn": ({"scale": 3}, 553_000, "Y"),
    "rcan": ({"scale": 4, "in_channels": 3, "out_channels": 3}, 16_000_000, "x4, RGB"),
    "rdn": ({"scale": 4, "in_channels": 3, "out_channels": 3}, 22_000_000, "x4, RGB"),
}


@pytest.mark.parametrize("key", sorted(PAPER))
def test_parameter_counts_match_papers(key):
    hp, paper, _ = PAPER[key]
    ours = models.parameters_of(key.split("_baseline")[0], **hp)
    assert abs(ours - paper) / paper < 0.10, (key, ours, paper)


@pytest.mark.parametrize("name,paper", [("carn", 1_592_000), ("carn_m", 412_000)])
def test_carn_counts_with_the_papers_three_upsamplers(name, paper):
    """CARN's published counts are of its multi-scale model: one body, x2/x3/x4 upsamplers."""
    with torch.device("meta"):
        nets = [models.create(name, scale=s, in_channels=3, out_channels=3) for s in (2, 3, 4)]
    ours = models.count_parameters(nets[0]) + sum(
        models.count_parameters(n.upsample) for n in nets[1:])
    assert abs(ours - paper) / paper < 0.10, (ours, paper)


def test_macs_per_output_voxel_against_hand_count():
    # SRCNN on the HR grid: 9*9*1*64 + 1*1*64*32 + 5*5*32*1 MACs per output pixel
    assert models.macs_per_output_voxel("srcnn", 2, 3) == pytest.approx(81 * 64 + 64 * 32 + 800)
    # 3D VDSR: 27 * (1*64 + 18*64*64 + 64*1)
    assert models.macs_per_output_voxel("vdsr", 3, 2) == pytest.approx(27 * (128 + 18 * 4096))
    # ESPCN x(1,1,4): LR convs shared by 4 outputs + the sub-pixel conv
    lr = 25 * 64 + 9 * 64 * 32 + 9 * 32 * 4
    assert models.macs_per_output_voxel("espcn", 2, (1, 4)) == pytest.approx(lr / 4)


def test_lapsrn_pyramid_and_ms_preset():
    m = models.create("lapsrn", spatial_dims=3, scale=(1, 1, 4), features=8, depth=2)
    x = torch.randn(1, 1, 4, 4, 3)
    pyr = m.forward_pyramid(x)
    assert [p.shape[2:] for p in pyr] == [(4, 4, 6), (4, 4, 12)]
    assert torch.equal(pyr[-1], m(x))
    ms = models.create("lapsrn", scale=8, preset="ms", features=8)
    assert ms.embed[0] is ms.embed[2] and ms.levels[0] is ms.levels[1]
    assert ms(torch.randn(1, 1, 4, 4)).shape == (1, 1, 32, 32)
    # fresh image branch = linear interpolation, so a constant image stays constant
    img = m.levels[0]["img_up"](torch.ones(1, 1, 4, 4, 3))
    torch.testing.assert_close(img[..., 1:-1], torch.ones_like(img[..., 1:-1]))


def test_mdsr_serves_several_scales_with_one_body():
    m = models.create("mdsr", scale=(2, 3, 4), n_blocks=2, features=8)
    assert m.scale == (2, 2) and m.scales == [(2, 2), (3, 3), (4, 4)]
    x = torch.randn(1, 1, 5, 5)
    assert [m(x, scale=s).shape[2:] for s in (2, 3, 4)] == [(10, 10), (15, 15), (20, 20)]
    with pytest.raises(UserError, match="serves scales"):
        m(x, scale=5)
    m3 = models.create("mdsr", spatial_dims=3, scales=[(1, 1, 2), 2], n_blocks=1, features=4)
    assert m3(torch.randn(1, 1, 3, 3, 3)).shape[2:] == (3, 3, 6)


def test_presets_documented_and_light_is_lighter_in_3d():
    for name, presets in models.PRESETS.items():
        assert name in models.available()
        if "light" in presets:
            heavy = models.parameters_of(name, 3)
            assert models.parameters_of(name, 3, preset="light") < heavy
    with pytest.raises(UserError, match="no preset"):
        models.create("srcnn", preset="light")


@pytest.mark.parametrize("d,patch", [(2, 32), (3, (16, 16, 32))])
@pytest.mark.parametrize("name", ["vgg", "esrgan"])
def test_discriminators(name, d, patch):
    kw = {"features": 4, "dense": 8, "stages": 4} if name == "esrgan" else {"features": 4}
    disc = models.create_discriminator(name, spatial_dims=d, patch_size=patch, **kw)
    p = (patch,) * d if isinstance(patch, int) else patch
    out = disc(torch.randn(3, 1, *p))
    assert out.shape == (3, 1)
    out.sum().backward()
    with pytest.raises(UserError):
        models.create_discriminator(name, spatial_dims=d, patch_size=30)


def camera_patch(hr=24, k=2):
    img = skdata.camera().astype(np.float32) / 255.0
    hr_img = torch.from_numpy(img[200:200 + hr, 220:220 + hr].copy())[None, None]
    lr_img = torch.nn.functional.avg_pool2d(hr_img, k)
    return lr_img, hr_img


FIT = {"srcnn": {"channels": [32, 16]}, "espcn": {},
       "edsr": {"preset": "baseline", "n_blocks": 2, "features": 32},
       "rcan": {"n_groups": 2, "n_blocks": 2, "features": 32, "reduction": 8},
       "rdn": {"D": 2, "C": 3, "G": 16, "G0": 32}}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FIT))
def test_fitting_one_patch_cuts_the_loss_tenfold(name):
    torch.manual_seed(0)
    lr, hr = camera_patch()
    m = models.create(name, scale=2, **FIT[name])
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    losses = []
    for _ in range(300):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(m(lr), hr)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-10:]) < losses[0] / 10, (losses[0], losses[-1])


def test_cli_table_and_pretrained(capsys):
    assert main(["models", "--scale", "3", "--spatial-dims", "2"]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        assert any(line.split()[0] == name for line in out.splitlines()[2:]), name
    line = next(line for line in out.splitlines() if line.startswith("srcnn"))
    assert line.split()[1:] == ["8.13K", "8.03K"]
    assert main(["models", "--pretrained"]) == 0
    out = capsys.readouterr().out
    from medsr import pretrained

    for p in pretrained.PRETRAINED.values():
        line = next(line for line in out.splitlines() if line.split()[:1] == [p.name])
        assert ("not shipped" in line) != p.available
    with pytest.raises(SystemExit) as exc:  # argparse's own error for a bad value: exit 2
        main(["models", "--scale", "0"])
    assert exc.value.code == 2


def test_count_parameters_counts_shared_weights_once():
    m = models.create("drcn", features=8, recursions=16)
    conv_params = 8 * 8 * 9 + 8
    m4 = models.create("drcn", features=8, recursions=4)
    assert models.count_parameters(m) - models.count_parameters(m4) == 12  # only weights w_d
    assert math.prod(m.infer.module[0].weight.shape) + 8 == conv_params


@pytest.mark.parametrize("name,hp", [
    ("edsr", {"n_blocks": 2, "features": 8, "res_scale": 1.0}),
    ("rcan", {"n_groups": 1, "n_blocks": 2, "features": 8, "reduction": 4})])
def test_interpolation_skip_is_the_lanczos_image_plus_the_learned_residual(name, hp):
    """With ``interpolation`` the output is Interpolate(x) + the post-upsampling branch;
    without it (the paper's default) there is no skip at all."""
    from medsr.interpolate import resize_torch

    torch.manual_seed(0)
    x = torch.rand(2, 1, 6, 7)
    plain = models.create(name, spatial_dims=2, scale=4, **hp)
    skip = models.create(name, spatial_dims=2, scale=4, interpolation="lanczos", **hp)
    skip.load_state_dict(plain.state_dict())
    assert plain.skip is None
    with torch.no_grad():
        want = resize_torch(x, (4, 4), "lanczos", shape_out=[24, 28]) + plain(x)
        torch.testing.assert_close(skip(x), want)
        for p in skip.tail.parameters():
            p.zero_()
        torch.testing.assert_close(skip(x), resize_torch(x, (4, 4), "lanczos",
                                                           shape_out=[24, 28]))
    assert skip.hparams["interpolation"] == "lanczos"


def test_interpolation_skip_stays_float32_under_bfloat16_autocast():
    from medsr.models.upsample import Interpolate

    x = torch.rand(1, 1, 9, 9)
    up = Interpolate((4, 4), "lanczos")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = up(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, up(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["idn", "enhancenet"])
def test_networks_with_a_built_in_skip_use_it(name):
    """IDN and EnhanceNet add an interpolation of the input: zeroing the learned upsampler
    and tail must leave exactly that interpolation (the skip is a real submodule, not
    shadowed by a class attribute)."""
    from medsr.models.upsample import Interpolate

    m = models.create(name, spatial_dims=2, scale=2, preset="light")
    assert isinstance(m.skip, Interpolate) and m._modules["skip"] is m.skip
    x = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        for p in [*m.upsample.parameters(), *m.tail.parameters()]:
            p.zero_()
        torch.testing.assert_close(m(x), m.skip(x))
