"""Tiled inference equals whole-volume inference when the halo covers the receptive field."""

import numpy as np
import pytest
import torch
from torch import nn

from medsr.inference.tiling import reflect_pad, tile_for_memory, tiled_forward


def small_net(nd: int, scale) -> nn.Module:
    conv = nn.Conv2d if nd == 2 else nn.Conv3d
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(conv(1, 8, 3, padding=1), nn.ReLU(),
                                      conv(8, 8, 3, padding=1), nn.ReLU(),
                                      conv(8, 1, 3, padding=1))  # receptive radius 3

        def forward(self, x):
            y = self.body(x)
            mode = "bilinear" if nd == 2 else "trilinear"
            return nn.functional.interpolate(y, scale_factor=tuple(map(float, scale)), mode=mode,
                                             align_corners=False)

    return Net().eval()


@pytest.mark.parametrize("nd,scale,shape,tile", [
    (2, (2, 2), (37, 29), (8, 16)),
    (2, (1, 4), (20, 23), (7, 5)),
    (3, (1, 1, 4), (13, 11, 9), (5, 6, 4)),
])
def test_tiled_equals_whole(nd, scale, shape, tile):
    net = small_net(nd, scale)
    x = torch.rand(2, 1, *shape)
    halo = [6] * nd
    with torch.inference_mode():
        whole = net(reflect_pad(x, halo))
        crop = tuple(slice(h * s, h * s + n * s) for h, s, n in zip(halo, scale, shape))
        whole = whole[(slice(None), slice(None), *crop)]
        tiled = tiled_forward(net, x, scale, tile, halo)
    assert tiled.shape == whole.shape
    np.testing.assert_allclose(tiled.numpy(), whole.numpy(), atol=1e-5)


def test_too_small_halo_shows_seams():
    """The check above can fail: with no halo the tile borders differ."""
    net = small_net(2, (2, 2))
    x = torch.rand(1, 1, 32, 32)
    with torch.inference_mode():
        whole = net(reflect_pad(x, [6, 6]))[:, :, 12:76, 12:76]
        seams = tiled_forward(net, x, (2, 2), (8, 8), [0, 0], pad_edges=False)
    assert (seams - whole).abs().max() > 1e-3


def test_reflect_pad_is_symmetric_and_handles_large_halo():
    x = torch.arange(4.0).view(1, 1, 4)
    np.testing.assert_array_equal(reflect_pad(x, [2])[0, 0].numpy(), [1, 0, 0, 1, 2, 3, 3, 2])
    assert reflect_pad(x, [9]).shape[-1] == 22


def test_tile_for_memory_shrinks_with_budget():
    big = tile_for_memory((512, 512), (2, 2), (8, 8), width=64, max_bytes=2e9)
    small = tile_for_memory((512, 512), (2, 2), (8, 8), width=64, max_bytes=5e7)
    assert np.prod(small) < np.prod(big) <= 512 * 512


@pytest.mark.parametrize("nd", [2, 3])
def test_channels_last_layout_gives_the_same_result(nd):
    from medsr.inference.tiling import to_channels_last

    scale = (1, 2) if nd == 2 else (1, 1, 2)
    net = small_net(nd, scale)
    x = torch.rand(2, 1, *([9] * nd))
    with torch.inference_mode():
        plain = tiled_forward(net, x, scale, [5] * nd, [6] * nd)
        to_channels_last(net, nd)
        fast = tiled_forward(net, x, scale, [5] * nd, [6] * nd, channels_last=True)
    np.testing.assert_allclose(fast.numpy(), plain.numpy(), atol=1e-5)


def test_receptive_halo_bounds_the_receptive_field():
    """Outputs beyond the halo do not change when the input changes: the halo is enough."""
    from medsr.inference.receptive_field import receptive_halo

    net = small_net(2, (1, 1))
    h = receptive_halo(net, extra=0)
    assert h == 4  # three 3x3 convolutions: radius 3, at least 4
    x = torch.rand(1, 1, 21, 21)
    y = x.clone()
    y[0, 0, 10, 10] += 1.0
    with torch.inference_mode():
        diff = (net(x) - net(y)).abs()[0, 0]
    far = torch.ones_like(diff, dtype=torch.bool)
    far[10 - h:10 + h + 1, 10 - h:10 + h + 1] = False
    assert diff[far].max() == 0 and diff[~far].max() > 0
