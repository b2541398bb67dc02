"""Patient data (issue 11, item 4): logs, progress lines, summaries and tables never show
the patient's name, ID or birth date; ``--anonymize`` writes the basic profile."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pydicom
import pytest
import robust_helpers as h
from robust_helpers import fx

SECRETS = [fx.PATIENT_NAME, "Janet", "Doe^", fx.PATIENT_ID, "8675309", fx.PATIENT_BIRTH,
           "1961-04-12", "12/04/1961"]


def _assert_clean(text: str | bytes, where: str) -> None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for s in SECRETS:
        assert s not in text, f"{s!r} leaked into {where}"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("patient")
    case = fx.oblique_case((16, 12, 6))
    info = {}
    for name in ("series_a", "series_b"):
        info[name] = fx.write_series(root / name, case["stored"], case["A_lps"],
                                     slope=case["slope"], intercept=case["intercept"])
    fx.write_series(root / "broken", case["stored"], case["A_lps"], ks=[0, 1, 3, 4, 5])
    fx.write_non_image(root / "series_a" / "report.dcm", info["series_a"]["study_uid"])
    return {"root": root, **info}


def test_no_patient_fields_in_any_log_summary_or_table(study, tmp_path):
    root = study["root"]
    texts: dict[str, str | bytes] = {}
    runs = {
        "infer single": ["infer", root / "series_a", "-o", tmp_path / "single.nii.gz",
                         "--scale", "1,1,2"],
        "infer cohort": ["infer", root / "series_a", root / "series_b", root / "broken",
                         "-o", tmp_path / "cohort", "--scale", "1,1,2"],
        "degrade": ["degrade", root / "series_b", "-o", tmp_path / "lr.nii.gz", "--scale",
                    "1,1,2", "--noise", "gaussian", "--sigma", "1", "--seed", "3"],
        "eval": ["eval", "--reference", root / "series_a", root / "series_b", "--test",
                 root / "series_b", root / "series_a", "--json", tmp_path / "ev.json",
                 "--csv", tmp_path / "ev.csv"],
    }
    for what, args in runs.items():
        proc = h.medsr(*args, cwd=tmp_path, env={"COLUMNS": "200"})
        assert proc.returncode in (0, 1), f"{what}: {proc.stderr}"
        texts[f"{what} stdout"] = proc.stdout
        texts[f"{what} stderr"] = proc.stderr
    assert "failed" in texts["infer cohort stderr"]  # the broken series was reported...
    assert "medsr: warning: " in texts["infer single stderr"]  # ...and so was the report
    for f in [tmp_path / "cohort" / "medsr_summary.csv", tmp_path / "lr.json",
              tmp_path / "ev.json", tmp_path / "ev.csv"]:
        texts[f.name] = f.read_bytes()
    for f in [tmp_path / "single.nii.gz", tmp_path / "lr.nii.gz",
              *sorted((tmp_path / "cohort").glob("*.nii.gz"))]:
        texts[f.name] = gzip.decompress(f.read_bytes())[:352]  # the NIfTI header (descrip)
    for where, text in texts.items():
        _assert_clean(text, where)


def _read_all(d: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted(d.iterdir())]


def test_anonymize_applies_the_basic_profile(study, tmp_path):
    src = study["root"] / "series_b"
    uids = study["series_b"]
    anon = tmp_path / "anon"
    proc = h.medsr("infer", src, "-o", anon, "--scale", "1,1,2", "--anonymize", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    _assert_clean(proc.stderr + proc.stdout, "infer --anonymize output")
    raw = b"".join(p.read_bytes() for p in anon.iterdir())
    for secret in [*SECRETS, "St Elsewhere", "Ehrlich", "ACC123", "private-secret",
                   uids["study_uid"], uids["frame_uid"], uids["series_uid"], *uids["sop_uids"]]:
        assert secret.encode() not in raw, secret
    dss = _read_all(anon)
    assert len(dss) == 12
    for d in dss:
        assert str(d.PatientName) == "ANONYMOUS"
        assert d.get("PatientBirthDate", "") == ""
        assert d.PatientIdentityRemoved == "YES" and d.DeidentificationMethod
        assert "InstitutionName" not in d and "AccessionNumber" not in d
        assert not any(e.tag.is_private for e in d.iterall())
        assert d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID
    # UIDs remapped consistently within the series
    for kw in ("StudyInstanceUID", "FrameOfReferenceUID", "SeriesInstanceUID", "PatientID"):
        assert len({str(d.get(kw)) for d in dss}) == 1, kw
    assert len({d.SOPInstanceUID for d in dss}) == 12
    refs = [[str(i.ReferencedSOPInstanceUID) for i in d.SourceImageSequence] for d in dss]
    new_refs = {r for rs in refs for r in rs}
    assert len(new_refs) == len(uids["sop_uids"])  # one new UID per source instance
    assert new_refs.isdisjoint(uids["sop_uids"])
    # the pixel values are untouched by anonymisation: same as a plain run
    plain = tmp_path / "plain"
    p2 = h.medsr("infer", src, "-o", plain, "--scale", "1,1,2", cwd=tmp_path)
    assert p2.returncode == 0, p2.stderr
    plain_ds = _read_all(plain)
    assert str(plain_ds[0].PatientName) == fx.PATIENT_NAME  # kept without --anonymize
    for a, b in zip(dss, plain_ds):
        np.testing.assert_array_equal(a.pixel_array, b.pixel_array)
