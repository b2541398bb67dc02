"""Physics of D(I; sigma): profile widths, noise statistics, k-space band limit, grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy import ndimage

from medsr.degrade import Degradation, Downsample, SliceProfileBlur
from medsr.degrade.downsample import MODES, axis_matrix, lr_grid
from medsr.degrade.profiles import gaussian_kernel, measured_fwhm, rect_kernel
from medsr.errors import UserError

torch.set_num_threads(1)


def _impulse(n: int = 121) -> np.ndarray:
    x = np.zeros((1, 3, 3, n))
    x[0, 1, 1, n // 2] = 1.0
    return x


@pytest.mark.parametrize("fwhm", [3.0, 6.0, 10.0])
def test_gaussian_impulse_fwhm_in_voxels(fwhm):
    y = SliceProfileBlur("gaussian", fwhm=[0, 0, fwhm])(_impulse())
    assert y.sum() == pytest.approx(1.0)
    assert measured_fwhm(y[0, 1, 1]) == pytest.approx(fwhm, rel=0.05)


def test_gaussian_impulse_fwhm_in_mm():
    spacing = (1.0, 1.0, 0.25)
    y = SliceProfileBlur("gaussian", fwhm=[0, 0, 2.0], units="mm")(_impulse(), spacing=spacing)
    assert measured_fwhm(y[0, 1, 1]) * 0.25 == pytest.approx(2.0, rel=0.05)
    with pytest.raises(UserError, match="spacing"):
        SliceProfileBlur("gaussian", fwhm=[0, 0, 2.0], units="mm")(_impulse())


def test_gaussian_kernel_matches_scipy_for_wide_kernels():
    sigma = 6.0
    x = _impulse(201)[0, 1, 1]
    ref = ndimage.gaussian_filter1d(x, sigma, mode="reflect", truncate=5)
    ours = np.convolve(x, gaussian_kernel(sigma * 2 * np.sqrt(2 * np.log(2))), mode="same")
    assert np.abs(ours - ref).max() < 2e-3 * ref.max()


@pytest.mark.parametrize("width", [1.0, 2.5, 4.0, 5.0, 7.3])
def test_rect_profile_width(width):
    k = rect_kernel(width)
    assert k.sum() == pytest.approx(1.0)
    assert k.max() == pytest.approx(1.0 / width)  # flat top at 1 / thickness
    assert k.sum() / k.max() == pytest.approx(width, rel=1e-9)  # equivalent width
    y = SliceProfileBlur("rect", thickness=[0, 0, width])(_impulse())
    np.testing.assert_allclose(y[0, 1, 1][60 - k.size // 2: 61 + k.size // 2], k)


def test_slice_gap_and_overlap_are_separate_from_spacing():
    d_gap = Degradation(scale=[1, 1, 4], profile="rect", thickness=[0, 0, 2])
    d_ovl = Degradation(scale=[1, 1, 4], profile="rect", thickness=[0, 0, 6])
    x = np.random.default_rng(0).random((1, 4, 4, 32))
    d_gap(x)
    d_ovl(x)
    assert d_gap.last_params["resolved"]["widths_voxel"] == [0.0, 0.0, 2.0]
    assert d_ovl.last_params["resolved"]["widths_voxel"] == [0.0, 0.0, 6.0]
    d_rel = Degradation(scale=[1, 1, 4], profile="rect", thickness=[0, 0, 1.5], units="lr")
    d_rel(x)
    assert d_rel.last_params["resolved"]["widths_voxel"] == [0.0, 0.0, 6.0]


def test_default_fwhm_is_the_slice_spacing():
    d = Degradation(scale=[1, 2, 4])
    d(np.zeros((1, 4, 8, 16)))
    assert d.last_params["resolved"]["widths_voxel"] == [0.0, 2.0, 4.0]


def test_gaussian_noise_std():
    d = Degradation(noise="gaussian", sigma=0.3, noise_seed=1)
    y = d(np.full((1, 100, 100, 100), 5.0))
    assert (y - 5.0).std() == pytest.approx(0.3, rel=0.05)
    assert abs((y - 5.0).mean()) < 0.003


def test_relative_sigma_uses_robust_range():
    x = np.linspace(0, 1000, 10**6).reshape(1, 100, 100, 100)
    d = Degradation(noise="gaussian", sigma=0.01, relative=True)
    y = d(x)
    rng_1_99 = np.percentile(x, 99) - np.percentile(x, 1)
    assert d.last_params["resolved"]["sigma_abs"][0] == pytest.approx(0.01 * rng_1_99)
    assert (y - x).std() == pytest.approx(0.01 * rng_1_99, rel=0.05)


def test_rician_noise_on_zeros_is_rayleigh():
    sigma = 2.0
    y = Degradation(noise="rician", sigma=sigma)(np.zeros((1, 100, 100, 100)))
    assert y.mean() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.02)
    assert y.min() >= 0


def test_poisson_gaussian_mean_and_variance():
    level, gain, read = 50.0, 0.5, 2.0
    y = Degradation(noise="poisson-gaussian", gain=gain, sigma=read)(
        np.full((1, 100, 100, 100), level))
    assert y.mean() == pytest.approx(level, rel=0.01)
    assert y.var() == pytest.approx(gain * level + read**2, rel=0.05)


def test_noise_per_channel():
    y = Degradation(noise="gaussian", sigma={"per_channel": [0.1, 1.0]})(np.zeros((2, 50, 50, 40)))
    assert y[0].std() == pytest.approx(0.1, rel=0.05)
    assert y[1].std() == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("k", [2, 3, 4, 2.5])
@pytest.mark.parametrize("window", [None, "hann"])
def test_kspace_zero_filled_has_no_energy_above_cutoff(k, window):
    n = 40
    x = np.random.default_rng(1).random((1, n, 6, 5))
    y = Downsample(scale=[k, 1, 1], mode="kspace", window=window, zero_filled=True)(x)
    assert y.shape == x.shape
    spec = np.abs(np.fft.fft(y[0], axis=0))
    f = np.abs(np.fft.fftfreq(n, d=1.0 / n))
    above = f > n / (2 * k) + 1e-9
    assert spec[above].max() < 1e-10 * spec.max()
    assert spec[~above].max() > 0.1


@pytest.mark.parametrize("n,k", [(32, 2), (33, 3), (32, 4), (30, 2.5), (31, 1.7)])
def test_kspace_samples_land_on_the_lr_grid(n, k):
    """A band-limited signal is sampled exactly at x_j = k j + o (the A @ S^-1 grid)."""
    m, o = lr_grid(n, k)
    i = np.arange(n)
    hr = np.cos(2 * np.pi * 3 * i / n + 0.4)
    x_j = k * np.arange(m) + o
    lr = Downsample(scale=[k, 1], mode="kspace")(np.tile(hr[None, :, None], (1, 1, 2)))
    np.testing.assert_allclose(lr[0, :, 0], np.cos(2 * np.pi * 3 * x_j / n + 0.4), atol=1e-10)


@pytest.mark.parametrize("mode", ["decimate", "area", "bicubic"])
@pytest.mark.parametrize("k", [2, 3, 4, 2.5])
def test_ramp_lands_on_lr_voxel_centres(mode, k):
    if mode == "area" and k != int(k):
        pytest.skip("area treats HR voxels as boxes: exact for ramps only when k is integer")
    n = 40
    m, o = lr_grid(n, k)
    x_j = k * np.arange(m) + o
    lr = axis_matrix(n, float(k), mode) @ np.arange(n, dtype=float)
    inner = slice(2, -2)  # borders are reflected, the interior is exact
    # the widened Keys kernel sampled off its knots (non-integer k, as in PIL / MATLAB)
    # reproduces ramps only to about 1% of a voxel
    tol = 0.02 if (mode == "bicubic" and k != int(k)) else 1e-9
    np.testing.assert_allclose(lr[inner], x_j[inner], atol=tol)


@pytest.mark.parametrize("k", [2, 3, 2.5, 1.6])
def test_area_conserves_mass(k):
    """Every fully covered HR voxel gives exactly its volume to the LR voxels (sum k T = 1)."""
    n = 40
    T = axis_matrix(n, float(k), "area")
    cover = (k * T).sum(axis=0)
    m, o = lr_grid(n, k)
    inside = (np.arange(n) - 0.5 >= o - k / 2) & (np.arange(n) + 0.5 <= k * (m - 1) + o + k / 2)
    np.testing.assert_allclose(cover[inside], 1.0, atol=1e-12)


@pytest.mark.parametrize("k", [2, 4])
def test_bicubic_matches_pil_antialiased_bicubic(k):
    a = np.random.default_rng(0).random((48, 64)).astype(np.float32)
    ref = np.asarray(Image.fromarray(a, mode="F").resize((64 // k, 48 // k), Image.BICUBIC))
    ours = Downsample(scale=k, mode="bicubic")(a[None].astype(np.float64))[0]
    b = 3  # PIL clips kernels at the border, we reflect
    np.testing.assert_allclose(ours[b:-b, b:-b], ref[b:-b, b:-b], atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("profile", ["gaussian", "rect", "none"])
@pytest.mark.parametrize("scale", [(2, 3, 1), (1, 2.5, 4)])
@pytest.mark.filterwarnings("ignore:axis")
def test_constant_stays_constant(mode, profile, scale):
    d = Degradation(scale=list(scale), profile=profile, downsample=mode)
    if mode == "acquire" and any(k != int(k) for k in scale):
        with pytest.raises(UserError, match="integer factors"):
            d(np.full((2, 13, 15, 17), 7.25))
        return
    y = d(np.full((2, 13, 15, 17), 7.25))
    np.testing.assert_allclose(y, 7.25, rtol=0, atol=1e-9)


def test_constant_stays_constant_zero_filled():
    y = Degradation(scale=2, downsample="kspace", zero_filled=True, window="tukey")(
        np.full((1, 12, 10, 9), 3.0))
    np.testing.assert_allclose(y, 3.0, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 40), k=st.floats(1.0, 5.0), mode=st.sampled_from(MODES))
def test_any_factor_gives_normalised_rows_on_the_right_grid(n, k, mode):
    if n / k < 1:
        return
    m, o = lr_grid(n, k)
    T = axis_matrix(n, k, mode)
    assert T.shape == (m, n)
    np.testing.assert_allclose(T.sum(axis=1), 1.0, atol=1e-9)
    # the LR grid covers the HR field of view: first and last centres inside it
    assert -0.5 <= o and k * (m - 1) + o <= n - 0.5 + 1e-9


def test_torch_and_numpy_agree_and_keep_their_type():
    x = np.random.default_rng(2).random((1, 16, 12, 8))
    d = Degradation(scale=[2, 2, 1], noise="rician", sigma=0.05, noise_seed=7)
    y_np = d(x)
    y_t = d(torch.from_numpy(x))
    assert isinstance(y_t, torch.Tensor) and y_t.dtype == torch.float64
    np.testing.assert_allclose(y_t.numpy(), y_np, atol=1e-12)
    y32 = d(x.astype(np.float32))
    assert y32.dtype == np.float32
    y_t32 = d(torch.from_numpy(x).float())
    assert y_t32.dtype == torch.float32 and y_t32.shape == (1, 8, 6, 8)


def test_user_kernel_npy(tmp_path):
    k = np.array([1.0, 2.0, 1.0])
    np.save(tmp_path / "k.npy", k)
    x = _impulse(21)
    y = Degradation(profile="kernel", kernel=str(tmp_path / "k.npy"), fwhm=[0, 0, 1])(x)
    np.testing.assert_allclose(y[0, 1, 1, 9:12], k / 4)
    psf = np.ones((3, 3, 3))
    np.save(tmp_path / "psf.npy", psf)
    y3 = Degradation(profile="kernel", kernel=str(tmp_path / "psf.npy"))(x)
    np.testing.assert_allclose(y3[0, :, :, 9:12], 1 / 27)


def _acquired(n: int, k: int, profile: str, width: float) -> np.ndarray:
    """Independent reference: LR sample j is the profile centred at c = k j + (k - 1) / 2,
    integrated over each HR voxel by quadrature (1001 points a voxel), weight past a
    border mirrored back (half-sample symmetric), rows normalised."""
    from scipy.stats import norm

    c = k * np.arange(n // k) + (k - 1) / 2.0
    sub = (np.arange(1001) + 0.5) / 1001 - 0.5
    pad = int(3 * width) + 2
    i = np.arange(-pad, n + pad)
    t = (i[:, None] + sub[None, :])[None] - c[:, None, None]  # (m, voxels, quadrature)
    if profile == "gaussian":
        h = norm.pdf(t, scale=width / (2 * np.sqrt(2 * np.log(2))))
    else:
        h = (np.abs(t) < width / 2).astype(float)
    w = h.mean(axis=2)
    src = np.where(i < 0, -1 - i, np.where(i >= n, 2 * n - 1 - i, i))
    out = np.zeros((c.size, n))
    np.add.at(out.T, src, w.T)
    return out / out.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("k", [2, 3, 4, 6])
@pytest.mark.parametrize("profile", ["gaussian", "rect"])
@pytest.mark.parametrize("rel", [0.7, 1.0, 1.5])
def test_acquire_is_the_profile_centred_on_each_lr_sample(k, profile, rel):
    """``acquire``: the profile integrated over the HR voxels, centred on the LR sample
    itself (half-way between two voxels for even k), as a reference by quadrature."""
    from medsr.degrade.downsample import acquisition_matrix

    n = 12 * k
    np.testing.assert_allclose(acquisition_matrix(n, k, profile, rel * k),
                               _acquired(n, k, profile, rel * k), atol=2e-3)


@pytest.mark.parametrize("k", [2, 4])
def test_acquired_box_is_the_block_mean_and_decimate_is_wider(k):
    """A box as thick as the spacing acquires exactly the mean of each block of k voxels;
    blur then ``decimate`` (profile centred on HR voxels, then interpolated between two of
    them for even k) spreads it over k + 1 voxels."""
    x = np.random.default_rng(k).random((1, 8 * k, 6 * k, 3))
    block = x.reshape(1, 8, k, 6, k, 3).mean(axis=(2, 4))
    d = dict(scale=[k, k, 1], profile="rect", thickness=[k, k, 0])
    np.testing.assert_allclose(Degradation(downsample="acquire", **d)(x), block, atol=1e-12)
    dec = Degradation(downsample="decimate", **d)(x)
    assert np.abs(dec - block).max() > 0.05
    assert dec.std() < 0.95 * block.std()  # the extra half-voxel interpolation blurs
    imp = np.zeros((1, 8 * k, 1, 1))
    imp[0, 4 * k] = 1.0
    taps = Degradation(downsample="decimate", scale=[k, 1, 1], profile="rect",
                       thickness=[k, 0, 0])(imp)[0, :, 0, 0]
    assert np.count_nonzero(taps > 1e-12) == 2  # one HR voxel reaches two LR samples


def test_acquire_refuses_a_kernel_and_a_fractional_factor():
    with pytest.raises(UserError, match="named profile"):
        Degradation(scale=2, profile="kernel", kernel="k.npy", downsample="acquire")(
            np.zeros((1, 8, 8)))
    with pytest.raises(UserError, match="integer factors"):
        Degradation(scale=2.5, profile="gaussian", downsample="acquire")(np.zeros((1, 10, 10)))


def test_random_degradation_draws_acquire_like_the_defaults():
    """The defaults' randomised degradation (``mri-random`` with ``acquire`` among the
    samplers, thickness in LR units) gives LR patches on the LR grid, reproducibly."""
    from medsr.degrade import load_preset

    d = load_preset("mri-random", scale=(2, 2), profile=["gaussian", "rect", "none"],
                    thickness=[[0.7, 1.5], [0.7, 1.5]], downsample=["acquire"],
                    sigma=[0.0, 0.01])
    x = np.random.default_rng(0).random((1, 48, 48)).astype(np.float32)
    d.set_random_state(3)
    a = d(x)
    d.set_random_state(3)
    np.testing.assert_array_equal(d(x), a)
    assert a.shape == (1, 24, 24) and d.last_params["downsample"] == "acquire"
