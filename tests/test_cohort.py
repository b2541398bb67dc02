"""Cohort inference: each scan on its own, a summary, sharding across real torchrun ranks."""

import csv
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medsr.cli import main


def make_cohort(root: Path, n: int = 6, corrupt: int = 2) -> list[Path]:
    root.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = root / f"scan{i:02d}.nii.gz"
        if i == corrupt:
            p.write_bytes(b"\x1f\x8b" + rng.bytes(300))  # gzip magic, garbage after
        else:
            affine = np.diag([1.0, 1.0, 3.0, 1.0])
            affine[:3, 3] = [-10, 5, i]
            data = rng.integers(0, 1000, size=(8, 7, 4)).astype(np.int16)
            nib.save(nib.Nifti1Image(data, affine), p)
        paths.append(p)
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_summary(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_cohort_in_one_process_reports_failure_and_goes_on(tmp_path, capsys):
    paths = make_cohort(tmp_path / "in")
    out = tmp_path / "out"
    code = main(["infer", str(tmp_path / "in" / "*.nii.gz"), "-o", str(out)])
    assert code == 1
    rows = read_summary(out / "medsr_summary.csv")
    assert [Path(r["input"]).name for r in rows] == [p.name for p in paths]
    status = {Path(r["input"]).name: r["status"] for r in rows}
    assert status.pop("scan02.nii.gz") == "failed"
    assert set(status.values()) == {"ok"}
    ok = [r for r in rows if r["status"] == "ok"]
    assert all(r["shape_out"] == "8x7x12" and r["spacing_out"] == "1x1x1" for r in ok)
    for r in ok:
        img = nib.load(r["output"])
        assert img.shape == (8, 7, 12)
    assert not (out / "scan02_sr.nii.gz").exists()
    err = capsys.readouterr().err
    assert "Traceback" not in err and "scan02.nii.gz" in err

    # restart: everything that exists is skipped, the corrupt one fails again
    before = {p: p.stat().st_mtime_ns for p in out.glob("*_sr.nii.gz")}
    code = main(["infer", str(tmp_path / "in" / "*.nii.gz"), "-o", str(out), "--skip-existing"])
    assert code == 1
    rows = read_summary(out / "medsr_summary.csv")
    assert sorted(r["status"] for r in rows) == ["failed"] + ["skipped"] * 5
    assert before == {p: p.stat().st_mtime_ns for p in out.glob("*_sr.nii.gz")}


def test_cohort_list_csv(tmp_path):
    make_cohort(tmp_path / "in", n=3, corrupt=-1)
    lst = tmp_path / "cohort.csv"
    lst.write_text("input,age\nin/scan00.nii.gz,40\nin/scan02.nii.gz,51\n")
    code = main(["infer", "--list", str(lst), "-o", str(tmp_path / "o"), "--scale", "2"])
    assert code == 0
    rows = read_summary(tmp_path / "o" / "medsr_summary.csv")
    assert [r["shape_out"] for r in rows] == ["16x14x8", "16x14x8"]


@pytest.mark.slow
def test_cohort_sharded_over_two_torchrun_ranks(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun comes with torch"
    paths = make_cohort(tmp_path / "in", n=7, corrupt=3)
    out = tmp_path / "out"
    proc = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(free_port()), "-m", "medsr", "infer",
         *[str(p) for p in paths], "-o", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode != 0, proc.stderr  # one scan failed
    rows = read_summary(out / "medsr_summary.csv")
    assert [Path(r["input"]).name for r in rows] == [p.name for p in paths]
    assert [r["status"] for r in rows].count("failed") == 1
    # every good scan written exactly once: one success line per scan across both ranks
    for p in paths:
        if p.name == "scan03.nii.gz":
            continue
        assert proc.stderr.count(f"{p.name}: 8x7x4") == 1, proc.stderr
        assert (out / p.name.replace(".nii.gz", "_sr.nii.gz")).exists()
    assert sorted(x.name for x in out.glob("*_sr.nii.gz")) == sorted(
        p.name.replace(".nii.gz", "_sr.nii.gz") for p in paths if p.name != "scan03.nii.gz")
