"""Distributed training under real ``torchrun --nproc_per_node 2`` processes on CPU (gloo).

Two processes with a global batch of 8 (4 each) train bit for bit the same network as one
process with a batch of 8 in two micro-batches (``train.micro_batches: 2``), and the same
network up to float rounding as one process without micro-batches; rank 0 alone writes;
a run stopped at step 3 and resumed under torchrun ends byte-identical to the
uninterrupted two-process run.
"""

from __future__ import annotations

import csv
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from scipy.ndimage import gaussian_filter

from medsr import distributed
from medsr.cli import main
from medsr.errors import UserError
from medsr.training.data.dataset import IndexRangeSampler, StepShardSampler

AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])
TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent))
TORCH_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(root: Path) -> Path:
    """3 small volumes, ESPCN x2 on 16x16 slices, global batch 8, Adam, constant lr."""
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        vol = gaussian_filter(rng.random((32, 32, 10)), (2, 2, 1)) * 1000 + 100
        nib.save(nib.Nifti1Image(vol.astype(np.float32), AFFINE), data / f"vol{i}.nii.gz")
    cfg = root / "cfg.yaml"
    cfg.write_text("\n".join([
        "seed: 3", "device: cpu", "num_threads: 1",
        f"data: {{source: folder, path: '{data}', pattern: '*.nii.gz', val_fraction: 0.34}}",
        "sampling: {mode: 2d, axes: [2], patch_size: [16, 16], batch_size: 8, val_patches: 5,"
        " min_foreground: 0.0}",
        "degradation: {preset: bicubic}",
        "model: {name: espcn, scale: [2, 2], hparams: {features: 8, features2: 4}}",
        "schedule: {name: none}",
        "train: {steps: 6, val_every: 3, ckpt_every: 3, log_every: 3, grad_clip: 1.0}",
    ]) + "\n")
    return cfg


def torchrun(root: Path, *args: str) -> subprocess.CompletedProcess:
    assert TORCHRUN, "torchrun comes with torch"
    proc = subprocess.run(
        [TORCHRUN, "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(free_port()), "-m", "medsr", "train", *args, "--no-progress"],
        capture_output=True, text=True, timeout=300, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def metrics_rows(run: Path) -> list[dict]:
    with (run / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Single-process runs (plain; two micro-batches) and an uninterrupted two-process run."""
    root = tmp_path_factory.mktemp("ddp")
    cfg = write_config(root)
    single = root / "single"
    assert main(["train", str(cfg), "--run-dir", str(single), "--no-progress"]) == 0
    assert main(["train", str(cfg), "--run-dir", str(root / "chunked"), "--no-progress",
                 "--set", "train.micro_batches=2"]) == 0
    proc = torchrun(root, str(cfg), "--run-dir", "two")
    return root, cfg, single, root / "two", proc


def test_two_processes_are_one_process_in_two_micro_batches_bit_for_bit(runs):
    root, _, _, two, _ = runs
    chunked = root / "chunked"
    for name in ("checkpoints/last.safetensors", "checkpoints/best.safetensors", "metrics.csv"):
        assert (chunked / name).read_bytes() == (two / name).read_bytes(), name
    rows = metrics_rows(two)
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])  # it trained: not a no-op


def test_two_processes_equal_one_process_up_to_rounding(runs):
    """Without micro-batches the sums run in another order: equal up to float rounding,
    which Adam amplifies over a long run (docs/scaling.md gives the smoke run's figures)."""
    _, _, single, two, _ = runs
    a = load_file(str(single / "checkpoints" / "last.safetensors"))
    b = load_file(str(two / "checkpoints" / "last.safetensors"))
    assert sorted(a) == sorted(b)  # saved without DDP's "module." prefix
    assert not any(k.startswith("module.") for k in b)
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=0, atol=1e-5), k
    # validation and the logged loss agree too (global means, reduced across ranks)
    for r1, r2 in zip(metrics_rows(single), metrics_rows(two), strict=True):
        assert r1["step"] == r2["step"]
        for key in ("loss", "val_psnr", "val_ssim"):
            assert float(r1[key]) == pytest.approx(float(r2[key]), rel=1e-5, abs=1e-6), key
    # what medsr infer --model loads
    from medsr.models.checkpoint import load_model

    _, info = load_model(two / "checkpoints" / "best.safetensors")
    assert info["architecture"] == "espcn" and info["step"] == 6


def test_only_rank_zero_writes(runs):
    _, _, _, two, proc = runs
    rows = metrics_rows(two)
    assert [r["step"] for r in rows] == ["3", "6"]  # each row once: one writer
    assert sorted(p.name for p in two.iterdir()) == [
        "checkpoints", "manifest.json", "metrics.csv", "tensorboard", "training_curve.png"]
    events = list((two / "tensorboard").iterdir())
    assert len(events) == 1 and events[0].name.startswith("events.out.tfevents")
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == [
        "best.json", "best.safetensors", "last.json", "last.safetensors", "state-000000006"]
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["distributed"] == {"world_size": 2, "backend": "gloo", "global_batch": 8,
                                       "batch_per_process": 4}
    assert proc.stdout.count("run: two") == 1
    assert proc.stderr.count("step 6/6") == 1
    # both ranks' RNG states are in the training state
    state = json.loads((two / "checkpoints" / "state-000000006" / "state.json").read_text())
    assert set(state["rng_ranks"]) == {"1"}


def test_resume_under_torchrun_reproduces_the_uninterrupted_run(runs):
    root, cfg, _, two, _ = runs
    torchrun(root, str(cfg), "--run-dir", "stopped", "--set", "train.steps=3")
    stopped = root / "stopped"
    assert json.loads(next((stopped / "checkpoints").glob("state-*/state.json")).read_text()
                      )["step"] == 3
    torchrun(root, "--resume", "stopped", "--set", "train.steps=6")
    for name in ("checkpoints/last.safetensors", "checkpoints/best.safetensors", "metrics.csv"):
        assert (stopped / name).read_bytes() == (two / name).read_bytes(), name
    manifest = json.loads((stopped / "manifest.json").read_text())
    assert manifest["resumes"] == [{"step": 3, "world_size": 2, "command": [
        "medsr", "train", "--resume", "stopped", "--set", "train.steps=6", "--no-progress"]}]


# --- in-process checks of the pieces ----------------------------------------------------

def test_rank_shares_union_is_the_single_process_stream():
    one = list(StepShardSampler(2, 5, 6))
    assert one == list(IndexRangeSampler(2 * 6, 5 * 6))
    shares = [list(StepShardSampler(2, 5, 6, r, 3)) for r in range(3)]
    for step in range(3):  # per step: rank blocks concatenated = that step's batch
        batch = [i for s in shares for i in s[step * 2:(step + 1) * 2]]
        assert batch == one[step * 6:(step + 1) * 6]
    with pytest.raises(UserError, match="not divisible"):
        StepShardSampler(0, 1, 7, 0, 2)
    with pytest.raises(UserError, match="divisible by the 3 processes"):
        distributed.local_batch(8, 3)
    assert [list(distributed.shard(5, 2, r)) for r in range(2)] == [[0, 1, 2], [3, 4]]
    assert [len(distributed.shard(2, 3, r)) for r in range(3)] == [1, 1, 0]


@pytest.mark.parametrize("env, message", [
    ({"WORLD_SIZE": "2"}, "RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT not set"),
    ({"WORLD_SIZE": "2", "RANK": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
      "MASTER_PORT": "29500"}, "RANK=2 is outside 0..1"),
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not an integer"),
    ({"RANK": "1"}, "RANK=1 with WORLD_SIZE=1"),
])
def test_inconsistent_torchrun_environment_is_one_clear_error(tmp_path, monkeypatch, capsys,
                                                              env, message):
    for k in TORCH_ENV:
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cfg = write_config(tmp_path)
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "r").exists()
