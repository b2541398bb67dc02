"""TIFF stacks, 2D pictures, frame folders and the read/write dispatch of medsr.io.

Every file is real: made or read back by tifffile and Pillow (independent of medsr).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from io_checks import write_over_existing
from PIL import Image

from medsr import io as mio
from medsr.errors import InputError, OutputError, UserError
from medsr.volume import Volume


def _stack(rng, shape, dtype) -> np.ndarray:
    if np.dtype(dtype).kind == "f":
        return rng.normal(100, 30, shape).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


def _imagej_spacing(path: Path) -> tuple[float, float, float, str | None]:
    """(dy, dx, dz, unit) as tifffile reads them from an ImageJ file."""
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej
        page = tif.pages.first
        xn, xd = page.tags["XResolution"].value
        yn, yd = page.tags["YResolution"].value
        md = tif.imagej_metadata
        return yd / yn, xd / xn, md.get("spacing"), md.get("unit")


# --------------------------------------------------------------------------- TIFF


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_tiff_zyx_imagej_roundtrip_keeps_data_spacing_dtype(tmp_path, rng, dtype):
    arr = _stack(rng, (5, 7, 9), dtype)  # Z, Y, X
    src = tmp_path / "stack.tif"
    tifffile.imwrite(src, arr, imagej=True, resolution=(1 / 0.25, 1 / 0.5),
                     metadata={"spacing": 2.0, "unit": "um", "axes": "ZYX"})
    vol = mio.read(src)
    assert vol.data.shape == (7, 9, 5)  # (Y, X, Z): i = row, j = column, k = z
    np.testing.assert_array_equal(vol.data, arr.transpose(1, 2, 0))
    np.testing.assert_allclose(vol.affine, np.diag([0.5, 0.25, 2.0, 1.0]))
    assert vol.meta["unit"] == "um" and vol.meta["dtype"] == dtype

    out = mio.write(vol, tmp_path / "out.tif")
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].axes == "ZYX"
        back = tif.series[0].asarray()
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, arr)
    dy, dx, dz, unit = _imagej_spacing(out)
    np.testing.assert_allclose([dy, dx, dz], [0.5, 0.25, 2.0], rtol=1e-6)
    assert unit in ("um", "micron", "\u00b5m")


def test_tiff_zcyx_and_tzcyx_axes_fold_into_channels_and_are_restored(tmp_path, rng):
    zcyx = _stack(rng, (4, 2, 6, 5), "uint16")
    tifffile.imwrite(tmp_path / "zc.tif", zcyx, imagej=True, metadata={"axes": "ZCYX"})
    vol = mio.read(tmp_path / "zc.tif")
    assert vol.data.shape == (6, 5, 4, 2)
    assert vol.data[3, 1, 2, 1] == zcyx[2, 1, 3, 1]
    mio.write(vol, tmp_path / "zc_out.tif")
    with tifffile.TiffFile(tmp_path / "zc_out.tif") as tif:
        assert tif.series[0].axes == "ZCYX"
        np.testing.assert_array_equal(tif.series[0].asarray(), zcyx)

    tzcyx = _stack(rng, (3, 4, 2, 6, 5), "float32")
    tifffile.imwrite(tmp_path / "t.tif", tzcyx, imagej=True,
                     resolution=(1 / 0.1, 1 / 0.1), metadata={"axes": "TZCYX", "spacing": 0.3})
    vol = mio.read(tmp_path / "t.tif")
    assert vol.data.shape == (6, 5, 4, 6)  # channels = T * C in file order
    assert vol.data[5, 4, 3, 1 * 2 + 1] == tzcyx[1, 3, 1, 5, 4]
    mio.write(vol, tmp_path / "t_out.tif")
    with tifffile.TiffFile(tmp_path / "t_out.tif") as tif:
        assert tif.series[0].axes == "TZCYX"
        np.testing.assert_array_equal(tif.series[0].asarray(), tzcyx)
    np.testing.assert_allclose(_imagej_spacing(tmp_path / "t_out.tif")[:3], [0.1, 0.1, 0.3])

    one = mio.read(tmp_path / "t.tif", volume=2)  # --volume picks a time point
    np.testing.assert_array_equal(one.data, tzcyx[2].transpose(2, 3, 0, 1))
    with pytest.raises(UserError, match="out of range"):
        mio.read(tmp_path / "t.tif", volume=3)


def test_tiff_upsampled_volume_writes_new_shape_and_spacing(tmp_path, rng):
    zcyx = _stack(rng, (3, 2, 4, 4), "uint16")
    tifffile.imwrite(tmp_path / "in.tif", zcyx, imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "ZCYX", "spacing": 1.5, "unit": "um"})
    vol = mio.read(tmp_path / "in.tif")
    up = np.repeat(vol.data, 3, axis=2)  # 3x along z, channels unchanged
    affine = vol.affine @ np.diag([1, 1, 1 / 3, 1])
    mio.write(vol.with_data(up, affine=affine), tmp_path / "up.tif")
    with tifffile.TiffFile(tmp_path / "up.tif") as tif:
        assert tif.series[0].axes == "ZCYX" and tif.series[0].shape == (9, 2, 4, 4)
    np.testing.assert_allclose(_imagej_spacing(tmp_path / "up.tif")[:3], [0.5, 0.5, 0.5])


def test_ome_tiff_physical_size_read_and_int16_written_as_ome(tmp_path, rng):
    arr = _stack(rng, (3, 5, 6), "uint16").astype(np.int16)
    tifffile.imwrite(tmp_path / "a.ome.tif", arr,
                     metadata={"axes": "ZYX", "PhysicalSizeX": 0.3, "PhysicalSizeY": 0.4,
                               "PhysicalSizeZ": 1.5})
    vol = mio.read(tmp_path / "a.ome.tif")
    np.testing.assert_allclose(vol.spacing, [0.4, 0.3, 1.5])
    assert vol.meta["unit"] == "um" and vol.data.dtype == np.int16
    mio.write(vol, tmp_path / "b.tif")  # int16 is not an ImageJ type: OME-TIFF keeps it
    with tifffile.TiffFile(tmp_path / "b.tif") as tif:
        assert tif.is_ome and tif.series[0].dtype == np.int16
        np.testing.assert_array_equal(tif.series[0].asarray(), arr)
        pixels = tifffile.xml2dict(tif.ome_metadata)["OME"]["Image"]["Pixels"]
    np.testing.assert_allclose([pixels["PhysicalSizeY"], pixels["PhysicalSizeX"],
                                pixels["PhysicalSizeZ"]], [0.4, 0.3, 1.5])


def test_plain_multipage_tiff_is_a_z_stack_and_input_spacing_overrides(tmp_path, rng):
    pages = _stack(rng, (3, 4, 5), "uint8")
    for page in pages:
        tifffile.imwrite(tmp_path / "m.tif", page, append=True, metadata=None)
    vol = mio.read(tmp_path / "m.tif")
    np.testing.assert_array_equal(vol.data, pages.transpose(1, 2, 0))
    np.testing.assert_allclose(vol.spacing, [1, 1, 1])
    vol = mio.read(tmp_path / "m.tif", input_spacing=(0.2, 0.3, 2.0))  # (i, j, k) = (y, x, z)
    np.testing.assert_allclose(vol.affine, np.diag([0.2, 0.3, 2.0, 1.0]))
    with pytest.raises(UserError):
        mio.read(tmp_path / "m.tif", input_spacing=(1.0, -2.0, 1.0))


def test_imagej_rgb_stack_roundtrip(tmp_path, rng):
    rgb = _stack(rng, (3, 5, 6, 3), "uint8")
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, imagej=True, metadata={"axes": "ZYXS"})
    vol = mio.read(tmp_path / "rgb.tif")
    assert vol.data.shape == (5, 6, 3, 3)
    mio.write(vol, tmp_path / "rgb_out.tif")
    with tifffile.TiffFile(tmp_path / "rgb_out.tif") as tif:
        assert tif.series[0].axes == "ZYXS"
        np.testing.assert_array_equal(tif.series[0].asarray(), rgb)


def test_tiff_nan_handling_and_corrupt_file(tmp_path):
    arr = np.ones((2, 3, 4), np.float32)
    arr[0, 1, 2] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", arr, photometric="minisblack")
    with pytest.warns(UserWarning, match="NaN"):
        vol = mio.read(tmp_path / "nan.tif")
    assert vol.data[1, 2, 0] == 0 and np.isfinite(vol.data).all()
    tifffile.imwrite(tmp_path / "allnan.tif", np.full((2, 3, 4), np.nan, np.float32),
                     photometric="minisblack")
    with pytest.raises(InputError, match="NaN"):
        mio.read(tmp_path / "allnan.tif")
    (tmp_path / "bad.tif").write_bytes(b"II*\x00" + bytes(range(200)))
    with pytest.raises(InputError):
        mio.read(tmp_path / "bad.tif")


# --------------------------------------------------------------------- 2D images


@pytest.mark.parametrize("mode, dtype, channels", [("L", np.uint8, 1), ("I;16", np.uint16, 1),
                                                   ("RGB", np.uint8, 3), ("RGBA", np.uint8, 4),
                                                   ("LA", np.uint8, 2)])
def test_png_roundtrip_keeps_bits_and_colour(tmp_path, rng, mode, dtype, channels):
    shape = (7, 9) if channels == 1 else (7, 9, channels)
    arr = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    Image.fromarray(arr).save(tmp_path / "in.png")
    vol = mio.read(tmp_path / "in.png")
    expected_shape = (7, 9, 1) if channels == 1 else (7, 9, 1, channels)
    assert vol.data.shape == expected_shape and vol.data.dtype == dtype
    pillow = np.asarray(Image.open(tmp_path / "in.png"))
    np.testing.assert_array_equal(vol.data.reshape(shape), pillow)
    np.testing.assert_array_equal(vol.affine, np.eye(4))
    mio.write(vol, tmp_path / "out.png")
    with Image.open(tmp_path / "out.png") as img:
        assert img.mode == Image.open(tmp_path / "in.png").mode
        np.testing.assert_array_equal(np.asarray(img), arr)


def test_jpeg_read_and_write(tmp_path, rng):
    arr = np.clip(rng.normal(128, 20, (16, 16, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.jpg", quality=95)
    vol = mio.read(tmp_path / "a.jpg")
    np.testing.assert_array_equal(vol.data[:, :, 0], np.asarray(Image.open(tmp_path / "a.jpg")))
    mio.write(vol, tmp_path / "b.jpg")
    back = np.asarray(Image.open(tmp_path / "b.jpg")).astype(float)
    assert np.abs(back - vol.data[:, :, 0]).mean() < 3  # lossy, but the same picture


def test_png_from_float_needs_dtype_and_clips_never_wraps(tmp_path):
    data = np.array([[-5.0, 10.4], [255.6, 300.0]], np.float32)[:, :, None]
    vol = Volume(data, np.eye(4), {"dtype": "float32"})
    with pytest.raises(UserError, match="--dtype"):
        mio.write(vol, tmp_path / "f.png")
    assert not (tmp_path / "f.png").exists()
    assert not any(p.name.startswith(".medsr-tmp") for p in tmp_path.iterdir())
    with pytest.warns(UserWarning, match="clipped"):
        mio.write(vol, tmp_path / "f.png", dtype="uint8")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "f.png")),
                                  [[0, 10], [255, 255]])
    with pytest.raises(UserError, match="slices"):
        mio.write(Volume(np.zeros((4, 4, 3), np.uint8), np.eye(4)), tmp_path / "v.png")


def test_unreadable_picture_is_input_error(tmp_path):
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(InputError):
        mio.read(tmp_path / "x.png")


# ------------------------------------------------------------------- frames


def _frames(folder: Path, rng, n: int, ext: str = ".png", colour: bool = True) -> list:
    folder.mkdir()
    arrays = []
    for i in reversed(range(1, n + 1)):  # created out of order on purpose
        shape = (6, 8, 3) if colour else (6, 8)
        a = rng.integers(0, 255, shape, endpoint=True).astype(np.uint8)
        Image.fromarray(a).save(folder / f"frame{i}{ext}")
        arrays.insert(0, a)
    (folder / "notes.txt").write_text("not a frame")
    return arrays


def test_frames_folder_natural_order_and_roundtrip(tmp_path, rng):
    arrays = _frames(tmp_path / "clip", rng, 11)
    assert mio.detect_format(tmp_path / "clip") == "frames"
    vol = mio.read(tmp_path / "clip")
    names = vol.meta["frame_names"]
    assert names[:3] == ["frame1.png", "frame2.png", "frame3.png"] and names[-1] == "frame11.png"
    assert vol.data.shape == (6, 8, 11, 3)
    for k, a in enumerate(arrays):
        np.testing.assert_array_equal(vol.data[:, :, k], a)

    assert mio.output_format(tmp_path / "clip_sr", "frames") == "frames"
    out = mio.write(vol, tmp_path / "clip_sr")
    assert sorted(p.name for p in out.iterdir()) == sorted(names + [".medsr-output"])
    for k, name in enumerate(names):
        np.testing.assert_array_equal(np.asarray(Image.open(out / name)), arrays[k])

    doubled = vol.with_data(np.repeat(vol.data, 2, axis=2))  # new count: new names, in order
    out2 = mio.write(doubled, tmp_path / "clip_x2")
    written = sorted(p.name for p in out2.iterdir() if p.name != ".medsr-output")
    assert len(written) == 22 and written[0] == "frame_0000.png"
    np.testing.assert_array_equal(np.asarray(Image.open(out2 / "frame_0003.png")), arrays[1])
    with pytest.raises(OutputError, match="exists"):
        mio.write(doubled, out2)
    mio.write(vol, out2, overwrite=True)  # a directory output is replaced whole
    assert sorted(p.name for p in out2.glob("*.png")) == sorted(names)


def test_bad_frame_folders_are_input_errors(tmp_path, rng):
    _frames(tmp_path / "mixed", rng, 2)
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(tmp_path / "mixed" / "frame9.bmp")
    with pytest.raises(InputError, match="mix"):
        mio.read(tmp_path / "mixed")
    _frames(tmp_path / "sizes", rng, 2)
    Image.fromarray(np.zeros((5, 8, 3), np.uint8)).save(tmp_path / "sizes" / "frame3.png")
    with pytest.raises(InputError, match="frame3.png"):
        mio.read(tmp_path / "sizes")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty"):
        mio.read(tmp_path / "empty")
    with pytest.raises(InputError, match="does not exist"):
        mio.read(tmp_path / "missing.png")


# ------------------------------------------------------------------- dispatch


def test_overwrite_and_input_protection(tmp_path, rng):
    arr = rng.integers(0, 255, (5, 6), endpoint=True).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "in.png")
    vol = mio.read(tmp_path / "in.png")
    out = tmp_path / "out.png"
    write_over_existing(vol, out, match="exists")
    np.testing.assert_array_equal(np.asarray(Image.open(out)), arr)
    with pytest.raises(OutputError, match="input"):  # never the input, even with overwrite
        mio.write(vol, tmp_path / "in.png", overwrite=True)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "in.png")), arr)


def test_output_format_and_detection_by_content(tmp_path, rng):
    assert mio.output_format("a.nii.gz", "tiff") == "nifti"
    assert mio.output_format("a.TIF", "nifti") == "tiff"
    assert mio.output_format("out_dir", "dicom") == "dicom"
    with pytest.raises(UserError, match=".nii"):
        mio.output_format("out_dir", "tiff")
    with pytest.raises(UserError):
        mio.write(Volume(np.zeros((2, 2, 2), np.float32), np.eye(4)), tmp_path / "o.xyz")
    arr = rng.integers(0, 255, (4, 4), endpoint=True).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "noext", format="PNG")
    assert mio.detect_format(tmp_path / "noext") == "image"
    np.testing.assert_array_equal(mio.read(tmp_path / "noext").data[:, :, 0], arr)
    with pytest.raises(UserError, match="--series"):
        mio.read(tmp_path / "noext", series="1.2.3")
    (tmp_path / "random.bin").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(InputError, match="unknown|unrecognised"):
        mio.read(tmp_path / "random.bin")


def test_nifti_to_tiff_and_png_cross_format(tmp_path, rng):
    nib = pytest.importorskip("nibabel")
    data = rng.integers(0, 1000, (6, 5, 4)).astype(np.uint16)
    nib.save(nib.Nifti1Image(data, np.diag([0.7, 0.8, 2.5, 1])), tmp_path / "a.nii.gz")
    vol = mio.read(tmp_path / "a.nii.gz")
    mio.write(vol, tmp_path / "a.tif")
    with tifffile.TiffFile(tmp_path / "a.tif") as tif:
        np.testing.assert_array_equal(tif.series[0].asarray(), data.transpose(2, 0, 1))
    np.testing.assert_allclose(_imagej_spacing(tmp_path / "a.tif")[:3], [0.7, 0.8, 2.5],
                               rtol=1e-6)
    back = mio.read(tmp_path / "a.tif")
    np.testing.assert_allclose(back.spacing, [0.7, 0.8, 2.5], rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mio.write(vol.with_data(vol.data[:, :, :1]), tmp_path / "slice.png")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "slice.png")), data[:, :, 0])


def test_dicom_series_through_the_dispatch(tmp_path):
    pytest.importorskip("medsr.io.dicom")
    pydicom_data = pytest.importorskip("pydicom.data")
    sitk = pytest.importorskip("SimpleITK")
    src = Path(pydicom_data.get_testdata_file("MR_small.dcm"))
    vol = mio.read(src)
    assert vol.meta["format"] == "dicom"
    out = mio.write(vol, tmp_path / "mr_sr")  # no suffix + DICOM source -> a series
    assert out.is_dir() and len(list(out.iterdir())) == vol.data.shape[2]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(out)))
    img = reader.Execute()
    assert img.GetSize() == vol.spatial_shape
    with pytest.raises(OutputError, match="exists"):
        mio.write(vol, out)
