"""The BIDS App (issue 25 item 3): ``medsr bids`` run as a real subprocess on a small BIDS
dataset of 3 subjects (one with a session, one with two runs, one corrupt file); the
derivatives are checked with the offline BIDS validator (bids-validator-deno: zero
errors), nibabel (shape, affine A @ S) and the sidecars (Sources, provenance)."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medsr.geometry import upsampled_affine

pytest.importorskip("bids")
VALIDATOR = shutil.which("bids-validator-deno") or str(
    Path(sys.executable).parent / "bids-validator-deno")
AFFINE = np.array([[0.0, 0.0, 4.0, -30.0], [-1.0, 0.0, 0.0, 12.0], [0.0, 1.0, 0.0, -8.5],
                   [0.0, 0.0, 0.0, 1.0]])  # thick axis k along x: a sagittal-ish stack


def _scan(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.indices((16, 16, 4)).astype(np.float32)
    data = 400 + 150 * np.sin(x[0] / 2.5 + seed) * np.cos(x[1] / 3.0) + 60 * np.cos(x[2] / 1.7)
    nib.save(nib.Nifti1Image(data.astype(np.float32), AFFINE), path)
    path.with_name(path.name.replace(".nii.gz", ".json")).write_text('{"EchoTime": 0.003}')


def make_dataset(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "toy", "BIDSVersion": "1.10.0"}))
    (root / "participants.tsv").write_text("participant_id\nsub-01\nsub-02\nsub-03\n")
    (root / "README").write_text("A toy dataset for medsr's tests.\n")
    _scan(root / "sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz", 0)
    _scan(root / "sub-02/anat/sub-02_run-1_T1w.nii.gz", 1)
    _scan(root / "sub-02/anat/sub-02_run-2_T1w.nii.gz", 2)
    _scan(root / "sub-02/anat/sub-02_run-1_T2w.nii.gz", 3)  # not asked for below
    bad = root / "sub-03/anat/sub-03_T1w.nii.gz"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(gzip.compress(b"this is no NIfTI " * 8))  # corrupt
    return root


def medsr(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medsr", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=900, env={**os.environ})


@pytest.fixture(scope="module")
def app_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("bids")
    make_dataset(d / "ds")
    proc = medsr("bids", "ds", "ds/derivatives/medsr", "participant", "--suffix", "T1w",
                 "--scale", "4,1,1", "--device", "cpu", cwd=d)
    return d, proc


def test_corrupt_subject_is_reported_and_others_done(app_run):
    d, proc = app_run
    assert proc.returncode == 1, proc.stderr
    errors = [x for x in proc.stderr.splitlines() if x.startswith("medsr: error:")]
    assert len(errors) == 1 and "sub-03_T1w.nii.gz" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert "4 scans: 3 ok or skipped, 1 failed" in proc.stderr
    out = d / "ds/derivatives/medsr"
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.nii.gz"))
    assert written == ["sub-01/ses-1/anat/sub-01_ses-1_res-x4x1x1_T1w.nii.gz",
                       "sub-02/anat/sub-02_run-1_res-x4x1x1_T1w.nii.gz",
                       "sub-02/anat/sub-02_run-2_res-x4x1x1_T1w.nii.gz"]
    assert not list(out.glob("sub-03*")) and not list(out.rglob(".medsr-tmp*"))


def test_outputs_are_placed_and_described(app_run):
    d, _ = app_run
    out = d / "ds/derivatives/medsr"
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    (gen,) = desc["GeneratedBy"]
    assert gen["Name"] == "medsr" and gen["Version"] and "Model" in gen
    for raw in sorted((d / "ds").glob("sub-0[12]/**/*_T1w.nii.gz")):
        rel = raw.relative_to(d / "ds")
        res = out / rel.parent / rel.name.replace("_T1w", "_res-x4x1x1_T1w")
        img = nib.load(res)
        assert img.shape == (64, 16, 4)
        np.testing.assert_allclose(img.affine, upsampled_affine(AFFINE, (4, 1, 1)), atol=1e-5)
        side = json.loads(res.with_name(res.name.replace(".nii.gz", ".json")).read_text())
        assert side["Sources"] == [f"bids:raw:{rel.as_posix()}"]
        assert "x4x1x1" in side["Resolution"] and side["SkullStripped"] is False
        assert side["input"]["sha256"] == hashlib.sha256(raw.read_bytes()).hexdigest()
        assert side["model"][0]["name"] == "thick-slice-x4"
        assert side["model"][0]["sha256"] == hashlib.sha256(
            (Path(__import__("medsr").__file__).parent / "weights" /
             "thick_slice_x4.safetensors").read_bytes()).hexdigest()
        assert side["command"].startswith("medsr bids ds ")


def test_bids_validator_accepts_the_derivatives(app_run):
    d, _ = app_run
    proc = subprocess.run([VALIDATOR, str(d / "ds/derivatives/medsr"), "--format", "json"],
                          capture_output=True, text=True, timeout=600)
    report = json.loads(proc.stdout)
    errors = [i for i in report["issues"]["issues"] if i.get("severity") == "error"]
    assert errors == [], errors
    assert proc.returncode == 0


def test_rerun_skips_finished_and_group_summarises(app_run):
    d, _ = app_run
    out = d / "ds/derivatives/medsr"
    res = out / "sub-02/anat/sub-02_run-1_res-x4x1x1_T1w.nii.gz"
    before = res.stat().st_mtime_ns
    proc = medsr("bids", "ds", "ds/derivatives/medsr", "participant", "--participant-label",
                 "02", "--suffix", "T1w", "--scale", "4,1,1", cwd=d)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("done earlier") == 2 and res.stat().st_mtime_ns == before
    # a session filter: only sub-01's ses-1 scan
    proc = medsr("bids", "ds", "ds/derivatives/medsr", "participant", "--session-label",
                 "1", "--suffix", "T1w", "--scale", "4,1,1", cwd=d)
    assert proc.returncode == 0 and "1 scans: 1 ok or skipped" in proc.stderr, proc.stderr
    proc = medsr("bids", "ds", "ds/derivatives/medsr", "group", "--suffix", "T1w",
                 "--scale", "4,1,1", cwd=d)
    assert proc.returncode == 1 and "1 scans have no output" in proc.stderr, proc.stderr
    rows = list(csv.DictReader((out / "medsr_summary.csv").open()))
    assert [(r["subject"], r["status"]) for r in rows] == [
        ("01", "ok"), ("02", "ok"), ("02", "ok"), ("03", "missing")]
    assert rows[0]["session"] == "1" and rows[0]["model"] == "thick-slice-x4"
    assert len(rows[0]["model_sha256"]) == 64 and rows[1]["shape_out"] == "64x16x4"


def test_bad_requests_are_one_line(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    for args, words in [
        (["ds", "out", "participant", "--participant-label", "09"], "not in"),
        (["ds", "ds", "participant"], "would hold the raw dataset"),
        (["ds", "ds/sub-01/x", "participant"], "inside the raw dataset"),
        (["nowhere", "out", "participant"], "not a directory"),
    ]:
        proc = medsr("bids", *args, cwd=tmp_path)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and words in lines[0], proc.stderr
    assert not (tmp_path / "out").exists() and not (ds / "sub-01" / "x").exists()


def test_without_pybids_one_line(tmp_path):
    """The [bids] extra missing: one line naming it, exit 2, nothing written."""
    make_dataset(tmp_path / "ds")
    block = ("import importlib.abc, sys\n"
             "class B(importlib.abc.MetaPathFinder):\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name.split('.')[0] == 'bids':\n"
             "            raise ModuleNotFoundError(name, name=name)\n"
             "sys.meta_path.insert(0, B())\n"
             "from medsr.cli import main\n"
             "sys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.run([sys.executable, "-c", block, "bids", "ds", "out", "participant"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "pip install 'medsr[bids]'" in lines[0]
    assert not (tmp_path / "out").exists()
