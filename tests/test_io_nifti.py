"""NIfTI-1/2 and MGH/MGZ reading and writing, checked with nibabel and SimpleITK read-back,
plus the bad-input rules and the format dispatch helpers of medsr.io."""

from __future__ import annotations

import gzip
import os
import struct
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from io_checks import write_over_existing
from nibabel.testing import data_path

import medsr.io as mio
from medsr.errors import InputError, OutputError, UserError
from medsr.volume import Volume

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
NIB_DATA = Path(data_path)


def sitk_affine_lps(img: sitk.Image) -> np.ndarray:
    """SimpleITK's voxel -> LPS matrix: direction * spacing, origin."""
    a = np.eye(4)
    a[:3, :3] = np.asarray(img.GetDirection()).reshape(3, 3) @ np.diag(img.GetSpacing())
    a[:3, 3] = img.GetOrigin()
    return a


def flipped_affine() -> np.ndarray:
    a = np.diag([-2.0, 0.8, -3.5, 1.0])
    a[:3, 3] = [40.0, -12.0, 25.0]
    return a


# --------------------------------------------------------------------- round trips


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("which", ["oblique", "flipped"])
def test_round_trip_nibabel_and_sitk(tmp_path, rng, oblique_affine, version, suffix, which):
    affine = oblique_affine if which == "oblique" else flipped_affine()
    data = rng.normal(100, 20, size=(7, 6, 5)).astype(np.float32)
    vol = Volume(data, affine, {"nifti_version": version})
    out = mio.write(vol, tmp_path / f"v{suffix}")
    assert out == tmp_path / f"v{suffix}" and out.exists()

    img = nib.load(out)
    assert isinstance(img, nib.Nifti2Image if version == 2 else nib.Nifti1Image)
    assert img.get_data_dtype() == np.float32
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), data)
    np.testing.assert_allclose(img.affine, affine, atol=1e-5)
    np.testing.assert_allclose(img.get_sform(), affine, atol=1e-5)
    np.testing.assert_allclose(img.get_qform(), affine, atol=1e-4)
    assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
    assert img.header.get_xyzt_units()[0] == "mm"
    np.testing.assert_allclose(img.header.get_zooms()[:3], np.linalg.norm(affine[:3, :3], axis=0),
                               rtol=1e-6)

    if version == 1:  # SimpleITK 2.5 cannot read NIfTI-2 (not even nibabel's example)
        simg = sitk.ReadImage(str(out))
        np.testing.assert_allclose(sitk_affine_lps(simg), LPS @ affine, atol=1e-4)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(simg).transpose(2, 1, 0), data)

    back = mio.read(out)
    np.testing.assert_array_equal(back.data, data)
    np.testing.assert_allclose(back.affine, affine, atol=1e-5)
    assert back.meta["format"] == "nifti" and back.meta["nifti_version"] == version


def test_source_codes_and_dtype_kept(tmp_path):
    src = tmp_path / "src.nii"
    img = nib.Nifti1Image(np.arange(60, dtype=np.int16).reshape(3, 4, 5), flipped_affine())
    img.set_qform(flipped_affine(), code=2)
    img.set_sform(flipped_affine(), code=4)
    nib.save(img, src)
    vol = mio.read(src)
    assert vol.data.dtype == np.int16 and vol.meta["dtype"] == "int16"
    out = nib.load(mio.write(vol, tmp_path / "out.nii.gz"))
    assert out.get_data_dtype() == np.int16
    assert (int(out.header["qform_code"]), int(out.header["sform_code"])) == (2, 4)
    np.testing.assert_array_equal(np.asanyarray(out.dataobj), vol.data)


def test_float_volume_without_meta_is_float32(tmp_path):
    out = mio.write(Volume(np.ones((2, 3, 4)), np.eye(4)), tmp_path / "f.nii.gz")
    assert nib.load(out).get_data_dtype() == np.float32


def test_scl_slope_inter_applied(tmp_path):
    raw = np.arange(-30, 30, dtype=np.int16).reshape(3, 4, 5)
    img = nib.Nifti1Image(raw, flipped_affine())
    img.header.set_slope_inter(0.25, -7.5)
    nib.save(img, tmp_path / "s.nii.gz")
    vol = mio.read(tmp_path / "s.nii.gz")
    ref = nib.load(tmp_path / "s.nii.gz").get_fdata()
    np.testing.assert_allclose(vol.data, ref, rtol=1e-6)
    np.testing.assert_allclose(vol.data, raw * 0.25 - 7.5, rtol=1e-6)
    assert vol.meta["scl"] == [0.25, -7.5] and vol.meta["dtype"] == "int16"
    # Written back to int16 with a fresh slope/inter: no value lost to rounding.
    back = nib.load(mio.write(vol, tmp_path / "o.nii.gz"))
    assert back.get_data_dtype() == np.int16
    np.testing.assert_allclose(back.get_fdata(), ref, atol=0.01)


def test_integer_output_clipped_not_wrapped(tmp_path):
    data = np.array([-1e6, -32769.0, 3.6, -2.5, 40000.0, 1e9]).reshape(1, 2, 3)
    vol = Volume(data, np.eye(4))
    with pytest.warns(UserWarning, match="clipped"):
        out = mio.write(vol, tmp_path / "i.nii", dtype="int16")
    img = nib.load(out)
    assert img.get_data_dtype() == np.int16
    np.testing.assert_array_equal(np.asanyarray(img.dataobj).ravel(),
                                  [-32768, -32768, 4, -2, 32767, 32767])
    with pytest.warns(UserWarning, match="clipped"):
        out8 = mio.write(vol.with_data(data, dtype="uint8"), tmp_path / "u.nii.gz")
    np.testing.assert_array_equal(np.asanyarray(nib.load(out8).dataobj).ravel(),
                                  [0, 0, 4, 0, 255, 255])


def test_channels_round_trip_as_vector_image(tmp_path, rng):
    rgb = rng.integers(0, 256, size=(4, 5, 2, 3)).astype(np.uint8)
    vol = Volume(rgb, flipped_affine(), {"dtype": "uint8"})
    out = mio.write(vol, tmp_path / "rgb.nii.gz")
    img = nib.load(out)
    assert img.shape == (4, 5, 2, 1, 3) and img.header.get_intent()[0] == "vector"
    np.testing.assert_array_equal(np.asanyarray(img.dataobj)[:, :, :, 0, :], rgb)
    simg = sitk.ReadImage(str(out))
    assert simg.GetNumberOfComponentsPerPixel() == 3
    np.testing.assert_array_equal(sitk.GetArrayFromImage(simg).transpose(2, 1, 0, 3), rgb)
    back = mio.read(out)
    np.testing.assert_array_equal(back.data, rgb)
    np.testing.assert_allclose(back.affine, flipped_affine(), atol=1e-6)


def test_units_written(tmp_path):
    data = np.zeros((2, 2, 2), np.float32)
    um = nib.load(mio.write(Volume(data, np.diag([0.2, 0.2, 1.0, 1.0]), {"unit": "um"}),
                            tmp_path / "um.nii"))
    assert um.header.get_xyzt_units()[0] == "micron"
    np.testing.assert_allclose(um.header.get_zooms(), [0.2, 0.2, 1.0], rtol=1e-6)
    assert mio.read(tmp_path / "um.nii").meta["unit"] == "um"
    nm = nib.load(mio.write(Volume(data, np.diag([100.0, 100.0, 300.0, 1.0]), {"unit": "nm"}),
                            tmp_path / "nm.nii"))
    assert nm.header.get_xyzt_units()[0] == "mm"
    np.testing.assert_allclose(nm.header.get_zooms(), [1e-4, 1e-4, 3e-4], rtol=1e-6)


def test_mgz_read_and_round_trip(tmp_path, rng, oblique_affine):
    data = rng.integers(0, 1000, size=(6, 5, 4)).astype(np.int32)
    nib.save(nib.MGHImage(data, oblique_affine), tmp_path / "a.mgz")
    vol = mio.read(tmp_path / "a.mgz")
    assert vol.meta["format"] == "mgh" and vol.meta["dtype"] == "int32"
    np.testing.assert_array_equal(vol.data, data)
    np.testing.assert_allclose(vol.affine, nib.load(tmp_path / "a.mgz").affine)
    np.testing.assert_allclose(vol.affine, oblique_affine, atol=1e-4)
    out = mio.write(vol, tmp_path / "b.mgz")
    back = nib.load(out)
    assert isinstance(back, nib.MGHImage) and back.get_data_dtype().newbyteorder("=") == np.int32
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), data)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-4)


# --------------------------------------------------------------------- nibabel's files


@pytest.mark.parametrize("name, shape", [("anatomical.nii", (33, 41, 25)),
                                         ("reoriented_anat_moved.nii", (21, 26, 22)),
                                         ("standard.nii.gz", (4, 5, 7))])
def test_nibabel_3d_files(name, shape):
    vol = mio.read(NIB_DATA / name)
    ref = nib.load(NIB_DATA / name)
    assert vol.data.shape == shape and vol.data.dtype.isnative  # big-endian files too
    np.testing.assert_array_equal(vol.data, ref.get_fdata())
    np.testing.assert_array_equal(vol.affine, ref.affine)
    assert vol.meta["dtype"] == ref.get_data_dtype().newbyteorder("=").name


@pytest.mark.parametrize("name, n", [("example4d.nii.gz", 2), ("functional.nii", 20),
                                      ("example_nifti2.nii.gz", 2), ("test.mgz", 2)])
def test_4d_needs_volume(name, n):
    with pytest.raises(UserError, match=rf"4D with {n} volumes.*--volume"):
        mio.read(NIB_DATA / name)
    vol = mio.read(NIB_DATA / name, volume=n - 1)
    ref = nib.load(NIB_DATA / name)
    np.testing.assert_allclose(vol.data, ref.get_fdata()[..., n - 1])
    np.testing.assert_array_equal(vol.affine, ref.affine)
    assert vol.meta["volume_index"] == n - 1
    with pytest.raises(UserError, match="out of range"):
        mio.read(NIB_DATA / name, volume=n)


def test_5d_refused_unless_vector(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3, 2, 2), np.float32), np.eye(4)),
             tmp_path / "five.nii")
    with pytest.raises(UserError, match="5D"):
        mio.read(tmp_path / "five.nii", volume=0)
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3, 1, 2), np.float32), np.eye(4)),
             tmp_path / "vec.nii")
    assert mio.read(tmp_path / "vec.nii").data.shape == (3, 3, 3, 2)


# --------------------------------------------------------------------- bad inputs


def _good_nii(path: Path, shape=(4, 4, 4)) -> bytes:
    data = np.random.default_rng(5).normal(size=shape).astype(np.float32)  # incompressible
    img = nib.Nifti1Image(data, np.diag([2.0, 2.0, 3.0, 1.0]))
    nib.save(img, path)
    return path.read_bytes()


def _patch(raw: bytes, offset: int, fmt: str, *values) -> bytes:
    b = bytearray(raw)
    struct.pack_into("<" + fmt, b, offset, *values)
    return bytes(b)


# NIfTI-1 offsets: dim at 40 (8 x int16), pixdim at 76 (8 x float32), sform_code at 254,
# srow_x at 280.
BAD_CASES = {
    "zero_pixdim": "pixdim", "negative_pixdim": "pixdim", "nan_sform": "NaN",
    "huge_dims": "header dimensions", "huge_dims_gz": "header dimensions",
    "zero_dim": "zero-size", "truncated": "truncated", "truncated_gz": "truncated or corrupt",
    "random_bytes": "not a NIfTI", "random_bytes_gz": "not a NIfTI", "empty_file": "not a NIfTI",
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_nifti_is_input_error(tmp_path, case):
    raw = _good_nii(tmp_path / "good.nii")
    p = tmp_path / ("bad.nii.gz" if case.endswith("_gz") else "bad.nii")
    if case == "zero_pixdim":
        raw = _patch(raw, 76 + 4, "f", 0.0)
    elif case == "negative_pixdim":
        raw = _patch(raw, 76 + 8, "f", -2.0)
    elif case == "nan_sform":
        raw = _patch(_patch(raw, 254, "h", 1), 280, "f", float("nan"))
    elif case.startswith("huge_dims"):
        raw = _patch(raw, 40, "4h", 3, 30000, 30000, 30000)
    elif case == "zero_dim":
        raw = _patch(raw, 40, "4h", 3, 4, 0, 4)
    elif case.startswith("truncated"):
        raw = raw[: len(raw) - 100]
    elif case.startswith("random_bytes"):
        raw = np.random.default_rng(0).bytes(2000)
    elif case == "empty_file":
        raw = b""
    if case == "truncated_gz":
        p.write_bytes(gzip.compress(_good_nii(tmp_path / "g2.nii", (20, 20, 20)))[:-400])
    else:
        p.write_bytes(gzip.compress(raw) if case.endswith("_gz") else raw)
    with pytest.raises(InputError, match=BAD_CASES[case]) as err:
        mio.read(p)
    assert "\n" not in str(err.value) and str(p) in str(err.value)


@pytest.mark.parametrize("case", ["truncated.mgz", "truncated.mgh", "random.mgz",
                                  "random.mgh", "huge.mgz"])
def test_bad_mgh_is_input_error(tmp_path, case):
    data = np.random.default_rng(0).normal(size=(10, 10, 10)).astype(np.float32)
    nib.save(nib.MGHImage(data, np.eye(4)), tmp_path / "good.mgh")
    raw = (tmp_path / "good.mgh").read_bytes()
    kind, suffix = case.split(".")
    if kind == "truncated":
        raw = raw[:-1000]
    elif kind == "random":
        raw = np.random.default_rng(1).bytes(3000)
    else:  # MGH header: big-endian version then width, height, depth, frames
        raw = raw[:4] + struct.pack(">4i", 30000, 30000, 30000, 1) + raw[20:]
    p = tmp_path / f"bad.{suffix}"
    p.write_bytes(gzip.compress(raw) if suffix == "mgz" else raw)
    with pytest.raises(InputError) as err:
        mio.read(p)
    assert "\n" not in str(err.value) and str(p) in str(err.value)


def test_nan_rules(tmp_path):
    data = np.ones((4, 4, 4), np.float32)
    data[0, 0, :2] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "some.nii")
    with pytest.warns(UserWarning, match="NaN"):
        vol = mio.read(tmp_path / "some.nii")
    assert np.all(np.isfinite(vol.data)) and vol.data[0, 0, 0] == 0 and vol.data[1, 1, 1] == 1
    nib.save(nib.Nifti1Image(np.full((3, 3, 3), np.nan, np.float32), np.eye(4)),
             tmp_path / "all.nii")
    with pytest.raises(InputError, match="NaN"):
        mio.read(tmp_path / "all.nii")


def test_missing_empty_unreadable(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        mio.read(tmp_path / "nope.nii.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty"):
        mio.read(tmp_path / "empty")
    (tmp_path / "note.txt").write_text("not an image")
    with pytest.raises(InputError, match="unknown image format"):
        mio.read(tmp_path / "note.txt")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root reads any file; permissions cannot be tested")
def test_unreadable_file(tmp_path):
    p = tmp_path / "locked.nii"
    _good_nii(p)
    p.chmod(0)
    try:
        with pytest.raises(InputError):
            mio.read(p)
    finally:
        p.chmod(0o644)


# --------------------------------------------------------------------- atomic writes


def test_existing_output_kept_unless_overwrite(tmp_path):
    vol = Volume(np.zeros((3, 3, 3), np.float32), np.eye(4))
    out = tmp_path / "o.nii.gz"
    write_over_existing(vol, out, match="overwrite")
    np.testing.assert_array_equal(nib.load(out).get_fdata(), 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.nii.gz"]  # no temp leftovers


def test_input_is_never_the_output(tmp_path):
    src = tmp_path / "in.nii"
    _good_nii(src)
    before = src.read_bytes()
    vol = mio.read(src)
    with pytest.raises(OutputError, match="input"):
        mio.write(vol, src, overwrite=True)
    with pytest.raises(OutputError, match="input"):
        mio.write(Volume(vol.data, vol.affine), src, overwrite=True, inputs=[src])
    assert src.read_bytes() == before


def test_failed_write_leaves_nothing(tmp_path):
    vol = Volume(np.zeros((3, 3, 2), np.float32), np.eye(4))
    with pytest.raises(UserError):
        mio.write(vol, tmp_path / "x.png", dtype="uint8")  # 2 slices cannot be one picture
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OutputError, match="does not exist"):
        mio.write(vol, tmp_path / "no" / "x.nii.gz")


def test_description_and_version_options(tmp_path):
    vol = Volume(np.zeros((3, 3, 3), np.float32), np.eye(4))
    img = nib.load(mio.write(vol, tmp_path / "d.nii", nifti_version=2, description="medsr x2"))
    assert isinstance(img, nib.Nifti2Image)
    assert img.header["descrip"].item().startswith(b"medsr x2")


# --------------------------------------------------------------------- format helpers


def test_detect_format(tmp_path):
    _good_nii(tmp_path / "a.nii")
    (tmp_path / "noext").write_bytes((tmp_path / "a.nii").read_bytes())
    assert mio.detect_format(tmp_path / "a.nii") == "nifti"
    assert mio.detect_format(tmp_path / "noext") == "nifti"
    assert mio.detect_format(NIB_DATA / "example4d.nii.gz") == "nifti"
    assert mio.detect_format(NIB_DATA / "test.mgz") == "mgh"
    frames = tmp_path / "frames"
    frames.mkdir()
    for name in ("f1.png", "f2.png"):
        (frames / name).write_bytes(b"")
    assert mio.detect_format(frames) == "frames"
    (frames / "notes.txt").write_text("frame rate 25")
    assert mio.detect_format(frames) == "frames"
    (frames / "f3.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="mixes"):
        mio.detect_format(frames)
    dicom = tmp_path / "dicom"
    dicom.mkdir()
    (dicom / "thumb.png").write_bytes(b"")
    (dicom / "IM0001").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    assert mio.detect_format(dicom) == "dicom"
    (tmp_path / "x.xyz").write_bytes(b"hello world")
    with pytest.raises(InputError, match="unknown"):
        mio.detect_format(tmp_path / "x.xyz")


def test_output_format_and_default_path(tmp_path):
    assert mio.output_format("a/b.nii.gz", "dicom") == "nifti"
    assert mio.output_format("b.NII", None) == "nifti"
    assert mio.output_format("b.mgz", "nifti") == "mgh"
    assert mio.output_format("b.tiff", "nifti") == "tiff"
    assert mio.output_format("b.jpg", "image") == "image"
    assert mio.output_format("outdir", "dicom") == "dicom"
    assert mio.output_format("outdir", "frames") == "frames"
    with pytest.raises(UserError, match=r"\.nii\.gz"):
        mio.output_format("outdir", "nifti")
    with pytest.raises(UserError, match="suffix"):
        mio.output_format("out.xyz", "nifti")
    assert mio.default_output_path("d/scan.nii", "nifti") == Path("d/scan_sr.nii.gz")
    assert mio.default_output_path("d/scan.nii.gz", "nifti") == Path("d/scan_sr.nii.gz")
    assert mio.default_output_path("d/brain.mgz", "mgh") == Path("d/brain_sr.mgz")
    assert mio.default_output_path("d/stack.ome.tif", "tiff") == Path("d/stack_sr.tif")
    assert mio.default_output_path("d/pic.jpg", "image") == Path("d/pic_sr.png")
    series = tmp_path / "series"
    series.mkdir()
    assert mio.default_output_path(series, "dicom") == tmp_path / "series_sr"
    assert mio.default_output_path(str(series) + "/", "frames") == tmp_path / "series_sr"


def test_write_warns_nothing_for_clean_float(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mio.write(Volume(np.ones((2, 2, 2), np.float32), np.eye(4)), tmp_path / "c.nii")
