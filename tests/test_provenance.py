"""Provenance sidecars (issue 25 item 4): ``medsr infer`` writes ``<stem>.json`` beside a
NIfTI/TIFF output with what made it; the weights' hash matches the shipped file, the
recorded grid matches the file as nibabel reads it; ``--no-sidecar``; the output's
overwrite rules; no sidecar for DICOM; the cohort summary's model identity."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile

from medsr import __version__
from medsr.cli import main
from medsr.pretrained import PRETRAINED
from medsr.provenance import sidecar_path


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _scan(path: Path, shape=(16, 16, 4), spacing=(1.0, 1.0, 4.0)) -> Path:
    x = np.indices(shape).astype(np.float32)
    data = 400 + 150 * np.sin(x[0] / 2.5) * np.cos(x[1] / 3.0) + 60 * np.cos(x[2] / 1.7)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-7.5, 3.25, 10.0]
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), path)
    return path


def test_sidecar_paths():
    assert sidecar_path("a/scan_sr.nii.gz") == Path("a/scan_sr.json")
    assert sidecar_path("s.tif") == Path("s.json") and sidecar_path("s.mgz") == Path("s.json")
    assert sidecar_path("dicom_out") is None and sidecar_path("x.png") is None


def test_network_run_records_model_hash_and_grid(tmp_path):
    """A real ``python -m medsr infer`` run (its own command line): the default network."""
    src = _scan(tmp_path / "scan.nii.gz")
    proc = subprocess.run([sys.executable, "-m", "medsr", "infer", str(src), "--device", "cpu"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "scan_sr.nii.gz"
    rec = json.loads((tmp_path / "scan_sr.json").read_text())
    assert rec["GeneratedBy"][0]["Name"] == "medsr"
    assert rec["GeneratedBy"][0]["Version"] == __version__
    assert rec["command"].startswith("medsr infer ") and str(src) in rec["command"]
    assert rec["input"] == {"path": str(src), "sha256": _sha(src)}
    (model,) = rec["model"]
    shipped = PRETRAINED[model["name"]]
    assert model["name"] == "thick-slice-x4" and model["shipped"]
    assert model["sha256"] == _sha(shipped.path)  # the weights' hash matches the shipped file
    img = nib.load(out)
    assert rec["output"]["shape"] == list(img.shape) == [16, 16, 16]
    np.testing.assert_allclose(rec["output"]["affine"], img.affine, atol=1e-5)
    np.testing.assert_allclose(rec["output"]["spacing"], [1, 1, 1])
    assert rec["factors"] == [1.0, 1.0, 4.0] and rec["method"] == "thick-slice-x4"
    assert rec["device"] == "cpu" and rec["precision"] == "fp32"
    assert rec["seconds"] > 0 and isinstance(rec["notes"], list)


def test_classical_tiff_and_no_sidecar(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = _scan(tmp_path / "scan.nii.gz")
    assert main(["infer", str(src), "-o", "lin.nii.gz", "--method", "linear"]) == 0
    rec = json.loads(Path("lin.json").read_text())
    assert rec["model"] == [] and rec["method"] == "linear" and rec["device"] == "cpu"
    assert rec["command"] == f"medsr infer {src} -o lin.nii.gz --method linear"
    assert main(["infer", str(src), "-o", "n.nii.gz", "--method", "linear", "--no-sidecar"]) == 0
    assert Path("n.nii.gz").exists() and not Path("n.json").exists()
    stack = (np.indices((4, 16, 16)).sum(0) * 10).astype(np.uint16)
    tifffile.imwrite("stack.tif", stack, imagej=True, resolution=(10.0, 10.0),
                     metadata={"axes": "ZYX", "spacing": 0.4, "unit": "micron"})
    assert main(["infer", "stack.tif", "--method", "linear", "--scale", "1,1,2"]) == 0
    rec = json.loads(Path("stack_sr.json").read_text())
    assert rec["output"]["shape"][2] == 8 and rec["input"]["sha256"] == _sha(Path("stack.tif"))


def test_sidecar_follows_the_output_rules(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    src = _scan(tmp_path / "scan.nii.gz")
    args = ["infer", str(src), "-o", "o.nii.gz", "--method", "linear"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2  # the output exists: refused, sidecar untouched
    first = Path("o.json").stat()
    Path("o.nii.gz").unlink()  # a medsr sidecar without its output is stale: replaced
    assert main(args) == 0
    again = Path("o.json").stat()  # written anew (atomically: a new file), not kept
    assert (again.st_ino, again.st_mtime_ns) != (first.st_ino, first.st_mtime_ns)
    assert json.loads(Path("o.json").read_text())["output"]["path"].endswith("o.nii.gz")
    Path("o.nii.gz").unlink()
    Path("o.json").write_text('{"mine": 1}')  # a JSON medsr did not write: refused
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "o.json exists" in err[0] and "--overwrite" in err[0]
    assert not Path("o.nii.gz").exists() and Path("o.json").read_text() == '{"mine": 1}'
    assert main([*args, "--overwrite"]) == 0
    assert json.loads(Path("o.json").read_text())["output"]["path"] == "o.nii.gz"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".medsr-tmp")]
    # the input is never the sidecar
    Path("x.json").write_text("{}")
    capsys.readouterr()
    assert main(["infer", "x.json", "-o", "x.nii.gz", "--method", "linear"]) == 2
    assert "is the input" in capsys.readouterr().err and Path("x.json").read_text() == "{}"


def test_dicom_output_has_no_sidecar(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sys.path.insert(0, str(Path(__file__).parent))
    from dicom_fixtures import oblique_case, write_series

    case = oblique_case((12, 10, 4))
    write_series(tmp_path / "dcm", case["stored"], case["A_lps"], slope=case["slope"],
                 intercept=case["intercept"])
    assert main(["infer", "dcm", "-o", "dcm_sr", "--method", "linear", "--scale", "1,1,2"]) == 0
    assert Path("dcm_sr").is_dir() and not list(tmp_path.glob("*.json"))


@pytest.mark.slow
def test_self_supervised_records_its_slice_profile(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = _scan(tmp_path / "thick.nii.gz", shape=(24, 24, 6), spacing=(1.0, 1.0, 3.0))
    assert main(["infer", str(src), "--self-supervised", "--steps", "3", "--budget", "120s",
                 "--slice-profile", "rect", "--device", "cpu"]) == 0
    rec = json.loads(Path("thick_sr.json").read_text())
    prof = rec["slice_profile"]
    assert prof["source"] == "given" and prof["family"] == "rect"
    assert prof["thickness_mm"] == pytest.approx(3.0) and len(prof["kernel"]) > 1
    assert rec["method"] == "self-supervised" and rec["device"] == "cpu"
    assert rec["output"]["shape"] == [24, 24, 18]


def test_cohort_summary_has_the_model_hash(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = _scan(tmp_path / "in" / "a.nii.gz")
    b = _scan(tmp_path / "in" / "b.nii.gz")
    assert main(["infer", str(a), str(b), "-o", "out", "--device", "cpu"]) == 0
    rows = list(csv.DictReader(Path("out/medsr_summary.csv").open()))
    want = _sha(PRETRAINED["thick-slice-x4"].path)
    assert [r["model_sha256"] for r in rows] == [want, want]
    assert sorted(p.name for p in Path("out").glob("*.json")) == ["a_sr.json", "b_sr.json"]


def test_cohort_summary_hashes_a_checkpoint_given_by_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped = PRETRAINED["thick-slice-x4"].path
    ckpt = tmp_path / "models" / "mine.safetensors"
    ckpt.parent.mkdir()
    shutil.copy(shipped, ckpt)
    shutil.copy(shipped.with_suffix(".json"), ckpt.with_suffix(".json"))
    a = _scan(tmp_path / "in" / "a.nii.gz")
    b = _scan(tmp_path / "in" / "b.nii.gz")
    assert main(["infer", str(a), str(b), "-o", "out", "--model", str(ckpt),
                 "--device", "cpu"]) == 0
    rows = list(csv.DictReader(Path("out/medsr_summary.csv").open()))
    assert [r["model_sha256"] for r in rows] == [_sha(ckpt)] * 2

