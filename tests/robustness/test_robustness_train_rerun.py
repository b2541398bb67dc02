"""`medsr train` start, rerun of the issue-21 battery with new values.

Model hparams that cannot build (or would build a network too large to hold), an unbounded
step count, an empty --run-dir, a manifest that is not a JSON object, a config that is a FIFO,
and a pickle checkpoint as model.init / loss.feature_weights: each ends with one
``medsr: error:`` line, exit code 2, no traceback and no run directory.
"""

from __future__ import annotations

import copy
import os
import pickle
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import robust_helpers as h
import yaml
from test_robustness_train_start import BASE  # the same small valid config

from medsr.cli import main


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train_rerun_data") / "good"
    root.mkdir()
    for i in range(2):
        vol = np.random.default_rng(i).random((24, 24, 6)).astype(np.float32) * 100
        h.nifti(root / f"v{i}.nii.gz", vol, np.diag([1.0, 1.0, 2.0, 1.0]))
    return root


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = (_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict)
                  else v)
    return out


def _config(tmp: Path, good: Path, over: dict | None = None) -> Path:
    path = tmp / "c.yaml"
    cfg = _merge(_merge(BASE, {"data": {"path": str(good)}}), over or {})
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def _one_error(rc: int, out: str, err: str) -> str:
    assert rc == 2, f"exit {rc}\n{out}{err}"
    assert "Traceback" not in out + err, out + err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one error line, got:\n{err}"
    assert re.match(r"^medsr( \w+)?: error: \S", lines[0]), lines[0]
    return lines[0]


def _pickle_checkpoint(path: Path) -> Path:
    """A pickle (not a safetensors file) that torch.load would warn about."""
    import torch

    torch.save({"w": torch.zeros(2)}, path)
    return path


HPARAM_CASES = [
    ("vdsr features 0", {"name": "vdsr", "hparams": {"features": 0}}),
    ("vdsr depth 0", {"name": "vdsr", "hparams": {"depth": 0}}),
    ("vdsr depth -3", {"name": "vdsr", "hparams": {"depth": -3}}),
    ("vdsr features -8", {"name": "vdsr", "hparams": {"features": -8}}),
    ("srcnn channels 0", {"name": "srcnn", "hparams": {"channels": [0, 32]}}),
    ("edsr n_blocks -1", {"name": "edsr", "hparams": {"n_blocks": -1}}),
    ("srcnn unknown interpolation", {"name": "srcnn", "hparams": {"interpolation": "bogus"}}),
    ("vdsr unknown interpolation", {"name": "vdsr", "hparams": {"interpolation": "bogus"}}),
    ("vdsr features 100000", {"name": "vdsr", "hparams": {"features": 100000}}),
    ("vdsr depth 10**9", {"name": "vdsr", "hparams": {"depth": 10**9}}),
    ("vdsr features a string", {"name": "vdsr", "hparams": {"features": "many"}}),
]


@pytest.mark.parametrize("model", [c[1] for c in HPARAM_CASES], ids=[c[0] for c in HPARAM_CASES])
def test_bad_model_hparams(model, good, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _config(tmp_path, good, {"model": model})
    rc = main(["train", str(cfg), "--run-dir", "run", "--no-progress"])
    line = _one_error(rc, *capsys.readouterr())
    assert "model.hparams" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


@pytest.mark.parametrize("steps", [10**23, 10**10, 2**63])
def test_unbounded_steps(steps, good, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _config(tmp_path, good, {"train": {"steps": steps}})
    rc = main(["train", str(cfg), "--run-dir", "run", "--no-progress"])
    assert "train.steps" in _one_error(rc, *capsys.readouterr())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


def test_steps_bound_via_set(good, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _config(tmp_path, good)
    rc = main(["train", str(cfg), "--run-dir", "run", "--no-progress",
               "--set", "train.steps=100000000000000000000000"])
    assert "train.steps" in _one_error(rc, *capsys.readouterr())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


@pytest.mark.parametrize("value", ["", " "])
def test_empty_run_dir(value, good, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _config(tmp_path, good)
    rc = main(["train", str(cfg), "--run-dir", value, "--no-progress"])
    assert "--run-dir" in _one_error(rc, *capsys.readouterr())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


@pytest.mark.parametrize("content", ["[1, 2, 3]\n", "\"text\"\n", "null\n", "{}\n",
                                     "{\"config\": [1]}\n", "{\"config\": {\"x\": 1}}\n",
                                     "{not json\n", "\xff\xfe"])
def test_resume_invalid_manifest(content, good, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "manifest.json").write_bytes(content.encode("latin-1"))
    before = h.fingerprint(mine)
    rc = main(["train", "--resume", "mine", "--no-progress"])
    line = _one_error(rc, *capsys.readouterr())
    assert "manifest.json" in line or "config" in line, line
    assert h.fingerprint(mine) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_config_fifo_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.mkfifo(tmp_path / "p.yaml")
    rc = main(["train", "p.yaml", "--run-dir", "run", "--no-progress"])
    assert "p.yaml" in _one_error(rc, *capsys.readouterr())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.yaml"]


def test_config_directory_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.yaml").mkdir()
    rc = main(["train", "d.yaml", "--run-dir", "run", "--no-progress"])
    assert "d.yaml" in _one_error(rc, *capsys.readouterr())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.yaml"]


@pytest.mark.parametrize("where", ["model.init", "loss.feature_weights"])
def test_pickle_checkpoint_no_warning(where, good, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = _pickle_checkpoint(tmp_path / "evil.pt")
    before = evil.read_bytes()
    over = ({"model": {"init": "evil.pt"}} if where == "model.init"
            else {"loss": {"perceptual": 1.0, "feature_weights": "evil.pt"}})
    cfg = _config(tmp_path, good, over)
    rc = main(["train", str(cfg), "--run-dir", "run", "--no-progress"])
    _one_error(rc, *capsys.readouterr())
    assert evil.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "evil.pt"]


def test_pickle_via_set_no_warning(good, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _pickle_checkpoint(tmp_path / "evil.pt")
    cfg = _config(tmp_path, good)
    rc = main(["train", str(cfg), "--run-dir", "run", "--no-progress",
               "--set", "model.init=evil.pt"])
    _one_error(rc, *capsys.readouterr())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "evil.pt"]


def test_pickle_never_unpickled(good, tmp_path, capsys, monkeypatch):
    """A pickle that would run code when loaded does not run it."""
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Evil(), protocol=4))
    cfg = _config(tmp_path, good, {"model": {"init": "evil.pt"}})
    rc = main(["train", str(cfg), "--run-dir", "run", "--no-progress"])
    _one_error(rc, *capsys.readouterr())
    assert not marker.exists()
    assert "run" not in {p.name for p in tmp_path.iterdir()}
    assert sys.modules.get("medsr")  # still importable: nothing replaced
