"""DICOM reading and derived-series writing, checked against SimpleITK/GDCM, pydicom
read-back and a geometry built independently in tests/dicom_fixtures.py."""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from medsr.errors import InputError, OutputError
from medsr.geometry import ras_to_lps, upsampled_affine
from medsr.io.dicom import (
    encode_intensities,
    is_dicom_dir,
    is_dicom_file,
    read_dicom,
    write_dicom_series,
)
from medsr.volume import Volume

sys.path.insert(0, str(Path(__file__).parent))
import dicom_fixtures as fx  # noqa: E402

# ---------------------------------------------------------------------------- helpers


def sitk_affine(img: sitk.Image) -> np.ndarray:
    A = np.eye(4)
    A[:3, :3] = np.array(img.GetDirection()).reshape(3, 3) @ np.diag(img.GetSpacing())
    A[:3, 3] = img.GetOrigin()
    return A


def sitk_series(directory: Path) -> tuple[np.ndarray, np.ndarray]:
    """(LPS affine, (I, J, K) array) as SimpleITK/GDCM reads the series (GDCM sort)."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(directory)))
    img = reader.Execute()
    return sitk_affine(img), sitk.GetArrayFromImage(img).T


def flip_k_like(A: np.ndarray, data: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray,
                                                                          np.ndarray]:
    """The same grid with k reversed when its slice axis points against ``ref``'s."""
    if np.dot(A[:3, 2], ref[:3, 2]) >= 0:
        return A, data
    F = np.eye(4)
    F[2, 2], F[2, 3] = -1, data.shape[2] - 1
    return A @ F, data[:, :, ::-1]


@pytest.fixture(scope="module")
def oblique(tmp_path_factory):
    """The oblique series on disk plus its truth."""
    root = tmp_path_factory.mktemp("oblique")
    case = fx.oblique_case()
    info = fx.write_series(root / "src", case["stored"], case["A_lps"], slope=case["slope"],
                           intercept=case["intercept"], rng=case["rng"])
    return {**case, **info, "dir": root / "src", "root": root}


@pytest.fixture(scope="module")
def derived(oblique):
    """The oblique series read, upsampled x2 through-plane (A @ S) and written back."""
    vol = read_dicom(oblique["dir"])
    A2 = upsampled_affine(vol.affine, (1, 1, 2))
    rng = np.random.default_rng(3)
    I, J, K = vol.spatial_shape
    new = (rng.normal(300, 400, size=(I, J, 2 * K)) + 0.25).astype(np.float32)
    new[0, 0, 0] = 70000.5  # beyond the source's int16 at slope 0.5: clipped and counted
    with pytest.warns(UserWarning, match="^1 voxels outside the DICOM 16-bit signed"):
        out = write_dicom_series(vol.with_data(new, A2), oblique["root"] / "derived",
                                 inputs=[oblique["dir"]])
    return {"vol": vol, "A2": A2, "new": new, "out": out}


# ---------------------------------------------------------------------------- reading


def test_oblique_series_read_matches_truth_and_simpleitk(oblique):
    vol = read_dicom(oblique["dir"])
    assert vol.meta["format"] == "dicom"
    assert vol.spatial_shape == oblique["stored"].shape
    # scrambled InstanceNumbers and random names: order comes from positions only
    np.testing.assert_allclose(ras_to_lps(vol.affine), oblique["A_lps"], atol=1e-5)
    np.testing.assert_array_equal(vol.data, oblique["values"])  # slope 0.5, intercept -100
    assert vol.data.dtype == np.float32 and vol.meta["stored_dtype"] == "int16"
    A_s, arr_s = sitk_series(oblique["dir"])
    A_s, arr_s = flip_k_like(A_s, arr_s, oblique["A_lps"])
    np.testing.assert_allclose(ras_to_lps(vol.affine), A_s, atol=1e-4)
    np.testing.assert_allclose(vol.data, arr_s, atol=1e-4)
    d = vol.meta["dicom"]
    assert d["series_instance_uid"] == oblique["series_uid"]
    assert d["study_instance_uid"] == oblique["study_uid"]
    assert sorted(s[1] for s in d["sources"]) == sorted(oblique["sop_uids"])
    assert "PixelData" not in d["template"]


def test_integer_rescale_keeps_integer_dtype(tmp_path):
    case = fx.oblique_case((6, 5, 3))
    fx.write_series(tmp_path / "ct", case["stored"], case["A_lps"], slope=1, intercept=-1024)
    vol = read_dicom(tmp_path / "ct")
    assert vol.data.dtype == np.int16
    np.testing.assert_array_equal(vol.data, case["stored"].astype(np.int32) - 1024)


def test_is_dicom_helpers(oblique, tmp_path):
    assert is_dicom_dir(oblique["dir"])
    assert is_dicom_file(next(oblique["dir"].iterdir()))
    # a bare dataset without the 128-byte preamble still counts and reads
    bare = tmp_path / "bare.dcm"
    bare.write_bytes(Path(get_testdata_file("MR_small.dcm")).read_bytes()[132:])
    assert not bare.read_bytes().startswith(b"\0" * 128)
    assert is_dicom_file(bare)
    np.testing.assert_array_equal(read_dicom(bare).data,
                                  read_dicom(get_testdata_file("MR_small.dcm")).data)
    (tmp_path / "noise.dcm").write_bytes(np.random.default_rng(0).bytes(2000))
    assert not is_dicom_file(tmp_path / "noise.dcm")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "note.txt").write_text("not dicom")
    assert not is_dicom_dir(tmp_path / "plain")
    assert not is_dicom_file(tmp_path / "plain" / "note.txt")


COMPRESSED = ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm",
              "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_expb.dcm",
              "MR_small_padded.dcm"]


@pytest.mark.parametrize("name", COMPRESSED)
def test_pydicom_test_files_equal_uncompressed(name):
    ref = read_dicom(get_testdata_file("MR_small.dcm"))
    raw = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array
    np.testing.assert_array_equal(ref.data[:, :, 0], raw.T)  # (rows, cols) -> (i=col, j=row)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MR_small_padded: pydicom warns about its padding
        vol = read_dicom(get_testdata_file(name))
    assert vol.spatial_shape == (64, 64, 1)
    np.testing.assert_array_equal(vol.data, ref.data)
    np.testing.assert_allclose(vol.affine, ref.affine)


@pytest.mark.parametrize("name", ["MR_small.dcm", "CT_small.dcm"])
def test_single_files_match_simpleitk(name):
    path = get_testdata_file(name)
    vol = read_dicom(path)
    img = sitk.ReadImage(path)
    np.testing.assert_array_equal(vol.data, sitk.GetArrayFromImage(img).T)
    # SimpleITK puts 1 mm on a single slice's normal; the in-plane columns and origin agree
    np.testing.assert_allclose(ras_to_lps(vol.affine)[:3, [0, 1, 3]],
                               sitk_affine(img)[:3, [0, 1, 3]], atol=1e-4)


def test_enhanced_multiframe_matches_truth_and_simpleitk(oblique, tmp_path):
    dss = [pydicom.dcmread(f) for f in sorted(oblique["dir"].iterdir())]
    mf = hd.legacy.LegacyConvertedEnhancedMRImage(dss, generate_uid(), 99, generate_uid(), 1)
    path = tmp_path / "enhanced.dcm"
    mf.save_as(path)
    assert "PerFrameFunctionalGroupsSequence" in mf
    vol = read_dicom(path)
    np.testing.assert_allclose(ras_to_lps(vol.affine), oblique["A_lps"], atol=1e-5)
    np.testing.assert_array_equal(vol.data, oblique["values"])
    img = sitk.ReadImage(str(path))
    A_s, arr_s = flip_k_like(sitk_affine(img), sitk.GetArrayFromImage(img).T,
                             oblique["A_lps"])
    np.testing.assert_allclose(ras_to_lps(vol.affine), A_s, atol=1e-4)
    np.testing.assert_allclose(vol.data, arr_s, atol=1e-4)
    # the directory holding it reads the same, and it can be written as a classic series
    out = write_dicom_series(vol, tmp_path / "from_mf")
    A_w, arr_w = sitk_series(out)
    np.testing.assert_allclose(A_w, oblique["A_lps"], atol=1e-4)
    np.testing.assert_allclose(arr_w, oblique["values"], atol=0.05)
    first = min((pydicom.dcmread(f) for f in out.iterdir()), key=lambda d: d.InstanceNumber)
    assert first.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"  # classic MR image
    # the source frame referenced by the first slice sits where that slice sits
    frame = int(first.SourceImageSequence[0].ReferencedFrameNumber)
    pos = mf.PerFrameFunctionalGroupsSequence[frame - 1].PlanePositionSequence[0]
    np.testing.assert_allclose([float(v) for v in pos.ImagePositionPatient],
                               [float(v) for v in first.ImagePositionPatient], atol=1e-4)


# ---------------------------------------------------------------------------- writing


def test_derived_series_read_by_simpleitk(derived):
    A_s, arr_s = sitk_series(derived["out"])
    np.testing.assert_allclose(A_s, ras_to_lps(derived["A2"]), atol=1e-4)
    # the true A @ S: origin moved by (s_out - s_in) / 2 = -0.75 mm along the normal
    A_in = ras_to_lps(derived["vol"].affine)
    n = A_in[:3, 2] / np.linalg.norm(A_in[:3, 2])
    np.testing.assert_allclose(A_s[:3, 3], A_in[:3, 3] - 0.75 * n, atol=1e-4)
    assert arr_s.shape == derived["new"].shape


def test_derived_series_header_rules(oblique, derived):
    files = sorted(derived["out"].iterdir())
    new = derived["new"]
    assert len(files) == new.shape[2]
    dss = [pydicom.dcmread(f) for f in files]
    assert len({d.SeriesInstanceUID for d in dss}) == 1
    assert dss[0].SeriesInstanceUID != oblique["series_uid"]
    assert len({d.SOPInstanceUID for d in dss}) == len(dss)
    for d in dss:
        assert d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID
        assert d.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert d.StudyInstanceUID == oblique["study_uid"]
        assert d.FrameOfReferenceUID == oblique["frame_uid"]
        assert list(d.ImageType[:2]) == ["DERIVED", "SECONDARY"]
        assert d.DerivationDescription
        assert d.SeriesNumber == 1007
        assert all(item.ReferencedSOPInstanceUID in oblique["sop_uids"]
                   for item in d.SourceImageSequence)
        assert "WindowCenter" not in d and "WindowWidth" not in d
        assert (d.Rows, d.Columns) == (new.shape[1], new.shape[0])
        assert d.BitsStored == 16 and d.HighBit == 15
        for elem in d.iterall():
            if elem.VR == "DS":
                values = elem.value if elem.VM > 1 else [elem.value]
                assert all(len(str(v)) <= 16 for v in values), elem.keyword
    assert sorted(int(d.InstanceNumber) for d in dss) == list(range(1, len(dss) + 1))
    spacing = float(np.linalg.norm(derived["A2"][:3, 2]))
    assert float(dss[0].SpacingBetweenSlices) == pytest.approx(spacing, rel=1e-9)
    assert float(dss[0].SliceThickness) == pytest.approx(spacing, rel=1e-9)
    # the source's pixel encoding is kept (int16, slope 0.5, intercept -100): intensities
    # within its quantisation; the 70000.5 outlier is clipped to the top of its range
    assert all(d.PixelRepresentation == 1 and d.BitsAllocated == 16 for d in dss)
    assert {(float(d.RescaleSlope), float(d.RescaleIntercept)) for d in dss} == {(0.5, -100)}
    by_number = sorted(dss, key=lambda d: int(d.InstanceNumber))
    back = np.stack([d.pixel_array.T * float(d.RescaleSlope) + float(d.RescaleIntercept)
                     for d in by_number], axis=2)
    slope = float(dss[0].RescaleSlope)
    inside = np.ones(new.shape, bool)
    inside[0, 0, 0] = False
    assert np.abs(back - new)[inside].max() <= 0.5 * slope + 1e-3
    assert back[0, 0, 0] == 32767 * 0.5 - 100


def test_patient_modules_kept_without_anonymize(derived):
    d = pydicom.dcmread(next(derived["out"].iterdir()))
    assert str(d.PatientName) == fx.PATIENT_NAME and d.PatientID == fx.PATIENT_ID


def test_anonymized_series(oblique, tmp_path):
    vol = read_dicom(oblique["dir"])
    A2 = upsampled_affine(vol.affine, (1, 1, 2))
    data = np.repeat(vol.data, 2, axis=2)  # any array of the right shape
    out = write_dicom_series(vol.with_data(data, A2), tmp_path / "anon", anonymize=True)
    dss = [pydicom.dcmread(f) for f in sorted(out.iterdir())]
    raw = b"".join(f.read_bytes() for f in out.iterdir())
    for secret in (fx.PATIENT_NAME, fx.PATIENT_ID, fx.PATIENT_BIRTH, "St Elsewhere",
                   "Ehrlich", "ACC123", "private-secret", oblique["study_uid"],
                   oblique["frame_uid"], *oblique["sop_uids"]):
        assert secret.encode() not in raw, secret
    assert len({d.StudyInstanceUID for d in dss}) == 1
    assert len({d.FrameOfReferenceUID for d in dss}) == 1
    assert len({d.PatientID for d in dss}) == 1
    for d in dss:
        assert d.PatientIdentityRemoved == "YES" and d.DeidentificationMethod
        assert not any(e.tag.is_private for e in d.iterall())
    # the same source instance referenced by two output slices maps to the same new UID
    refs = [[i.ReferencedSOPInstanceUID for i in d.SourceImageSequence] for d in dss]
    assert refs[1] == refs[2]  # output k = 1, 2 sit at source k = 0.25, 0.75
    assert len({r for rs in refs for r in rs}) == len(oblique["sop_uids"])
    A_s, _ = sitk_series(out)
    np.testing.assert_allclose(A_s, ras_to_lps(A2), atol=1e-4)


def test_write_non_dicom_volume_with_flipped_slice_axis(tmp_path):
    """A NIfTI-like volume (no DICOM header, k against the normal) gets a fresh header
    and the same physical grid."""
    A = np.diag([-0.7, 0.8, -2.5, 1.0])  # RAS, the last axis flipped
    A[:3, 3] = [10, -20, 30]
    data = np.arange(4 * 5 * 3, dtype=np.int16).reshape(4, 5, 3) - 20
    out = write_dicom_series(Volume(data, A), tmp_path / "fresh")
    A_s, arr_s = sitk_series(out)
    A_s, arr_s = flip_k_like(A_s, arr_s, ras_to_lps(A))
    np.testing.assert_allclose(A_s, ras_to_lps(A), atol=1e-5)
    np.testing.assert_array_equal(arr_s, data)
    d = pydicom.dcmread(next(out.iterdir()))
    assert d.Modality == "MR" and d.StudyInstanceUID and d.FrameOfReferenceUID
    assert (float(d.RescaleSlope), float(d.RescaleIntercept)) == (1.0, 0.0)


def test_existing_output_kept_unless_overwrite(oblique, derived):
    before = sorted(p.name for p in derived["out"].iterdir())
    with pytest.raises(OutputError, match="--overwrite"):
        write_dicom_series(derived["vol"], derived["out"])
    assert sorted(p.name for p in derived["out"].iterdir()) == before
    with pytest.raises(OutputError, match="is the input"):
        write_dicom_series(derived["vol"], oblique["dir"], overwrite=True,
                           inputs=[oblique["dir"]])


def test_encode_intensities_never_clips():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1e6, 1000)
    stored, slope, inter = encode_intensities(x)
    assert len(slope) <= 16 and len(inter) <= 16
    back = stored * float(slope) + float(inter)
    assert np.abs(back - x).max() <= 0.5 * float(slope) * 1.001
    ints, s1, b1 = encode_intensities(np.array([0, 40000, 65535.0]))
    assert ints.dtype == np.uint16 and (s1, b1) == ("1", "0")


# ---------------------------------------------------------------------------- bad input


def _small(tmp_path, name, **kw):
    case = fx.oblique_case((6, 5, 5))
    return case, fx.write_series(tmp_path / name, case["stored"], case["A_lps"], **kw)


def test_mixed_series_lists_them_and_series_picks(tmp_path):
    case = fx.oblique_case((6, 5, 4))
    a = fx.write_series(tmp_path / "mixed", case["stored"], case["A_lps"], description="AX T1")
    b = fx.write_series(tmp_path / "mixed", case["stored"][:, :, :3], case["A_lps"],
                        study_uid=a["study_uid"], series_number=8, description="AX T2")
    with pytest.raises(InputError) as err:
        read_dicom(tmp_path / "mixed")
    msg = str(err.value)
    assert "\n" not in msg and "--series" in msg
    assert a["series_uid"] in msg and b["series_uid"] in msg
    assert "AX T1" in msg and "(4 slices)" in msg and "(3 slices)" in msg
    assert fx.PATIENT_NAME not in msg and fx.PATIENT_ID not in msg
    assert read_dicom(tmp_path / "mixed", series=b["series_uid"]).spatial_shape == (6, 5, 3)
    assert read_dicom(tmp_path / "mixed", series="7").spatial_shape == (6, 5, 4)
    with pytest.raises(InputError, match="no series 'nope'"):
        read_dicom(tmp_path / "mixed", series="nope")


def test_missing_slice_names_the_position(tmp_path):
    _small(tmp_path, "gap", ks=[0, 1, 3, 4])
    with pytest.raises(InputError, match=r"1 slice\(s\) missing at .* mm"):
        read_dicom(tmp_path / "gap")


def test_duplicate_position(tmp_path):
    _small(tmp_path, "dup", ks=[0, 1, 2, 2, 3])
    with pytest.raises(InputError, match="duplicate slice position"):
        read_dicom(tmp_path / "dup")


def test_empty_and_non_image_directories(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no DICOM image"):
        read_dicom(tmp_path / "empty")
    (tmp_path / "sr").mkdir()
    fx.write_non_image(tmp_path / "sr" / "report.dcm", generate_uid())
    with pytest.warns(UserWarning, match="without pixel data"), \
            pytest.raises(InputError, match="no DICOM image"):
        read_dicom(tmp_path / "sr")
    with pytest.raises(InputError, match="without pixel data"):
        read_dicom(tmp_path / "sr" / "report.dcm")


def test_non_image_and_non_dicom_files_are_skipped(tmp_path):
    case, info = _small(tmp_path, "series")
    fx.write_non_image(tmp_path / "series" / "sr.dcm", info["study_uid"])
    (tmp_path / "series" / "notes.txt").write_text("hello")
    with pytest.warns(UserWarning, match="skipped 1 DICOM object"):
        vol = read_dicom(tmp_path / "series")
    assert vol.spatial_shape == (6, 5, 5)


def test_corrupt_file(tmp_path):
    src = get_testdata_file("MR_small.dcm")
    data = Path(src).read_bytes()
    (tmp_path / "trunc.dcm").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="trunc.dcm"):
        read_dicom(tmp_path / "trunc.dcm")


def test_missing_decoder_names_the_package(tmp_path):
    """Remove every JPEG 2000 plugin from pydicom's decoder (pydicom's own plugin API),
    as if no decoder package were installed, then restore them."""
    from pydicom.pixels.decoders import JPEG2000LosslessDecoder as dec
    labels = list(dec.available_plugins) + list(dec._unavailable)
    for label in labels:
        dec.remove_plugin(label)
    try:
        with pytest.raises(InputError, match="pip install pylibjpeg pylibjpeg-openjpeg"):
            read_dicom(get_testdata_file("MR_small_jp2klossless.dcm"))
    finally:
        for label in labels:
            dec.add_plugin(label, (f"pydicom.pixels.decoders.{label}", "_decode_frame"))
    assert read_dicom(get_testdata_file("MR_small_jp2klossless.dcm")).spatial_shape[2] == 1


def test_paths_with_spaces_and_unicode(tmp_path):
    case, _ = _small(tmp_path, "série IRM 1")
    vol = read_dicom(tmp_path / "série IRM 1")
    out = write_dicom_series(vol, tmp_path / "sortie é")
    assert read_dicom(out).spatial_shape == vol.spatial_shape
    shutil.rmtree(out)
    assert not os.path.exists(out)


def test_uneven_spacing_refused(tmp_path):
    _small(tmp_path, "uneven", ks=[0, 1, 2, 3.4])
    with pytest.raises(InputError, match="uneven slice spacing"):
        read_dicom(tmp_path / "uneven")


def test_sheared_stack_keeps_measured_step(tmp_path):
    """Gantry tilt: positions step off the normal; the affine keeps the true step."""
    case = fx.oblique_case((6, 5, 4))
    A = case["A_lps"].copy()
    A[:3, 2] += 0.4 * A[:3, 1] / np.linalg.norm(A[:3, 1])  # 0.4 mm per slice along columns
    fx.write_series(tmp_path / "tilt", case["stored"], A, slope=0.5, intercept=-100)
    with pytest.warns(UserWarning, match="sheared"):
        vol = read_dicom(tmp_path / "tilt")
    np.testing.assert_allclose(ras_to_lps(vol.affine), A, atol=1e-5)
    np.testing.assert_array_equal(vol.data, case["values"])


@pytest.mark.parametrize("name", ["MR_small_implicit.dcm", "MR_small_bigendian.dcm",
                                  "CT_small.dcm"])
def test_rewrite_pydicom_files_as_explicit_little_endian(name, tmp_path):
    vol = read_dicom(get_testdata_file(name))
    out = write_dicom_series(vol, tmp_path / "out")
    (f,) = list(out.iterdir())
    img = sitk.ReadImage(str(f))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img).T, vol.data)
    np.testing.assert_allclose(sitk_affine(img)[:3, [0, 1, 3]],
                               ras_to_lps(vol.affine)[:3, [0, 1, 3]], atol=1e-4)
    d = pydicom.dcmread(f)
    assert d.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert d.Modality == pydicom.dcmread(get_testdata_file(name)).Modality


@pytest.mark.parametrize("name", ["SC_rgb_rle_2frame.dcm", "SC_rgb_rle_16bit_2frame.dcm"])
def test_rgb_multiframe_round_trip(name, tmp_path):
    with pytest.warns(UserWarning, match="no patient geometry"):
        vol = read_dicom(get_testdata_file(name))
    ref = pydicom.dcmread(get_testdata_file(name)).pixel_array  # (frames, rows, cols, 3)
    np.testing.assert_array_equal(vol.data, np.transpose(ref, (2, 1, 0, 3)))
    out = write_dicom_series(vol, tmp_path / "rgb")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        back = read_dicom(out)
    np.testing.assert_array_equal(back.data, vol.data)
    assert pydicom.dcmread(next(out.iterdir())).PhotometricInterpretation == "RGB"
