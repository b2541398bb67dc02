"""`medsr eval --model M` scores exactly the volume `medsr infer --model M` writes."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import torch

from medsr import degrade, geometry, models
from medsr.cli import main
from medsr.models.checkpoint import save_model
from medsr.training.build import CREATE_KEYS


def _checkpoint(path, scale=(1, 4)):
    """A tiny untrained one-axis 2D network (x4 along one axis, fused over two planes)."""
    torch.manual_seed(0)
    net = models.create("sp_vdsr", spatial_dims=2, scale=scale, depth=3, features=8)
    hp = {k: v for k, v in net.hparams.items() if k not in CREATE_KEYS}
    info = {"architecture": "sp_vdsr", "hparams": hp, "scale": list(net.scale),
            "spatial_dims": 2, "in_channels": 1, "out_channels": 1,
            "normalisation": {"lower": 0.5, "upper": 99.5}}
    save_model(path, net.state_dict(), info)
    return path


def _hr(path):
    rng = np.random.default_rng(1)
    x = np.linspace(0, 3, 16)
    data = (400 + 300 * np.sin(x)[None, :, None] + rng.random((12, 16, 10)) * 50)
    A = np.diag([1.0, 0.5, 1.2, 1.0])
    A[:3, 3] = [-6.0, 4.0, 10.0]
    nib.save(nib.Nifti1Image(data.astype(np.float32), A), path)
    return A


def _scores_of_model(out_dir):
    rows = json.loads((out_dir / "eval.json").read_text())["rows"]
    (row,) = [r for r in rows if r["method"] == "model"]
    return row


def _scores_of_files(hr, sr, tmp_path):
    js = tmp_path / "files.json"
    assert main(["eval", "--reference", str(hr), "--test", str(sr), "--json", str(js),
                 "--no-figure"]) == 0
    return json.loads(js.read_text())["volumes"][0]


def _same(model_row, file_rec):
    for k in ("psnr", "ssim"):
        assert abs(float(model_row[k]) - float(file_rec[k])) <= 1e-9, (k, model_row, file_rec)


def test_eval_model_scores_what_infer_writes_paired_lr(tmp_path):
    ck = _checkpoint(tmp_path / "m.safetensors")
    hr = tmp_path / "hr.nii.gz"
    A = _hr(hr)
    # the LR both commands take: every 4th column-block averaged, on the matching grid
    hr_data = nib.load(hr).get_fdata().astype(np.float32)
    lr_data = hr_data.reshape(12, 4, 4, 10).mean(axis=2)
    lr = tmp_path / "lr.nii.gz"
    nib.save(nib.Nifti1Image(lr_data, geometry.downsampled_affine(A, (1, 4, 1))), lr)

    sr = tmp_path / "sr.nii.gz"
    assert main(["infer", str(lr), "-o", str(sr), "--model", str(ck), "--scale", "1,4,1",
                 "--dtype", "float32"]) == 0
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(ck), "--data", str(hr), "--lr-data", str(lr),
                 "--out", str(out), "--no-figures", "--device", "cpu"]) == 0
    _same(_scores_of_model(out), _scores_of_files(hr, sr, tmp_path))


def test_eval_model_scores_what_infer_writes_degraded(tmp_path):
    """Without --lr-data, eval degrades HR with the checkpoint's degradation (bicubic by
    default) seeded by --seed; infer on that same LR gives the same scores."""
    ck = _checkpoint(tmp_path / "m.safetensors")
    hr = tmp_path / "hr.nii.gz"
    A = _hr(hr)
    hr_img = nib.load(hr)
    hr_chw = hr_img.get_fdata().astype(np.float32)[None]
    d = degrade.load_preset("bicubic", scale=(1, 4, 1))
    d.set_random_state(3)  # --seed 3, first volume
    lr_chw = d(hr_chw, spacing=tuple(float(s) for s in geometry.spacing_of(A)))
    lr_chw = np.asarray(lr_chw.cpu().numpy() if isinstance(lr_chw, torch.Tensor) else lr_chw,
                        np.float32)
    lr = tmp_path / "lr.nii.gz"
    nib.save(nib.Nifti1Image(lr_chw[0], geometry.downsampled_affine(A, (1, 4, 1))), lr)

    sr = tmp_path / "sr.nii.gz"
    assert main(["infer", str(lr), "-o", str(sr), "--model", str(ck), "--scale", "1,4,1",
                 "--dtype", "float32"]) == 0
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(ck), "--data", str(hr), "--seed", "3",
                 "--out", str(out), "--no-figures", "--device", "cpu"]) == 0
    _same(_scores_of_model(out), _scores_of_files(hr, sr, tmp_path))
