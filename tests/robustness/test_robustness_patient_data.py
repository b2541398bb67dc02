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
        assert "InstitutionName" not in d and not d.get("AccessionNumber")  # Z: emptied
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


# ---------------------------------------------------------------- de-identification that holds
# Issue 21, item 2: a marker planted in every attribute of PS3.15 Table E.1-1 (basic
# profile), in nested sequences and in private tags must not survive --anonymize.

MARK = "QZLEAK"  # text values: QZLEAK_<n>
MARK_DATE, MARK_TIME, MARK_DS, MARK_AGE = "18870923", "235911.424242", "1887.0923", "087Y"
MARK_UID = "2.25.18870923"  # planted UIDs: 2.25.18870923<n>
MARKERS = [MARK, MARK_DATE, "235911", MARK_DS, MARK_AGE, MARK_UID]
_SKIP_GROUPS = (0x0000, 0x0002, 0x0004)  # command, file meta, DICOMDIR: not in a dataset
_KEEP_FIXTURE = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                 "FrameOfReferenceUID")


def _planted_value(vr: str, n: int) -> object:
    """A value of VR ``vr`` carrying a marker (None for binary numbers: nothing to find)."""
    vr = vr.split(" or ")[0]
    text = f"{MARK}_{n}"
    values: dict[str, object] = {
        "PN": f"{MARK}^N{n}", "DA": MARK_DATE, "TM": MARK_TIME, "DT": MARK_DATE + "235911",
        "AS": MARK_AGE, "DS": MARK_DS, "IS": MARK_DATE, "UI": f"{MARK_UID}{n}",
        "UR": f"http://{MARK.lower()}.example/{n}",
    }
    if vr in values:
        return values[vr]
    if vr in ("AE", "CS", "SH", "LO", "LT", "ST", "UT", "UC"):
        return text
    if vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
        return f"{MARK}_B".encode()  # 8 bytes: a whole number of words of any size
    return None


def _code_item(n: int, code: str | None = None) -> pydicom.Dataset:
    """A coded-entry item with a person name, a private tag and UIDs; its code carries
    markers unless ``code`` is given (a sequence the profile keeps keeps its codes)."""
    item = pydicom.Dataset()
    item.CodeValue = code or f"{MARK}_{n}"
    item.CodingSchemeDesignator = "SCT" if code else "99QZ"
    item.CodeMeaning = code or f"{MARK} meaning {n}"
    item.ReferencedSOPClassUID = fx.MR_IMAGE
    item.ReferencedSOPInstanceUID = f"{MARK_UID}9{n}"
    item.EvaluatorName = f"{MARK}^Nested{n}"  # a PN the profile does not list
    item.RequestedProcedureID = f"{MARK}_R{n}"
    item.add_new(0x00090010, "LO", f"{MARK} NESTED CREATOR")
    item.add_new(0x00091001, "LO", f"{MARK} nested private")
    return item


def _plant(ds: pydicom.Dataset) -> list[str]:
    """Plant markers in every basic-profile attribute (VR from pydicom's dictionary),
    in nested sequences and in private tags; returns the keywords planted."""
    from pydicom.datadict import dictionary_VR, keyword_for_tag

    from medsr.io.dicom.deid_profile import PROFILE

    planted = []
    for n, tag in enumerate(sorted(PROFILE)):
        kw = keyword_for_tag(tag)
        if tag >> 16 in _SKIP_GROUPS or kw in _KEEP_FIXTURE:
            continue
        try:
            vr = dictionary_VR(tag).split(" or ")[0]
        except KeyError:  # newer than this pydicom's dictionary: no VR to plant with
            continue
        if vr == "SQ":
            ds.add_new(tag, "SQ", pydicom.Sequence([_code_item(n)]))
        else:
            value = _planted_value(vr, n)
            if value is None:
                continue
            ds.add_new(tag, vr, value)
        planted.append(kw)
    # sequences the profile keeps (K / U*): their items must be cleaned, not kept whole
    ds.ProcedureCodeSequence = pydicom.Sequence([_code_item(1001)])
    ds.AnatomicRegionSequence = pydicom.Sequence([_code_item(1002, code="12738006")])
    ds.ReferencedImageSequence = pydicom.Sequence([_code_item(1003, code="12738006")])
    ds.AnatomicRegionSequence[0].InstitutionName = f"{MARK}_inst"
    ds.AnatomicRegionSequence[0].ImageComments = f"{MARK}_comment"
    ds.AnatomicRegionSequence[0].StudyDate = MARK_DATE
    ds.AnatomicRegionSequence[0].ReferencedStudySequence = pydicom.Sequence([_code_item(1004)])
    # a comment and a person name the profile does not list, curves and overlays
    ds.SecondaryReviewerName = f"{MARK}^Reviewer"
    ds.SetupImageComment = f"{MARK}_setup"
    ds.add_new(0x60004000, "LT", f"{MARK} overlay comment")
    ds.add_new(0x50002500, "LO", f"{MARK} curve label")
    ds.add_new(0x00291020, "LO", f"{MARK} private value")  # block of the fixture's creator
    ds.add_new(0x00430010, "LO", f"{MARK} CREATOR")
    ds.add_new(0x00431001, "OB", f"{MARK}_B".encode())
    ds.file_meta.SourceApplicationEntityTitle = f"{MARK}_AE"
    return planted


def _expected_geometry(A_lps: np.ndarray, k: float) -> np.ndarray:
    """A_out = A_in @ S for an upsampling by ``k`` along the slice axis (DESIGN.md)."""
    S = np.eye(4)
    S[2, 2], S[2, 3] = 1 / k, (1 / k - 1) / 2
    return A_lps @ S


def _all_values(ds: pydicom.Dataset) -> list[tuple[str, str]]:
    """(path, text) of every element of ``ds`` and its file meta, sequences included."""
    out: list[tuple[str, str]] = []

    def visit(dataset: pydicom.Dataset, elem: pydicom.DataElement) -> None:
        if elem.tag == 0x7FE00010:
            return
        v = elem.value
        text = v.decode("latin-1") if isinstance(v, bytes) else str(v)
        out.append((f"{elem.tag} {elem.keyword}", text + " " + str(elem.VR)))

    ds.walk(visit)
    ds.file_meta.walk(visit)
    return out


def test_anonymize_removes_every_planted_identifier(tmp_path):
    import SimpleITK as sitk
    from pydicom.uid import UID_dictionary

    from medsr.io.dicom.deid_rules import DUMMY_DATES

    case = fx.oblique_case((10, 8, 5))
    src = tmp_path / "planted"
    uids = fx.write_series(src, case["stored"], case["A_lps"], slope=case["slope"],
                           intercept=case["intercept"])
    planted: list[str] = []
    for p in sorted(src.iterdir()):
        ds = pydicom.dcmread(p)
        planted = _plant(ds)
        ds.save_as(p, enforce_file_format=True)
    assert len(planted) > 600  # every text, date, UID, byte and sequence attribute listed
    raw_in = b"".join(p.read_bytes() for p in src.iterdir())
    assert all(m.encode() in raw_in for m in MARKERS)  # the input does carry them
    assert "ProcedureCodeSequence" in pydicom.dcmread(next(src.iterdir()))

    out = tmp_path / "anon"
    proc = h.medsr("infer", src, "-o", out, "--scale", "1,1,2", "--anonymize", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    secrets_ = [*MARKERS, MARK.lower(), *SECRETS, "St Elsewhere", "Ehrlich", "ACC123",
                "private-secret", "SIEMENS", uids["study_uid"], uids["frame_uid"],
                uids["series_uid"], *uids["sop_uids"]]
    logs = proc.stdout + proc.stderr
    for s in secrets_:
        assert s not in logs, f"{s!r} in the logs"

    files = sorted(out.iterdir())
    assert len(files) == 10
    raw = b"".join(p.read_bytes() for p in files)
    for s in secrets_:
        assert s.encode() not in raw, f"{s!r} in the output bytes"
    dss = [pydicom.dcmread(p) for p in files]
    for d in dss:
        for path, text in _all_values(d):
            low = text.lower()
            for s in secrets_:
                assert s.lower() not in low, f"{s!r} in {path}"
        elems = list(d.iterall())
        assert not any(e.tag.is_private for e in elems)
        assert not any(e.tag.group & 0xFF00 in (0x5000, 0x6000) for e in elems)  # curves
        for e in elems:  # no person name but the placeholder, no date or time but dummies
            if e.VR == "PN":
                assert str(e.value or "") in ("", "ANONYMOUS"), e
            if e.VR in DUMMY_DATES:
                assert not e.value or e.value == DUMMY_DATES[e.VR], e
        for kw in ("ProcedureCodeSequence", "RequestAttributesSequence",
                   "OtherPatientIDsSequence", "ReferencedStudySequence", "InstitutionName",
                   "StudyDescription", "ProtocolName"):
            assert kw not in d, kw
        assert str(d.ClinicalTrialSubjectID).startswith("ANON")  # D: a dummy
        assert d.PatientIdentityRemoved == "YES"
        assert d.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        for kw in ("PatientBirthDate", "PatientSex", "StudyDate", "AccessionNumber",
                   "StudyID", "ReferringPhysicianName"):  # Type 2: kept, emptied
            assert kw in d and not d[kw].value, kw
        assert d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID
        for e in elems:  # every UID left is standard or newly made
            if e.VR == "UI" and e.value:
                for v in (e.value if e.VM > 1 else [e.value]):
                    assert v in UID_dictionary or not str(v).startswith("2.25."), e

    # UIDs remapped consistently: one new study, frame of reference, series
    for kw in ("StudyInstanceUID", "FrameOfReferenceUID", "SeriesInstanceUID", "PatientID"):
        assert len({str(d.get(kw)) for d in dss}) == 1, kw
    assert str(dss[0].StudyInstanceUID) != uids["study_uid"]
    assert str(dss[0].FrameOfReferenceUID) != uids["frame_uid"]
    assert len({d.SOPInstanceUID for d in dss}) == len(dss)
    ref = {str(d.ReferencedImageSequence[0].ReferencedSOPInstanceUID) for d in dss}
    assert len(ref) == 1  # the same planted reference -> the same new UID in every file
    sources = {str(i.ReferencedSOPInstanceUID) for d in dss for i in d.SourceImageSequence}
    assert len(sources) == len(uids["sop_uids"]) and sources.isdisjoint(uids["sop_uids"])

    # still a valid image series: pydicom geometry per slice, SimpleITK reads one series
    A = _expected_geometry(case["A_lps"], 2.0)
    for d in dss:
        k = int(d.InstanceNumber) - 1
        np.testing.assert_allclose([float(v) for v in d.ImagePositionPatient],
                                   A[:3, :] @ [0, 0, k, 1], atol=1e-4)
        assert d.pixel_array.shape == (8, 10)
    reader = sitk.ImageSeriesReader()
    ids = reader.GetGDCMSeriesIDs(str(out))
    assert len(ids) == 1
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(out), ids[0]))
    img = reader.Execute()
    assert img.GetSize() == (10, 8, 10)
    spacing = np.linalg.norm(A[:3, :3], axis=0)
    np.testing.assert_allclose(img.GetSpacing(), spacing, atol=1e-4)
    np.testing.assert_allclose(img.GetOrigin(), A[:3, 3], atol=1e-4)
    np.testing.assert_allclose(np.array(img.GetDirection()).reshape(3, 3),
                               A[:3, :3] / spacing, atol=1e-5)
