"""``medsr eval`` and medsr.evaluation on real NIfTI files written by nibabel."""

from __future__ import annotations

import csv
import json
import math

import nibabel as nib
import numpy as np
import pytest
import scipy.ndimage as ndi
from skimage.metrics import normalized_root_mse, peak_signal_noise_ratio, structural_similarity

from medsr.cli import main
from medsr.evaluation import evaluate_files

pytest.importorskip("medsr.io")
if not hasattr(__import__("medsr.io", fromlist=["read"]), "read"):
    pytest.skip("medsr.io.read is not there yet", allow_module_level=True)

AFFINE = np.array([[-0.9, 0, 0, 40.0], [0, 0, 3.0, -20.0], [0, 1.1, 0, 12.0], [0, 0, 0, 1]])


def _save(path, data, affine=AFFINE):
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), str(path))
    return str(path)


@pytest.fixture
def cohort(tmp_path):
    """Three HR/SR pairs (float32 on disk) and the expected scikit-image scores."""
    rng = np.random.default_rng(0)
    refs, tests, expected = [], [], []
    for i in range(3):
        hr = (ndi.gaussian_filter(rng.random((26, 24, 20)), 2) * 1000).astype(np.float32)
        sr = (hr + rng.normal(0, 5 + 5 * i, hr.shape)).astype(np.float32)
        refs.append(_save(tmp_path / f"hr{i}.nii.gz", hr))
        tests.append(_save(tmp_path / f"sr{i}.nii", sr))
        a, b = hr.astype(np.float64), sr.astype(np.float64)
        r = a.max() - a.min()
        expected.append({
            "psnr": peak_signal_noise_ratio(a, b, data_range=r),
            "ssim": structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False, data_range=r),
            "nrmse": normalized_root_mse(a, b)})
    return refs, tests, expected


def test_evaluate_files_matches_scikit_image(cohort):
    refs, tests, expected = cohort
    res = evaluate_files(refs, tests)
    assert [r["reference"] for r in res.records] == refs
    for rec, exp in zip(res.records, expected):
        for m in ("psnr", "ssim", "nrmse"):
            assert rec[m] == pytest.approx(exp[m], abs=1e-6)
    s = res.summary()
    assert s["n"] == 3
    assert s["psnr"]["mean"] == pytest.approx(np.mean([e["psnr"] for e in expected]), abs=1e-6)
    assert s["ssim"]["std"] == pytest.approx(np.std([e["ssim"] for e in expected], ddof=1),
                                             abs=1e-6)


def test_cli_table_json_csv(cohort, tmp_path, capsys):
    refs, tests, expected = cohort
    js, cs = tmp_path / "m.json", tmp_path / "m.csv"
    code = main(["eval", "--reference", *refs, "--test", *tests, "--json", str(js),
                 "--csv", str(cs)])
    assert code == 0
    shown = capsys.readouterr().out
    assert "PSNR" in shown and "mean" in shown and "std" in shown
    assert f"{expected[0]['psnr']:.2f}" in shown
    doc = json.loads(js.read_text())
    assert len(doc["volumes"]) == 3
    for rec, exp, r, t in zip(doc["volumes"], expected, refs, tests):
        assert rec["reference"] == r and rec["test"] == t
        for m in ("psnr", "ssim", "nrmse"):
            assert rec[m] == pytest.approx(exp[m], abs=1e-6)
    assert doc["summary"]["nrmse"]["mean"] == pytest.approx(
        np.mean([e["nrmse"] for e in expected]), abs=1e-9)
    rows = list(csv.DictReader(cs.open()))
    assert [r["reference"] for r in rows] == [*refs, "mean", "std"]
    assert float(rows[1]["ssim"]) == pytest.approx(expected[1]["ssim"], abs=1e-6)
    # existing reports are kept unless --overwrite
    assert main(["eval", "--reference", refs[0], "--test", tests[0], "--json", str(js)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["eval", "--reference", refs[0], "--test", tests[0], "--json", str(js),
                 "--overwrite"]) == 0
    assert len(json.loads(js.read_text())["volumes"]) == 1


def test_cli_mask_crop_and_identical(cohort, tmp_path, capsys):
    refs, tests, _ = cohort
    hr = np.asanyarray(nib.load(refs[0]).dataobj).astype(np.float64)
    sr = np.asanyarray(nib.load(tests[0]).dataobj).astype(np.float64)
    mask = np.zeros(hr.shape, np.uint8)
    mask[5:20, 4:18, 3:15] = 1
    mpath = _save(tmp_path / "mask.nii.gz", mask)
    js = tmp_path / "masked.json"
    assert main(["eval", "--reference", refs[0], refs[0], "--test", tests[0], refs[0],
                 "--mask", mpath, "--crop", "2", "--data-range", "1000", "--json", str(js)]) == 0
    recs = json.loads(js.read_text())["volumes"]
    c = (slice(2, -2),) * 3
    m = mask[c] > 0
    mse = np.mean((hr[c][m] - sr[c][m]) ** 2)
    assert recs[0]["psnr"] == pytest.approx(10 * math.log10(1000.0 ** 2 / mse), abs=1e-6)
    assert recs[1]["psnr"] == "inf" and recs[1]["ssim"] == pytest.approx(1.0)
    assert main(["eval", "--reference", refs[0], "--test", tests[0], "--auto-mask",
                 "--ssim-mode", "2d"]) == 0


def test_cli_user_errors(cohort, tmp_path, capsys):
    refs, tests, _ = cohort
    assert main(["eval", "--reference", *refs, "--test", *tests[:2]]) == 2
    assert "paired by position" in capsys.readouterr().err
    small = _save(tmp_path / "small.nii.gz", np.zeros((26, 24, 19)))
    assert main(["eval", "--reference", refs[0], "--test", small]) == 2
    err = capsys.readouterr().err
    assert "(26, 24, 20)" in err and "(26, 24, 19)" in err and err.count("\n") == 1
    assert main(["eval", "--reference", refs[0], "--test", str(tmp_path / "missing.nii")]) == 2
    assert main(["eval", "--data", refs[0]]) == 2
    assert "--run" in capsys.readouterr().err
    assert main(["eval", "--run", str(tmp_path), "--reference", refs[0], "--test", tests[0]]) == 2


def test_cli_geometry_mismatch_is_a_warning(cohort, tmp_path, capsys):
    refs, tests, _ = cohort
    moved = AFFINE.copy()
    moved[:3, 3] += [0.0, 0.5, 0.0]
    data = np.asanyarray(nib.load(tests[0]).dataobj)
    shifted = _save(tmp_path / "shifted.nii.gz", data, moved)
    assert main(["eval", "--reference", refs[0], "--test", shifted]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "0.5 mm" in err
    assert main(["eval", "--reference", refs[0], "--test", tests[0]]) == 0
    assert "warning" not in capsys.readouterr().err


def test_cli_model_mode_dispatches_to_the_benchmark(tmp_path, capsys):
    """--run goes to medsr.evaluation.benchmark (an empty run directory is its user error)."""
    hr = _save(tmp_path / "hr.nii.gz", np.ones((8, 8, 8)))
    assert main(["eval", "--run", str(tmp_path), "--data", hr]) == 2
    assert "checkpoint" in capsys.readouterr().err
