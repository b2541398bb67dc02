"""End to end on real files: NIfTI folder -> medsr train -> checkpoint -> load_model ->
predict -> NIfTI written and read back -> medsr eval tables and figures."""

from __future__ import annotations

import csv
import hashlib
import json

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio

from medsr.cli import main
from medsr.evaluation.benchmark import predict_volume, volume_factors
from medsr.geometry import upsampled_affine
from medsr.models.checkpoint import load_model

AFFINE = np.array([[-1.0, 0, 0, 20], [0, 1.0, 0, -10], [0, 0, 2.0, 5], [0, 0, 0, 1]])


def _volumes(tmp_path, n=3, shape=(32, 32, 10)):
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        vol = gaussian_filter(rng.random(shape), (2, 2, 1)) * 1000 + 100
        nib.save(nib.Nifti1Image(vol.astype(np.float32), AFFINE), data / f"vol{i}.nii.gz")
    return data


def _config(tmp_path, data, **extra):
    lines = [
        "seed: 3", "device: cpu", "num_threads: 1",
        f"data: {{source: folder, path: '{data}', pattern: '*.nii.gz', val_fraction: 0.34}}",
        "sampling: {mode: 2d, axes: [2], patch_size: [16, 16], batch_size: 4, val_patches: 4,"
        " min_foreground: 0.0}",
        "degradation: {preset: bicubic}",
        "model: {name: espcn, scale: [2, 2], hparams: {features: 8, features2: 4}}",
        "train: {steps: 12, val_every: 6, ckpt_every: 6, log_every: 3, ema: 0.9,"
        " grad_clip: 1.0}",
    ]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    p = tmp_path / "cfg.yaml"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_train_checkpoint_predict_eval(tmp_path, capsys):
    data = _volumes(tmp_path)
    cfg = _config(tmp_path, data)
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--run-dir", str(run), "--no-progress"]) == 0
    manifest = json.loads((run / "manifest.json").read_text())
    assert len(manifest["data"]["train"]) == 2 and len(manifest["data"]["val"]) == 1
    assert not set(manifest["data"]["train"]) & set(manifest["data"]["val"])  # split by volume
    lo, hi = manifest["data"]["normalisation"][manifest["data"]["train"][0]]
    ref = nib.load(manifest["data"]["train"][0]).get_fdata()
    assert (lo, hi) == pytest.approx(tuple(np.percentile(ref, [0.5, 99.5])))

    model, info = load_model(run / "checkpoints" / "best.safetensors")
    assert info["architecture"] == "espcn" and info["sampling"]["mode"] == "2d"
    assert volume_factors(info) == (2, 2, 1)

    # LR scan on disk -> SR volume on disk with the geometry of the HR grid
    hr_img = nib.load(data / "vol0.nii.gz")
    hr = hr_img.get_fdata().astype(np.float32)
    lr = hr.reshape(16, 2, 16, 2, 10).mean(axis=(1, 3))
    lr_aff = AFFINE @ np.array([[2, 0, 0, 0.5], [0, 2, 0, 0.5], [0, 0, 1, 0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(lr, lr_aff), tmp_path / "lr.nii.gz")
    import medsr.io

    lr_vol = medsr.io.read(tmp_path / "lr.nii.gz")
    sr = predict_volume(model, lr_vol, info)
    assert sr.shape == hr.shape and np.isfinite(sr).all()
    # back in scanner units (not the normalised [0, 1] the network works in)
    assert abs(float(sr.mean()) - float(lr.mean())) < 0.5 * float(np.ptp(lr))
    out = medsr.io.write(lr_vol.with_data(sr, affine=upsampled_affine(lr_vol.affine, (2, 2, 1))),
                         tmp_path / "sr.nii.gz")
    back = nib.load(out)
    assert back.shape == hr.shape
    np.testing.assert_allclose(back.affine, AFFINE, atol=1e-5)

    # medsr eval --model: one row per volume and method, scores match scikit-image
    ev = tmp_path / "eval"
    files = [str(p) for p in sorted(data.glob("*.nii.gz"))]
    code = main(["eval", "--model", str(run / "checkpoints/best.safetensors"), "--data",
                 *files, "--out", str(ev), "--device", "cpu", "--crop", "2"])
    assert code == 0
    assert "mean ± std" in capsys.readouterr().out
    with open(ev / "eval.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["method"] for r in rows} == {"nearest", "linear", "cubic", "lanczos", "model"}
    assert len(rows) == 5 * len(files)
    result = json.loads((ev / "eval.json").read_text())
    assert set(result["summary"]["model"]) >= {"psnr_mean", "psnr_std", "ssim_mean", "nrmse_std"}
    # the model's identity, as the infer sidecars and the cohort summary record it
    best = (run / "checkpoints/best.safetensors").read_bytes()
    assert result["checkpoint_sha256"] == hashlib.sha256(best).hexdigest()
    assert (ev / "eval.md").read_text().count("| vol0.nii.gz |") == 3
    assert sorted(p.name for p in (ev / "figures").iterdir()) == ["vol0.png", "vol1.png",
                                                                  "vol2.png"]
    # independent check of the cubic row: degrade + resize + skimage PSNR on the cropped grid
    from medsr.degrade import load_preset
    from medsr.interpolate import resize

    d = load_preset("bicubic", scale=(2, 2, 1))
    d.set_random_state(0)
    lr0 = d(hr[None], spacing=(1.0, 1.0, 2.0))[0]
    cubic = resize(lr0, (2, 2, 1), method="cubic", shape_out=hr.shape)
    c = (slice(2, -2),) * 3
    # data range of the scored (cropped) reference, as medsr eval --reference/--test
    expected = peak_signal_noise_ratio(hr[c], cubic[c],
                                       data_range=float(hr[c].max() - hr[c].min()))
    got = next(float(r["psnr"]) for r in rows if r["volume"] == "vol0.nii.gz"
               and r["method"] == "cubic")
    assert got == pytest.approx(expected, abs=1e-3)

    # --run DIR uses the run's best checkpoint and writes into RUN/eval by default
    assert main(["eval", "--run", str(run), "--data", files[0], "--no-figures",
                 "--device", "cpu"]) == 0
    assert (run / "eval" / "eval.csv").is_file()


@pytest.mark.parametrize("mode,extra", [
    ("3d", {"sampling": "{mode: 3d, patch_size: [12, 12, 8], batch_size: 2, val_patches: 2,"
                        " min_foreground: 0.0}",
            "model": "{name: espcn, scale: [2, 2, 2], hparams: {features: 4, features2: 4}}"}),
    ("2.5d", {"sampling": "{mode: 2.5d, axes: [2], context: 1, patch_size: 16, batch_size: 2,"
                          " val_patches: 2, min_foreground: 0.0}"}),
])
def test_other_sampling_modes(tmp_path, mode, extra):
    data = _volumes(tmp_path, n=2, shape=(24, 24, 16))
    cfg = _config(tmp_path, data, **extra)
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--run-dir", str(run), "--no-progress",
                 "--set", "train.steps=3", "--set", "train.val_every=3"]) == 0
    model, info = load_model(run / "checkpoints/last.safetensors")
    assert info["sampling"]["mode"] == mode
    lr = np.random.default_rng(0).random((12, 12, 8)).astype(np.float32)
    sr = predict_volume(model, lr, info)
    assert sr.shape == tuple(n * k for n, k in zip(lr.shape, volume_factors(info)))
    if mode == "2.5d":
        assert info["in_channels"] == 3 and info["out_channels"] == 1


def test_max_anisotropy_leaves_out_scans_without_a_sharp_plane(tmp_path, capsys):
    """A folder with an isotropic and a 5 mm-slice scan: a sampling across the slices
    (normals x, y) trains on the isotropic one only, and the same weights come out as
    without the thick scan; a folder of thick scans only is a one-line error."""
    data = _volumes(tmp_path, n=1, shape=(24, 24, 24))
    iso = nib.load(data / "vol0.nii.gz")
    nib.save(nib.Nifti1Image(iso.get_fdata(dtype=np.float32), np.eye(4)),
             data / "vol0.nii.gz")
    sampling = ("{mode: 2d, axes: [0, 1], max_anisotropy: 1.5, patch_size: 16, "
                "batch_size: 2, val_patches: 2, min_foreground: 0.0}")
    cfg = _config(tmp_path, data, sampling=sampling)
    sets = ["--set", "train.steps=3", "--set", "train.val_every=3", "--set",
            "data.val_fraction=0.0"]
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "a"), "--no-progress",
                 *sets]) == 0
    thick = np.random.default_rng(1).random((24, 24, 6)).astype(np.float32) * 1000
    nib.save(nib.Nifti1Image(thick, np.diag([0.6, 0.6, 5.0, 1.0])), data / "vol1.nii.gz")
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "b"), "--no-progress",
                 *sets]) == 0
    a, _ = load_model(tmp_path / "a/checkpoints/last.safetensors")
    b, _ = load_model(tmp_path / "b/checkpoints/last.safetensors")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
    (data / "vol0.nii.gz").unlink()
    capsys.readouterr()
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "c"), "--no-progress",
                 *sets]) == 2
    err = capsys.readouterr().err
    assert "max_anisotropy" in err and err.count("\n") == 1
    assert not (tmp_path / "c" / "checkpoints").exists()


def test_adversarial_training_runs_and_resumes_state(tmp_path):
    data = _volumes(tmp_path, n=2)
    cfg = _config(tmp_path, data, loss="{l1: 1.0, adversarial: 0.01, adversarial_kind:"
                                       " relativistic}",
                  discriminator="{name: vgg, hparams: {}}")
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--run-dir", str(run), "--no-progress",
                 "--set", "train.steps=4", "--set", "train.ckpt_every=2"]) == 0
    rows = (run / "metrics.csv").read_text().splitlines()
    assert "loss_adversarial" in rows[0] and "loss_d" in rows[0]
    state = next((run / "checkpoints").glob("state-*"))
    from safetensors import safe_open

    with safe_open(str(state / "state.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert any(k.startswith("disc.") for k in keys) and any(k.startswith("optim_d.") for k in keys)
    assert any(k.startswith("ema.") for k in keys)


def test_model_init_and_worker_independence(tmp_path, capsys):
    data = _volumes(tmp_path, n=2)
    cfg = _config(tmp_path, data)
    pre = tmp_path / "pre"
    assert main(["train", str(cfg), "--run-dir", str(pre), "--no-progress",
                 "--set", "train.steps=2"]) == 0
    init = pre / "checkpoints" / "last.safetensors"
    # a vanishing lr (0 is refused): the run must end at the initial weights
    run = tmp_path / "frozen"
    assert main(["train", str(cfg), "--run-dir", str(run), "--no-progress", "--set",
                 "train.steps=2", "--set", "optim.name=sgd", "--set", "optim.momentum=0",
                 "--set", "optim.lr=1e-30", "--set", f"model.init={init}"]) == 0
    from medsr.models.checkpoint import read_checkpoint

    a, _ = read_checkpoint(init)
    b, _ = read_checkpoint(run / "checkpoints" / "last.safetensors")
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-20) for k in a)
    bad = tmp_path / "bad"
    assert main(["train", str(cfg), "--run-dir", str(bad), "--no-progress", "--set",
                 f"model.init={init}", "--set", "model.hparams.features=16"]) == 2
    assert "does not fit" in capsys.readouterr().err
    # the sample stream does not depend on the number of DataLoader workers
    w0, w2 = tmp_path / "w0", tmp_path / "w2"
    for d, nw in ((w0, 0), (w2, 2)):
        assert main(["train", str(cfg), "--run-dir", str(d), "--no-progress", "--set",
                     "train.steps=3", "--set", f"sampling.num_workers={nw}"]) == 0
    assert (w0 / "checkpoints/last.safetensors").read_bytes() == \
        (w2 / "checkpoints/last.safetensors").read_bytes()


def test_cli_errors_are_one_line(tmp_path, capsys):
    data = _volumes(tmp_path, n=2)
    cfg = _config(tmp_path, data)
    assert main(["train", str(cfg), "--set", "train.setps=3"]) == 2
    err = capsys.readouterr().err
    assert "train.setps" in err and "steps" in err and err.count("\n") == 1
    assert main(["train", "--resume", str(tmp_path / "nowhere")]) == 2
    assert "not a medsr run directory" in capsys.readouterr().err
    torch.save({"w": torch.zeros(1)}, tmp_path / "plain.pt")
    assert main(["eval", "--model", str(tmp_path / "plain.pt"), "--data",
                 str(data / "vol0.nii.gz"), "--out", str(tmp_path / "e")]) == 2
    assert "no medsr metadata" in capsys.readouterr().err


def test_csv_source_with_paired_lr_and_mask(tmp_path):
    from medsr.training.data import SamplingSpec, SRPatchDataset, list_items, load_volumes

    data = _volumes(tmp_path, n=2, shape=(32, 32, 10))
    rows = ["image,lr,mask"]
    for i in range(2):
        img = nib.load(data / f"vol{i}.nii.gz")
        hr = img.get_fdata().astype(np.float32)
        lr = hr.reshape(16, 2, 16, 2, 10).mean(axis=(1, 3))
        nib.save(nib.Nifti1Image(lr, AFFINE), data / f"lr{i}.nii.gz")
        mask = np.zeros(hr.shape, np.uint8)
        mask[8:24, 8:24] = 1
        nib.save(nib.Nifti1Image(mask, AFFINE), data / f"mask{i}.nii.gz")
        rows.append(f"data/vol{i}.nii.gz,data/lr{i}.nii.gz,data/mask{i}.nii.gz")
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    items = list_items({"source": "csv", "path": str(tmp_path / "list.csv")})
    vols = load_volumes(items, 0.5, 99.5)
    spec = SamplingSpec("2d", (2,), 1, (8, 8), (2, 2), flips=True, permute=True)
    ds = SRPatchDataset(vols, spec, degradation=None, seed=0)
    for i in range(10):
        s = ds[i]
        hr, lr = s["hr"].numpy()[0], s["lr"].numpy()[0]
        # the paired LR crop is exactly the block mean of the HR crop (same normalisation)
        np.testing.assert_allclose(hr.reshape(4, 2, 4, 2).mean(axis=(1, 3)), lr, atol=1e-5)
    cfg = _config(tmp_path, data)
    cfg.write_text(cfg.read_text().replace(
        f"source: folder, path: '{data}', pattern: '*.nii.gz'",
        f"source: csv, path: '{tmp_path / 'list.csv'}'"))
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "run"), "--no-progress",
                 "--set", "train.steps=2"]) == 0
