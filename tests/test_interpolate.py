"""Interpolation baselines against independent references: scipy, SimpleITK, PIL, analytic ramps."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
from rotations import rotation

from medsr.errors import UserError
from medsr.geometry import (
    output_shape,
    ras_to_lps,
    source_coordinates,
    spacing_of,
    upsampled_affine,
)
from medsr.interpolate import METHODS, resize, resize_torch, resize_volume
from medsr.volume import Volume

AFFINES = {
    "oblique": lambda: np.block([[rotation(0.3, -0.2, 0.5) @ np.diag([0.9, 1.1, 3.0]),
                                  np.array([[-40.0], [12.0], [7.5]])], [np.zeros((1, 3)), 1]]),
    "flipped": lambda: np.array([[-1.0, 0, 0, 30], [0, 0, 2.5, -20], [0, -1.2, 0, 11],
                                 [0, 0, 0, 1]]),
}


def _world(affine: np.ndarray, shape) -> np.ndarray:
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    return idx @ affine[:3, :3].T + affine[:3, 3]


def _interior(shape_out, affine_out, affine_in, shape_in, margin) -> np.ndarray:
    """Output voxels whose source position lies >= margin input voxels (per axis) inside."""
    margin = np.asarray(margin, dtype=float) - 1e-9
    src = _world(np.linalg.inv(affine_in) @ affine_out, shape_out)
    return np.all((src >= margin) & (src <= np.array(shape_in) - 1 - margin), axis=-1)


RAMP = np.array([0.7, -1.3, 0.4])


@pytest.mark.parametrize("method", [m for m in METHODS if m != "nearest"])
@pytest.mark.parametrize("kind", sorted(AFFINES))
@pytest.mark.parametrize("factors", [(2, 1, 3), (1.5, 2.3077, 1)])
def test_linear_world_function_stays_linear(method, kind, factors):
    A = AFFINES[kind]()
    shape = (26, 24, 25)
    vol = Volume(_world(A, shape) @ RAMP + 5.0, A)  # float64: error is the method's own
    out = resize_volume(vol, factors, method)
    assert out.data.shape[:3] == output_shape(shape, factors)
    np.testing.assert_allclose(out.affine, upsampled_affine(A, factors, shape, out.data.shape))
    expected = _world(out.affine, out.data.shape) @ RAMP + 5.0
    inside = _interior(out.data.shape, out.affine, A, shape, margin=9)
    assert inside.sum() > 100
    err = np.abs(out.data - expected)[inside].max()
    # Lanczos-3 is not linear-reproducing: ~2% of the largest per-voxel step
    step = np.abs(A[:3, :3].T @ RAMP).max()
    tol = 0.03 * step if method == "lanczos" else 1e-5  # cubic: prefilter edge ~0.27^9
    assert err < tol, (method, err)


def test_nearest_takes_the_nearest_source_voxel():
    shape = (10, 9, 8)
    data = np.random.default_rng(1).random(shape)
    out = resize(data, (2, 1, 3), "nearest")
    for ax, (n, k) in enumerate(zip(shape, (2, 1, 3))):
        src = source_coordinates(n, out.shape[ax], k)
        assert np.all(np.abs(src - np.clip(np.round(src), 0, n - 1)) <= 0.5 + 1e-9)
    i = np.clip(np.floor(source_coordinates(10, 20, 2) + 0.5), 0, 9).astype(int)
    k = np.clip(np.floor(source_coordinates(8, 24, 3) + 0.5), 0, 7).astype(int)
    np.testing.assert_array_equal(out, data[np.ix_(i, np.arange(9), k)])


def test_factor_one_axes_are_not_touched():
    rng = np.random.default_rng(2)
    x = rng.random((7, 6, 5), dtype=np.float32)
    np.testing.assert_array_equal(resize(x, (1, 1, 1), "cubic"), x)
    # along the changed axis only: each line is np.interp of itself (random across lines)
    out = resize(x, (1, 1, 3), "linear")
    src = source_coordinates(5, 15, 3)
    ref = np.stack([[np.interp(src, np.arange(5), x[i, j]) for j in range(6)] for i in range(7)])
    np.testing.assert_allclose(out, ref, atol=1e-6)
    # trailing channel axes are kept as they are
    rgb = rng.random((8, 9, 3), dtype=np.float32)
    out = resize(rgb, (2, 1), "catmull-rom")
    assert out.shape == (16, 9, 3)
    for c in range(3):
        np.testing.assert_allclose(out[..., c], resize(rgb[..., c], (2, 1), "catmull-rom"),
                                   atol=1e-6)


@pytest.mark.parametrize("factors", [(2, 3, 1), (1, 1, 4), (3, 2, 2)])
def test_cubic_equals_scipy_zoom_reflect_grid_mode(factors):
    x = ndi.gaussian_filter(np.random.default_rng(3).random((14, 12, 10)), 1.0)
    ours = resize(x, factors, "cubic")
    ref = ndi.zoom(x, factors, order=3, mode="reflect", grid_mode=True)
    np.testing.assert_allclose(ours, ref, atol=1e-9)  # the whole grid, borders included


@pytest.mark.parametrize("method", ["linear", "cubic"])
def test_non_integer_factor_matches_simpleitk_resample(method):
    """3 mm -> 1.3 mm through-plane on an oblique grid: geometry and values vs SimpleITK."""
    sitk = pytest.importorskip("SimpleITK")
    A = AFFINES["oblique"]()
    shape = (16, 18, 20)
    w = _world(A, shape)
    data = np.sin(w[..., 0] / 9.0) + np.cos(w[..., 1] / 11.0) * np.sin(w[..., 2] / 13.0)
    f = spacing_of(A) / np.array([spacing_of(A)[0], spacing_of(A)[1], 1.3])
    f[:2] = 1.0
    out = resize_volume(Volume(data, A), f, method)
    A_out, shape_out = out.affine, out.data.shape
    np.testing.assert_allclose(spacing_of(A_out), [0.9, 1.1, 1.3])

    def to_sitk(arr, affine):
        lps = ras_to_lps(affine)
        sp_ = spacing_of(lps)
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)))
        img.SetSpacing(sp_.tolist())
        img.SetDirection((lps[:3, :3] / sp_).ravel().tolist())
        img.SetOrigin(lps[:3, 3].tolist())
        return img

    ref_grid = to_sitk(np.zeros(shape_out), A_out)
    interp = sitk.sitkLinear if method == "linear" else sitk.sitkBSpline
    res = sitk.Resample(to_sitk(data, A), ref_grid, sitk.Transform(), interp, 0.0,
                        sitk.sitkFloat64)
    ref = sitk.GetArrayFromImage(res).transpose(2, 1, 0)
    inside = _interior(shape_out, A_out, A, shape, margin=(0, 0, 8))
    assert inside.sum() > 100
    tol = 1e-9 if method == "linear" else 1e-5  # measured 1e-15 / 4e-7
    np.testing.assert_allclose(out.data[inside], ref[inside], atol=tol)


@pytest.mark.parametrize("method,pil_name", [("catmull-rom", "BICUBIC"), ("linear", "BILINEAR"),
                                             ("lanczos", "LANCZOS")])
@pytest.mark.parametrize("factors", [(2, 3), (2.5, 1.5), (0.5, 0.25)])
def test_matches_pil_in_the_interior(method, pil_name, factors):
    """PIL clips its kernels at the border (we mirror), so compare 4 input voxels inside."""
    from PIL import Image

    a = ndi.gaussian_filter(np.random.default_rng(4).random((40, 48)), 0.7).astype(np.float32)
    ours = resize(a, factors, method)
    assert ours.shape == (round(40 * factors[0]), round(48 * factors[1]))
    ref = np.asarray(Image.fromarray(a).resize(ours.shape[::-1], getattr(Image, pil_name)))
    m0, m1 = (int(np.ceil(4 * max(f, 1 / f))) for f in factors)
    np.testing.assert_allclose(ours[m0:-m0, m1:-m1], ref[m0:-m0, m1:-m1], atol=2e-6)
    assert np.abs(ours - ref).max() > 0 or method == "linear"  # edges differ: not trivial


@pytest.mark.parametrize("method", METHODS)
def test_downsampling_keeps_constants_and_antialiases(method):
    const = np.full((30, 31, 9), 7.5, dtype=np.float32)
    np.testing.assert_allclose(resize(const, (0.37, 0.5, 1), method), 7.5, rtol=1e-6)
    np.testing.assert_allclose(resize(const, (2.2, 3, 1), method), 7.5, rtol=1e-6)
    nyquist = np.tile([1.0, -1.0], 20)
    down = resize(nyquist, (0.5,), method)
    if method == "nearest":
        assert np.abs(down).min() == 1.0  # aliasing, by definition
    else:
        assert np.abs(down[3:-3]).max() < 0.05, method  # the widened kernel removes it


@pytest.mark.parametrize("method", METHODS)
def test_resize_torch_equals_resize(method):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = rng.random((2, 3, 10, 9, 7)).astype(np.float32)
    f = (2, 1.5, 1)
    got = resize_torch(torch.from_numpy(x), f, method).numpy()
    ref = np.stack([np.stack([resize(x[n, c], f, method) for c in range(3)]) for n in range(2)])
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-5)
    x2 = torch.from_numpy(x[:, :, :, :, 0]).requires_grad_()
    y2 = resize_torch(x2, 3, method)
    assert y2.shape == (2, 3, 30, 27)
    y2.sum().backward()  # differentiable, usable inside networks
    assert x2.grad is not None


def test_bad_arguments_are_user_errors():
    x = np.zeros((4, 4, 4))
    with pytest.raises(UserError, match="unknown interpolation method"):
        resize(x, 2, "sinc")
    with pytest.raises(UserError, match="positive"):
        resize(x, (2, 0, 1))
    with pytest.raises(UserError):
        resize(x, (2, 2, 2, 2))
