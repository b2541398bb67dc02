"""The slice-profile estimate (medsr.selfsup.profile_estimate) and --slice-profile auto."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import scipy.ndimage as ndi
from scipy.spatial import cKDTree
from slice_simulation import thick_slices

from medsr.cli import main
from medsr.selfsup.profile_estimate import ProfileEstimate, estimate_profile
from medsr.volume import Volume


@pytest.fixture(scope="module")
def tissue() -> np.ndarray:
    """An isotropic piecewise-constant texture with sharp edges (random cells of random
    intensity, slightly blurred): 96^3 voxels of 1 mm."""
    rng = np.random.default_rng(0)
    n = 96
    seeds = rng.uniform(0, n, (300, 3))
    grid = np.stack(np.meshgrid(*[np.arange(n) + 0.5] * 3, indexing="ij"), -1)
    _, label = cKDTree(seeds).query(grid.reshape(-1, 3))
    x = rng.uniform(100, 400, seeds.shape[0])[label].reshape(n, n, n)
    return ndi.gaussian_filter(x, 0.6).astype(np.float32)


SIGMA = {"gaussian": 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0))), "rect": 1.0 / np.sqrt(12.0)}


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("profile", ["gaussian", "rect"])
def test_width_within_15_percent_and_confident_only_when_right(tissue, profile, k):
    """Thick slices k mm apart and k mm thick: the best match in the true family has the
    true width within 15%, the estimate (whichever family it names) has the true profile's
    standard deviation within 15%, and a confident estimate names the true family."""
    lr = thick_slices(tissue, k, profile).astype(np.float32)
    est = estimate_profile(Volume(lr, np.diag([1.0, 1.0, float(k), 1.0])))
    assert est is not None and est.axis == 2 and est.spacing_mm == float(k)
    assert abs(est.best[profile][0] / k - 1.0) <= 0.15, est
    sigma = est.width_mm * SIGMA[est.family]
    assert abs(sigma / (k * SIGMA[profile]) - 1.0) <= 0.15, est
    if est.confident:
        assert est.family == profile and not est.why
    else:
        assert est.why and "not confident" in est.describe()


@pytest.mark.parametrize("family", ["gaussian", "rect"])
@pytest.mark.parametrize("centre", [0.0, 0.5])
def test_responses_are_those_of_the_degradation_kernels(family, centre):
    """The candidates' responses, computed for all widths at once, are |H|^2 of the taps
    medsr.degrade.profiles makes (the kernels the degradation and the projection use), up
    to where those cut a Gaussian off (4 sigma)."""
    from medsr.degrade.profiles import gaussian_kernel, rect_kernel
    from medsr.selfsup.profile_estimate import _responses

    widths = np.array([0.7, 1.0, 2.5, 4.0, 6.3])
    freq = np.linspace(-0.5, 0.5, 33)
    got = _responses(family, widths, freq, centre)
    kern = gaussian_kernel if family == "gaussian" else rect_kernel
    for w, row in zip(widths, got, strict=True):
        taps = kern(float(w), centre)
        j = np.arange(taps.size) - (taps.size - 1) / 2.0
        h = np.cos(2.0 * np.pi * np.multiply.outer(freq, j)) @ taps
        np.testing.assert_allclose(row, h * h, atol=1e-5)


@pytest.mark.parametrize("family", ["gaussian", "rect"])
@pytest.mark.parametrize("centre", [0.0, 0.5])
def test_integrated_taps_for_many_widths_are_the_kernels(family, centre):
    """medsr.degrade.profiles.integrated_taps (the one implementation of the fine-grid
    taps, the estimate's candidates) gives, per width, the degradation's kernel on a
    common grid: each row sums to 1 and is the kernel padded with empty taps (a box
    exactly; a Gaussian up to its tail beyond the kernel's own cut-off, 4 sigma + 1)."""
    from medsr.degrade.profiles import gaussian_kernel, integrated_taps, rect_kernel

    widths = np.array([0.3, 1.0, 2.5, 4.0, 6.3])
    t, taps = integrated_taps(family, widths, centre)
    assert taps.shape == (widths.size, t.size) and t.size % 2 == (centre == 0)
    np.testing.assert_allclose(t, -t[::-1])
    np.testing.assert_allclose(taps.sum(axis=1), 1.0, rtol=0, atol=1e-14)
    kern = gaussian_kernel if family == "gaussian" else rect_kernel
    for w, row in zip(widths, taps, strict=True):
        k = kern(float(w), centre)
        pad = (t.size - k.size) // 2
        inner = row[pad:t.size - pad]
        np.testing.assert_allclose(inner / inner.sum(), k, rtol=0, atol=1e-15)
        tail = 1e-15 if family == "rect" else 1e-6
        assert 1.0 - inner.sum() <= 2 * tail
        assert np.all(row[:pad] <= tail) and np.all(row[t.size - pad:] <= tail)
    with pytest.raises(ValueError):
        integrated_taps(family, [0.0], centre)


def test_the_estimate_imports_no_scipy():
    """``medsr infer`` estimates a thick-slice scan's profile without scipy: neither
    importing the estimate nor running it loads any of it (the taps' erf is math.erf)."""
    import subprocess
    import sys

    code = ("import sys, numpy as np\n"
            "from medsr.selfsup.profile_estimate import estimate_profile\n"
            "from medsr.volume import Volume\n"
            "x = np.random.default_rng(0).random((40, 40, 12)).astype(np.float32)\n"
            "estimate_profile(Volume(x, np.diag([1.0, 1.0, 4.0, 1.0])))\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_isotropic_volume_has_no_thick_axis(tissue):
    assert estimate_profile(Volume(tissue[:40, :40, :40], np.eye(4))) is None


def _thick_file(tmp_path, tissue) -> tuple:
    lr = thick_slices(tissue[:32, :32, :48], 4, "rect").astype(np.float32)
    src = tmp_path / "thick.nii.gz"
    nib.save(nib.Nifti1Image(lr, np.diag([1.0, 1.0, 4.0, 1.0])), src)
    return src, lr


def test_cli_reports_the_estimate_and_the_flag_overrides_it(tmp_path, tissue, capsys):
    src, _ = _thick_file(tmp_path, tissue)
    assert main(["infer", str(src), "-o", str(tmp_path / "a.nii.gz"), "--method",
                 "cubic"]) == 0
    err = capsys.readouterr().err
    assert "slice profile: " in err and "(estimated, " in err
    assert main(["infer", str(src), "-o", str(tmp_path / "b.nii.gz"), "--method", "cubic",
                 "--slice-profile", "gaussian"]) == 0
    err = capsys.readouterr().err
    assert "estimated" not in err and "projected onto the scan's slices (gaussian" in err


def test_a_confident_estimate_turns_the_projection_on(tmp_path, tissue, capsys,
                                                      monkeypatch):
    """A confident estimate (here forced) projects the plain output onto the slices under
    the estimated profile; an unconfident one does not."""
    import medsr.pipeline.projection

    src, lr = _thick_file(tmp_path, tissue)
    for confident in (True, False):
        est = ProfileEstimate("rect", 4.0, confident, 2, 4.0, 0.05, 3.0,
                              "" if confident else "forced")
        monkeypatch.setattr(medsr.pipeline.projection, "auto_slice_profile", lambda vol, e=est: e)
        out = tmp_path / f"{confident}.nii.gz"
        assert main(["infer", str(src), "-o", str(out), "--method", "cubic",
                     "--keep-overshoot"]) == 0
        err = capsys.readouterr().err
        assert "slice profile: box 4 mm (estimated, " in err
        gap = np.abs(thick_slices(nib.load(out).get_fdata(), 4, "rect") - lr).max()
        if confident:
            assert "projected onto the scan's slices" in err and gap < 1e-2
        else:
            assert "not projected" in err and gap > 0.1


def test_an_unconfident_estimate_projects_under_the_mixture_of_its_widths(tmp_path, tissue,
                                                                          capsys, monkeypatch):
    """With BLIND_PROJECTION (off by default), an unconfident estimate's two widths (a box
    and a Gaussian) set the projection: the output re-acquires the scan's slices under
    their mean kernel exactly (and not under either family alone)."""
    import medsr.pipeline.projection
    from medsr.selfsup.axes import detect_through_plane
    from medsr.selfsup.blind import mixture_kernels
    from medsr.selfsup.consistency import thick_operator

    src, lr = _thick_file(tmp_path, tissue)
    est = ProfileEstimate("rect", 4.4, False, 2, 4.0, 0.05, 1.1, "forced",
                          {"gaussian": [3.0, 0.1], "rect": [4.4, 0.1]})
    monkeypatch.setattr(medsr.pipeline.projection, "auto_slice_profile", lambda vol: est)
    off = tmp_path / "off.nii.gz"  # the default: off (measured, medsr/pipeline/projection.py)
    assert main(["infer", str(src), "-o", str(off), "--method", "cubic"]) == 0
    assert "not projected" in capsys.readouterr().err
    monkeypatch.setattr(medsr.pipeline.projection, "BLIND_PROJECTION", True)
    out = tmp_path / "mix.nii.gz"
    assert main(["infer", str(src), "-o", str(out), "--method", "cubic",
                 "--keep-overshoot"]) == 0
    err = capsys.readouterr().err
    assert "projected onto the scan's slices (the mean of box 4.4 mm and Gaussian, FWHM " \
           "3 mm)" in err
    sr = nib.load(out).get_fdata()
    tp = detect_through_plane(Volume(lr, np.diag([1.0, 1.0, 4.0, 1.0])))
    _, mean, _ = mixture_kernels(tp, {"rect": 4.4, "gaussian": 3.0})
    a = thick_operator(lr.shape[2], mean, 4)
    assert np.abs(np.einsum("mn,ijn->ijm", a, sr) - lr).max() < 2e-4 * np.ptp(lr)
    box = thick_operator(lr.shape[2], mixture_kernels(tp, {"rect": 4.4})[1], 4)
    assert np.abs(np.einsum("mn,ijn->ijm", box, sr) - lr).max() > 1e-3 * np.ptp(lr)
