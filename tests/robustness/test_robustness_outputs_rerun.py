"""Rerun of issue 21's output battery: the cohort summary never replaces the --list file
or one of the run's outputs, ``medsr eval --out`` follows every output's rules, and an
error message naming a path with a newline stays one line (in-process, to stay fast)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import robust_helpers as h

from medsr.cli import main

ROOT = Path(__file__).resolve().parents[2]
X2_LINEAR = ("--method", "linear", "--scale", "2")
MODEL = ROOT / "medsr" / "weights" / "in_plane_x2.safetensors"


def _one_error(capsys, code: int, match: str | None = None) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines()
             if ln.strip() and not ln.startswith(("medsr: warning:", "medsr: progress:"))]
    assert code == 2, err
    assert "Traceback" not in err, err
    assert len(lines) == 1 and re.match(r"^medsr( \w+)?: error: \S", lines[0]), err
    if match:
        assert re.search(match, lines[0]), lines[0]
    return lines[0]


@pytest.fixture
def scans(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    h.nifti(tmp_path / "a.nii.gz", h.small_volume(0))
    h.nifti(tmp_path / "b.nii.gz", h.small_volume(1))
    (tmp_path / "l.csv").write_text("input\na.nii.gz\nb.nii.gz\n")
    return tmp_path


@pytest.mark.parametrize("summary", ["l.csv", "./l.csv", "od/../l.csv"])
def test_summary_never_replaces_the_list_file(scans, capsys, summary):
    before = h.fingerprint(scans)
    code = main(["infer", "--list", "l.csv", "-o", "od", "--summary", summary, "--overwrite",
                 *X2_LINEAR])
    _one_error(capsys, code, r"cohort list")
    assert h.fingerprint(scans) == before
    assert not (scans / "od").exists()


def test_default_summary_never_replaces_a_list_file_in_the_output_folder(scans, capsys):
    (scans / "od").mkdir()
    (scans / "od" / "medsr_summary.csv").write_text("input\n../a.nii.gz\n../b.nii.gz\n")
    before = h.fingerprint(scans)
    code = main(["infer", "--list", "od/medsr_summary.csv", "-o", "od", *X2_LINEAR])
    _one_error(capsys, code, r"summary")
    assert h.fingerprint(scans) == before


@pytest.mark.parametrize("summary", ["od/a_sr.nii.gz", "od/./b_sr.nii.gz"])
def test_summary_never_replaces_an_output_of_the_run(scans, capsys, summary):
    assert main(["infer", "a.nii.gz", "b.nii.gz", "-o", "od", *X2_LINEAR]) == 0
    capsys.readouterr()
    before = h.fingerprint(scans)
    code = main(["infer", "a.nii.gz", "b.nii.gz", "-o", "od", "--summary", summary,
                 "--overwrite", *X2_LINEAR])
    _one_error(capsys, code, r"output")
    assert h.fingerprint(scans) == before


def test_summary_elsewhere_still_works(scans, capsys):
    assert main(["infer", "--list", "l.csv", "-o", "od", "--summary", "s.csv",
                 *X2_LINEAR]) == 0
    assert (scans / "s.csv").read_text().count("ok") == 2
    assert (scans / "od" / "a_sr.nii.gz").is_file()


def _eval(*extra: str) -> int:
    return main(["eval", "--model", str(MODEL), "--degradation", "bicubic", "--no-figures",
                 "--device", "cpu", *extra])


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_eval_out_never_replaces_a_users_files(scans, capsys, overwrite):
    res = scans / "res"
    res.mkdir()
    (res / "eval.csv").write_text("my csv\n")
    (res / "eval.md").write_text("my notes\n")
    before = h.fingerprint(scans)
    code = _eval("--data", "a.nii.gz", "--out", "res", *overwrite)
    _one_error(capsys, code, r"res")
    assert h.fingerprint(scans) == before
    assert h.stray_temporaries(scans) == [] and sorted(h.entries(res)) == ["eval.csv", "eval.md"]


@pytest.mark.parametrize("out", ["dd", "dd/ev", "./dd/../dd"])
def test_eval_out_is_never_the_data_folder_or_inside_it(scans, capsys, out):
    dd = scans / "dd"
    dd.mkdir()
    h.nifti(dd / "r.nii.gz", h.small_volume(2, (16, 16, 4)))
    before = h.fingerprint(scans)
    code = _eval("--data", "dd", "--out", out, "--overwrite")
    _one_error(capsys, code, r"input")
    assert h.fingerprint(scans) == before
    assert h.entries(dd) == ["r.nii.gz"]


def test_eval_out_replaced_only_with_overwrite(scans, capsys):
    h.nifti(scans / "r.nii.gz", h.small_volume(2, (16, 16, 4)))
    assert _eval("--data", "r.nii.gz", "--out", "res") == 0
    assert (scans / "res" / "eval.csv").is_file()
    capsys.readouterr()
    before = h.fingerprint(scans)
    _one_error(capsys, _eval("--data", "r.nii.gz", "--out", "res"), r"--overwrite")
    assert h.fingerprint(scans) == before
    assert _eval("--data", "r.nii.gz", "--out", "res", "--overwrite") == 0
    assert sorted(h.entries(scans / "res")) == [".medsr-output", "eval.csv", "eval.json",
                                                "eval.md"]
    assert h.stray_temporaries(scans) == []


@pytest.mark.parametrize("name", ["bad\nname.nii", "tab\there.nii", "cr\rname.nii.gz"])
def test_error_naming_a_path_with_control_characters_is_one_line(scans, capsys, name):
    code = main(["infer", name, "-o", "out.nii.gz", *X2_LINEAR])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "\r" not in err and "\t" not in err, err
    assert err.startswith("medsr: error: ")
    assert repr(name)[1:-1].split("name")[0] in err or "\\" in err
    assert not (scans / "out.nii.gz").exists()


def test_binary_cohort_list_is_one_line(tmp_path):
    h.nifti(tmp_path / "a.nii.gz", h.small_volume())
    (tmp_path / "l.csv").write_bytes(bytes(range(256)) * 8)
    before = h.fingerprint(tmp_path)
    proc = h.medsr("infer", "--list", "l.csv", "-o", "od", "--method", "linear", "--scale",
                   "2", cwd=tmp_path)
    h.assert_one_line_error(proc, "not a UTF-8 CSV")
    assert h.fingerprint(tmp_path) == before


def test_save_model_never_replaces_a_file_without_overwrite(tmp_path):
    h.nifti(tmp_path / "a.nii.gz", h.small_volume())
    (tmp_path / "m.safetensors").write_bytes(b"the user's own file")
    before = h.fingerprint(tmp_path)
    proc = h.medsr("infer", "a.nii.gz", "-o", "o.nii.gz", "--self-supervised", "--steps", "1",
                   "--save-model", "m.safetensors", cwd=tmp_path)
    h.assert_one_line_error(proc, "m.safetensors exists; pass --overwrite")
    assert h.fingerprint(tmp_path) == before
