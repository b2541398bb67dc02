"""Hostile and broken inputs through the real ``medsr infer`` process (issue 11, item 1).

Every failure case: exit code 2, one ``medsr: error:`` line, no traceback, nothing left in
the output directory (no partial file, no temporary), the input byte-for-byte unchanged.
A cohort run over the same files reports each one in its summary and exits 1.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import robust_helpers as h
from pydicom.data import get_testdata_file
from robust_helpers import fx

# ----------------------------------------------------------------------------- inputs


def _truncated_data(d: Path) -> Path:
    big = h.nifti(d / "whole.nii.gz", h.small_volume(1, (48, 48, 24)))
    raw = big.read_bytes()
    big.unlink()
    (d / "truncated.nii.gz").write_bytes(raw[: int(len(raw) * 0.6)])  # header intact
    return d / "truncated.nii.gz"


def _truncated_header(d: Path) -> Path:
    raw = h.nifti(d / "whole.nii.gz", h.small_volume()).read_bytes()
    (d / "whole.nii.gz").unlink()
    (d / "cut.nii.gz").write_bytes(raw[:40])
    return d / "cut.nii.gz"


def _random(name: str):
    def make(d: Path) -> Path:
        (d / name).write_bytes(np.random.default_rng(7).bytes(4096))
        return d / name
    return make


def _edited(name: str, edit):
    def make(d: Path) -> Path:
        src = h.nifti(d / "src.nii", h.small_volume())
        out = h.raw_header_edit(src, d / name, edit)
        src.unlink()
        return out
    return make


def _nd(shape):
    def make(d: Path) -> Path:
        return h.nifti(d / f"{len(shape)}d.nii.gz", np.zeros(shape, np.float32))
    return make


def _all_nan(d: Path) -> Path:
    return h.nifti(d / "nan.nii.gz", np.full((6, 6, 3), np.nan, np.float32))


def _dicom(kind: str):
    def make(d: Path) -> Path:
        case = fx.oblique_case((10, 8, 5))
        root = d / f"dicom_{kind}"
        args = dict(slope=case["slope"], intercept=case["intercept"])
        if kind == "mixed":
            fx.write_series(root, case["stored"], case["A_lps"], **args)
            fx.write_series(root, case["stored"], case["A_lps"], series_number=8,
                            description="second", **args)
        elif kind == "missing":
            fx.write_series(root, case["stored"], case["A_lps"], ks=[0, 1, 3, 4], **args)
        elif kind == "duplicate":
            fx.write_series(root, case["stored"], case["A_lps"], ks=[0, 1, 2, 2, 3, 4], **args)
        elif kind == "non_image_only":
            root.mkdir()
            fx.write_non_image(root / "report.dcm", "1.2.3.4")
        return root
    return make


FAILURES = [
    ("truncated .nii.gz (data)", _truncated_data, [], r"truncated\.nii\.gz.*(truncated|corrupt|"
                                                     r"end-of-stream)"),
    ("truncated .nii.gz (header)", _truncated_header, [], r"cut\.nii\.gz"),
    ("random bytes .nii.gz", _random("noise.nii.gz"), [], r"noise\.nii\.gz: not a"),
    ("random bytes .nii", _random("noise.nii"), [], r"noise\.nii: not a NIfTI"),
    ("huge dims, tiny .nii", _edited("huge.nii", h.set_dims([30000, 30000, 30000])), [],
     r"huge\.nii: the header declares 27,000,000,000,000 voxels.*--max-output-voxels"),
    ("huge dims, tiny .nii.gz", _edited("huge.nii.gz", h.set_dims([30000, 30000, 30000])), [],
     r"huge\.nii\.gz: the header declares 27,000,000,000,000 voxels.*--max-output-voxels"),
    ("negative pixdim", _edited("neg.nii", h.set_pixdim([-1.0, 1.0, 3.0])), [],
     r"neg\.nii: invalid voxel size pixdim = \[-1\.0, 1\.0, 3\.0\]"),
    ("zero pixdim", _edited("zero.nii", h.set_pixdim([1.0, 0.0, 3.0])), [],
     r"zero\.nii: invalid voxel size"),
    ("NaN pixdim", _edited("nanpix.nii", h.set_pixdim([1.0, float("nan"), 3.0])), [],
     r"nanpix\.nii: invalid voxel size"),
    ("all NaN voxels", _all_nan, [], r"every voxel is NaN"),
    ("4D without --volume", _nd((4, 4, 3, 3)), [], r"4D with 3 volumes; pick one with --volume"),
    ("4D --volume out of range", _nd((4, 4, 3, 3)), ["--volume", "5"], r"--volume 5 is out of"),
    ("5D", _nd((4, 4, 3, 2, 3)), [], r"5D .*only 3D images"),
    ("DICOM mixed series", _dicom("mixed"), [], r"holds 2 series; pick one with --series"),
    ("DICOM missing slice", _dicom("missing"), [], r"1 slice\(s\) missing at .* incomplete"),
    ("DICOM duplicate positions", _dicom("duplicate"), [], r"duplicate slice position"),
    ("DICOM only non-image objects", _dicom("non_image_only"), [], r"no DICOM image found"),
]


def _out_name(src: Path) -> str:
    return "out" if src.is_dir() else "out.nii.gz"


@pytest.mark.parametrize("make,extra,match", [c[1:] for c in FAILURES],
                         ids=[c[0] for c in FAILURES])
def test_hostile_input_fails_cleanly(tmp_path, make, extra, match):
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    src = make(tmp_path / "in")
    before = h.fingerprint(src)
    proc = h.medsr("infer", src, "-o", tmp_path / "out" / _out_name(src), *h.X2_CUBIC,
                   *extra, cwd=tmp_path)
    h.assert_one_line_error(proc, match)
    assert h.entries(tmp_path / "out") == []  # no partial output, no temporaries
    assert h.fingerprint(src) == before


def test_cohort_of_hostile_inputs_reports_each_and_exits_1(tmp_path):
    """One good scan among the broken ones: it is written, the others are one summary row
    and one stderr line each, exit code 1, no traceback."""
    (tmp_path / "in").mkdir()
    inputs = []
    for i, (_, make, _extra, _m) in enumerate(FAILURES[:10]):  # the NIfTI cases
        d = tmp_path / "in" / f"c{i}"
        d.mkdir()
        made = make(d)
        inputs.append(made.rename(made.with_name(f"c{i}_{made.name}")))  # distinct outputs
    good = h.nifti(tmp_path / "in" / "good.nii.gz", h.small_volume())
    inputs.append(good)
    before = {str(p): h.fingerprint(p) for p in inputs}
    proc = h.medsr("infer", *inputs, "-o", tmp_path / "out", "--scale", "1,1,2", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    rows = list(csv.DictReader((tmp_path / "out" / "medsr_summary.csv").open()))
    assert [r["status"] for r in rows] == ["failed"] * 10 + ["ok"]
    for r in rows[:10]:
        assert r["error"] and "\n" not in r["error"] and "internal error" not in r["error"]
        assert r["error"] in proc.stderr
    assert nib.load(tmp_path / "out" / "good_sr.nii.gz").shape == (8, 8, 8)
    assert sorted(h.entries(tmp_path / "out")) == ["good_sr.json", "good_sr.nii.gz",  # issue 25
                                                   "medsr_summary.csv"]
    assert {str(p): h.fingerprint(p) for p in inputs} == before


# ----------------------------------------------------------------------------- accepted inputs


def test_nan_inf_voxels_warned_and_zeroed(tmp_path):
    data = np.random.default_rng(0).random((8, 8, 4)).astype(np.float32) * 100
    data[0, 0, 0], data[3, 4, 1], data[7, 7, 3] = np.nan, np.inf, -np.inf
    src = h.nifti(tmp_path / "nan.nii.gz", data, np.eye(4))
    proc = h.medsr("infer", src, "-o", tmp_path / "o.nii.gz", *h.X2_CUBIC, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "medsr: warning: " in proc.stderr and "3 of 256 voxels are NaN or infinite" in \
        proc.stderr
    out = np.asarray(nib.load(tmp_path / "o.nii.gz").dataobj)
    assert out.shape == (16, 16, 8) and np.all(np.isfinite(out))
    assert float(np.abs(out).max()) < 200  # an infinity spread by the filter would not be


def test_4d_volume_pick_and_vector_5d(tmp_path):
    data = np.stack([np.full((4, 4, 3), v, np.float32) for v in (10, 20, 30)], axis=-1)
    src = h.nifti(tmp_path / "series.nii.gz", data, np.eye(4))
    proc = h.medsr("infer", src, "-o", tmp_path / "v2.nii.gz", *h.X2_CUBIC, "--volume",
                   "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(np.asarray(nib.load(tmp_path / "v2.nii.gz").dataobj), 30,
                               atol=1e-4)


def test_integer_overshoot_is_clipped_never_wrapped(tmp_path):
    """A uint8 checkerboard at 0/250: the cubic B-spline overshoots above 255. The uint8
    output equals clip(rint(float output)) exactly, and a warning says how many clipped."""
    u = np.full((8, 8, 4), 250, np.uint8)
    u[::2, ::2, ::2] = 0
    src = h.nifti(tmp_path / "u8.nii.gz", u, np.eye(4))
    pf = h.medsr("infer", src, "-o", tmp_path / "f.nii.gz", *h.X2_CUBIC, "--dtype",
                 "float32", cwd=tmp_path)
    pu = h.medsr("infer", src, "-o", tmp_path / "u.nii.gz", *h.X2_CUBIC, cwd=tmp_path)
    assert pf.returncode == 0 and pu.returncode == 0, pf.stderr + pu.stderr
    f = np.asarray(nib.load(tmp_path / "f.nii.gz").dataobj)
    img = nib.load(tmp_path / "u.nii.gz")
    assert img.get_data_dtype() == np.uint8
    out = np.asarray(img.dataobj)
    n_over = int(np.count_nonzero((np.rint(f) > 255) | (np.rint(f) < 0)))
    assert n_over > 0  # the case really overshoots
    np.testing.assert_array_equal(out, np.clip(np.rint(f), 0, 255).astype(np.uint8))
    assert f"medsr: warning: {n_over} voxels outside the uint8 range were clipped" in pu.stderr


def test_non_image_objects_beside_a_series_are_skipped(tmp_path):
    case = fx.oblique_case((10, 8, 5))
    root = tmp_path / "series"
    fx.write_series(root, case["stored"], case["A_lps"])
    fx.write_non_image(root / "report.dcm", "1.2.3.4")
    (root / "notes.txt").write_text("not dicom")
    proc = h.medsr("infer", root, "-o", tmp_path / "out", "--scale", "1,1,2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "skipped 1 DICOM object(s) without pixel data: report.dcm" in proc.stderr
    assert len(os.listdir(tmp_path / "out")) == 10


BLOCK_DECODERS = """
import sys
for name in ("openjpeg", "pylibjpeg", "libjpeg", "rle", "jpeg_ls", "gdcm", "PIL"):
    sys.modules[name] = None  # as if the package were not installed
"""


def test_compressed_dicom_without_decoder_names_the_package(tmp_path):
    d = tmp_path / "jp2"
    d.mkdir()
    shutil.copy(get_testdata_file("MR_small_jp2klossless.dcm"), d / "image.dcm")
    before = h.fingerprint(d)
    (tmp_path / "out").mkdir()
    proc = h.medsr("infer", d, "-o", tmp_path / "out" / "sr", *h.X2_CUBIC, cwd=tmp_path,
                   prelude=BLOCK_DECODERS)
    h.assert_one_line_error(proc, r"no decoder installed for 'JPEG 2000.*pip install "
                                  r"pylibjpeg pylibjpeg-openjpeg")
    assert h.entries(tmp_path / "out") == [] and h.fingerprint(d) == before
    # with the decoders present the same file reads (the test is about the decoder)
    ok = h.medsr("infer", d, "-o", tmp_path / "out" / "sr", *h.X2_CUBIC, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr


# ----------------------------------------------------------------------------- paths


def test_non_ascii_and_space_paths_in_a_c_locale(tmp_path):
    """Input and output under names with spaces, accents, CJK and quotes; run with
    LC_ALL=C so that printing them cannot fail either."""
    d = tmp_path / "données patient 1 ü 日本"
    d.mkdir()
    src = h.nifti(d / "scan é 1 'x'.nii.gz", h.small_volume())
    case = fx.oblique_case((10, 8, 5))
    dcm = d / "série IRM 2"
    fx.write_series(dcm, case["stored"], case["A_lps"])
    env = {"LC_ALL": "C", "LANG": "C"}
    p1 = h.medsr("infer", src, "-o", d / "sortie ü.nii.gz", *h.X2_CUBIC, cwd=d, env=env)
    assert p1.returncode == 0, p1.stderr
    assert nib.load(d / "sortie ü.nii.gz").shape == (16, 16, 8)
    p2 = h.medsr("infer", dcm, "--scale", "1,1,2", cwd=d, env=env)  # default output name
    assert p2.returncode == 0, p2.stderr
    assert len(os.listdir(d / "série IRM 2_sr")) == 10
    p3 = h.medsr("infer", d / "absent ü.nii.gz", cwd=d, env=env)
    h.assert_one_line_error(p3, r"absent")


# ----------------------------------------------------------------------------- outputs


def _check_failed_write(proc, out_dir: Path, src: Path, before, match):
    h.assert_one_line_error(proc, match)
    assert h.stray_temporaries(out_dir) == []
    assert h.fingerprint(src) == before


def test_parent_is_a_file(tmp_path):
    src = h.nifti(tmp_path / "a.nii.gz", h.small_volume())
    (tmp_path / "blocker").write_text("a file where the output directory should be")
    before = h.fingerprint(src)
    proc = h.medsr("infer", src, "-o", tmp_path / "blocker" / "o.nii.gz", cwd=tmp_path)
    _check_failed_write(proc, tmp_path, src, before, r"blocker is not a directory")


def test_read_only_output_directory(tmp_path):
    src = h.nifti(tmp_path / "a.nii.gz", h.small_volume())
    before = h.fingerprint(src)
    (tmp_path / "backing").mkdir()
    with h.mounted("ro-bind", tmp_path / "ro", tmp_path / "backing") as ok:
        if not ok:
            pytest.skip("cannot bind-mount read-only here")
        proc = h.medsr("infer", src, "-o", tmp_path / "ro" / "o.nii.gz", cwd=tmp_path)
        _check_failed_write(proc, tmp_path / "ro", src, before, r"ro is not writable")
        # a cohort whose output directory cannot even be created
        proc = h.medsr("infer", src, src.with_name("b.nii.gz"), "-o",
                       tmp_path / "ro" / "sub", cwd=tmp_path)
        _check_failed_write(proc, tmp_path / "ro", src, before, r"Read-only file system")
    assert h.entries(tmp_path / "backing") == []


def test_full_output_location(tmp_path):
    """A 64 KiB tmpfs: the NIfTI file and the DICOM series both fail with ENOSPC, one line,
    nothing left on the device."""
    src = h.nifti(tmp_path / "a.nii", np.random.default_rng(0).random((32, 32, 16))
                  .astype(np.float32), np.eye(4))
    case = fx.oblique_case((32, 32, 6))
    dcm = tmp_path / "series"
    fx.write_series(dcm, case["stored"], case["A_lps"])
    before, before_dcm = h.fingerprint(src), h.fingerprint(dcm)
    with h.mounted("tmpfs64k", tmp_path / "full") as ok:
        if not ok:
            pytest.skip("cannot mount a tmpfs here")
        proc = h.medsr("infer", src, "-o", tmp_path / "full" / "o.nii", *h.X2_CUBIC,
                       cwd=tmp_path)
        _check_failed_write(proc, tmp_path / "full", src, before,
                            r"cannot write .*o\.nii: No space left on device")
        assert h.entries(tmp_path / "full") == []
        proc = h.medsr("infer", dcm, "-o", tmp_path / "full" / "sr", "--scale", "1,1,4",
                       cwd=tmp_path)
        _check_failed_write(proc, tmp_path / "full", dcm, before_dcm,
                            r"cannot write .*sr: No space left on device")
        assert h.entries(tmp_path / "full") == []


def test_permissions_as_an_unprivileged_user():
    """Root ignores file modes, so run medsr as 'nobody' (setpriv): an unreadable input
    and a non-writable output directory each give one line and exit 2."""
    import subprocess
    import tempfile

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to drop privileges")
    base = Path(tempfile.mkdtemp(prefix="medsr-perm-", dir="/tmp"))
    try:
        base.chmod(0o755)
        src = h.nifti(base / "locked.nii.gz", h.small_volume())
        src.chmod(0o000)
        ok_src = h.nifti(base / "open.nii.gz", h.small_volume())
        ok_src.chmod(0o644)
        (base / "ro").mkdir(mode=0o755)  # owned by root: not writable for nobody
        (base / "rw").mkdir()
        (base / "rw").chmod(0o777)
        drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

        def run(*args):
            return subprocess.run([*drop, h.PY, "-m", "medsr", *map(str, args)], cwd=base,
                                  capture_output=True, text=True, timeout=120,
                                  env={**os.environ, "HOME": str(base)})

        p1 = run("infer", src, "-o", base / "rw" / "x.nii.gz")
        h.assert_one_line_error(p1, r"locked\.nii\.gz.*[Pp]ermission denied")
        assert h.entries(base / "rw") == []
        p2 = run("infer", ok_src, "-o", base / "ro" / "x.nii.gz")
        h.assert_one_line_error(p2, r"ro is not writable")
        assert h.entries(base / "ro") == []
    finally:
        shutil.rmtree(base, ignore_errors=True)
