"""Loss functions against independent references (scikit-image SSIM, hand formulas)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity

from medsr.errors import UserError
from medsr.training.losses import (
    CharbonnierLoss,
    CombinedLoss,
    GradientLoss,
    TVLoss,
    build_loss,
    discriminator_loss,
    generator_loss,
    sobel,
    ssim,
)
from medsr.training.losses.perceptual import _CFG, VGG19Features, gram


def _smooth(rng, shape):
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(rng.random(shape), 2.0).astype(np.float64)


@pytest.mark.parametrize("shape", [(48, 40), (20, 22, 18)])
def test_ssim_matches_skimage(rng, shape):
    a = _smooth(rng, shape)
    b = a + 0.05 * rng.standard_normal(shape)
    ref = structural_similarity(a, b, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False)
    ours = ssim(torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None], 1.0)
    assert float(ours) == pytest.approx(ref, abs=1e-6)
    assert float(ssim(torch.from_numpy(a)[None, None], torch.from_numpy(a)[None, None])) == \
        pytest.approx(1.0)


def test_ssim_is_differentiable():
    x = torch.rand(2, 1, 24, 24, requires_grad=True)
    (1 - ssim(x, torch.rand(2, 1, 24, 24))).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_sobel_of_a_ramp():
    i = torch.arange(10.0).reshape(10, 1, 1).expand(10, 9, 8)
    g = sobel((3.0 * i)[None, None])
    # central difference /2 with smoothing weights summing to 1: slope 3 along axis 0, 0 else
    assert torch.allclose(g[0, 0, 1:-1], torch.full((8, 9, 8), 3.0))
    assert torch.allclose(g[0, 1:], torch.zeros(2, 10, 9, 8))


def test_gradient_and_tv_losses(rng):
    hr = torch.from_numpy(_smooth(rng, (32, 32))).float()[None, None]
    assert float(GradientLoss()(hr, hr)) == 0.0
    # an offset has no edges
    assert float(GradientLoss()(hr, hr + 0.3)) == pytest.approx(0.0, abs=1e-6)
    assert float(GradientLoss()(torch.roll(hr, 3, -1), hr)) > 0
    assert float(GradientLoss(edge_weight=2.0)(hr + 0.1, hr)) > 0.1  # weighted L1 >= plain L1
    assert float(TVLoss()(torch.full((1, 1, 5, 6, 7), 2.0))) == 0.0
    step = torch.zeros(1, 1, 4, 10)
    step[..., 5:] = 1.0
    assert float(TVLoss()(step)) == pytest.approx(1.0 / 9.0)  # one jump among 9 differences


def test_charbonnier_limits():
    a, b = torch.zeros(100), torch.linspace(-3, 3, 100)
    l1 = float((a - b).abs().mean())
    assert float(CharbonnierLoss(1e-6)(a, b)) == pytest.approx(l1, rel=1e-5)
    assert float(CharbonnierLoss(0.1)(a, a)) == pytest.approx(0.1)


def test_adversarial_formulas():
    real, fake = torch.tensor([2.0, 1.0, 0.5]), torch.tensor([-1.0, 0.0, 0.3])
    assert float(generator_loss("standard", fake)) == pytest.approx(
        float(-torch.log(torch.sigmoid(fake)).mean()))
    d_ra_real = torch.sigmoid(real - fake.mean())
    d_ra_fake = torch.sigmoid(fake - real.mean())
    expected_d = 0.5 * float(-torch.log(d_ra_real).mean() - torch.log(1 - d_ra_fake).mean())
    assert float(discriminator_loss("relativistic", real, fake)) == pytest.approx(expected_d)
    expected_g = 0.5 * float(-torch.log(1 - d_ra_real).mean() - torch.log(d_ra_fake).mean())
    assert float(generator_loss("relativistic", fake, real)) == pytest.approx(expected_g)


def _vgg_file(tmp_path):
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    state, idx, cin = {}, 0, 3
    for v in _CFG:
        if v == "M":
            idx += 1
            continue
        state[f"features.{idx}.weight"] = torch.randn(v, cin, 3, 3, generator=g) * 0.05
        state[f"features.{idx}.bias"] = torch.zeros(v)
        cin, idx = v, idx + 2
    path = tmp_path / "vgg19.safetensors"
    save_file(state, str(path))
    return path


def test_perceptual_needs_a_local_weight_file(tmp_path):
    with pytest.raises(UserError, match="feature_weights"):
        build_loss({"l1": 0.0, "perceptual": 1.0, "feature_weights": None})
    with pytest.raises(UserError, match="do not exist"):
        VGG19Features(tmp_path / "missing.safetensors", ["relu2_2"])


def test_perceptual_and_texture_losses(tmp_path):
    w = _vgg_file(tmp_path)
    loss = CombinedLoss({"perceptual": 1.0, "texture": 1.0}, feature_weights=str(w),
                        perceptual_layer="relu2_2", texture_layers=["relu1_1", "relu2_1"])
    x = torch.rand(2, 1, 32, 32)
    total, parts = loss(x, x)
    assert float(total) == 0.0
    sr = x.clone().requires_grad_(True)
    total, parts = loss(sr, torch.rand(2, 1, 32, 32))
    total.backward()
    assert parts["perceptual"] > 0 and parts["texture"] > 0 and sr.grad.abs().sum() > 0
    # 3D input goes slice-wise through the 2D network
    t3, _ = loss(torch.rand(1, 1, 16, 16, 4), torch.rand(1, 1, 16, 16, 4))
    assert float(t3) > 0
    f = torch.rand(2, 5, 4, 4)
    flat = f.reshape(2, 5, 16)
    assert torch.allclose(gram(f), flat @ flat.transpose(1, 2) / 80)


def test_combined_loss_weights():
    sr, hr = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    loss = build_loss({"l1": 0.5, "l2": 2.0, "ssim": 0.0})
    total, parts = loss(sr, hr)
    assert set(parts) == {"l1", "l2"}
    assert float(total) == pytest.approx(0.5 * float((sr - hr).abs().mean())
                                         + 2.0 * float(F.mse_loss(sr, hr)), rel=1e-6)
    with pytest.raises(UserError, match="unknown loss"):
        CombinedLoss({"l3": 1.0})
    with pytest.raises(UserError, match="texture"):
        CombinedLoss({"l1": 1.0, "adversarial": 0.1}, adversarial_kind="enhancenet")
