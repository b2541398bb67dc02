"""MONAI LoadImage / LoadImaged through medsr's ImageReader: MetaTensors carry exactly the
Volume affine (checked against nibabel, MONAI's own NibabelReader, the TIFF metadata and
the synthetic DICOM geometry), and batches collate."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
from monai.data import DataLoader, Dataset
from monai.transforms import Compose, EnsureChannelFirstd, LoadImage, LoadImaged
from PIL import Image

import medsr.io as mio
from medsr.io.monai_readers import (
    DicomMedsrReader,
    FramesMedsrReader,
    MedsrReader,
    NiftiMedsrReader,
    TiffMedsrReader,
)

torch.set_num_threads(1)


def _affine(t) -> np.ndarray:
    return np.asarray(t.affine.numpy() if hasattr(t.affine, "numpy") else t.affine)


@pytest.fixture
def nifti_file(tmp_path, rng, oblique_affine):
    data = rng.normal(size=(6, 5, 4)).astype(np.float32)
    path = tmp_path / "obl.nii.gz"
    nib.save(nib.Nifti1Image(data, oblique_affine), path)
    return path, data, oblique_affine


def test_loadimage_nifti_affine_and_data(nifti_file):
    path, data, affine = nifti_file
    img = LoadImage(reader=MedsrReader(), image_only=True)(path)
    np.testing.assert_allclose(_affine(img), nib.load(path).affine)
    np.testing.assert_allclose(_affine(img), mio.read(path).affine)
    np.testing.assert_allclose(_affine(img), affine, atol=1e-5)
    np.testing.assert_array_equal(img.numpy(), data)
    # MONAI's own NIfTI reader agrees on array and affine.
    ref = LoadImage(reader="NibabelReader", image_only=True)(path)
    np.testing.assert_allclose(_affine(img), _affine(ref))
    np.testing.assert_array_equal(img.numpy(), ref.numpy())
    assert img.meta["format"] == "nifti" and img.meta["space"] == "RAS"


def test_loadimaged_channel_first_keeps_affine(nifti_file):
    path, data, affine = nifti_file
    out = Compose([LoadImaged("img", reader=NiftiMedsrReader()),
                   EnsureChannelFirstd("img")])({"img": str(path)})
    assert tuple(out["img"].shape) == (1, *data.shape)
    np.testing.assert_allclose(_affine(out["img"]), nib.load(path).affine)


def test_tiff_zcyx(tmp_path, rng):
    arr = rng.integers(0, 4000, size=(4, 2, 6, 7)).astype(np.uint16)  # Z C Y X
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, arr, imagej=True, resolution=(1 / 0.5, 1 / 0.25),
                     metadata={"axes": "ZCYX", "spacing": 2.0, "unit": "micron"})
    out = Compose([LoadImaged("img", reader=TiffMedsrReader()),
                   EnsureChannelFirstd("img")])({"img": str(path)})
    img = out["img"]
    assert tuple(img.shape) == (2, 6, 7, 4)  # C, Y, X, Z
    np.testing.assert_array_equal(img.numpy(), arr.transpose(1, 2, 3, 0))
    np.testing.assert_allclose(_affine(img), np.diag([0.25, 0.5, 2.0, 1.0]))
    np.testing.assert_allclose(_affine(img), mio.read(path).affine)


def test_png_rgb_channel_first(tmp_path, rng):
    rgb = rng.integers(0, 256, size=(5, 8, 3)).astype(np.uint8)
    path = tmp_path / "c.png"
    Image.fromarray(rgb).save(path)
    img = LoadImage(reader=FramesMedsrReader(), image_only=True, ensure_channel_first=True)(path)
    assert tuple(img.shape) == (3, 5, 8, 1)
    np.testing.assert_array_equal(img.numpy()[:, :, :, 0], rgb.transpose(2, 0, 1))
    np.testing.assert_allclose(_affine(img), np.eye(4))


def test_frames_folder(tmp_path, rng):
    frames = rng.integers(0, 65535, size=(3, 6, 5)).astype(np.uint16)
    (tmp_path / "f").mkdir()
    for k, name in enumerate(["frame2.png", "frame10.png", "frame1.png"]):
        Image.fromarray(frames[k]).save(tmp_path / "f" / name)
    img = LoadImage(reader=FramesMedsrReader(), image_only=True)(tmp_path / "f")
    assert tuple(img.shape) == (6, 5, 3)  # natural order: frame1, frame2, frame10
    np.testing.assert_array_equal(img.numpy(), frames[[2, 0, 1]].transpose(1, 2, 0))
    assert img.meta["format"] == "frames"


def test_dicom_series(tmp_path):
    pytest.importorskip("medsr.io.dicom")
    fx = pytest.importorskip("dicom_fixtures")
    case = fx.oblique_case()
    fx.write_series(tmp_path / "series", case["stored"], case["A_lps"], slope=case["slope"],
                    intercept=case["intercept"], rng=case["rng"])
    img = LoadImage(reader=DicomMedsrReader(), image_only=True)(tmp_path / "series")
    truth_ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ case["A_lps"]
    np.testing.assert_allclose(_affine(img), truth_ras, atol=1e-4)
    np.testing.assert_allclose(_affine(img), mio.read(tmp_path / "series").affine)
    np.testing.assert_allclose(img.numpy(), case["values"], atol=1e-4)


def test_several_files_stack_as_channels(tmp_path, nifti_file):
    path, data, affine = nifti_file
    other = tmp_path / "other.nii"
    nib.save(nib.Nifti1Image(data * 2, affine), other)
    img = LoadImage(reader=MedsrReader(), image_only=True)([path, other])
    assert tuple(img.shape) == (2, *data.shape)
    np.testing.assert_allclose(img.numpy()[1], data * 2, rtol=1e-6)
    np.testing.assert_allclose(_affine(img), nib.load(path).affine)
    moved = tmp_path / "moved.nii"
    shifted = affine.copy()
    shifted[0, 3] += 5
    nib.save(nib.Nifti1Image(data, shifted), moved)
    with pytest.raises(Exception, match="affine"):
        LoadImage(reader=MedsrReader(), image_only=True)([path, moved])


def test_batches_collate(tmp_path, nifti_file):
    path, data, affine = nifti_file
    scaled = tmp_path / "scaled.nii"  # different meta (scl) must not break collation
    img = nib.Nifti1Image((data * 100).astype(np.int16), affine)
    img.header.set_slope_inter(0.5, 1.0)
    nib.save(img, scaled)
    ds = Dataset([{"img": str(path)}, {"img": str(scaled)}],
                 transform=Compose([LoadImaged("img", reader=MedsrReader()),
                                    EnsureChannelFirstd("img")]))
    batch = next(iter(DataLoader(ds, batch_size=2, num_workers=0)))
    assert tuple(batch["img"].shape) == (2, 1, *data.shape)
    np.testing.assert_allclose(batch["img"].affine[1].numpy(), nib.load(scaled).affine)


def test_verify_suffix(tmp_path, nifti_file):
    path, _, _ = nifti_file
    assert MedsrReader().verify_suffix(path)
    assert MedsrReader().verify_suffix(["a.tif", "b.png", "c.mgz"])
    assert not TiffMedsrReader().verify_suffix(path)
    assert not MedsrReader().verify_suffix("notes.txt")
    assert DicomMedsrReader().verify_suffix(tmp_path)  # a directory: a series
    assert not NiftiMedsrReader().verify_suffix(tmp_path)
    # LoadImage picks the reader from verify_suffix when given several.
    loader = LoadImage(reader=TiffMedsrReader, image_only=True)
    loader.register(NiftiMedsrReader())
    assert tuple(loader(path).shape) == (6, 5, 4)
