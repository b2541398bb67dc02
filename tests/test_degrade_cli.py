"""`medsr degrade` end to end, and iterative back-projection against cubic."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from medsr import __version__, geometry
from medsr.cli import main
from medsr.degrade import Degradation
from medsr.degrade.ibp import iterative_back_projection

torch.set_num_threads(1)
pytest.importorskip("medsr.io")

AFFINE = np.array([[0.0, 0.0, 3.0, -20.0],
                   [0.9, 0.1, 0.0, 5.0],
                   [-0.1, 0.9, 0.0, 30.0],
                   [0, 0, 0, 1]])


@pytest.fixture
def hr_file(tmp_path):
    g = np.mgrid[:20, :18, :16].astype(np.float32)
    data = 100 + 50 * np.sin(g[0] / 3) * np.cos(g[1] / 4) + 3 * g[2]
    path = tmp_path / "hr.nii.gz"
    nib.save(nib.Nifti1Image(data.astype(np.float32), AFFINE), path)
    return path


def test_cli_writes_output_and_sidecar(hr_file, tmp_path):
    out = tmp_path / "lr.nii.gz"
    rc = main(["degrade", str(hr_file), "-o", str(out), "--preset", "mri-thick-slice",
               "--scale", "1,1,4", "--sigma", "0.01", "--seed", "7"])
    assert rc == 0
    img = nib.load(out)
    assert img.shape == (20, 18, 4)
    np.testing.assert_allclose(img.affine, geometry.downsampled_affine(AFFINE, (1, 1, 4)),
                               atol=1e-5)
    side = json.loads((tmp_path / "lr.json").read_text())
    assert side["seed"] == 7 and side["medsr_version"] == __version__
    assert side["preset"] == "mri-thick-slice"
    assert side["drawn"]["sigma"] == 0.01 and side["drawn"]["noise"] == "rician"
    assert isinstance(side["drawn"]["noise_seed"], int)
    # medsr infer's output grid from this LR is exactly the HR grid
    assert geometry.output_shape(img.shape, (1, 1, 4)) == nib.load(hr_file).shape
    np.testing.assert_allclose(geometry.upsampled_affine(img.affine, (1, 1, 4)), AFFINE,
                               atol=1e-5)
    # the sidecar replays the run exactly
    hr = np.asarray(nib.load(hr_file).dataobj, dtype=np.float64)[None]
    replay = Degradation.from_dict(side["drawn"])(hr, spacing=(3.0, 0.906, 0.906))[0]
    np.testing.assert_allclose(np.asarray(img.dataobj), replay, rtol=1e-5, atol=1e-3)
    # same seed again: identical file content; refusing to overwrite without --overwrite
    assert main(["degrade", str(hr_file), "-o", str(out), "--preset", "mri-thick-slice",
                 "--scale", "1,1,4", "--sigma", "0.01", "--seed", "7"]) == 2
    out2 = tmp_path / "lr2.nii.gz"
    main(["degrade", str(hr_file), "-o", str(out2), "--preset", "mri-thick-slice",
          "--scale", "1,1,4", "--sigma", "0.01", "--seed", "7"])
    np.testing.assert_array_equal(np.asarray(nib.load(out2).dataobj), np.asarray(img.dataobj))


def test_cli_options_without_preset(hr_file, tmp_path):
    out = tmp_path / "k.nii.gz"
    assert main(["degrade", str(hr_file), "-o", str(out), "--scale", "2,2,1", "--profile",
                 "none", "--downsample", "kspace", "--noise", "gaussian", "--sigma", "2",
                 "--absolute", "--seed", "1"]) == 0
    side = json.loads((tmp_path / "k.json").read_text())
    assert side["degradation"]["downsample"] == "kspace" and side["preset"] is None
    assert nib.load(out).shape == (10, 9, 16)


@pytest.mark.parametrize("argv,msg", [
    (["--preset", "nope"], "known: "),
    (["--scale", "0.5"], ">= 1"),
    (["--scale", "2", "--noise", "gaussian", "--sigma", "-1"], "sigma"),
    ([], "--preset"),
])
def test_cli_errors_exit_2_with_one_line(hr_file, tmp_path, capsys, argv, msg):
    rc = main(["degrade", str(hr_file), "-o", str(tmp_path / "x.nii.gz"), *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("medsr: error:") and msg in err and "\n" not in err
    assert not (tmp_path / "x.nii.gz").exists()


def _phantom(shape=(24, 24, 32), seed=0):
    rng = np.random.default_rng(seed)
    g = np.mgrid[tuple(slice(0, n) for n in shape)].astype(float)
    out = np.zeros(shape)
    for _ in range(8):
        c = rng.uniform(3, np.array(shape) - 3)[:, None, None, None]
        out += rng.uniform(0.5, 1) * np.exp(-((g - c) ** 2).sum(0) / (2 * rng.uniform(2, 4) ** 2))
    return out


def _psnr(ref, x):
    return 10 * np.log10((ref.max() - ref.min()) ** 2 / np.mean((ref - x) ** 2))


@pytest.mark.parametrize("profile,factors", [("gaussian", (1, 1, 4)), ("rect", (2, 2, 2))])
def test_ibp_beats_cubic_on_a_smooth_phantom(profile, factors):
    from medsr.degrade.ibp import _upsample

    hr = _phantom()
    lr = Degradation(scale=list(factors), profile=profile)(hr[None])[0]
    sr = iterative_back_projection(lr, factors, profile=profile, n_iter=10)
    cubic = _upsample(lr, factors, hr.shape)
    assert sr.shape == hr.shape
    assert _psnr(hr, sr) > _psnr(hr, cubic) + 2.0
    # IBP is consistent with its forward model: D(sr) ~ lr
    d_sr = Degradation(scale=list(factors), profile=profile)(sr[None])[0]
    assert np.abs(d_sr - lr).max() < 0.1 * np.abs(cubic - hr).max()


def test_ibp_errors():
    from medsr.errors import UserError

    with pytest.raises(UserError):
        iterative_back_projection(np.zeros((4, 4, 4)), (1, 1, 0.5))
