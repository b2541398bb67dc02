"""`medsr infer --model`: network passes, exact geometry, tiling, fusion and fallbacks."""

import nibabel as nib
import numpy as np
import pytest
import torch

from medsr import geometry, models
from medsr.cli import main
from medsr.inference.apply import apply_2d, plan_planes
from medsr.inference.model_sr import FlipEnsemble
from medsr.inference.receptive_field import receptive_halo
from medsr.inference.tiling import reflect_pad
from medsr.intensity import background_level
from medsr.models.checkpoint import save_model
from medsr.training.build import CREATE_KEYS
from medsr.volume import Volume


def checkpoint(path, scale=(1, 4), spatial_dims=2, seed=0):
    torch.manual_seed(seed)
    net = models.create("sp_vdsr", spatial_dims=spatial_dims, scale=scale, depth=3, features=8)
    hp = {k: v for k, v in net.hparams.items() if k not in CREATE_KEYS}
    info = {"architecture": "sp_vdsr", "hparams": hp, "scale": list(net.scale),
            "spatial_dims": spatial_dims, "in_channels": 1, "out_channels": 1,
            "normalisation": {"lower": 0.5, "upper": 99.5}}
    save_model(path, net.state_dict(), info)
    return path, net.eval()


def oblique_affine(spacing):
    A = np.eye(4)
    c, s = np.cos(0.3), np.sin(0.3)
    A[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag(spacing)
    A[:3, 3] = [-20.0, 7.5, 33.0]
    return A


@pytest.fixture
def thick_scan(tmp_path):
    rng = np.random.default_rng(0)
    data = (rng.random((12, 10, 5)) * 800 + 100).astype(np.int16)
    A = oblique_affine([1.0, 1.0, 4.0])
    p = tmp_path / "thick.nii.gz"
    nib.save(nib.Nifti1Image(data, A), p)
    return p, A


def test_model_output_geometry_and_values(tmp_path, thick_scan):
    src, A = thick_scan
    ck, net = checkpoint(tmp_path / "m.safetensors")
    out = tmp_path / "sr.nii.gz"
    assert main(["infer", str(src), "-o", str(out), "--model", str(ck)]) == 0
    img = nib.load(out)
    assert img.shape == (12, 10, 20)
    np.testing.assert_allclose(img.affine, geometry.upsampled_affine(A, (1, 1, 4)), atol=1e-5)
    assert img.get_data_dtype() == np.int16
    # the same computation by hand: normalise, run the net on both planes (reflect-padded by
    # the receptive-field halo, as the tiler does), average, restore
    x = nib.load(src).get_fdata().astype(np.float32)
    lo = background_level(x)  # 0.5th percentile of the lightly smoothed input
    hi = np.percentile(x, 99.5)
    xn = ((x - lo) / (hi - lo)).astype(np.float32)
    h = receptive_halo(net)  # the halo the tiler pads the volume edge with

    def run(planes):  # (slices, u, t) -> (slices, u, 4t)
        t = reflect_pad(torch.from_numpy(np.ascontiguousarray(planes))[:, None], [h, h])
        with torch.inference_mode():
            y = net(t)[:, 0]
        return y[:, h:h + planes.shape[1], 4 * h:4 * h + 4 * planes.shape[2]].numpy()

    a = run(xn.transpose(1, 0, 2)).transpose(1, 0, 2)   # slices along y: planes (x, z)
    b = run(xn)                                          # slices along x: planes (y, z)
    expect = np.rint((a + b) / 2 * (hi - lo) + lo)
    expect = np.maximum(expect, 0)  # the input is non-negative: the output is clipped at 0
    np.testing.assert_allclose(img.get_fdata(), expect, atol=1.0)


def test_non_integer_factor_goes_to_next_integer_then_resamples(tmp_path, thick_scan):
    src, A = thick_scan
    ck, _ = checkpoint(tmp_path / "m.safetensors")
    out = tmp_path / "sr.nii.gz"
    # 4 mm -> 1.1 mm: k = 3.64 -> network x4, then Lanczos onto the exact grid
    assert main(["infer", str(src), "-o", str(out), "--model", str(ck),
                 "--spacing", "1,1,1.1"]) == 0
    img = nib.load(out)
    k = np.array([1, 1, 4 / 1.1])
    shape = geometry.output_shape((12, 10, 5), k)
    assert img.shape == shape
    np.testing.assert_allclose(img.affine, geometry.upsampled_affine(A, k, (12, 10, 5), shape),
                               atol=1e-5)
    np.testing.assert_allclose(img.header.get_zooms(), [1, 1, 1.1], atol=1e-5)


def test_model_that_does_not_fit_the_plan_is_a_user_error(tmp_path, thick_scan, capsys):
    src, _ = thick_scan
    ck, _ = checkpoint(tmp_path / "m.safetensors", scale=(1, 2))
    code = main(["infer", str(src), "-o", str(tmp_path / "o.nii.gz"), "--model", str(ck)])
    assert code == 2
    err = capsys.readouterr().err
    assert "upsamples one axis x2; this scan needs one-axis x4: use thick-slice-x4" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.nii.gz").exists()


def test_cuda_request_without_cuda_is_a_user_error(tmp_path, thick_scan, capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    src, _ = thick_scan
    ck, _ = checkpoint(tmp_path / "m.safetensors")
    code = main(["infer", str(src), "-o", str(tmp_path / "o.nii.gz"), "--model", str(ck),
                 "--device", "cuda"])
    assert code == 2 and "no CUDA device" in capsys.readouterr().err


def test_plan_planes_fuses_both_orientations_and_handles_one_slice():
    jobs = plan_planes((1, 4), (1, 1, 4), (10, 12, 5))
    assert [(j.slice_axis, j.plane_axes) for j in jobs] == [(1, (0, 2)), (0, (1, 2))]
    assert sum(j.weight for j in jobs) == 1
    one = plan_planes((1, 4), (1, 4, 1), (10, 5, 1))  # a 2D image with a coarse second axis
    assert [(j.slice_axis, j.plane_axes) for j in one] == [(2, (0, 1))]
    inplane = plan_planes((2, 2), (2, 2, 1), (10, 12, 5))
    assert [(j.slice_axis, j.plane_axes, j.weight) for j in inplane] == [(2, (0, 1), 1.0)]


def test_flip_ensemble_of_an_equivariant_net_is_the_net():
    net = models.create("sp_vdsr", scale=(2, 2), depth=2, features=4).eval()
    # a net made flip-equivariant by construction: the average over flips
    ens = FlipEnsemble(net)
    x = torch.rand(1, 1, 9, 7)
    with torch.inference_mode():
        y = ens(x)
        y_flipped = ens(torch.flip(x, [2, 3]))
    np.testing.assert_allclose(torch.flip(y_flipped, [2, 3]).numpy(), y.numpy(), atol=1e-5)


def test_apply_2d_tiles_equal_whole(tmp_path):
    _, net = checkpoint(tmp_path / "m.safetensors", scale=(1, 3))
    x = np.random.default_rng(1).random((20, 17, 9)).astype(np.float32)
    whole = apply_2d(net, x, (1, 1, 3), tile=(64, 64), halo=12)
    tiled = apply_2d(net, x, (1, 1, 3), tile=(5, 4), halo=12)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_single_slice_nifti_in_plane(tmp_path):
    ck, _ = checkpoint(tmp_path / "m.safetensors", scale=(2, 2))
    rng = np.random.default_rng(2)
    p = tmp_path / "slice.nii.gz"
    A = oblique_affine([0.8, 0.8, 3.0])
    nib.save(nib.Nifti1Image(rng.random((16, 12, 1)).astype(np.float32), A), p)
    out = tmp_path / "o.nii.gz"
    assert main(["infer", str(p), "-o", str(out), "--model", str(ck)]) == 0
    img = nib.load(out)
    assert img.shape == (32, 24, 1)
    np.testing.assert_allclose(img.affine, geometry.upsampled_affine(A, (2, 2, 1)), atol=1e-5)


def test_volume_helper_types():
    v = Volume(np.zeros((2, 3, 4), np.float32), np.eye(4))
    assert v.spatial_shape == (2, 3, 4) and v.channels == 1


def test_background_level_ignores_ringing_but_keeps_ct_air():
    from medsr.degrade import Degradation

    rng = np.random.default_rng(0)
    mri = np.zeros((64, 64, 4), np.float32)
    yy, xx = np.mgrid[:64, :64]
    mri[((yy - 32) ** 2 + (xx - 30) ** 2 < 400)] = 800.0  # a disc on a zero background
    d = Degradation.from_dict({"scale": [2, 2, 1], "profile": "none", "downsample": "kspace"})
    d.set_random_state(0)
    ringing = d(mri[None], spacing=(1.0, 1.0, 1.0))[0]  # truncated k-space: Gibbs ringing
    assert np.percentile(ringing, 0.5) < -20            # the raw percentile is pulled down
    assert abs(background_level(ringing)) < 8           # the smoothed one is the level
    ct = np.full((40, 40, 10), -1000.0, np.float32) + rng.normal(0, 20, (40, 40, 10))
    ct[5:35, 5:35] = 40.0
    assert abs(background_level(ct) + 1000) < 30


def _trained_checkpoint(tmp_path, model: str, sampling: str):
    """A real checkpoint: `medsr train` on three small volumes, a few steps."""
    from scipy.ndimage import gaussian_filter

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        v = gaussian_filter(rng.random((24, 24, 16)), 1.5) * 1000 + 100
        nib.save(nib.Nifti1Image(v.astype(np.float32), np.eye(4)), data / f"v{i}.nii.gz")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("\n".join([
        "seed: 0", "device: cpu", "num_threads: 1",
        f"data: {{source: folder, path: '{data}', pattern: '*.nii.gz', val_fraction: 0.34}}",
        f"sampling: {sampling}", "degradation: {preset: bicubic}", f"model: {model}",
        "train: {steps: 3, val_every: 3, ckpt_every: 3, log_every: 3}"]) + "\n")
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "run"), "--no-progress"]) == 0
    return tmp_path / "run" / "checkpoints" / "last.safetensors"


@pytest.mark.parametrize("model,sampling,factors", [
    ("{name: espcn, scale: [2, 2], hparams: {features: 8, features2: 4}}",
     "{mode: 2d, axes: [2], patch_size: [16, 16], batch_size: 4, val_patches: 4, "
     "min_foreground: 0.0}", (2, 2, 1)),
    ("{name: espcn, scale: [1, 1, 2], hparams: {features: 4, features2: 4}}",
     "{mode: 3d, patch_size: [12, 12, 8], batch_size: 2, val_patches: 2, "
     "min_foreground: 0.0}", (1, 1, 2)),
])
def test_trained_model_plans_the_grid_of_an_isotropic_scan(tmp_path, capsys, model, sampling,
                                                           factors):
    """Issue 22 item 7: `medsr train` then `medsr infer iso.nii.gz --model last.safetensors`
    (no --scale/--spacing) on an isotropic scan: the model's factors set the grid (an
    in-plane x2 network: in-plane x2 only; a 3D (1, 1, 2) network: its factors), the
    affine is A @ S, and the summary says where the grid came from."""
    ckpt = _trained_checkpoint(tmp_path, model, sampling)
    c, s = np.cos(0.3), np.sin(0.3)
    A = np.eye(4)
    A[:3, :3] = 1.2 * np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, -1.0]])
    A[:3, 3] = [30.0, -12.0, 7.5]  # oblique and flipped, isotropic 1.2 mm
    src = tmp_path / "iso.nii.gz"
    lr = (np.random.default_rng(1).random((14, 12, 10)) * 500 + 50).astype(np.float32)
    nib.save(nib.Nifti1Image(lr, A), src)
    out = tmp_path / "iso_sr.nii.gz"
    capsys.readouterr()
    assert main(["infer", str(src), "--model", str(ckpt), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    shown = ", ".join(str(k) for k in factors)
    assert f"grid from the model's factors ({shown})" in err
    img = nib.load(out)
    k = np.array(factors, dtype=float)
    assert img.shape == tuple(int(n * f) for n, f in zip(lr.shape, factors))
    S = np.eye(4)
    S[:3, :3] = np.diag(1 / k)
    S[:3, 3] = (1 / k - 1) / 2
    np.testing.assert_allclose(img.affine, A @ S, atol=1e-5)
    # --scale still sets the grid (here 1.5 where the model gives 2: Lanczos finishes)
    scale = [1.5 if f > 1 else 1.0 for f in factors]
    assert main(["infer", str(src), "--model", str(ckpt), "-o", str(tmp_path / "x.nii.gz"),
                 "--scale", ",".join(map(str, scale))]) == 0
    assert nib.load(tmp_path / "x.nii.gz").shape == geometry.output_shape(lr.shape, scale)
    assert "grid from the model's factors" not in capsys.readouterr().err
