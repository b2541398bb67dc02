"""MONAI transforms (issue 25 item 2): ``SuperResolve`` / ``SuperResolved`` in a real
``Compose([LoadImaged, EnsureChannelFirstd, SuperResolved, SaveImaged])`` chain on a
NIfTI file; the saved file is checked with nibabel (affine A @ S, shape, values at
world positions)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, SaveImaged

from medsr.errors import UserError
from medsr.geometry import upsampled_affine
from medsr.transforms import SuperResolve, SuperResolved

SHAPE = (10, 9, 5)
K = (1.0, 2.0, 3.0)
GRAD = np.array([0.5, -1.1, 1.7])


def _field(affine: np.ndarray, shape) -> np.ndarray:
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    return (300.0 + nib.affines.apply_affine(affine, idx) @ GRAD).astype(np.float32)


@pytest.fixture
def nifti(tmp_path, oblique_affine):
    path = tmp_path / "in" / "scan.nii.gz"
    path.parent.mkdir()
    nib.save(nib.Nifti1Image(_field(oblique_affine, SHAPE), oblique_affine), path)
    return path


def test_compose_chain_writes_a_correctly_placed_nifti(nifti, tmp_path, oblique_affine):
    out_dir = tmp_path / "out"
    chain = Compose([
        LoadImaged(keys="image", image_only=True),
        EnsureChannelFirstd(keys="image"),
        SuperResolved(keys=["image", "label"], scale=K, method="linear",
                      allow_missing_keys=True, device="cpu"),
        SaveImaged(keys="image", output_dir=str(out_dir), output_postfix="sr",
                   separate_folder=False, print_log=False),
    ])
    result = chain({"image": str(nifti)})
    img = result["image"]
    assert isinstance(img, MetaTensor) and tuple(img.shape) == (1, 10, 18, 15)
    want = upsampled_affine(nib.load(nifti).affine, K, SHAPE, (10, 18, 15))
    np.testing.assert_allclose(img.affine.numpy(), want, atol=1e-12)
    saved = sorted(out_dir.glob("*.nii.gz"))
    assert [p.name for p in saved] == ["scan_sr.nii.gz"]
    back = nib.load(saved[0])
    assert back.shape == (10, 18, 15)
    np.testing.assert_allclose(back.affine, want, atol=1e-4)  # sform is float32 on disk
    data = np.asanyarray(back.dataobj)
    truth = _field(back.affine, back.shape)
    sl = (slice(2, -2), slice(4, -4), slice(6, -6))
    np.testing.assert_allclose(data[sl], truth[sl], atol=2e-2)


def test_missing_key_is_an_error_unless_allowed(nifti):
    t = SuperResolved(keys="label", scale=2, method="linear")
    with pytest.raises(KeyError, match="label"):
        t({"image": MetaTensor(torch.zeros(1, 4, 4, 4))})


def test_array_transform_keeps_meta_and_identity_for_plain_tensors():
    mt = MetaTensor(torch.rand(2, 4, 4, 3), affine=torch.diag(torch.tensor([2.0, 2, 3, 1])),
                    meta={"filename_or_obj": "a.nii.gz", "space": "LPS"})
    out = SuperResolve(scale=(2, 2, 1), method="cubic")(mt)
    assert tuple(out.shape) == (2, 8, 8, 3)
    assert out.meta["filename_or_obj"] == "a.nii.gz" and out.meta["space"] == "LPS"
    np.testing.assert_allclose(out.affine.numpy(), upsampled_affine(
        np.diag([2.0, 2, 3, 1]), (2, 2, 1)), atol=1e-6)
    plain = SuperResolve(scale=2, method="linear")(np.ones((1, 3, 3, 3), np.float32))
    assert tuple(plain.shape) == (1, 6, 6, 6)
    np.testing.assert_allclose(plain.affine.numpy(), upsampled_affine(np.eye(4), 2),
                               atol=1e-6)
    # per-call override, as MONAI's array transforms allow
    assert tuple(SuperResolve(scale=2, method="linear")(mt, scale=(1, 1, 2)).shape) == \
        (2, 4, 4, 6)


def test_not_channel_first_is_one_line():
    with pytest.raises(UserError, match="EnsureChannelFirst"):
        SuperResolve(scale=2, method="linear")(MetaTensor(torch.zeros(4, 4, 4)))
