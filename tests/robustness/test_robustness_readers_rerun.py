"""Issue 21 safety battery, rerun with new values: the readers' group.

Float32 values near the type's limit, NIfTI headers whose datatype and bitpix disagree,
DICOM series with one slice lacking (or with a NaN) ImagePositionPatient, invalid
PixelSpacing and RescaleSlope, truncated pictures, pictures whose content does not match
their suffix and a FIFO in a frames folder. Each bad input: one error line, exit 2,
nothing written, the input unchanged (the contract of docs/safety.md). Every case runs
the real CLI in a forked process (``forked_cli.py``).
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import robust_helpers as h
from forked_cli import ForkedCLI
from robust_helpers import fx

BAD, OK = 2, 0


@pytest.fixture(scope="module")
def cli():
    with ForkedCLI() as runner:
        yield runner


def _run(cli, tmp_path: Path, src: Path, out_name: str, method: str = "linear",
         code: int = BAD, match: str | None = None):
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    inputs = tmp_path / "in"
    before = h.fingerprint(inputs)
    proc = cli.run_one(["infer", src, "-o", out / out_name, "--method", method,
                        "--scale", "2"], tmp_path, timeout=60)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    if code == BAD:
        kept = type(proc)(proc.returncode, proc.stdout,
                          "".join(ln + "\n" for ln in proc.stderr.splitlines()
                                  if not ln.startswith("medsr: progress:")))
        h.assert_one_line_error(kept, match)
        assert "medsr: warning:" not in proc.stderr, proc.stderr
        assert h.entries(out) == []
    else:
        assert proc.returncode == 0, proc.stderr
        assert h.entries(out)
    assert h.stray_temporaries(inputs) == []
    assert h.fingerprint(inputs) == before
    return proc


# ------------------------------------------------------------------ 1. float32 overflow

def _upsample_finite_or_refused(cli, tmp_path, src, method, error):
    """``medsr infer src --scale 2``: never a traceback or a numpy overflow warning; a
    finite output, or one error line matching ``error`` and no output. The process."""
    out = tmp_path / "o.nii.gz"
    proc = cli.run_one(["infer", src, "-o", out, "--method", method, "--scale", "2"], tmp_path)
    assert "Traceback" not in proc.stderr and "overflow encountered" not in proc.stderr, \
        proc.stderr
    if proc.returncode == 0:
        assert np.all(np.isfinite(np.asanyarray(nib.load(out).dataobj)))
    else:
        h.assert_one_line_error(proc, error)
        assert not out.exists()
    return proc


@pytest.mark.parametrize("method", ["linear", "cubic", "lanczos"])
@pytest.mark.parametrize("peak", [3e38, -3.4e38, 1e38])
def test_float32_near_max_never_gives_non_finite_output(cli, tmp_path, method, peak):
    (tmp_path / "in").mkdir()
    data = np.zeros((8, 8, 4), np.float32)
    data[2:5, 3:6, 1:3] = peak
    data[0, 0, 0] = -peak / 3
    src = h.nifti(tmp_path / "in" / "big.nii.gz", data)
    proc = _upsample_finite_or_refused(cli, tmp_path, src, method, "overflow")
    if proc.returncode == 0:
        assert "error" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("method", ["linear", "cubic", "lanczos"])
@pytest.mark.parametrize("peak", [1.7e308, 1e300])
def test_float64_beyond_float32_never_gives_non_finite_output(cli, tmp_path, method, peak):
    """float64 values beyond float32's range are computed in float64: a finite result is
    written (as float64), an overflowing one is one line, never a numpy warning first."""
    (tmp_path / "in").mkdir()
    data = np.full((8, 8, 4), peak)
    data[::2] = -peak
    _upsample_finite_or_refused(cli, tmp_path, h.nifti(tmp_path / "in" / "big64.nii", data),
                                method, "non-finite|overflow")


def test_moderate_float32_values_still_work(cli, tmp_path):
    (tmp_path / "in").mkdir()
    data = h.small_volume().astype(np.float32) * np.float32(1e30)
    src = h.nifti(tmp_path / "in" / "m.nii.gz", data)
    _run(cli, tmp_path, src, "o.nii.gz", "lanczos", OK)
    out = np.asanyarray(nib.load(tmp_path / "out" / "o.nii.gz").dataobj)
    assert np.all(np.isfinite(out))


# ------------------------------------------------------------------ 2. NIfTI header

@pytest.mark.parametrize("bitpix", [8, 16, 64, 0, -32])
def test_datatype_and_bitpix_disagree(cli, tmp_path, bitpix):
    (tmp_path / "in").mkdir()
    src = h.nifti(tmp_path / "src.nii", h.small_volume().astype(np.float32))

    def edit(raw: bytearray) -> None:
        struct.pack_into("<h", raw, 72, bitpix)

    dst = h.raw_header_edit(src, tmp_path / "in" / "x.nii", edit)
    _run(cli, tmp_path, dst, "o.nii.gz", match="bitpix")


def test_5d_vector_keeps_channels_and_other_5d_is_refused(cli, tmp_path):
    (tmp_path / "in").mkdir()
    vec = np.random.default_rng(0).random((8, 8, 4, 1, 2)).astype(np.float32)
    src = h.nifti(tmp_path / "in" / "v.nii", vec)
    _run(cli, tmp_path, src, "o.nii.gz", code=OK)
    assert nib.load(tmp_path / "out" / "o.nii.gz").shape == (16, 16, 8, 1, 2)
    five = np.random.default_rng(0).random((8, 8, 4, 2, 2)).astype(np.float32)
    src5 = h.nifti(tmp_path / "in" / "f.nii", five)
    for written in ("o.nii.gz", "o.json"):  # the output and its provenance sidecar
        (tmp_path / "out" / written).unlink()
    _run(cli, tmp_path, src5, "o5.nii.gz", match="5D")


# ------------------------------------------------------------------ 3. DICOM

def _series(tmp_path: Path, change) -> Path:
    import pydicom
    from pydicom import config

    case = fx.oblique_case((10, 8, 5))
    root = tmp_path / "in" / "series"
    fx.write_series(root, case["stored"], case["A_lps"], slope=case["slope"],
                    intercept=case["intercept"])
    files = sorted(p for p in root.rglob("*") if p.is_file())
    target = files[len(files) // 2]
    saved = config.settings.writing_validation_mode
    config.settings.writing_validation_mode = config.IGNORE
    try:
        ds = pydicom.dcmread(target)
        change(ds)
        ds.save_as(target)
    finally:
        config.settings.writing_validation_mode = saved
    return root


def _delete(keyword):
    def change(ds):
        delattr(ds, keyword)
    return change


def _set_raw(keyword, vr, text):
    def change(ds):
        from pydicom.datadict import tag_for_keyword
        from pydicom.dataelem import RawDataElement

        tag = tag_for_keyword(keyword)
        raw = text.encode()
        if len(raw) % 2:
            raw += b" "
        ds[tag] = RawDataElement(tag, vr, len(raw), raw, 0, False, True)
    return change


DICOM_CASES = [
    ("one slice without ImagePositionPatient", _delete("ImagePositionPatient"),
     "has no ImagePositionPatient"),
    ("one slice with a NaN position", _set_raw("ImagePositionPatient", "DS", "nan\\0\\0"),
     "ImagePositionPatient"),
    ("PixelSpacing NaN", _set_raw("PixelSpacing", "DS", "nan\\0.8"), "PixelSpacing"),
    ("PixelSpacing 0", _set_raw("PixelSpacing", "DS", "0\\0"), "PixelSpacing"),
    ("PixelSpacing negative", _set_raw("PixelSpacing", "DS", "-1\\1"), "PixelSpacing"),
    ("RescaleSlope NaN", _set_raw("RescaleSlope", "DS", "nan"), "RescaleSlope"),
    ("RescaleSlope inf", _set_raw("RescaleSlope", "DS", "inf"), "RescaleSlope"),
    ("RescaleIntercept inf", _set_raw("RescaleIntercept", "DS", "-inf"), "RescaleIntercept"),
    # finite but absurd: beyond a kilometre, or a slope that overflows float32
    ("position 1e300", _set_raw("ImagePositionPatient", "DS", "0\\0\\1e300"),
     "invalid ImagePositionPatient .* up to 1e"),
    ("PixelSpacing 1e9", _set_raw("PixelSpacing", "DS", "1e9\\1"), "invalid PixelSpacing"),
    ("RescaleSlope 1e300", _set_raw("RescaleSlope", "DS", "1e300"), "invalid RescaleSlope"),
]


@pytest.mark.parametrize("name,change,match", DICOM_CASES, ids=[c[0] for c in DICOM_CASES])
def test_dicom_bad_slice_attribute(cli, tmp_path, name, change, match):
    root = _series(tmp_path, change)
    _run(cli, tmp_path, root, "o.nii.gz", match=match)


FRAME_CASES = [  # one file: refused before any per-frame work (2**31 looped for hours)
    (2**31 - 1, r"NumberOfFrames 2147483647 is out of range"),
    (100000, r"NumberOfFrames 100,000 needs .* bytes of pixel data"),
]


@pytest.mark.parametrize("frames,match", FRAME_CASES, ids=[str(c[0]) for c in FRAME_CASES])
def test_dicom_file_declaring_too_many_frames(cli, tmp_path, frames, match):
    import pydicom

    root = _series(tmp_path, lambda ds: setattr(ds, "NumberOfFrames", frames))
    target = next(p for p in sorted(root.rglob("*")) if p.is_file()
                  and "NumberOfFrames" in pydicom.dcmread(p, stop_before_pixels=True))
    _run(cli, tmp_path, target, "o.nii.gz", match=match)


# ------------------------------------------------------------------ 4. pictures

def _picture(fmt: str, shape=(40, 36)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 255, shape, np.uint8)).save(
        buf, format=fmt)
    return buf.getvalue()


PICTURE_CASES = [
    ("PNG without IEND", "x.png", lambda: _picture("PNG")[:-12], None),
    ("PNG cut in its last IDAT CRC", "x.png", lambda: _picture("PNG")[:-14], None),
    ("PNG cut at three quarters", "x.png",
     lambda: _picture("PNG")[:len(_picture("PNG")) * 3 // 4], None),
    ("png holding JPEG", "x.png", lambda: _picture("JPEG"), "holds JPEG"),
    ("jpg holding PNG", "x.jpg", lambda: _picture("PNG"), "holds PNG"),
    ("bmp holding PNG", "x.bmp", lambda: _picture("PNG"), "holds PNG"),
]


@pytest.mark.parametrize("name,fname,make,match", PICTURE_CASES,
                         ids=[c[0] for c in PICTURE_CASES])
def test_bad_picture(cli, tmp_path, name, fname, make, match):
    (tmp_path / "in").mkdir()
    src = tmp_path / "in" / fname
    src.write_bytes(make())
    _run(cli, tmp_path, src, "o.png", match=match)


@pytest.mark.parametrize("fmt,fname", [("PNG", "x.png"), ("JPEG", "x.jpeg"),
                                       ("BMP", "x.bmp")])
def test_matching_picture_is_fine(cli, tmp_path, fmt, fname):
    (tmp_path / "in").mkdir()
    src = tmp_path / "in" / fname
    src.write_bytes(_picture(fmt))
    _run(cli, tmp_path, src, "o.png", code=OK)


def test_fifo_in_a_frames_folder_is_refused(cli, tmp_path):
    frames = tmp_path / "in" / "frames"
    frames.mkdir(parents=True)
    for i in range(3):
        (frames / f"f{i}.png").write_bytes(_picture("PNG"))
    os.mkfifo(frames / "f3.png")
    _run(cli, tmp_path, frames, "o", match="not a regular file")
