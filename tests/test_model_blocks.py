"""The block library and upsamplers against independent references (torch, MONAI)."""

import pytest
import torch
import torch.nn.functional as F
from monai.networks.utils import pixelshuffle

from medsr.errors import UserError
from medsr.models.blocks import (
    CascadingBlock,
    ChannelAttention,
    RecursiveUnit,
    ResBlock,
    ResidualDenseBlock,
    conv,
)
from medsr.models.upsample import (
    Interpolate,
    SubpixelConv,
    TransposedConvUpsample,
    make_upsampler,
    pixel_shuffle_nd,
    prime_steps,
)


def test_pixel_shuffle_matches_torch_2d_and_monai_3d():
    x = torch.randn(2, 18, 4, 5)
    assert torch.equal(pixel_shuffle_nd(x, (3, 3)), F.pixel_shuffle(x, 3))
    y = torch.randn(1, 16, 2, 3, 4)
    assert torch.equal(pixel_shuffle_nd(y, (2, 2, 2)), pixelshuffle(y, 3, 2))


def test_anisotropic_pixel_shuffle_places_each_channel_at_its_offset():
    # channel c * 4 + r (factor (1, 1, 4)) must land at k-offset r of every output voxel
    x = torch.arange(8.0).reshape(1, 8, 1, 1, 1).expand(1, 8, 2, 3, 2).contiguous()
    y = pixel_shuffle_nd(x, (1, 1, 4))
    assert y.shape == (1, 2, 2, 3, 8)
    assert torch.equal(y[0, 1, 1, 2], torch.tensor([4.0, 5, 6, 7, 4, 5, 6, 7]))
    with pytest.raises(UserError):
        pixel_shuffle_nd(torch.randn(1, 6, 2, 2), (2, 2))


def test_prime_steps():
    assert prime_steps((4, 4)) == [(2, 2), (2, 2)]
    assert prime_steps((1, 1, 4)) == [(1, 1, 2), (1, 1, 2)]
    assert prime_steps((3,)) == [(3,)] and prime_steps((5, 5)) == [(5, 5)]
    assert prime_steps((6, 1)) == [(2, 1), (3, 1)]
    assert prime_steps((1, 1)) == []


def test_icnr_subpixel_starts_as_nearest_neighbour_of_one_conv():
    torch.manual_seed(0)
    up = SubpixelConv(3, 4, 2, (1, 2, 3))
    x = torch.randn(1, 4, 3, 4, 5)
    w = up[0].weight[::6]  # one sub-kernel per output channel
    b = up[0].bias[::6] * 0
    base = F.conv3d(x, w, b, padding=1)
    up[0].bias.data.zero_()
    expected = F.interpolate(base, scale_factor=(1, 2, 3), mode="nearest")
    torch.testing.assert_close(up(x), expected)


@pytest.mark.parametrize("factor", [2, 3, 4, 5])
def test_transposed_conv_shapes_and_linear_init(factor):
    up = TransposedConvUpsample(2, 1, 1, (factor, factor), linear_init=True)
    x = torch.randn(1, 1, 9, 10, dtype=torch.float64)
    up = up.double()
    y = up(x)
    assert y.shape == (1, 1, 9 * factor, 10 * factor)
    ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    m = 2 * factor  # interior: away from the border handling of interpolate
    torch.testing.assert_close(y[..., m:-m, m:-m], ref[..., m:-m, m:-m])
    # odd kernel - factor falls back to output_padding but still gives k * n
    assert TransposedConvUpsample(3, 2, 1, (1, 2, 3), 9)(torch.randn(1, 2, 4, 5, 6)).shape == (
        1, 1, 4, 10, 18)


def test_interpolate_nearest_and_linear_match_torch():
    x = torch.randn(1, 2, 3, 4, 5)
    assert torch.equal(Interpolate((1, 2, 3), "nearest")(x),
                       x.repeat_interleave(2, 3).repeat_interleave(3, 4))
    torch.testing.assert_close(Interpolate((2, 2, 2), "linear")(x),
                               F.interpolate(x, scale_factor=2, mode="trilinear"))


@pytest.mark.parametrize("mode", ["pixelshuffle", "deconv", "resize_conv"])
def test_upsampler_factory_per_axis(mode):
    up = make_upsampler(3, 4, (1, 3, 4), mode=mode, out_channels=2)
    assert len(up) == 2  # (1, 3, 2) then (1, 1, 2)
    assert up(torch.randn(1, 4, 2, 3, 4)).shape == (1, 2, 2, 9, 16)
    with pytest.raises(UserError):
        make_upsampler(2, 4, (2, 2), mode="bogus")


def test_residual_block_scaling_and_attention():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 5, 5)
    blk = ResBlock(2, 16, res_scale=0.0, reduction=4)
    assert torch.equal(blk(x), x)  # res_scale 0 -> identity
    ca = ChannelAttention(3, 8, reduction=4)
    y = ca(torch.ones(1, 8, 2, 2, 2))
    # sigmoid gate in (0, 1), one value per channel
    assert torch.all((y > 0) & (y < 1)) and torch.allclose(y, y[:, :, :1, :1, :1].expand_as(y))


def test_dense_block_recursion_and_cascade():
    torch.manual_seed(0)
    rdb = ResidualDenseBlock(3, 8, 4, 3, fusion_kernel=1)
    assert rdb.fusion.in_channels == 8 + 3 * 4
    x = torch.randn(1, 8, 3, 3, 3)
    assert rdb(x).shape == x.shape
    c = conv(2, 4, 4)
    rec = RecursiveUnit(c, 3, shared_source=True)
    x2 = torch.randn(1, 4, 5, 5)
    outs = rec(x2, return_all=True)
    assert len(outs) == 3 and sum(p.numel() for p in rec.parameters()) == 4 * 4 * 9 + 4
    torch.testing.assert_close(outs[1], c(outs[0]) + x2)
    shared = ResBlock(2, 4)
    cas = CascadingBlock(2, 4, [shared] * 3)
    assert len(cas.units) == 1 and [f[0].in_channels for f in cas.fuse] == [8, 12, 16]
    assert cas(x2).shape == x2.shape
