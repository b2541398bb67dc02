"""Outputs never destroy what medsr did not write (issue 21, item 1).

Every command that writes (``medsr infer`` to NIfTI, a DICOM series directory, TIFF,
PNG, a frames folder; ``medsr degrade``; ``medsr eval --json/--csv``; a cohort's output
folder and summary) refuses, with one line and exit code 2, an output that is the input
(however spelt), holds the input, lies inside an input folder, is the working directory,
or is an existing folder medsr did not write, even with ``--overwrite``. Each test runs
the real CLI and checks that the user's files are byte-identical afterwards and that no
``.medsr-tmp-*``/``.medsr-old-*`` temporary is left behind.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
import robust_helpers as h
from PIL import Image
from robust_helpers import fx


def _dicom_series(d: Path) -> Path:
    case = fx.oblique_case((8, 6, 3))
    fx.write_series(d, case["stored"], case["A_lps"])
    return d


def _frames(d: Path, n: int = 3) -> Path:
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (6, 8), dtype=np.uint8)).save(d / f"f{i}.png")
    return d


def _user_folder(d: Path) -> Path:
    """A folder of the user's own files, hidden ones included."""
    d.mkdir(parents=True)
    (d / "notes.txt").write_text("my thesis\n")
    (d / ".hidden").write_bytes(b"\x00secret")
    (d / "sub").mkdir()
    (d / "sub" / "photo.jpg").write_bytes(os.urandom(64))
    return d


def _snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (the whole test folder: inputs, user files)."""
    return h.fingerprint(root)


def _no_temporaries(*dirs: Path) -> None:
    for d in dirs:
        for parent, names, files in os.walk(d):
            stray = [n for n in names + files if n.startswith((".medsr-tmp-", ".medsr-old-"))]
            assert not stray, f"temporaries left in {parent}: {stray}"


def _refused(proc, root: Path, before: dict[str, str], match: str) -> str:
    """One line, exit 2, every file under ``root`` unchanged, nothing added, no temporary."""
    line = h.assert_one_line_error(proc, match)
    assert _snapshot(root) == before
    _no_temporaries(root)
    return line


# ------------------------------------------------------------------ a folder of user files


@pytest.mark.parametrize("kind", ["dicom", "frames"])
def test_overwrite_never_replaces_a_folder_of_user_files(tmp_path, kind):
    src = _dicom_series(tmp_path / "dcm") if kind == "dicom" else _frames(tmp_path / "frames")
    _user_folder(tmp_path / "mydocs")
    before = _snapshot(tmp_path)
    for extra in ((), ("--overwrite",)):
        proc = h.medsr("infer", src.name, "-o", "mydocs", *extra, *h.X2_CUBIC, cwd=tmp_path)
        _refused(proc, tmp_path, before, "mydocs is a directory medsr did not write")


@pytest.mark.parametrize("out", ["mydocs.nii.gz", "mydocs.tif", "mydocs.png"])
def test_file_output_never_replaces_a_folder_of_user_files(tmp_path, out):
    src = h.nifti(tmp_path / "a.nii.gz", h.small_volume(shape=(8, 8, 1)))
    _user_folder(tmp_path / out)
    before = _snapshot(tmp_path)
    proc = h.medsr("infer", src.name, "-o", out, "--overwrite", *h.X2_CUBIC, cwd=tmp_path)
    _refused(proc, tmp_path, before, "directory medsr did not write")


def test_overwrite_refuses_a_medsr_folder_the_user_added_files_to(tmp_path):
    _dicom_series(tmp_path / "dcm")
    assert h.medsr("infer", "dcm", "-o", "out", *h.X2_CUBIC, cwd=tmp_path).returncode == 0
    (tmp_path / "out" / "report.txt").write_text("my reading of the scan\n")
    before = _snapshot(tmp_path)
    proc = h.medsr("infer", "dcm", "-o", "out", "--overwrite", *h.X2_CUBIC, cwd=tmp_path)
    _refused(proc, tmp_path, before, "out is a directory medsr did not write")


def test_special_file_output_is_refused(tmp_path):
    src = h.nifti(tmp_path / "a.nii.gz", h.small_volume())
    os.mkfifo(tmp_path / "pipe.nii.gz")
    before = _snapshot(tmp_path)
    proc = h.medsr("infer", src.name, "-o", "pipe.nii.gz", "--overwrite", *h.X2_CUBIC,
                   cwd=tmp_path)
    _refused(proc, tmp_path, before, "not a regular file or directory")
    assert (tmp_path / "pipe.nii.gz").is_fifo()


# ------------------------------------------------------------------ the input's folders


@pytest.mark.parametrize("kind", ["dicom", "frames"])
def test_output_that_holds_the_input_is_refused(tmp_path, kind):
    proj = tmp_path / "study"
    src = _dicom_series(proj / "dcm") if kind == "dicom" else _frames(proj / "frames")
    (proj / "notes.txt").write_text("protocol\n")
    before = _snapshot(tmp_path)
    rel = f"study/{src.name}"
    proc = h.medsr("infer", rel, "-o", "study", "--overwrite", *h.X2_CUBIC, cwd=tmp_path)
    _refused(proc, tmp_path, before, f"study contains the input {rel}")


@pytest.mark.parametrize("out", [".", ""])
def test_working_directory_holding_the_input_is_refused(tmp_path, out):
    src = _dicom_series(tmp_path / "dcm")
    before = _snapshot(tmp_path)
    proc = h.medsr("infer", src.name, "-o", out, "--overwrite", *h.X2_CUBIC, cwd=tmp_path)
    line = _refused(proc, tmp_path, before, "contains the input")
    assert "busy" not in line.lower()


@pytest.mark.parametrize("out", ["."])
def test_working_directory_is_refused(tmp_path, out):
    src = h.nifti(tmp_path / "a.nii.gz", h.small_volume())
    work = _user_folder(tmp_path / "work")
    before = _snapshot(tmp_path)
    proc = h.medsr("infer", src, "-o", out, "--overwrite", *h.X2_CUBIC, cwd=work)
    _refused(proc, tmp_path, before, "working directory")


@pytest.mark.parametrize(("kind", "overwrite"), [("dicom", False), ("frames", True)])
def test_output_inside_the_input_folder_is_refused(tmp_path, kind, overwrite):
    src = _dicom_series(tmp_path / "dcm") if kind == "dicom" else _frames(tmp_path / "frames")
    before = _snapshot(tmp_path)
    names = h.entries(src)
    extra = ("--overwrite",) if overwrite else ()
    proc = h.medsr("infer", src.name, "-o", f"{src.name}/out", *extra, *h.X2_CUBIC,
                   cwd=tmp_path)
    _refused(proc, tmp_path, before, f"inside the input {src.name}")
    assert h.entries(src) == names  # nothing added to the input folder


# ------------------------------------------------------------------ the input itself


@pytest.mark.parametrize("spelling", ["./a.nii.gz", "sub/../a.nii.gz", "absolute", "symlink",
                                      "hardlink"])
def test_output_equal_to_the_input_by_another_spelling(tmp_path, spelling):
    src = h.nifti(tmp_path / "a.nii.gz", h.small_volume())
    (tmp_path / "sub").mkdir()
    out = {"absolute": str(src), "symlink": "link.nii.gz", "hardlink": "hard.nii.gz"
           }.get(spelling, spelling)
    if spelling == "symlink":
        (tmp_path / "link.nii.gz").symlink_to("a.nii.gz")
    if spelling == "hardlink":
        os.link(src, tmp_path / "hard.nii.gz")
    before = _snapshot(tmp_path)
    proc = h.medsr("infer", "a.nii.gz", "-o", out, "--overwrite", *h.X2_CUBIC, cwd=tmp_path)
    _refused(proc, tmp_path, before, "is the input")


def test_picture_output_equal_to_the_input(tmp_path):
    Image.fromarray(np.zeros((6, 8), np.uint8) + 7).save(tmp_path / "p.png")
    before = _snapshot(tmp_path)
    proc = h.medsr("infer", "p.png", "-o", "./p.png", "--overwrite", *h.X2_CUBIC,
                   cwd=tmp_path)
    _refused(proc, tmp_path, before, "is the input")


def test_symlinked_output_replaces_the_link_never_its_target(tmp_path):
    h.nifti(tmp_path / "a.nii.gz", h.small_volume())
    other = h.nifti(tmp_path / "mine.nii.gz", h.small_volume(seed=3))
    (tmp_path / "link.nii.gz").symlink_to(other.name)
    before = h.fingerprint(other)
    proc = h.medsr("infer", "a.nii.gz", "-o", "link.nii.gz", *h.X2_CUBIC, cwd=tmp_path)
    h.assert_one_line_error(proc, "link.nii.gz exists")
    proc = h.medsr("infer", "a.nii.gz", "-o", "link.nii.gz", "--overwrite", *h.X2_CUBIC,
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "link.nii.gz").is_symlink()
    assert h.fingerprint(other) == before
    _no_temporaries(tmp_path)


def test_missing_output_directory(tmp_path):
    h.nifti(tmp_path / "a.nii.gz", h.small_volume())
    before = _snapshot(tmp_path)
    proc = h.medsr("infer", "a.nii.gz", "-o", "nowhere/out.nii.gz", *h.X2_CUBIC,
                   cwd=tmp_path)
    _refused(proc, tmp_path, before, "nowhere does not exist")
    assert not (tmp_path / "nowhere").exists()


# ------------------------------------------------------------------ what --overwrite may do


def test_overwrite_replaces_a_previous_medsr_dicom_series(tmp_path):
    _dicom_series(tmp_path / "dcm")
    before = _snapshot(tmp_path / "dcm")
    assert h.medsr("infer", "dcm", "-o", "out", *h.X2_CUBIC, cwd=tmp_path).returncode == 0
    assert not (tmp_path / "out" / ".medsr-output").exists()  # a DICOM series stays pure
    uid = {pydicom.dcmread(p).SeriesInstanceUID for p in (tmp_path / "out").iterdir()}
    proc = h.medsr("infer", "dcm", "-o", "out", "--overwrite", *h.X2_CUBIC, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    new = {pydicom.dcmread(p).SeriesInstanceUID for p in (tmp_path / "out").iterdir()}
    assert len(new) == 1 and new != uid
    assert _snapshot(tmp_path / "dcm") == before
    _no_temporaries(tmp_path)


def test_overwrite_replaces_a_previous_medsr_frames_folder_and_empty_folders(tmp_path):
    _frames(tmp_path / "frames")
    (tmp_path / "out").mkdir()  # an empty folder holds nothing to lose
    for _ in range(2):
        proc = h.medsr("infer", "frames", "-o", "out", "--overwrite", *h.X2_CUBIC,
                       cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / "out" / ".medsr-output").is_file()
        assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [
            "f0.png", "f1.png", "f2.png"]
    _no_temporaries(tmp_path)


def test_overwrite_replaces_a_file_with_a_dicom_series(tmp_path):
    _dicom_series(tmp_path / "dcm")
    (tmp_path / "out").write_text("an old file\n")
    proc = h.medsr("infer", "dcm", "-o", "out", "--overwrite", *h.X2_CUBIC, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out").is_dir()
    _no_temporaries(tmp_path)


# ------------------------------------------------------------------ the other commands


@pytest.mark.parametrize("case", ["input", "user folder", "working directory", "sidecar"])
def test_degrade_outputs(tmp_path, case):
    h.nifti(tmp_path / "a.nii.gz", h.small_volume())
    _user_folder(tmp_path / "mydocs.nii.gz")
    out, match = {"input": ("./a.nii.gz", "is the input"),
                  "user folder": ("mydocs.nii.gz", "directory medsr did not write"),
                  "working directory": (".", "contains the input"),
                  "sidecar": ("b.nii.gz", "directory medsr did not write")}[case]
    if case == "sidecar":
        _user_folder(tmp_path / "b.json")
    before = _snapshot(tmp_path)
    proc = h.medsr("degrade", "a.nii.gz", "-o", out, "--scale", "2", "--overwrite",
                   cwd=tmp_path)
    _refused(proc, tmp_path, before, match)


@pytest.mark.parametrize("case", ["reference", "test", "user folder", "same file"])
def test_eval_outputs(tmp_path, case):
    h.nifti(tmp_path / "hr.nii.gz", h.small_volume())
    h.nifti(tmp_path / "sr.nii.gz", h.small_volume(seed=1))
    _user_folder(tmp_path / "mydocs")
    opts = {"reference": ["--json", "./hr.nii.gz"], "test": ["--csv", "sr.nii.gz"],
            "user folder": ["--json", "mydocs"],
            "same file": ["--json", "r.txt", "--csv", "./r.txt"]}[case]
    match = {"reference": "is the input", "test": "is the input",
             "user folder": "directory medsr did not write", "same file": "both name"}[case]
    before = _snapshot(tmp_path)
    proc = h.medsr("eval", "--reference", "hr.nii.gz", "--test", "sr.nii.gz", *opts,
                   "--overwrite", cwd=tmp_path)
    _refused(proc, tmp_path, before, match)


def test_cohort_output_folder_inside_an_input_is_refused(tmp_path):
    _dicom_series(tmp_path / "dcm1")
    _dicom_series(tmp_path / "dcm2")
    before = _snapshot(tmp_path)
    proc = h.medsr("infer", "dcm1", "dcm2", "-o", "dcm1/out", *h.X2_CUBIC, cwd=tmp_path)
    _refused(proc, tmp_path, before, "inside the input dcm1")
    assert not (tmp_path / "dcm1" / "out").exists()


def test_cohort_output_of_one_scan_is_never_another_scans_input(tmp_path):
    h.nifti(tmp_path / "x.nii.gz", h.small_volume())
    h.nifti(tmp_path / "x_sr.nii.gz", h.small_volume(seed=1))  # x's default output name
    before = _snapshot(tmp_path)
    proc = h.medsr("infer", "x.nii.gz", "x_sr.nii.gz", "--overwrite", *h.X2_CUBIC,
                   cwd=tmp_path)
    _refused(proc, tmp_path, before, "which is the input x_sr.nii.gz")


@pytest.mark.parametrize("summary", ["./a.nii.gz", "mydocs"])
def test_cohort_summary_never_replaces_an_input_or_a_user_folder(tmp_path, summary):
    h.nifti(tmp_path / "a.nii.gz", h.small_volume())
    h.nifti(tmp_path / "b.nii.gz", h.small_volume(seed=1))
    _user_folder(tmp_path / "mydocs")
    before = _snapshot(tmp_path)
    proc = h.medsr("infer", "a.nii.gz", "b.nii.gz", "-o", "out", "--summary", summary,
                   *h.X2_CUBIC, cwd=tmp_path)
    _refused(proc, tmp_path, before, "is the input|directory medsr did not write")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ atomic_path itself


def _fail_nth_replace(monkeypatch, n: int) -> list:
    """os.replace raises EBUSY on its ``n``-th call (1-based) in medsr.io.common."""
    import medsr.io.common as common

    calls = []
    real = os.replace

    def replace(src, dst):
        calls.append((src, dst))
        if len(calls) == n:
            raise OSError(errno.EBUSY, "Device or resource busy")
        return real(src, dst)

    monkeypatch.setattr(common.os, "replace", replace)
    return calls


@pytest.mark.parametrize("n", [1, 2])
def test_atomic_directory_swap_failure_keeps_the_old_output(tmp_path, monkeypatch, n):
    """EBUSY on moving the old directory aside (n=1) or on renaming the new one into
    place (n=2): the old output is intact, in place, and no temporary is left."""
    from medsr.errors import OutputError
    from medsr.io.common import atomic_path, write_marker

    out = tmp_path / "series"
    out.mkdir()
    (out / "old.dcm").write_bytes(b"previous output")
    write_marker(out)
    before = h.fingerprint(out)
    calls = _fail_nth_replace(monkeypatch, n)
    with pytest.raises(OutputError, match="Device or resource busy"):
        with atomic_path(out) as tmp:
            tmp.mkdir()
            (tmp / "new.dcm").write_bytes(b"new output")
    assert len(calls) == (1 if n == 1 else 3)  # n=2: moved aside, failed, moved back
    assert h.fingerprint(out) == before
    assert h.entries(tmp_path) == ["series"]


def test_atomic_path_refuses_a_folder_medsr_did_not_write(tmp_path):
    from medsr.errors import OutputError
    from medsr.io.common import atomic_path

    _user_folder(tmp_path / "mine")
    before = _snapshot(tmp_path)
    with pytest.raises(OutputError, match="did not write"):
        with atomic_path(tmp_path / "mine") as tmp:
            tmp.write_text("x")
    assert _snapshot(tmp_path) == before
    assert h.entries(tmp_path) == ["mine"]
