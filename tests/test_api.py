"""The public API (issue 25 item 1): ``medsr.read / write / super_resolve / Volume``.

Geometry is checked in world coordinates with independent references: SimpleITK's own
index -> physical point mapping (LPS) and nibabel's affine (RAS), and files written by
medsr are read back by both. Values are checked too: a field linear in world
coordinates, upsampled with linear interpolation, must equal that field at each output
voxel centre's physical position (a transposed or flipped axis would break it).
"""

from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

import medsr
from medsr.geometry import upsampled_affine

SHAPE = (9, 8, 5)
K = (1.0, 2.0, 3.0)
def A_OUT(a):  # noqa: N802 - the expected output affine A @ S, as geometry computes it
    return upsampled_affine(a, K, SHAPE, (9, 16, 15))


GRAD = np.array([0.7, -1.3, 2.1])  # the linear field's gradient, per mm (RAS)


def _field(affine: np.ndarray, shape) -> np.ndarray:
    """100 + GRAD . x at every voxel centre (x in RAS mm)."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    xyz = nib.affines.apply_affine(affine, idx)
    return (500.0 + xyz @ GRAD).astype(np.float32)


def _interior(shape_out, k):
    """Output indices whose interpolation uses no boundary voxel (linear, margin 1)."""
    sl = tuple(slice(int(np.ceil(2 * kk)), n - int(np.ceil(2 * kk))) for n, kk in zip(shape_out, k))
    return sl


def _check_values(data: np.ndarray, affine: np.ndarray) -> None:
    truth = _field(affine, data.shape[:3])
    sl = _interior(data.shape[:3], K)
    np.testing.assert_allclose(data[sl], truth[sl], rtol=0, atol=2e-3)


def test_import_is_cheap_and_names_are_public() -> None:
    code = ("import sys, medsr; assert 'torch' not in sys.modules and 'monai' not in "
            "sys.modules and 'numpy' not in sys.modules; "
            "print(sorted(n for n in dir(medsr) if not n.startswith('_')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    for name in ("Volume", "read", "write", "super_resolve"):
        assert name in out


def test_array_with_affine(oblique_affine) -> None:
    data = _field(oblique_affine, SHAPE)
    out, a_out = medsr.super_resolve(data, scale=K, method="linear", affine=oblique_affine)
    assert out.shape == (9, 16, 15) and out.dtype == np.float32
    np.testing.assert_array_equal(a_out, upsampled_affine(oblique_affine, K, SHAPE, out.shape))
    np.testing.assert_allclose(a_out, oblique_affine @ _S(K), rtol=0, atol=1e-12)
    _check_values(out, a_out)


def _S(k) -> np.ndarray:
    s = np.eye(4)
    s[:3, :3] = np.diag(1 / np.asarray(k))
    s[:3, 3] = (1 / np.asarray(k) - 1) / 2
    return s


def test_array_needs_an_affine() -> None:
    with pytest.raises(medsr.UserError, match="affine="):
        medsr.super_resolve(np.zeros(SHAPE, np.float32), scale=2)


def test_unknown_object_is_one_line() -> None:
    with pytest.raises(medsr.UserError, match="cannot super-resolve a builtins.list"):
        medsr.super_resolve([[1, 2]], scale=2)


def test_volume(oblique_affine) -> None:
    vol = medsr.Volume(_field(oblique_affine, SHAPE), oblique_affine)
    out = medsr.super_resolve(vol, scale=K, method="linear")
    assert isinstance(out, medsr.Volume) and out.spatial_shape == (9, 16, 15)
    np.testing.assert_array_equal(out.affine, A_OUT(oblique_affine))
    _check_values(out.data, out.affine)


def test_nibabel_image_and_files_read_back_by_simpleitk(oblique_affine, tmp_path) -> None:
    img = nib.Nifti1Image(_field(oblique_affine, SHAPE), oblique_affine)
    out = medsr.super_resolve(img, scale=K, method="linear")
    assert type(out) is nib.Nifti1Image and out.shape == (9, 16, 15)
    np.testing.assert_array_equal(out.affine, A_OUT(oblique_affine))
    _check_values(np.asanyarray(out.dataobj), out.affine)
    # written to disk by medsr.write, read back by nibabel and SimpleITK (independently)
    path = medsr.write(out, tmp_path / "out.nii.gz")
    back = nib.load(path)
    np.testing.assert_allclose(back.affine, out.affine, atol=1e-5)
    s = sitk.ReadImage(str(path))
    assert s.GetSize() == (9, 16, 15)
    for idx in [(0, 0, 0), (8, 15, 14), (3, 7, 11)]:
        lps = np.array(s.TransformIndexToPhysicalPoint(idx))
        ras = nib.affines.apply_affine(oblique_affine, (np.array(idx) + 0.5) / K - 0.5)
        np.testing.assert_allclose(lps * [-1, -1, 1], ras, atol=1e-4)
    # medsr.read gives the same Volume back
    vol = medsr.read(path)
    np.testing.assert_allclose(vol.affine, out.affine, atol=1e-5)


def test_nibabel_integer_input_keeps_its_dtype() -> None:
    data = np.arange(4 * 4 * 3, dtype=np.int16).reshape(4, 4, 3)
    out = medsr.super_resolve(nib.Nifti1Image(data, np.eye(4)), scale=2, method="linear")
    assert np.asanyarray(out.dataobj).dtype == np.int16
    assert out.get_data_dtype() == np.int16


def _sitk_image() -> sitk.Image:
    """An oblique, anisotropic SimpleITK image (LPS) holding the linear field."""
    a, b = np.deg2rad(21.0), np.deg2rad(-12.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    direction = rz @ rx @ np.diag([1, -1, 1])
    img = sitk.Image(list(SHAPE), sitk.sitkFloat32)
    img.SetSpacing((0.8, 1.2, 3.5))
    img.SetOrigin((-20.5, 14.25, 33.0))
    img.SetDirection(direction.ravel().tolist())
    vals = np.zeros(SHAPE[::-1], np.float32)  # (z, y, x)
    for idx in np.ndindex(*SHAPE):
        lps = np.array(img.TransformIndexToPhysicalPoint(tuple(int(i) for i in idx)))
        vals[idx[::-1]] = 500.0 + (lps * [-1, -1, 1]) @ GRAD
    out = sitk.GetImageFromArray(vals)
    out.CopyInformation(img)
    out.SetMetaData("descrip", "test")
    return out


def test_simpleitk_image_in_world_coordinates() -> None:
    img = _sitk_image()
    out = medsr.super_resolve(img, scale=K, method="linear")
    assert isinstance(out, sitk.Image) and out.GetSize() == (9, 16, 15)
    assert out.GetMetaData("descrip") == "test"
    np.testing.assert_allclose(out.GetDirection(), img.GetDirection(), atol=1e-12)
    np.testing.assert_allclose(out.GetSpacing(), np.array(img.GetSpacing()) / K, atol=1e-12)
    for idx in [(0, 0, 0), (8, 15, 14), (4, 9, 2), (1, 0, 13)]:
        got = out.TransformIndexToPhysicalPoint(idx)
        want = img.TransformContinuousIndexToPhysicalPoint(
            tuple(float(v) for v in (np.array(idx) + 0.5) / K - 0.5))
        np.testing.assert_allclose(got, want, atol=1e-9)
    # values: the field at each output voxel's physical point (SimpleITK's own mapping)
    arr = sitk.GetArrayFromImage(out)
    for idx in [(4, 8, 7), (2, 5, 8), (6, 10, 9)]:
        lps = np.array(out.TransformIndexToPhysicalPoint(idx))
        assert arr[idx[::-1]] == pytest.approx(500.0 + (lps * [-1, -1, 1]) @ GRAD, abs=2e-3)


def test_simpleitk_written_file_matches(tmp_path) -> None:
    img = _sitk_image()
    path = medsr.write(medsr.super_resolve(img, scale=K, method="linear"),
                       tmp_path / "s.nii.gz")
    back = sitk.ReadImage(str(path))
    want = medsr.super_resolve(img, scale=K, method="linear")
    np.testing.assert_allclose(back.GetOrigin(), want.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(back.GetDirection(), want.GetDirection(), atol=1e-5)
    np.testing.assert_allclose(back.GetSpacing(), want.GetSpacing(), atol=1e-5)


def test_metatensor_channel_first(oblique_affine) -> None:
    import torch
    from monai.data import MetaTensor

    data = _field(oblique_affine, SHAPE)
    mt = MetaTensor(torch.from_numpy(np.stack([data, data + 1]))[None][0],
                    affine=torch.as_tensor(oblique_affine), meta={"filename_or_obj": "x.nii"})
    out = medsr.super_resolve(mt, scale=K, method="linear")
    assert isinstance(out, MetaTensor) and tuple(out.shape) == (2, 9, 16, 15)
    np.testing.assert_allclose(out.affine.numpy(), A_OUT(oblique_affine), atol=1e-12)
    np.testing.assert_allclose(out.meta["affine"].numpy(), out.affine.numpy())
    assert out.meta["filename_or_obj"] == "x.nii"
    _check_values(out[0].numpy(), out.affine.numpy())
    _check_values(out[1].numpy() - 1, out.affine.numpy())


def test_spacing_and_default_plan(oblique_affine) -> None:
    data = _field(oblique_affine, SHAPE)
    out, a = medsr.super_resolve(data, spacing=(0.9, 0.55, 1.5), method="cubic",
                                 affine=oblique_affine)
    assert out.shape == (9, 16, 10)
    np.testing.assert_allclose(np.linalg.norm(a[:3, :3], axis=0), [0.9, 0.55, 1.5], atol=1e-6)
    out2, a2 = medsr.super_resolve(data, method="cubic", affine=oblique_affine)
    assert out2.shape == (9, 10, 17)  # isotropic at the finest spacing (0.9 mm)


def test_shipped_network_runs() -> None:
    """The default (method auto) picks the shipped through-plane network."""
    data = _field(np.diag([1.0, 1.0, 4.0, 1.0]), (16, 16, 4))
    vol = medsr.super_resolve(medsr.Volume(data, np.diag([1.0, 1.0, 4.0, 1.0])), scale=(1, 1, 4))
    assert vol.spatial_shape == (16, 16, 16)
    assert vol.meta["medsr_model"].startswith("thick-slice-x4")


def test_bad_arguments_are_user_errors(oblique_affine) -> None:
    data = _field(oblique_affine, SHAPE)
    with pytest.raises(medsr.UserError, match="not both"):
        medsr.super_resolve(data, scale=2, spacing=1, affine=oblique_affine, method="cubic")
    with pytest.raises(medsr.UserError, match=">= 1"):
        medsr.super_resolve(data, scale=0.5, affine=oblique_affine, method="cubic")
    with pytest.raises(medsr.UserError, match="singular"):
        medsr.super_resolve(data, scale=2, affine=np.zeros((4, 4)), method="cubic")


def test_metatensor_in_lps_is_written_in_ras(tmp_path) -> None:
    """A MetaTensor whose meta says LPS keeps LPS on output, and medsr.write puts the RAS
    affine into the file (nibabel reads back diag(-1, -1, 1) @ A_lps @ S)."""
    import torch
    from monai.data import MetaTensor

    a_lps = np.diag([2.0, 2.0, 3.0, 1.0])
    a_lps[:3, 3] = [10.0, -4.0, 2.0]
    mt = MetaTensor(torch.rand(1, 4, 4, 3), meta={"affine": torch.as_tensor(a_lps),
                                                  "space": "LPS"})
    out = medsr.super_resolve(mt, scale=(1, 1, 2), method="linear")
    want = upsampled_affine(a_lps, (1, 1, 2))
    np.testing.assert_allclose(out.affine.numpy(), want, atol=1e-12)
    path = medsr.write(out, tmp_path / "lps.nii.gz")
    np.testing.assert_allclose(nib.load(path).affine, np.diag([-1, -1, 1, 1]) @ want,
                               atol=1e-5)


def test_vector_simpleitk_and_4d_nibabel(tmp_path) -> None:
    rng = np.random.default_rng(0)
    img = sitk.GetImageFromArray(rng.random((4, 5, 6, 3)).astype(np.float32), isVector=True)
    img.SetSpacing((1.0, 1.0, 3.0))
    out = medsr.super_resolve(img, scale=(1, 1, 3), method="linear")
    assert out.GetSize() == (6, 5, 12) and out.GetNumberOfComponentsPerPixel() == 3
    np.testing.assert_allclose(out.GetOrigin(), (0.0, 0.0, -1.0), atol=1e-12)
    four = nib.Nifti1Image(rng.random((4, 4, 3, 2)).astype(np.float32), np.eye(4))
    assert medsr.super_resolve(four, scale=2, method="linear").shape == (8, 8, 6, 2)
    # medsr.write keeps the output rules: an existing file only with overwrite=True
    path = medsr.write(four, tmp_path / "f.nii.gz")
    with pytest.raises(medsr.UserError, match="exists"):
        medsr.write(four, path)
    medsr.write(four, path, overwrite=True)
