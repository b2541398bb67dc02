"""The affine of an upsampled grid, checked in world coordinates."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from rotations import rotation

from medsr import geometry
from medsr.errors import UserError


def make_affine(spacing, flips=(1, 1, 1), angles=(0.3, -0.2, 0.5), origin=(-90.0, 12.5, 40.0)):
    A = np.eye(4)
    A[:3, :3] = rotation(*angles) @ np.diag(np.array(spacing) * np.array(flips))
    A[:3, 3] = origin
    return A


AFFINES = {
    "axis": make_affine((1.0, 1.0, 5.0), angles=(0, 0, 0)),
    "oblique": make_affine((0.9, 0.8, 4.0)),
    "flipped": make_affine((1.2, 1.0, 3.0), flips=(-1, 1, -1)),
}


def world(A: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return idx @ A[:3, :3].T + A[:3, 3]


@pytest.mark.parametrize("name", AFFINES)
@pytest.mark.parametrize("factors", [(1, 1, 5), (2, 2, 2), (3, 1, 4)])
def test_output_centres_follow_half_voxel_rule(name, factors):
    A = AFFINES[name]
    Aout = geometry.upsampled_affine(A, factors)
    k = np.array(factors, float)
    j = np.array([[0, 0, 0], [1, 2, 3], [7, 5, 11]], float)
    expected = world(A, (j + 0.5) / k - 0.5)
    np.testing.assert_allclose(world(Aout, j), expected, atol=1e-9)
    # spacing shrinks by k, direction cosines unchanged
    np.testing.assert_allclose(geometry.spacing_of(Aout), geometry.spacing_of(A) / k)


@pytest.mark.parametrize("name", AFFINES)
def test_field_of_view_corners_preserved(name):
    A = AFFINES[name]
    shape = np.array([10, 12, 7])
    k = np.array([2, 3, 4])
    Aout = geometry.upsampled_affine(A, k)
    for corner_in in ([-0.5] * 3, list(shape - 0.5)):
        corner_in = np.array(corner_in)
        corner_out = (corner_in + 0.5) * k - 0.5
        np.testing.assert_allclose(world(Aout, corner_out[None]), world(A, corner_in[None]),
                                   atol=1e-9)


def test_naive_affine_is_wrong_by_half_the_spacing_difference():
    A = AFFINES["axis"]  # 5 mm slices -> 1 mm
    good = geometry.upsampled_affine(A, (1, 1, 5))
    naive = A @ np.diag([1, 1, 1 / 5, 1])
    shift = np.linalg.norm(good[:3, 3] - naive[:3, 3])
    assert shift == pytest.approx((5 - 1) / 2)


@pytest.mark.parametrize("name", AFFINES)
def test_matches_torch_interpolation_grid(name):
    """A linear ramp in world x upsampled by torch (align_corners=False) equals x at A @ S."""
    A = AFFINES[name]
    shape = (6, 5, 4)
    k = (2, 3, 4)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    ramp = world(A, idx)[:, 0].reshape(shape)
    up = F.interpolate(torch.from_numpy(ramp)[None, None], scale_factor=k, mode="trilinear",
                       align_corners=False)[0, 0].numpy()
    Aout = geometry.upsampled_affine(A, k)
    shape_out = up.shape
    jdx = np.stack(np.meshgrid(*[np.arange(n) for n in shape_out], indexing="ij"), -1)
    expected = world(Aout, jdx.reshape(-1, 3))[:, 0].reshape(shape_out)
    interior = tuple(slice(kk, n - kk) for kk, n in zip(k, shape_out))  # edges are clamped
    np.testing.assert_allclose(up[interior], expected[interior], atol=1e-9)


def test_downsampled_is_exact_inverse():
    A = AFFINES["oblique"]
    for k in [(1, 1, 4), (2, 2, 2), (3, 5, 1)]:
        np.testing.assert_allclose(geometry.upsampled_affine(geometry.downsampled_affine(A, k), k),
                                   A, atol=1e-12)


def test_shapes_given_integer_division_equals_shape_free_form():
    A = AFFINES["flipped"]
    np.testing.assert_allclose(geometry.upsampled_affine(A, (2, 3, 4), (5, 6, 7), (10, 18, 28)),
                               geometry.upsampled_affine(A, (2, 3, 4)), atol=1e-12)


def to_sitk_grid(A: np.ndarray, shape) -> sitk.Image:
    lps = geometry.ras_to_lps(A)
    sp = geometry.spacing_of(lps)
    img = sitk.Image([int(n) for n in shape], sitk.sitkFloat64)
    img.SetSpacing(sp.tolist())
    img.SetDirection((lps[:3, :3] / sp).ravel().tolist())
    img.SetOrigin(lps[:3, 3].tolist())
    return img


@pytest.mark.parametrize("name", AFFINES)
def test_non_integer_target_spacing_grid_against_simpleitk(name):
    """3 mm -> 1.3 mm: SimpleITK places our grid's voxels where our affine says, the centre of
    the field of view is kept and the spacing is the one asked for."""
    A = AFFINES[name]
    shape_in = (11, 9, 13)
    target = 0.7
    k = geometry.factors_for_spacing(A, target)
    shape_out = geometry.output_shape(shape_in, k)
    Aout = geometry.upsampled_affine(A, k, shape_in, shape_out)
    np.testing.assert_allclose(geometry.spacing_of(Aout), target, rtol=1e-12)
    grid_in, grid_out = to_sitk_grid(A, shape_in), to_sitk_grid(Aout, shape_out)
    centre_in = grid_in.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in shape_in])
    centre_out = grid_out.TransformContinuousIndexToPhysicalPoint(
        [(n - 1) / 2 for n in shape_out])
    np.testing.assert_allclose(centre_out, centre_in, atol=1e-9)
    # a world-linear ramp resampled by SimpleITK onto our grid equals the ramp at our centres
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape_in], indexing="ij"), -1)
    ramp_in = world(geometry.ras_to_lps(A), idx.reshape(-1, 3))[:, 1].reshape(shape_in)
    img = sitk.GetImageFromArray(ramp_in.transpose(2, 1, 0))
    img.CopyInformation(grid_in)
    res = sitk.Resample(img, grid_out, sitk.Transform(), sitk.sitkLinear, np.nan)
    got = sitk.GetArrayFromImage(res).transpose(2, 1, 0)
    jdx = np.stack(np.meshgrid(*[np.arange(n) for n in shape_out], indexing="ij"), -1)
    expected = world(geometry.ras_to_lps(Aout), jdx.reshape(-1, 3))[:, 1].reshape(shape_out)
    # compare where the output centre lies between input centres (ITK clamps at the border)
    S = geometry.index_transform(shape_in, k, shape_out)
    src = jdx.reshape(-1, 3) @ S[:3, :3].T + S[:3, 3]
    inside = (np.all((src >= 0) & (src <= np.array(shape_in) - 1), axis=1).reshape(shape_out)
              & np.isfinite(got))
    assert inside.mean() > 0.5
    np.testing.assert_allclose(got[inside], expected[inside], atol=1e-6)
    # the output field of view differs from the input's by less than one output voxel per axis
    fov_in = np.array(shape_in) * geometry.spacing_of(A)
    fov_out = np.array(shape_out) * geometry.spacing_of(Aout)
    assert np.all(np.abs(fov_out - fov_in) <= geometry.spacing_of(Aout) / 2 + 1e-9)


def test_default_plan():
    thick = make_affine((0.9, 0.9, 4.5))
    np.testing.assert_allclose(geometry.default_factors(thick, (100, 100, 20)), [1, 1, 5])
    iso = make_affine((1.0, 1.0, 1.1))
    np.testing.assert_allclose(geometry.default_factors(iso, (50, 50, 50)), [2, 2, 2])
    # a 2D image (one slice): the single-voxel axis is left alone
    np.testing.assert_allclose(geometry.default_factors(np.eye(4), (64, 64, 1)), [2, 2, 1])


def test_bad_factors_are_user_errors():
    with pytest.raises(UserError):
        geometry.as_factors([1, 2])
    with pytest.raises(UserError):
        geometry.as_factors([0, 1, 1])
    with pytest.raises(UserError):
        geometry.as_factors(float("nan"))
