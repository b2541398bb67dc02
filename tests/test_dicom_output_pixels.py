"""Issue 20 item 3: a derived DICOM series keeps the source's pixel representation and
rescale unless --dtype asks otherwise, extends SeriesDescription, and outputs of
non-negative inputs stay non-negative (every format) unless --keep-overshoot.

Series are made by tests/dicom_fixtures.py and read back with pydicom and SimpleITK."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).parent / "robustness"))
import robust_helpers as h  # noqa: E402

from medsr.cli import main  # noqa: E402
from medsr.interpolate import resize  # noqa: E402
from medsr.io.dicom import read_dicom, write_dicom_series  # noqa: E402
from medsr.io.dicom.header import series_description  # noqa: E402

fx = h.fx
X2 = ("--scale", "1,1,2", "--method", "cubic")
BIG = 40000  # one voxel above the int16 range


def _uint16_series(directory: Path) -> np.ndarray:
    """A non-negative uint16 series (PixelRepresentation 0, slope 1, intercept 0) with
    one voxel of 40000; returns its (I, J, K) values."""
    case = fx.oblique_case((10, 8, 5))
    values = np.random.default_rng(1).integers(0, 3000, size=(10, 8, 5)).astype(np.int64)
    values[4, 3, 2] = BIG
    # the uint16 bit patterns go through the fixture's int16 writer unchanged
    fx.write_series(directory, values.astype(np.uint16).view(np.int16), case["A_lps"])
    for f in directory.iterdir():
        ds = pydicom.dcmread(f)
        ds.PixelRepresentation = 0
        ds.save_as(f, enforce_file_format=True)
    return values


@pytest.fixture(scope="module")
def u16(tmp_path_factory):
    root = tmp_path_factory.mktemp("u16")
    values = _uint16_series(root / "src")
    expect = resize(values.astype(np.float32), (1, 1, 2), "cubic")
    return {"dir": root / "src", "root": root, "values": values, "cubic": expect}


def _series(directory: Path) -> tuple[list[pydicom.Dataset], np.ndarray]:
    """The files by InstanceNumber and the stored pixels as (I, J, K)."""
    dss = sorted((pydicom.dcmread(f) for f in directory.iterdir()),
                 key=lambda d: int(d.InstanceNumber))
    return dss, np.stack([d.pixel_array.T for d in dss], axis=2)


def _sitk_values(directory: Path) -> np.ndarray:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(directory)))
    return sitk.GetArrayFromImage(reader.Execute()).transpose(2, 1, 0)


def test_uint16_series_stays_uint16_slope_1(u16, capsys):
    out = u16["root"] / "plain"
    assert main(["infer", str(u16["dir"]), "-o", str(out), *X2]) == 0
    err = capsys.readouterr().err
    dss, stored = _series(out)
    for d in dss:
        assert (d.PixelRepresentation, d.BitsAllocated, d.BitsStored, d.HighBit) == \
            (0, 16, 16, 15)
        assert (str(d.RescaleSlope), str(d.RescaleIntercept)) == ("1", "0")
        assert d.SeriesDescription == "synthetic oblique SR medsr"
    assert stored.dtype == np.uint16
    # the cubic of the values, clipped at 0 (the input is non-negative), rounded
    expect = np.clip(u16["cubic"], 0, None)
    np.testing.assert_allclose(stored, expect, atol=0.5 + 1e-3)
    assert stored.max() == pytest.approx(u16["cubic"].max(), abs=0.5)
    back = _sitk_values(out)
    assert back.min() >= 0 and back.max() <= 65535
    np.testing.assert_array_equal(back, stored)
    n_neg = int(np.count_nonzero(u16["cubic"] < 0))
    assert n_neg > 0  # the cubic B-spline overshoots below 0 on this data
    assert f"clipped {n_neg:,} voxels (" in err and "--keep-overshoot keeps them" in err


def test_ct_series_keeps_intercept_minus_1024(tmp_path, capsys):
    case = fx.oblique_case((10, 8, 5))
    stored_in = np.random.default_rng(2).integers(0, 3000, size=(10, 8, 5)).astype(np.int16)
    fx.write_series(tmp_path / "ct", stored_in, case["A_lps"], slope=1, intercept=-1024)
    out = tmp_path / "ct_sr"
    assert main(["infer", str(tmp_path / "ct"), "-o", str(out), *X2]) == 0
    assert "clipped" not in capsys.readouterr().err  # the values reach -1024: no clip at 0
    dss, stored = _series(out)
    assert {(str(d.RescaleSlope), str(d.RescaleIntercept)) for d in dss} == {("1", "-1024")}
    assert {(d.PixelRepresentation, d.BitsStored) for d in dss} == {(1, 16)}
    expect = resize(stored_in.astype(np.float32) - 1024, (1, 1, 2), "cubic")
    np.testing.assert_allclose(stored.astype(float) - 1024, expect, atol=0.5 + 1e-3)
    np.testing.assert_allclose(_sitk_values(out), stored.astype(float) - 1024)


def _cli(capsys, *args: str | Path) -> subprocess.CompletedProcess:
    """The CLI in-process (faster than h.medsr's subprocess), as a CompletedProcess."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    cap = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, cap.out, cap.err)


def test_dtype_int16_on_uint16_series_clips_and_counts(u16, capsys):
    out = u16["root"] / "as_int16"
    proc = _cli(capsys, "infer", u16["dir"], "-o", out, *X2, "--dtype", "int16")
    assert proc.returncode == 0, proc.stderr
    n_over = int(np.count_nonzero(np.rint(u16["cubic"]) > 32767))
    assert n_over > 0
    assert re.search(rf"medsr: warning: {n_over} voxels outside the DICOM 16-bit signed "
                     r"pixel .* were clipped", proc.stderr), proc.stderr
    dss, stored = _series(out)
    assert {(d.PixelRepresentation, str(d.RescaleSlope), str(d.RescaleIntercept))
            for d in dss} == {(1, "1", "0")}
    assert stored.dtype == np.int16 and stored.min() >= 0 and stored.max() == 32767


def test_dtype_float32_stores_a_rescale_that_keeps_precision(u16, capsys):
    out = u16["root"] / "as_float"
    assert main(["infer", str(u16["dir"]), "-o", str(out), *X2, "--dtype", "float32"]) == 0
    capsys.readouterr()
    dss, stored = _series(out)
    slope, inter = float(dss[0].RescaleSlope), float(dss[0].RescaleIntercept)
    assert {(d.BitsAllocated, d.PixelRepresentation) for d in dss} == {(16, 1)}
    assert slope != 1.0 and slope < 1.0  # sub-integer steps: the cubic's fractions kept
    back = stored * slope + inter
    np.testing.assert_allclose(back, np.clip(u16["cubic"], 0, None), atol=0.5 * slope + 1e-3)
    np.testing.assert_allclose(_sitk_values(out), back, rtol=1e-6, atol=0.01)


def test_float_dtype_keeps_what_the_source_encoding_would_clip(tmp_path):
    """write_dicom_series(dtype='float32') fits the rescale to the values: nothing clipped."""
    case = fx.oblique_case((6, 5, 3))
    fx.write_series(tmp_path / "src", case["stored"], case["A_lps"], slope=0.5,
                    intercept=-100)
    vol = read_dicom(tmp_path / "src")
    data = vol.data.astype(np.float32)
    data[0, 0, 0] = 70000.5
    out = write_dicom_series(vol.with_data(data), tmp_path / "out", dtype="float32")
    dss, stored = _series(out)
    back = stored * float(dss[0].RescaleSlope) + float(dss[0].RescaleIntercept)
    assert back[0, 0, 0] == pytest.approx(70000.5, abs=float(dss[0].RescaleSlope))


def test_dtype_dicom_cannot_store_is_one_line_error(u16, capsys):
    out = u16["root"] / "as_int32"
    proc = _cli(capsys, "infer", u16["dir"], "-o", out, *X2, "--dtype", "int32")
    h.assert_one_line_error(proc, match="DICOM output stores uint8, int8, uint16 or int16")
    assert not out.exists() and not h.stray_temporaries(u16["root"])


def test_series_description_extended_within_64_characters():
    assert series_description("AX T1 post") == "AX T1 post SR medsr"
    long = "a very long protocol name " * 4
    d = series_description(long)
    assert len(d) <= 64 and d.endswith(" SR medsr") and long.startswith(d[:-9])
    assert series_description("") == "medsr super-resolution"


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    """A non-negative NIfTI with a sharp edge (0 | 1000): Lanczos overshoots below 0."""
    root = tmp_path_factory.mktemp("edge")
    data = np.zeros((12, 10, 6), np.float32)
    data[6:, :, :] = 1000.0
    data[:, :, 3:] += 500.0 * (np.arange(10) % 2)[None, :, None]
    src = h.nifti(root / "edge.nii.gz", data)
    expect = resize(data, (2, 1, 3), "lanczos")
    return {"root": root, "src": src, "lanczos": expect}


def test_nonnegative_nifti_output_clipped_at_0_and_counted(edge, capsys):
    out = edge["root"] / "clipped.nii.gz"
    assert main(["infer", str(edge["src"]), "-o", str(out), "--scale", "2,1,3",
                 "--method", "lanczos"]) == 0
    err = capsys.readouterr().err
    got = np.asarray(nib.load(out).dataobj)
    n_neg = int(np.count_nonzero(edge["lanczos"] < 0))
    assert n_neg > 0 and got.min() >= 0
    pct = f"{100.0 * n_neg / got.size:.3g}%"
    assert f"note: clipped {n_neg:,} voxels ({pct}) below 0 to 0" in err, err
    np.testing.assert_allclose(got, np.clip(edge["lanczos"], 0, None), atol=1e-3)


def test_keep_overshoot_keeps_the_negatives(edge, capsys):
    out = edge["root"] / "kept.nii.gz"
    assert main(["infer", str(edge["src"]), "-o", str(out), "--scale", "2,1,3",
                 "--method", "lanczos", "--keep-overshoot"]) == 0
    assert "clipped" not in capsys.readouterr().err
    got = np.asarray(nib.load(out).dataobj)
    assert got.min() < 0
    np.testing.assert_allclose(got, edge["lanczos"], atol=1e-3)
