"""`medsr infer` end to end as a user runs it: real files in, real files out, read back by
independent readers (nibabel, SimpleITK, pydicom) in world coordinates."""

import subprocess
import sys

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_fixtures import oblique_case, write_series
from slice_simulation import thick_slices

from medsr import geometry
from medsr.cli import main
from medsr.selfsup import degrade_lines, load_fitted


def sitk_affine_ras(img: sitk.Image) -> np.ndarray:
    A = np.eye(4)
    A[:3, :3] = np.array(img.GetDirection()).reshape(3, 3) * np.array(img.GetSpacing())
    A[:3, 3] = img.GetOrigin()
    return geometry.lps_to_ras(A)


def world_ramp(A: np.ndarray, shape) -> np.ndarray:
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    xyz = idx @ A[:3, :3].T + A[:3, 3]
    return 3.0 * xyz[..., 0] - 2.0 * xyz[..., 1] + 0.5 * xyz[..., 2] + 100.0


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("method", ["linear", "cubic", "catmull-rom", "mitchell"])
def test_nifti_world_linear_volume_stays_linear(tmp_path, method, flip):
    A = np.eye(4)
    c, s = np.cos(0.4), np.sin(0.4)
    A[:3, :3] = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]) @ np.diag(
        [0.9, -1.1 if flip else 1.1, 4.0])
    A[:3, 3] = [12.0, -30.0, 5.0]
    shape = (8, 16, 16)
    src = tmp_path / "in.nii.gz"
    nib.save(nib.Nifti1Image(world_ramp(A, shape).astype(np.float32), A), src)
    out = tmp_path / "out.nii.gz"
    assert main(["infer", str(src), "-o", str(out), "--method", method]) == 0
    img = nib.load(out)
    k = np.array([0.9, 1.1, 4.0]) / 0.9  # isotropic at the finest spacing
    shape_out = geometry.output_shape(shape, k)
    Aout = geometry.upsampled_affine(A, k, shape, shape_out)
    assert img.shape == shape_out
    np.testing.assert_allclose(img.affine, Aout, atol=1e-4)
    np.testing.assert_allclose(sitk_affine_ras(sitk.ReadImage(str(out))), Aout, atol=1e-4)
    got = img.get_fdata()
    expect = world_ramp(Aout, shape_out)
    # away from the mirrored ends (the cubic prefilter feels the boundary, decaying 0.27^d)
    inner = (slice(None), slice(8, -8), slice(27, -27))
    np.testing.assert_allclose(got[inner], expect[inner], atol=2e-3)


def test_dicom_series_in_derived_series_out(tmp_path):
    case = oblique_case(shape=(12, 10, 6))
    src = tmp_path / "series"
    uids = write_series(src, case["stored"], case["A_lps"], slope=case["slope"],
                        intercept=case["intercept"], rng=case["rng"])
    before = sorted((p.name, p.read_bytes()) for p in src.iterdir())
    out = tmp_path / "series_sr"
    assert main(["infer", str(src), "-o", str(out), "--scale", "1,1,3", "--method", "cubic"]) == 0
    assert sorted((p.name, p.read_bytes()) for p in src.iterdir()) == before  # input untouched
    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(str(out))
    assert len(files) == 18
    reader.SetFileNames(files)
    img = reader.Execute()
    A_in_ras = geometry.lps_to_ras(case["A_lps"])
    np.testing.assert_allclose(sitk_affine_ras(img), geometry.upsampled_affine(A_in_ras, (1, 1, 3)),
                               atol=1e-3)
    dss = [pydicom.dcmread(f) for f in files]
    assert len({d.SeriesInstanceUID for d in dss}) == 1
    assert dss[0].SeriesInstanceUID != uids["series_uid"]
    assert len({d.SOPInstanceUID for d in dss}) == 18
    assert all(d.SOPInstanceUID == d.file_meta.MediaStorageSOPInstanceUID for d in dss)
    assert {d.StudyInstanceUID for d in dss} == {uids["study_uid"]}
    assert {d.FrameOfReferenceUID for d in dss} == {uids["frame_uid"]}
    assert all(list(d.ImageType[:2]) == ["DERIVED", "SECONDARY"] for d in dss)
    assert sorted(int(d.InstanceNumber) for d in dss) == list(range(1, 19))
    # intensities: the cubic of the rescaled values, within quantisation
    vals = sitk.GetArrayFromImage(img).transpose(2, 1, 0)
    from medsr.interpolate import resize

    expect = resize(case["values"].astype(np.float32), (1, 1, 3), "cubic")
    np.testing.assert_allclose(vals, expect, atol=0.51 * max(1.0, float(dss[0].RescaleSlope)))


def test_default_output_name_and_no_overwrite(tmp_path, capsys):
    A = np.diag([1.0, 1.0, 3.0, 1.0])
    src = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 5, 3), np.int16), A), src)
    assert main(["infer", str(src), "--method", "linear"]) == 0
    out = tmp_path / "scan_sr.nii.gz"
    assert nib.load(out).shape == (4, 5, 9)
    stamp = out.stat().st_mtime_ns
    assert main(["infer", str(src), "--method", "linear"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.stat().st_mtime_ns == stamp


def test_console_script_version_and_help():
    exe = [sys.executable, "-m", "medsr"]
    out = subprocess.run([*exe, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("medsr ")
    for cmd in ("infer", "degrade", "train", "eval", "models"):
        res = subprocess.run([*exe, cmd, "--help"], capture_output=True, text=True)
        assert res.returncode == 0 and "usage: medsr" in res.stdout, cmd


def test_self_supervised_from_the_command_line(tmp_path, capsys):
    rng = np.random.default_rng(3)
    A = np.diag([1.0, 1.0, 4.0, 1.0])
    A[:3, 3] = [5.0, -7.0, 11.0]
    data = (rng.random((24, 24, 6)) * 500).astype(np.int16)
    src = tmp_path / "thick.nii.gz"
    nib.save(nib.Nifti1Image(data, A), src)
    out = tmp_path / "ss.nii.gz"
    fit = tmp_path / "fit.safetensors"
    # fixed steps within a generous budget: the test must not depend on the machine's load
    assert main(["infer", str(src), "-o", str(out), "--self-supervised", "--budget", "10m",
                 "--steps", "40", "--save-model", str(fit), "--seed", "1"]) == 0
    img = nib.load(out)
    assert img.shape == (24, 24, 24)
    np.testing.assert_allclose(img.affine, geometry.upsampled_affine(A, (1, 1, 4)), atol=1e-5)
    err = capsys.readouterr().err
    assert "self-supervised" in err and "training steps" in err and fit.is_file()
    # the fitted model is reused on a scan acquired the same way, as the fitting run
    # applied it: its output re-acquires the scan's slices (to the int16 rounding)
    other = (rng.random((24, 24, 6)) * 500).astype(np.int16)
    nib.save(nib.Nifti1Image(other, A), tmp_path / "other.nii.gz")
    again = tmp_path / "again.nii.gz"
    # (--keep-overshoot: the clipping at 0 of a non-negative scan comes after the projection)
    assert main(["infer", str(tmp_path / "other.nii.gz"), "-o", str(again), "--model",
                 str(fit), "--keep-overshoot"]) == 0
    img = nib.load(again)
    assert img.shape == (24, 24, 24) and "saved fit" in capsys.readouterr().err
    np.testing.assert_allclose(img.affine, geometry.upsampled_affine(A, (1, 1, 4)), atol=1e-5)
    profile = np.asarray(load_fitted(fit)[1]["selfsup"]["slice_profile"])
    reacquired = degrade_lines(img.get_fdata().astype(np.float32), profile, 4, axis=2)
    assert np.abs(reacquired - other).max() <= 1.0
    assert main(["infer", str(src), "-o", str(tmp_path / "y.nii.gz"), "--model", str(fit),
                 "--scale", "2"]) == 2
    # a budget that set-up and inference alone do not fit in is refused, not overrun: one
    # line naming a budget that would do, and no output
    capsys.readouterr()
    assert main(["infer", str(src), "-o", str(tmp_path / "short.nii.gz"), "--self-supervised",
                 "--budget", "0.01s"]) == 2
    err = capsys.readouterr().err
    assert "budget is too short" in err and "give at least --budget" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "short.nii.gz").exists()
    # the self-supervised options are refused, not ignored, without --self-supervised
    capsys.readouterr()
    for extra in (["--slice-thickness", "5"], ["--save-model", str(tmp_path / "f2")],
                  ["--steps", "10"]):
        assert main(["infer", str(src), "-o", str(tmp_path / "z.nii.gz"), *extra]) == 2
        assert "--self-supervised" in capsys.readouterr().err
    assert not (tmp_path / "z.nii.gz").exists()
    # flags that do not combine are one-line user errors
    assert main(["infer", str(src), "-o", str(tmp_path / "x.nii.gz"), "--self-supervised",
                 "--scale", "2"]) == 2
    with pytest.raises(SystemExit) as bad_budget:  # an argparse error: usage line, exit 2
        main(["infer", str(src), "-o", str(tmp_path / "x.nii.gz"), "--self-supervised",
              "--budget", "0"])
    assert bad_budget.value.code == 2
    assert not (tmp_path / "x.nii.gz").exists()


def test_self_supervised_steps_and_seed_reproduce_bit_for_bit(tmp_path, capsys):
    """--steps N with --seed: two command-line runs write identical volumes (nothing
    depends on the clock); another seed writes a different one."""
    rng = np.random.default_rng(8)
    A = np.diag([1.0, 1.0, 4.0, 1.0])
    src = tmp_path / "thick.nii.gz"
    nib.save(nib.Nifti1Image((rng.random((20, 20, 5)) * 800).astype(np.float32), A), src)
    outs = {}
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        out = tmp_path / f"{name}.nii.gz"
        assert main(["infer", str(src), "-o", str(out), "--self-supervised", "--steps", "12",
                     "--seed", seed, "--budget", "10m"]) == 0
        assert "12 training steps" in capsys.readouterr().err
        outs[name] = nib.load(out).get_fdata()
    assert outs["a"].shape == (20, 20, 20)
    np.testing.assert_array_equal(outs["a"], outs["b"])
    assert np.abs(outs["a"] - outs["c"]).max() > 1e-3


@pytest.mark.parametrize("profile", ["gaussian", "rect"])
def test_slice_profile_projects_the_output_onto_the_scans_slices(tmp_path, capsys, profile):
    """--slice-profile without --self-supervised: the output re-acquires the scan's slices
    under that profile, and is closer to the truth than without it."""
    import scipy.ndimage as ndi

    from medsr.metrics import psnr

    rng = np.random.default_rng(5)
    hr = ndi.gaussian_filter(rng.standard_normal((20, 18, 48)), 1.5) * 100 + 300
    lr = thick_slices(hr, 4, profile).astype(np.float32)
    A = np.diag([1.0, 1.0, 4.0, 1.0])
    src = tmp_path / "thick.nii.gz"
    nib.save(nib.Nifti1Image(lr, A), src)
    plain, proj = tmp_path / "plain.nii.gz", tmp_path / "proj.nii.gz"
    assert main(["infer", str(src), "-o", str(plain), "--method", "cubic"]) == 0
    assert main(["infer", str(src), "-o", str(proj), "--method", "cubic",
                 "--slice-profile", profile]) == 0
    assert "projected onto the scan's slices" in capsys.readouterr().err
    a, b = nib.load(plain).get_fdata(), nib.load(proj).get_fdata()
    assert b.shape == hr.shape
    np.testing.assert_allclose(nib.load(proj).affine, nib.load(plain).affine)
    assert np.abs(thick_slices(b, 4, profile) - lr).max() < 1e-2  # float32, 1e-4 ridge
    assert np.abs(thick_slices(a, 4, profile) - lr).max() > 0.1
    r = float(hr.max() - hr.min())
    assert psnr(hr, b, data_range=r) > psnr(hr, a, data_range=r) + 0.1
    # one-line errors: a plan that is not the thick axis alone, an unreadable profile
    for extra in (["--scale", "2"], ["--slice-profile", "box"]):
        args = ["infer", str(src), "-o", str(tmp_path / "bad.nii.gz"), "--method", "cubic",
                "--slice-profile", profile, *extra]
        assert main(args) == 2
    assert not (tmp_path / "bad.nii.gz").exists()


def test_self_supervised_takes_a_named_box_profile(tmp_path):
    """--self-supervised --slice-profile rect: the output re-acquires the scan's slices
    under the box profile (its projection used it), not under the Gaussian."""
    rng = np.random.default_rng(4)
    lr = (rng.random((16, 16, 6)) * 400).astype(np.float32)
    src = tmp_path / "thick.nii.gz"
    nib.save(nib.Nifti1Image(lr, np.diag([1.0, 1.0, 4.0, 1.0])), src)
    out = tmp_path / "ss.nii.gz"
    # --keep-overshoot: the clipping at 0 of a non-negative scan comes after the projection
    assert main(["infer", str(src), "-o", str(out), "--self-supervised", "--steps", "5",
                 "--slice-profile", "rect", "--keep-overshoot"]) == 0
    sr = nib.load(out).get_fdata()
    assert np.abs(thick_slices(sr, 4, "rect") - lr).max() < 1e-2
    assert np.abs(thick_slices(sr, 4, "gaussian") - lr).max() > 1.0
