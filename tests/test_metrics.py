"""Metrics against scikit-image (to 1e-6) and MONAI (loosely); thin volumes; masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage as ndi
from skimage.metrics import normalized_root_mse, peak_signal_noise_ratio, structural_similarity

from medsr.errors import UserError
from medsr.metrics import evaluate, foreground_mask, nrmse, psnr, ssim


def _pair(shape, seed=0, scale=100.0, noise=2.0):
    rng = np.random.default_rng(seed)
    ref = ndi.gaussian_filter(rng.random(shape), 2.0) * scale + 10.0
    test = ref + rng.normal(0.0, noise, shape) + 0.5 * ndi.gaussian_filter(rng.random(shape), 4)
    return ref, test


def _sk_ssim(a, b, r):
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=r)


@pytest.mark.parametrize("shape", [(48, 40), (24, 26, 22)])
def test_equal_scikit_image(shape):
    ref, test = _pair(shape)
    r = ref.max() - ref.min()
    assert psnr(ref, test) == pytest.approx(peak_signal_noise_ratio(ref, test, data_range=r),
                                            abs=1e-6)
    assert ssim(ref, test) == pytest.approx(_sk_ssim(ref, test, r), abs=1e-6)
    assert ssim(ref, test, data_range=500.0) == pytest.approx(_sk_ssim(ref, test, 500.0),
                                                              abs=1e-6)
    for norm in ("euclidean", "min-max", "mean"):
        sk = normalized_root_mse(ref, test, normalization=norm)
        assert nrmse(ref, test, norm) == pytest.approx(sk, abs=1e-9)
    assert nrmse(ref, test) == pytest.approx(normalized_root_mse(ref, test), abs=1e-9)
    # float32 inputs are scored in float64, the same numbers
    assert ssim(ref.astype(np.float32), test.astype(np.float32)) == pytest.approx(
        _sk_ssim(ref.astype(np.float32).astype(np.float64),
                 test.astype(np.float32).astype(np.float64), float(np.float32(ref).max()
                                                                   - np.float32(ref).min())),
        abs=1e-6)


def test_slicewise_2d_ssim_is_the_mean_of_scikit_image_per_slice():
    ref, test = _pair((20, 22, 14), seed=1)
    r = ref.max() - ref.min()
    for axis in (0, 2):
        sk = np.mean([_sk_ssim(np.take(ref, i, axis), np.take(test, i, axis), r)
                      for i in range(ref.shape[axis])])
        assert ssim(ref, test, mode="2d", axis=axis) == pytest.approx(sk, abs=1e-6)
    assert ssim(ref, test, mode="2d") != pytest.approx(ssim(ref, test), abs=1e-4)


def test_crop_equals_scoring_the_cropped_arrays():
    ref, test = _pair((30, 28, 26), seed=2)
    c = (slice(3, -3),) * 3
    r = ref[c].max() - ref[c].min()
    assert psnr(ref, test, crop=3) == pytest.approx(
        peak_signal_noise_ratio(ref[c], test[c], data_range=r), abs=1e-6)
    assert ssim(ref, test, crop=3) == pytest.approx(_sk_ssim(ref[c], test[c], r), abs=1e-6)


def test_agrees_with_monai_when_data_range_is_set():
    torch = pytest.importorskip("torch")
    from monai.metrics import PSNRMetric, SSIMMetric

    ref, test = _pair((24, 26, 22), seed=3)
    r = float(ref.max() - ref.min())
    t = lambda a: torch.from_numpy(a[None, None]).float()  # noqa: E731
    mp = float(PSNRMetric(max_val=r)(t(test), t(ref)).item())
    ms = float(SSIMMetric(spatial_dims=3, data_range=r, kernel_type="gaussian", win_size=11,
                          kernel_sigma=1.5)(t(test), t(ref)).item())
    assert psnr(ref, test) == pytest.approx(mp, abs=1e-3)
    assert ssim(ref, test) == pytest.approx(ms, abs=1e-3)


def test_thin_volumes_work():
    ref, test = _pair((64, 64, 3), seed=4)
    out = evaluate(ref, test)
    assert np.isfinite([out["psnr"], out["ssim"], out["nrmse"]]).all()
    assert 0 < out["ssim"] < 1
    assert ssim(ref, test, mode="2d") > 0
    # a single slice: the 3D SSIM is the 2D SSIM of that slice (no smoothing along z)
    ref1, test1 = _pair((40, 44, 1), seed=5)
    r = ref1.max() - ref1.min()
    assert ssim(ref1, test1) == pytest.approx(_sk_ssim(ref1[..., 0], test1[..., 0], r), abs=1e-6)
    # 1-voxel and 2-voxel axes anywhere do not crash
    for shape in [(1, 30, 30), (30, 2, 30), (5, 5, 5)]:
        a, b = _pair(shape, seed=6)
        assert -1 <= ssim(a, b) <= 1


def test_identical_images():
    ref, _ = _pair((20, 20, 20))
    assert psnr(ref, ref) == math.inf
    assert ssim(ref, ref) == pytest.approx(1.0, abs=1e-12)
    assert nrmse(ref, ref) == 0.0
    assert evaluate(ref, ref.copy())["psnr"] == math.inf


def test_data_range_is_explicit_and_matters():
    ref, test = _pair((20, 22, 24), seed=7)
    r = ref.max() - ref.min()
    assert psnr(ref, test) == pytest.approx(psnr(ref, test, data_range=r))
    assert psnr(ref, test, data_range=2 * r) == pytest.approx(psnr(ref, test) + 20 * np.log10(2))
    with pytest.raises(UserError, match="constant"):
        psnr(np.ones((8, 8, 8)), np.zeros((8, 8, 8)))
    with pytest.raises(UserError, match="shape"):
        psnr(np.ones((8, 8, 8)), np.ones((8, 8, 7)))


def test_mask_scores_only_masked_voxels():
    ref, test = _pair((24, 24, 20), seed=8)
    mask = np.zeros(ref.shape, bool)
    mask[6:18, 5:19, 4:16] = True
    bad = test.copy()
    bad[~mask] += 1000.0  # garbage outside the mask must not count for PSNR/NRMSE
    r = ref.max() - ref.min()
    mse = np.mean((ref[mask] - test[mask]) ** 2)
    assert psnr(ref, bad, mask=mask) == pytest.approx(10 * np.log10(r * r / mse), abs=1e-9)
    assert nrmse(ref, bad, mask=mask) == pytest.approx(
        np.sqrt(mse) / np.sqrt(np.mean(ref[mask] ** 2)), abs=1e-12)
    # SSIM: the mean of the (scikit-image) SSIM map over the mask, inside the window border
    _, smap = structural_similarity(ref, test, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, data_range=r, full=True)
    inner = np.zeros_like(mask)
    inner[5:-5, 5:-5, 5:-5] = True
    assert ssim(ref, test, mask=mask) == pytest.approx(smap[mask & inner].mean(), abs=1e-6)
    with pytest.raises(UserError, match="no voxels"):
        psnr(ref, test, mask=np.zeros(ref.shape, bool))


def test_foreground_mask_finds_the_object():
    rng = np.random.default_rng(9)
    idx = np.indices((40, 44, 36)).astype(float)
    r2 = ((idx[0] - 20) / 14) ** 2 + ((idx[1] - 22) / 16) ** 2 + ((idx[2] - 18) / 12) ** 2
    obj = r2 < 1
    img = np.where(obj, 100.0, 0.0)
    img[obj & (r2 < 0.1)] = 5.0  # a dark core: a hole the mask must fill
    img += rng.normal(0, 8, img.shape)
    img[2:5, 2:5, 2:5] = 120.0  # a bright speck in the air: not the largest component
    m = foreground_mask(img)
    dice = 2 * np.sum(m & obj) / (m.sum() + obj.sum())
    assert dice > 0.95
    assert not m[3, 3, 3]
    assert m[20, 22, 18]
