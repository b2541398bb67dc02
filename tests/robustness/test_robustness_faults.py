"""Faults mid-write (issue 11, item 2): a real ``medsr infer`` process is killed while it
writes a large NIfTI file or a DICOM series. The output path then holds the previous
output or nothing (never a truncated file); the next run removes the dead process's
temporary. SIGTERM is an orderly stop: exit 143, no temporary left."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import robust_helpers as h
from robust_helpers import fx


def _wait_for_temp(out_dir: Path, proc, min_bytes: int, min_files: int = 1,
                   timeout: float = 60.0) -> bool:
    """Poll until a ``.medsr-tmp-*`` entry in ``out_dir`` holds ``min_files`` files of at
    least ``min_bytes`` in total: the process is then certainly mid-write."""
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end and proc.poll() is None:
        for name in h.stray_temporaries(out_dir):
            files = [p for p in (out_dir / name).rglob("*") if p.is_file()]
            try:
                size = sum(p.stat().st_size for p in files)
            except FileNotFoundError:
                continue
            if len(files) >= min_files and size >= min_bytes:
                return True
        time.sleep(0.002)
    return False


def _kill_mid_write(args, out_dir: Path, cwd: Path, sig: int, min_bytes: int,
                    min_files: int = 1):
    proc = h.popen(*args, cwd=cwd)
    caught = _wait_for_temp(out_dir, proc, min_bytes, min_files)
    if caught:
        proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    return caught, proc.returncode, stderr


@pytest.fixture(scope="module")
def big_nifti(tmp_path_factory):
    d = tmp_path_factory.mktemp("faults_nifti")
    data = np.random.default_rng(0).random((64, 64, 32)).astype(np.float32)
    src = h.nifti(d / "in.nii.gz", data, np.eye(4))
    ref = d / "reference.nii.gz"  # what a complete run writes
    proc = h.medsr("infer", src, "-o", ref, *h.X2_CUBIC, cwd=d)
    assert proc.returncode == 0, proc.stderr
    return {"dir": d, "src": src, "ref": np.asarray(nib.load(ref).dataobj)}


def _is_complete(path: Path, ref: np.ndarray) -> bool:
    data = np.asarray(nib.load(path).dataobj)  # raises on a truncated gzip stream
    return data.shape == ref.shape and np.array_equal(data, ref)


@pytest.mark.parametrize("min_bytes", [1, 5 << 19])
def test_sigkill_during_nifti_write_keeps_previous_file(big_nifti, tmp_path, min_bytes):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "sr.nii.gz"
    previous = b"previous complete output"  # any previous content must survive unchanged
    out.write_bytes(previous)
    caught, code, stderr = _kill_mid_write(
        ["infer", big_nifti["src"], "-o", out, *h.X2_CUBIC, "--overwrite"], out_dir,
        tmp_path, signal.SIGKILL, min_bytes)
    if not caught:
        pytest.skip("the write finished before it could be caught (machine too fast)")
    assert code == -signal.SIGKILL
    assert out.read_bytes() == previous  # killed before the rename: the old file
    assert [n for n in h.entries(out_dir) if not n.startswith(".medsr-tmp-")] == ["sr.nii.gz"]
    # the next write into the directory removes the dead process's temporary
    proc = h.medsr("infer", big_nifti["src"], "-o", out_dir / "again.nii.gz", *h.X2_CUBIC,
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert h.stray_temporaries(out_dir) == []
    assert _is_complete(out_dir / "again.nii.gz", big_nifti["ref"])


def test_sigkill_at_random_times_never_leaves_a_truncated_file(big_nifti, tmp_path):
    """No previous output: killed at staggered times (before, during and maybe after the
    write), the output is absent or complete."""
    outcomes = set()
    for i, delay in enumerate((0.7, 1.2, 1.6)):
        out = tmp_path / f"sr{i}.nii.gz"
        proc = h.popen("infer", big_nifti["src"], "-o", out, *h.X2_CUBIC, cwd=tmp_path)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        if out.exists():
            assert _is_complete(out, big_nifti["ref"])
            outcomes.add("complete")
        else:
            outcomes.add("absent")
    assert outcomes  # both outcomes are acceptable; a truncated file fails _is_complete


def test_sigkill_during_dicom_series_write(tmp_path):
    case = fx.oblique_case((64, 64, 8))
    src = tmp_path / "series"
    fx.write_series(src, case["stored"], case["A_lps"])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "sr"
    first = h.medsr("infer", src, "-o", out, "--scale", "1,1,8", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = h.fingerprint(out)
    assert len(before) == 64
    caught, code, _ = _kill_mid_write(
        ["infer", src, "-o", out, "--scale", "1,1,8", "--overwrite"], out_dir, tmp_path,
        signal.SIGKILL, 1, min_files=5)
    if not caught:
        pytest.skip("the series was written before it could be caught")
    assert code == -signal.SIGKILL
    assert h.fingerprint(out) == before  # the previous series, every file intact
    uids = {pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID
            for p in out.iterdir()}
    assert len(uids) == 1


def test_sigterm_mid_write_is_an_orderly_stop(big_nifti, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "sr.nii.gz"
    out.write_bytes(b"previous")
    caught, code, stderr = _kill_mid_write(
        ["infer", big_nifti["src"], "-o", out, *h.X2_CUBIC, "--overwrite"], out_dir,
        tmp_path, signal.SIGTERM, 1)
    if not caught:
        pytest.skip("the write finished before it could be caught")
    assert code == 143, stderr
    assert "Traceback" not in stderr and "terminated" in stderr
    assert out.read_bytes() == b"previous"
    assert h.entries(out_dir) == ["sr.nii.gz"]  # the temporary was removed on the way out


def test_stale_temporaries_of_live_or_foreign_processes_are_kept(tmp_path):
    """The sweep removes only this host's temporaries of dead processes."""
    from medsr.io.common import OLD_PREFIX, TMP_PREFIX, _owner_tag, sweep_stale

    host = _owner_tag().split("-", 1)[0]
    dead = 2**22 + 12345  # above the default pid_max (4194304)
    names = {
        "dead": f"{TMP_PREFIX}{host}-{dead}-abc",
        "dead_old": f"{OLD_PREFIX}{host}-{dead}-abc",
        "alive": f"{TMP_PREFIX}{host}-{os.getpid()}-abc",
        "other_host": f"{TMP_PREFIX}otherhost{host}-{dead}-abc",
        "legacy": f"{TMP_PREFIX}abcdef",
    }
    for n in names.values():
        (tmp_path / n).mkdir()
        (tmp_path / n / "x").write_text("x")
    removed = {p.name for p in sweep_stale(tmp_path)}
    assert removed == {names["dead"], names["dead_old"]}
    assert set(h.entries(tmp_path)) == {names["alive"], names["other_host"], names["legacy"]}
