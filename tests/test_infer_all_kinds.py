"""`medsr infer` (the CLI, the one path users take) on every input kind it accepts: NIfTI,
DICOM, TIFF stack, PNG (RGB and grey), a frames folder and a video. Inputs are tiny files
written here with independent writers (nibabel, pydicom, tifffile, PIL, imageio); outputs
are read back with independent readers (nibabel, SimpleITK, pydicom, tifffile, PIL,
imageio) and checked against expectations computed here from the geometry convention of
docs/geometry.md (A_out = A_in @ S, S = [[diag(1/k), (1/k - 1)/2], [0, 1]]), never against
another medsr function. Every test also checks that the input bytes are unchanged.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import tifffile
from dicom_fixtures import rotation, truth_affine_lps, write_series
from PIL import Image

from medsr.cli import main

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])  # RAS <-> LPS (its own inverse)


# ---------------------------------------------------------------- helpers (no medsr code)

def snapshot(path: Path) -> dict[str, str]:
    """sha256 of every file at or below ``path`` (relative name -> digest)."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(f.relative_to(path.parent)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in files}


def infer(*argv: str) -> None:
    """``medsr infer ARGV`` in-process, as the console script runs it."""
    assert main(["infer", *map(str, argv)]) == 0


def S_matrix(k) -> np.ndarray:
    """docs/geometry.md: S = [[diag(1/k), (1/k - 1)/2], [0, 1]] (integer factors)."""
    k = np.asarray(k, dtype=float)
    S = np.eye(4)
    S[:3, :3] = np.diag(1.0 / k)
    S[:3, 3] = (1.0 / k - 1.0) / 2.0
    return S


def sitk_affine_lps(img: sitk.Image) -> np.ndarray:
    A = np.eye(4)
    A[:3, :3] = np.array(img.GetDirection()).reshape(3, 3) * np.array(img.GetSpacing())
    A[:3, 3] = img.GetOrigin()
    return A


def oblique_ras(spacing=(1.0, 1.0, 4.0)) -> np.ndarray:
    """An oblique, x-flipped RAS affine (rotations about z and x) with ``spacing``."""
    A = np.eye(4)
    A[:3, :3] = rotation(-12.0, 0.0, 25.0) @ np.diag([-spacing[0], spacing[1], spacing[2]])
    A[:3, 3] = [31.5, -17.25, 8.0]
    return A


# ---------------------------------------------------------------------------------- NIfTI

@pytest.mark.parametrize("oblique", [False, True], ids=["axis-aligned", "oblique"])
def test_nifti_thick_slices_become_isotropic(tmp_path, oblique):
    """16 x 16 x 4 at 1 x 1 x 4 mm -> 16 x 16 x 16 at 1 mm: shape and affine A @ S in
    nibabel and SimpleITK, voxel centres at input position (l + 0.5)/4 - 0.5 in world
    millimetres, a world-linear ramp interpolated linearly stays that ramp."""
    A = oblique_ras() if oblique else np.diag([1.0, 1.0, 4.0, 1.0])
    if not oblique:
        A[:3, 3] = [-7.5, -7.5, -6.0]
    i, j, k = np.meshgrid(np.arange(16), np.arange(16), np.arange(4), indexing="ij")
    xyz = np.stack([i, j, k, np.ones_like(i)], -1) @ A.T

    def ramp(p):  # a function of world position, positive everywhere here
        return 500.0 + 2.0 * p[..., 0] - 1.5 * p[..., 1] + 3.0 * p[..., 2]

    src = tmp_path / "thick.nii.gz"
    nib.save(nib.Nifti1Image(ramp(xyz).astype(np.float32), A), src)
    before = snapshot(src)
    out = tmp_path / "iso.nii.gz"
    # the default (auto: shipped x4 network) for the plain case, linear where values matter
    infer(src, "-o", out, *(["--method", "linear"] if oblique else []))
    assert snapshot(src) == before

    A_out = A @ S_matrix((1, 1, 4))
    img = nib.load(out)
    assert img.shape == (16, 16, 16)
    np.testing.assert_allclose(img.affine, A_out, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(img.affine[:3, :3], axis=0), [1, 1, 1], atol=1e-6)
    # world position of voxel centres: output (i, j, l) sits at input (i, j, (l+0.5)/4-0.5)
    ii, jj, ll = np.meshgrid([0, 7, 15], [0, 15], np.arange(16), indexing="ij")
    idx_out = np.stack([ii, jj, ll, np.ones_like(ii)], -1).reshape(-1, 4).astype(float)
    idx_in = idx_out.copy()
    idx_in[:, 2] = (idx_out[:, 2] + 0.5) / 4 - 0.5
    np.testing.assert_allclose(idx_out @ img.affine.T, idx_in @ A.T, atol=1e-4)
    # the field of view is kept: the outer faces of the slab are where they were
    for face_out, face_in in ((-0.5, -0.5), (15.5, 3.5)):
        np.testing.assert_allclose(img.affine @ [0, 0, face_out, 1], A @ [0, 0, face_in, 1],
                                   atol=1e-4)

    s = sitk.ReadImage(str(out))
    assert s.GetSize() == (16, 16, 16)
    np.testing.assert_allclose(s.GetSpacing(), (1, 1, 1), atol=1e-5)
    np.testing.assert_allclose(sitk_affine_lps(s), LPS @ A_out, atol=1e-4)
    np.testing.assert_allclose(sitk.GetArrayFromImage(s).transpose(2, 1, 0), img.get_fdata(),
                               atol=1e-4)

    got = img.get_fdata()
    assert np.all(np.isfinite(got))
    ii, jj, ll = np.meshgrid(np.arange(16), np.arange(16), np.arange(16), indexing="ij")
    expect = ramp(np.stack([ii, jj, ll, np.ones_like(ii)], -1) @ A_out.T)
    if oblique:  # linear interpolation reproduces the ramp between the outer slice centres
        np.testing.assert_allclose(got[:, :, 2:14], expect[:, :, 2:14], atol=1e-3)
    else:  # a network: plausible (within a few % of the ramp's range) away from the ends
        span = np.ptp(expect)
        assert np.abs(got[:, :, 2:14] - expect[:, :, 2:14]).mean() < 0.05 * span


# ---------------------------------------------------------------------------------- DICOM

def test_dicom_series_to_thin_derived_series(tmp_path):
    """An oblique 12 x 10 x 6 series at 0.8 x 0.9 x 3 mm, --scale 1,1,3: SimpleITK reads
    the output as 12 x 10 x 18 at 0.8 x 0.9 x 1 mm, origin moved 1 mm back along the
    normal, direction kept; pydicom sees one new series, InstanceNumber 1..18 and positions
    stepping 1 mm along the slice normal."""
    R = rotation(20, 20, 10)
    A_lps = truth_affine_lps(R, pixel_spacing=(0.9, 0.8), slice_spacing=3.0,
                             origin=(-40.5, 22.25, 13.0))
    # stored values: a ramp along the slices (what a linear interpolation must reproduce)
    stored = np.broadcast_to(100 * np.arange(6, dtype=np.int16) + 40, (12, 10, 6)).copy()
    stored[3:5, 4:6, :] += 7  # a small feature, so the series is not one value per slice
    src = tmp_path / "series"
    uids = write_series(src, stored, A_lps, slope=0.5, intercept=-100.0,
                        rng=np.random.default_rng(3))
    before = snapshot(src)
    out = tmp_path / "series_sr"
    infer(src, "-o", out, "--scale", "1,1,3", "--method", "linear")
    assert snapshot(src) == before

    A_out = A_lps @ S_matrix((1, 1, 3))
    normal = np.cross(R[:, 0], R[:, 1])
    np.testing.assert_allclose(A_out[:3, 3], np.array([-40.5, 22.25, 13.0]) - 1.0 * normal,
                               atol=1e-9)  # (1/3 - 1)/2 * 3 mm = -1 mm
    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(str(out))
    assert len(files) == 18
    reader.SetFileNames(files)
    img = reader.Execute()
    assert img.GetSize() == (12, 10, 18)
    np.testing.assert_allclose(img.GetSpacing(), (0.8, 0.9, 1.0), atol=1e-4)
    np.testing.assert_allclose(img.GetOrigin(), A_out[:3, 3], atol=1e-3)
    np.testing.assert_allclose(np.array(img.GetDirection()).reshape(3, 3), R, atol=1e-5)
    # values in the world (rescale applied): slice l at input slice (l + 0.5)/3 - 0.5
    vals = sitk.GetArrayFromImage(img).transpose(2, 1, 0).astype(float)
    pos = (np.arange(18) + 0.5) / 3 - 0.5
    inner = (pos >= 0) & (pos <= 5)
    expect = 0.5 * (100 * pos + 40) - 100.0
    np.testing.assert_allclose(vals[0, 0, inner], expect[inner], atol=0.51)

    dss = [pydicom.dcmread(f) for f in sorted(out.iterdir()) if f.name != ".medsr-output"]
    assert len(dss) == 18
    assert len({d.SeriesInstanceUID for d in dss}) == 1
    assert dss[0].SeriesInstanceUID != uids["series_uid"]
    assert len({d.SOPInstanceUID for d in dss}) == 18
    dss.sort(key=lambda d: int(d.InstanceNumber))
    assert [int(d.InstanceNumber) for d in dss] == list(range(1, 19))
    ipp = np.array([[float(v) for v in d.ImagePositionPatient] for d in dss])
    steps = np.diff(ipp, axis=0)
    sign = np.sign(steps[0] @ normal)
    np.testing.assert_allclose(steps, np.tile(sign * normal, (17, 1)), atol=1e-3)
    expected_ipp = A_out[:3, 3] + np.arange(18)[:, None] * normal
    np.testing.assert_allclose(ipp if sign > 0 else ipp[::-1], expected_ipp, atol=1e-3)
    for d in dss:
        np.testing.assert_allclose([float(v) for v in d.ImageOrientationPatient],
                                   np.concatenate([R[:, 0], R[:, 1]]), atol=1e-5)
        np.testing.assert_allclose([float(v) for v in d.PixelSpacing], [0.9, 0.8], atol=1e-5)
        assert (d.Rows, d.Columns) == (10, 12)


# ----------------------------------------------------------------------------- TIFF stack

def _write_imagej(path: Path, arr: np.ndarray, dxy: float, dz: float) -> None:
    tifffile.imwrite(path, arr, imagej=True, resolution=(1 / dxy, 1 / dxy),
                     metadata={"axes": "ZYX", "spacing": dz, "unit": "micron"})


@pytest.mark.parametrize("method", ["auto", "catmull-rom"])
def test_tiff_stack_becomes_z_isotropic(tmp_path, method):
    """ImageJ ZYX uint16, 0.25 um pixels, 1 um z step -> z x4 (default: no flags), the
    spacing and resolution tags say 0.25 um on every axis."""
    nz = 5
    arr = (1000 + 400 * np.arange(nz, dtype=float))[:, None, None] + np.zeros((nz, 10, 12))
    arr[:, 4:6, 5:8] += 2500  # a bright feature so the percentiles are not the ramp's ends
    src = tmp_path / "stack.tif"
    _write_imagej(src, arr.astype(np.uint16), dxy=0.25, dz=1.0)
    before = snapshot(src)
    out = tmp_path / "stack_iso.tif"
    infer(src, "-o", out, *([] if method == "auto" else ["--method", method]))
    assert snapshot(src) == before

    with tifffile.TiffFile(out) as tif:
        assert tif.is_imagej
        series = tif.series[0]
        data = series.asarray()
        ij = tif.imagej_metadata
        page = tif.pages.first
        xres, yres = page.tags["XResolution"].value, page.tags["YResolution"].value
    assert series.axes == "ZYX" and data.shape == (4 * nz, 10, 12) and data.dtype == np.uint16
    assert ij["spacing"] == pytest.approx(0.25, rel=1e-6)  # z step = lateral pixel size
    assert ij.get("unit") in ("micron", "um", "\u00b5m", "\\u00B5m")
    assert xres[0] / xres[1] == pytest.approx(4.0, rel=1e-5)  # pixels per micron
    assert yres[0] / yres[1] == pytest.approx(4.0, rel=1e-5)
    assert ij.get("slices", 4 * nz) == 4 * nz
    # slice j of the output lies at input slice (j + 0.5)/4 - 0.5
    pos = (np.arange(4 * nz) + 0.5) / 4 - 0.5
    expect = 1000 + 400 * pos
    corner = data[:, 0, 0].astype(float)
    if method == "catmull-rom":  # 4 taps: exact on a ramp where all taps are inside
        inner = (pos >= 1) & (pos <= nz - 2)
        np.testing.assert_allclose(corner[inner], expect[inner], atol=1)
    else:  # the shipped microscopy network: plausible, increasing through the ramp
        inner = (pos >= 0) & (pos <= nz - 1)
        assert np.abs(corner[inner] - expect[inner]).mean() < 0.05 * 400 * (nz - 1)
        assert np.all(np.diff(corner[inner]) > 0)
    feature = data[:, 4:6, 5:8].astype(float).mean(axis=(1, 2))
    assert np.all(feature[inner] > corner[inner] + 1500)  # the feature stays where it was


# ---------------------------------------------------------------------------------- PNG

@pytest.mark.parametrize(("mode", "value", "tol"), [
    ("RGB", (200, 70, 35), 3),
    ("RGBA", (10, 200, 100, 128), 3),
    ("L", 123, 2),
    ("I;16", 30000, 200),
])
def test_png_flat_picture_keeps_mode_and_value(tmp_path, mode, value, tol):
    """A flat 12 x 10 picture, no flags: x4 in-plane (docs/microscopy-and-video.md), the
    same PIL mode (RGB, RGBA, 8- and 16-bit grey), the same value everywhere."""
    value = np.array(value)
    dtype = np.uint16 if mode == "I;16" else np.uint8
    arr = np.zeros((10, 12, *value.shape), dtype) + value.astype(dtype)
    src = tmp_path / "flat.png"
    Image.fromarray(arr).save(src)
    with Image.open(src) as im:
        assert im.mode == mode  # the input is what the test means it to be
    before = snapshot(src)
    out = tmp_path / "flat_x4.png"
    infer(src, "-o", out)
    assert snapshot(src) == before
    with Image.open(out) as im:
        assert im.format == "PNG" and im.mode == mode and im.size == (48, 40)
        got = np.asarray(im).astype(int)
    assert got.shape == (40, 48, *value.shape)
    assert np.abs(got - value).max() <= tol


@pytest.mark.parametrize("method", ["auto", "catmull-rom"])
def test_png_grey_checker_keeps_mode_and_mean(tmp_path, method):
    """A greyscale (L) 12 x 10 checker of 2 x 2 squares: x4, still L, mean kept, and the
    4 x 4 block means of the output follow the checker."""
    yy, xx = np.mgrid[0:10, 0:12]
    arr = np.where(((yy // 2) + (xx // 2)) % 2 == 0, 70, 180).astype(np.uint8)
    src = tmp_path / "checker.png"
    Image.fromarray(arr, mode="L").save(src)
    before = snapshot(src)
    out = tmp_path / "checker_x4.png"
    infer(src, "-o", out, *([] if method == "auto" else ["--method", method]))
    assert snapshot(src) == before
    with Image.open(out) as im:
        assert im.mode == "L" and im.size == (48, 40)
        got = np.asarray(im).astype(float)
    assert got.mean() == pytest.approx(arr.mean(), abs=3)
    blocks = got.reshape(10, 4, 12, 4).mean(axis=(1, 3))
    assert np.corrcoef(blocks.ravel(), arr.ravel().astype(float))[0, 1] > 0.9


def test_png_through_the_console_entry_point(tmp_path):
    """The real process: `python -m medsr infer pic.png` writes pic_sr.png beside it
    (a classical method: the process need not import the network stack)."""
    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[:, :6] = (20, 180, 90)
    rgb[:, 6:] = (230, 230, 40)
    src = tmp_path / "pic.png"
    Image.fromarray(rgb).save(src)
    before = snapshot(src)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "medsr", "infer", str(src),
                           "--method", "catmull-rom"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert snapshot(src) == before
    with Image.open(tmp_path / "pic_sr.png") as im:
        assert im.mode == "RGB" and im.size == (48, 40)
        got = np.asarray(im).astype(int)
    # two input pixels away from the edge between the halves each half keeps its colour
    assert np.abs(got[:, :16] - (20, 180, 90)).max() <= 3
    assert np.abs(got[:, 32:] - (230, 230, 40)).max() <= 3


# ------------------------------------------------------------------------- frames folder

def test_frames_folder_keeps_names_count_and_natural_order(tmp_path):
    """f1, f2, f10 (natural order: f10 last), each its own flat colour: the output folder
    (default name <folder>_sr) has the same three names, each x4 and its own colour."""
    colours = {"f1.png": (200, 30, 30), "f2.png": (30, 200, 30), "f10.png": (30, 30, 200)}
    src = tmp_path / "clip"
    src.mkdir()
    for name, c in colours.items():
        Image.fromarray(np.zeros((10, 12, 3), np.uint8) + np.array(c, np.uint8)).save(src / name)
    before = snapshot(src)
    infer(src)
    assert snapshot(src) == before
    out = tmp_path / "clip_sr"
    pngs = sorted(p.name for p in out.iterdir() if p.suffix == ".png")
    assert pngs == sorted(colours)
    for name, c in colours.items():
        with Image.open(out / name) as im:
            assert im.mode == "RGB" and im.size == (48, 40)
            got = np.asarray(im).astype(int)
        assert np.abs(got - c).max() <= 3, name


# -------------------------------------------------------------------------------- video

def test_video_mp4_keeps_frame_count_fps_and_order(tmp_path):
    """3 frames of 16 x 12 at 5 fps, each a flat colour: the output video (default name
    <stem>_sr.mp4) has 3 frames of 64 x 48 at 5 fps in the same order (lossy codec: a
    tolerance)."""
    iio = pytest.importorskip("imageio.v2", reason="video needs imageio (pip install "
                                                   "'medsr[video]')")
    pytest.importorskip("imageio_ffmpeg", reason="video needs imageio-ffmpeg "
                                                 "(pip install 'medsr[video]')")
    colours = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]
    src = tmp_path / "clip.mp4"
    with iio.get_writer(src, fps=5, macro_block_size=1, codec="libx264",
                        pixelformat="yuv444p", quality=10) as w:
        for c in colours:
            w.append_data(np.zeros((12, 16, 3), np.uint8) + np.array(c, np.uint8))
    before = snapshot(src)
    infer(src)
    assert snapshot(src) == before
    out = tmp_path / "clip_sr.mp4"
    with iio.get_reader(out) as r:
        fps = r.get_meta_data()["fps"]
        frames = [np.asarray(f) for f in r]
    assert fps == pytest.approx(5.0)
    assert len(frames) == 3
    for f, c in zip(frames, colours):
        assert f.shape == (48, 64, 3)
        assert np.abs(f.astype(float).mean(axis=(0, 1)) - c).max() < 12
