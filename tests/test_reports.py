"""Reports people use (issue 20, item 6): grouped ``medsr eval`` tables and figure, the
cohort summary across a --skip-existing restart, progress lines in a batch log, the
``medsr infer`` summary line and its notes, and honest training-curve axes."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import scipy.ndimage as ndi
from skimage.metrics import normalized_root_mse, peak_signal_noise_ratio, structural_similarity

from medsr.cli import main
from medsr.progress import LogProgress, progress_bar

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _save(path, data, affine=None):
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32),
                             np.eye(4) if affine is None else affine), str(path))
    return str(path)


def _scores(hr: np.ndarray, sr: np.ndarray) -> dict[str, float]:
    a, b = hr.astype(np.float64), sr.astype(np.float64)
    r = a.max() - a.min()
    return {"psnr": peak_signal_noise_ratio(a, b, data_range=r),
            "ssim": structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False, data_range=r),
            "nrmse": normalized_root_mse(a, b)}


# --- medsr eval: groups and figure ------------------------------------------------------------

@pytest.fixture
def two_methods(tmp_path):
    """Two references, each with a good and a poor test file (names say nothing)."""
    rng = np.random.default_rng(1)
    refs, tests, labels, expected = [], [], [], {"good": [], "poor": []}
    for label, sigma in (("good", 4.0), ("poor", 20.0)):
        for i in range(2):
            hr = (ndi.gaussian_filter(np.random.default_rng(10 + i).random((24, 22, 12)), 2)
                  * 1000).astype(np.float32)
            sr = (hr + rng.normal(0, sigma, hr.shape)).astype(np.float32)
            refs.append(_save(tmp_path / f"hr{i}.nii.gz", hr))
            tests.append(_save(tmp_path / f"{'xy'[label == 'poor']}{i}.nii.gz", sr))
            labels.append(label)
            expected[label].append(_scores(hr, sr))
    return refs, tests, labels, expected


def test_eval_labels_give_one_mean_row_per_group_and_a_figure(two_methods, tmp_path, capsys):
    refs, tests, labels, expected = two_methods
    js, cs = tmp_path / "e.json", tmp_path / "e.csv"
    assert main(["eval", "--reference", *refs, "--test", *tests, "--label", *labels,
                 "--json", str(js), "--csv", str(cs)]) == 0
    out = capsys.readouterr().out
    assert "good" in out and "poor" in out
    rows = list(csv.DictReader(cs.open()))
    means = {r["method"]: r for r in rows if r["reference"] == "mean"}
    assert sorted(means) == ["good", "poor"] and len(rows) == 4 + 2 * 2
    for label in ("good", "poor"):
        for m in ("psnr", "ssim", "nrmse"):
            want = np.mean([e[m] for e in expected[label]])
            assert float(means[label][m]) == pytest.approx(want, abs=1e-6)
    doc = json.loads(js.read_text())
    assert doc["summary"] is None  # no mean over two methods
    assert doc["groups"]["poor"]["psnr"]["mean"] == pytest.approx(
        np.mean([e["psnr"] for e in expected["poor"]]), abs=1e-6)
    assert [v["method"] for v in doc["volumes"]] == labels
    # the figure beside the tables: a real PNG of a plausible size
    png = tmp_path / "e.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image as mpimg

    img = mpimg.imread(png)
    assert img.ndim == 3 and img.shape[0] >= 400 and img.shape[1] >= 400
    assert img[..., :3].std() > 0.05  # not blank
    # --figure PATH; a wrong number of labels is a one-line user error
    fig = tmp_path / "sub.png"
    assert main(["eval", "--reference", *refs[:2], "--test", *tests[:2],
                 "--figure", str(fig)]) == 0
    assert fig.is_file() and fig.stat().st_size > 10_000
    capsys.readouterr()
    assert main(["eval", "--reference", *refs, "--test", *tests, "--label", "a"]) == 2
    assert "one non-empty label per test" in capsys.readouterr().err


def test_eval_infers_methods_from_the_test_file_names(tmp_path, capsys):
    """The new user's command: one reference, two methods' outputs -> two groups."""
    rng = np.random.default_rng(2)
    hr = (ndi.gaussian_filter(rng.random((20, 20, 10)), 2) * 100).astype(np.float32)
    a = _save(tmp_path / "A.nii.gz", hr)
    sr = _save(tmp_path / "sr.nii.gz", hr + rng.normal(0, 1, hr.shape))
    cubic = _save(tmp_path / "cubic.nii.gz", hr + rng.normal(0, 3, hr.shape))
    cs = tmp_path / "r.csv"
    assert main(["eval", "--reference", a, a, "--test", sr, cubic, "--csv", str(cs)]) == 0
    rows = list(csv.DictReader(cs.open()))
    assert [(r["reference"], r["method"]) for r in rows[2:]] == [
        ("mean", "sr"), ("std", "sr"), ("mean", "cubic"), ("std", "cubic")]
    assert (tmp_path / "r.png").is_file()
    from medsr.evaluation import method_labels

    assert method_labels(["hr/s1.nii", "hr/s1.nii"], ["sr/s1.nii", "cub/s1.nii"]) == ["sr", "cub"]
    assert method_labels(["s1.nii", "s2.nii"], ["s1_sr.nii", "s2_sr.nii"]) == ["sr", "sr"]
    # unrelated names of one method over distinct volumes stay one group
    assert method_labels(["hr0.nii", "hr1.nii"], ["sr0.nii", "sr1.nii"]) == ["test", "test"]


def test_one_summary_for_both_eval_modes_with_sample_std():
    """The file comparison and the model benchmark summarise with one function: mean and
    sample std (numpy's ``std(ddof=1)``), named so in their tables; 0 for one volume."""
    from medsr.evaluation import EvaluationResult, report
    from medsr.evaluation.benchmark import summarise

    rng = np.random.default_rng(3)
    rows = [{"volume": f"v{i}.nii.gz", "reference": f"v{i}.nii.gz", "test": f"{m}{i}.nii.gz",
             "method": m, "psnr": float(rng.uniform(20, 40)), "ssim": float(rng.uniform()),
             "nrmse": float(rng.uniform()), "data_range": 1.0}
            for m in ("cubic", "model") for i in range(4)]
    rows.append({**rows[0], "method": "single"})
    files = EvaluationResult(rows)
    bench = summarise(rows)
    assert list(bench) == files.methods() == ["cubic", "model", "single"]
    for method in ("cubic", "model", "single"):
        s = files.summary(method)
        assert s == report.summary(rows, method)
        for m in ("psnr", "ssim", "nrmse"):
            v = np.array([r[m] for r in rows if r["method"] == method])
            want = float(np.std(v, ddof=1)) if v.size > 1 else 0.0
            assert s[m]["std"] == bench[method][f"{m}_std"] == pytest.approx(want, abs=1e-12)
            assert s[m]["mean"] == bench[method][f"{m}_mean"] == pytest.approx(v.mean())
            assert bench[method]["n"] == s["n"] == v.size
    # the convention is stated where the numbers are shown
    md = report.benchmark_markdown({"rows": rows, "summary": bench})
    assert "mean ± std** (sample, ddof=1)" in md
    assert "ddof=1" in report.comparison_table(rows).caption


# --- cohort summary across a restart ----------------------------------------------------------

def test_cohort_restart_keeps_earlier_rows_with_method_and_model(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        _save(src / f"scan{i}.nii.gz", rng.random((8, 7, 4)) * 100,
              np.diag([1.0, 1.0, 2.0, 1.0]))
    out = tmp_path / "out"
    args = ["infer", str(src / "*.nii.gz"), "-o", str(out), "--method", "linear"]
    assert main(args) == 0
    summary = out / "medsr_summary.csv"
    first = {r["input"]: r for r in csv.DictReader(summary.open())}
    assert all(r["status"] == "ok" and r["method"] == "linear" and r["model"] == ""
               and float(r["seconds"]) > 0 for r in first.values())
    (out / "scan1_sr.nii.gz").unlink()  # this one is redone on the restart
    assert main([*args, "--skip-existing"]) == 0
    again = {r["input"]: r for r in csv.DictReader(summary.open())}
    assert list(again) == list(first)
    for inp, row in again.items():
        if "scan1" in inp:
            assert row["status"] == "ok" and row["method"] == "linear"
            continue
        assert row["status"] == "skipped"
        for k in ("seconds", "shape_in", "shape_out", "spacing_out", "method", "model"):
            assert row[k] == first[inp][k], k
    assert "method" in summary.read_text().splitlines()[0].split(",")


# --- progress lines in a batch log --------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_log_progress_lines_at_a_sensible_rate():
    clock, buf = FakeClock(), io.StringIO()
    rep = LogProgress("tiles", stream=buf, clock=clock, delay=2.0, interval=30.0)
    for done in range(1, 161):  # 160 tiles, 0.1 s each
        clock.t += 0.1
        rep(done, 160)
    lines = buf.getvalue().splitlines()
    assert 5 <= len(lines) <= 12, lines
    assert all(ln.startswith("medsr: progress: tiles ") for ln in lines)
    assert lines[-1] == "medsr: progress: tiles 160/160 (100%) 16.0 s"
    assert "(50%)" in buf.getvalue()
    # quick work writes nothing; slow work without a total writes a line per interval
    quick = io.StringIO()
    rep = LogProgress("quick", stream=quick, clock=clock, delay=2.0)
    for done in range(1, 11):
        clock.t += 0.01
        rep(done, 10)
    assert quick.getvalue() == ""
    slow = io.StringIO()
    rep = LogProgress("steps", stream=slow, clock=clock, delay=2.0, interval=30.0)
    for step in range(1, 101):
        clock.t += 1.0
        rep(step, None, f"loss {1.0 / step:.4f}")
    got = slow.getvalue().splitlines()
    assert 3 <= len(got) <= 5 and "loss" in got[0]
    # a stream that is not a terminal gets the log reporter
    with progress_bar("x", stream=io.StringIO()) as update:
        assert isinstance(update, LogProgress)


def test_infer_cli_progress_and_tta_in_a_batch_log(tmp_path):
    """A real ``medsr infer`` with stderr to a pipe: timed progress lines, and the
    summary line says tta."""
    rng = np.random.default_rng(4)
    src = _save(tmp_path / "t.nii.gz", ndi.gaussian_filter(rng.random((12, 12, 4)), 1) * 500,
                np.diag([1.0, 1.0, 2.0, 1.0]))
    prelude = ("import sys, medsr.progress as p\np.LOG_DELAY_S = 0.0\n"
               "from medsr.cli import main\nsys.exit(main())\n")
    proc = subprocess.run([sys.executable, "-c", prelude, "infer", src, "-o",
                           str(tmp_path / "o.nii.gz"), "--tta", "--batch", "1"],
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("medsr: progress: ")]
    assert len(lines) >= 3, proc.stderr
    assert "t.nii.gz: super-resolving" in lines[0] and lines[-1].endswith(" s")
    assert "(100%)" in lines[-1]
    summary = [ln for ln in proc.stderr.splitlines() if ln.startswith("t.nii.gz: ")]
    assert summary and ", tta, " in summary[0], proc.stderr


# --- numbers in notes and the summary line -------------------------------------------------------

def test_notes_print_spacings_at_sensible_precision(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(6)
    src = _save(tmp_path / "thick.nii.gz", rng.random((12, 12, 5)) * 100,
                np.diag([1.0, 1.0, 4.0, 1.0]))
    assert main(["infer", src, "-o", str(tmp_path / "p.nii.gz"), "--method", "cubic",
                 "--slice-profile", "gaussian",
                 "--input-spacing", "1,1,3.9999999460600644"]) == 0
    err = capsys.readouterr().err
    assert "3.99999" not in err and "thickness 4 mm" in err and "@ 1x1x4 mm" in err, err
    # the self-supervised note, with the training replaced by its report (no time spent)
    import medsr.selfsup

    def fake_fit(vol, **kw):
        return vol, {"train": {"steps": 1, "seconds": 0.25, "stopped_by": "steps"},
                     "slice_thickness_mm": float(vol.spacing[2]),
                     "slice_thickness_source": "the spacing", "test_time_flips": 4}

    monkeypatch.setattr(medsr.selfsup, "super_resolve_self_supervised", fake_fit)
    assert main(["infer", src, "-o", str(tmp_path / "s.nii.gz"), "--self-supervised",
                 "--steps", "1", "--input-spacing", "1,1,3.9999999460600644"]) == 0
    err = capsys.readouterr().err
    assert "3.99999" not in err and "slice thickness 4 mm from the spacing" in err, err
    assert ", tta, " in err  # the test-time flips are in the summary line


# --- training curve -----------------------------------------------------------------------------

def test_training_curve_has_legends_and_an_honest_psnr_axis(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from medsr.training.figures import training_curve

    csv_path = tmp_path / "metrics.csv"
    lines = ["step,loss,val_psnr,val_ssim"]
    for k in range(1, 6):
        lines.append(f"{k * 10},{1.0 / k},{30.0 + 0.005 * k},{0.9 + 0.0001 * k}")
    csv_path.write_text("\n".join(lines) + "\n")
    figs = []
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda f=None: (figs.append(f), real_close(f)))
    out = training_curve(csv_path, tmp_path / "curve.png")
    assert out is not None and out.is_file()
    fig = figs[-1]
    ax_loss, ax_val = fig.axes[0], fig.axes[1]
    assert ax_loss.get_legend() is not None and ax_val.get_legend() is not None
    labels = [t.get_text() for t in ax_val.get_legend().get_texts()]
    assert any("PSNR" in t for t in labels) and any("SSIM" in t for t in labels)
    lo, hi = ax_val.get_ylim()
    assert hi - lo >= 1.0 and "dB" in ax_val.get_ylabel()
    assert any("range" in t.get_text() and "dB" in t.get_text() for t in ax_val.texts)
