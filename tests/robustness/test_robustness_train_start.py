"""`medsr train` validates everything before it creates anything.

A hostile config, data folder or --run-dir ends the run with one line on stderr
("medsr: error: ..."), exit code 2, no traceback, and no run directory (a user's folder
given as --run-dir is left byte for byte). Most cases run in-process through
``medsr.cli.main`` (a subprocess costs seconds of imports); a few run the real command.
"""

from __future__ import annotations

import copy
import gzip
import re
from pathlib import Path

import numpy as np
import pytest
import robust_helpers as h
import yaml

from medsr.cli import main

BASE: dict = {
    "seed": 0, "device": "cpu", "num_threads": 1,
    "data": {"source": "folder", "path": None, "cache": False},
    "sampling": {"mode": "2d", "axes": [2], "patch_size": [16, 16], "batch_size": 2,
                 "val_patches": 2, "min_foreground": 0.0},
    "model": {"name": "srcnn", "scale": [2, 2]},
    "train": {"steps": 1, "log_every": 1, "val_every": 1, "ckpt_every": 1, "amp": False},
}

BOMB = ("a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n"
                  for p, c in zip("abcdefgh", "bcdefghi"))
        + "seed: *i\n")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """Data folders: good (two small volumes), empty, corrupt .nii.gz files."""
    root = tmp_path_factory.mktemp("train_start_data")
    good = root / "good"
    good.mkdir()
    for i in range(2):
        vol = np.random.default_rng(i).random((24, 24, 6)).astype(np.float32) * 100
        h.nifti(good / f"v{i}.nii.gz", vol, np.diag([1.0, 1.0, 2.0, 1.0]))
    (root / "empty").mkdir()
    bad = root / "corrupt"
    bad.mkdir()
    (bad / "a.nii.gz").write_bytes(gzip.compress(np.random.default_rng(0).bytes(4000)))
    (bad / "b.nii.gz").write_bytes((good / "v0.nii.gz").read_bytes()[:300])
    return {"good": good, "empty": root / "empty", "corrupt": bad,
            "missing": root / "no-such-folder"}


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _config(tmp: Path, data: dict[str, Path], over: dict | None = None, text: str | None = None,
            raw: bytes | None = None, which: str = "good") -> Path:
    path = tmp / "c.yaml"
    if raw is not None:
        path.write_bytes(raw)
    elif text is not None:
        path.write_text(text, encoding="utf-8")
    else:
        cfg = _merge(BASE, {"data": {"path": str(data[which])}})
        path.write_text(yaml.safe_dump(_merge(cfg, over or {})), encoding="utf-8")
    return path


def _one_error(rc: int, out: str, err: str) -> str:
    assert rc == 2, f"exit {rc}\n{out}{err}"
    assert "Traceback" not in out + err, out + err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("medsr: warning:")]
    assert len(lines) == 1, f"expected one error line, got:\n{err}"
    assert re.match(r"^medsr( \w+)?: error: \S", lines[0]), lines[0]
    return lines[0]


# (id, what to give) -> the error line must match. A case gives `over` (merged into the good
# config), `text` / `raw` (the whole config file), `sets` (--set items), `which` (data folder).
CASES = [
    ("lr nan", {"over": {"optim": {"lr": float("nan")}}}, r"optim\.lr.*> 0.*nan"),
    ("lr inf", {"over": {"optim": {"lr": float("inf")}}}, r"optim\.lr"),
    ("lr -1", {"over": {"optim": {"lr": -1}}}, r"optim\.lr.*> 0"),
    ("lr 0", {"over": {"optim": {"lr": 0}}}, r"optim\.lr.*> 0"),
    ("lr abc", {"over": {"optim": {"lr": "abc"}}}, r"optim\.lr.*float"),
    ("lr nan via --set", {"sets": ["optim.lr=nan"]}, r"optim\.lr"),
    ("steps 0", {"over": {"train": {"steps": 0}}}, r"train\.steps.*>= 1"),
    ("steps -1", {"over": {"train": {"steps": -1}}}, r"train\.steps"),
    ("steps 1.5", {"over": {"train": {"steps": 1.5}}}, r"train\.steps.*int"),
    ("steps x", {"sets": ["train.steps=x"]}, r"train\.steps.*int"),
    ("val_every 0", {"over": {"train": {"val_every": 0}}}, r"train\.val_every"),
    ("log_every x", {"over": {"train": {"log_every": "x"}}}, r"train\.log_every"),
    ("ckpt_every -3", {"over": {"train": {"ckpt_every": -3}}}, r"train\.ckpt_every"),
    ("batch 0", {"over": {"sampling": {"batch_size": 0}}}, r"sampling\.batch_size"),
    ("patch 0", {"over": {"sampling": {"patch_size": 0}}}, r"sampling\.patch_size"),
    ("patch odd", {"over": {"sampling": {"patch_size": [15, 15]}}}, r"divisible"),
    ("patch not divisible by 4", {"over": {"sampling": {"patch_size": [16, 18]},
                                           "model": {"scale": 4}}}, r"divisible"),
    ("patch larger than the data", {"over": {"sampling": {"patch_size": [64, 64]}}},
     r"v[01]\.nii\.gz: .*smaller than the patch"),
    ("scale 0", {"over": {"model": {"scale": 0}}}, r"model\.scale"),
    ("scale nan", {"over": {"model": {"scale": float("nan")}}}, r"model\.scale"),
    ("scale 1.5", {"over": {"model": {"scale": [1.5, 2]}}}, r"model\.scale"),
    ("scale 3 values in 2d", {"over": {"model": {"scale": [2, 2, 2]}}}, r"model\.scale"),
    ("num_threads -4", {"over": {"num_threads": -4}}, r"num_threads"),
    ("num_threads x", {"over": {"num_threads": "x"}}, r"num_threads"),
    ("num_threads huge", {"over": {"num_threads": 100000}}, r"num_threads"),
    ("seed -1", {"over": {"seed": -1}}, r"seed"),
    ("seed 2**40", {"over": {"seed": 2**40}}, r"seed"),
    ("loss weight -1", {"over": {"loss": {"l1": -1}}}, r"loss\.l1"),
    ("loss weight nan", {"over": {"loss": {"l1": float("nan")}}}, r"loss\.l1"),
    ("all loss weights 0", {"over": {"loss": {"l1": 0}}}, r"loss weight"),
    ("unknown loss", {"over": {"loss": {"l3": 1.0}}}, r"unknown config key 'loss\.l3'"),
    ("unknown schedule", {"over": {"schedule": {"name": "linear"}}}, r"schedule\.name"),
    ("unknown optimiser", {"over": {"optim": {"name": "lbfgs"}}}, r"optim\.name"),
    ("betas out of range", {"over": {"optim": {"betas": [0.9, 1.5]}}}, r"optim\.betas"),
    ("ema 1", {"over": {"train": {"ema": 1.0}}}, r"train\.ema"),
    ("grad_clip -1", {"over": {"train": {"grad_clip": -1}}}, r"train\.grad_clip"),
    ("val_fraction 1.5", {"over": {"data": {"val_fraction": 1.5}}}, r"data\.val_fraction"),
    ("normalise lower > upper", {"over": {"data": {"normalise": {"lower": 90, "upper": 10}}}},
     r"normalise"),
    ("sampling mode 4d", {"over": {"sampling": {"mode": "4d"}}}, r"sampling\.mode"),
    ("axes [3]", {"over": {"sampling": {"axes": [3]}}}, r"sampling\.axes"),
    ("train: null", {"over": {"train": None}}, r"'train' must be dict"),
    ("data.path a number", {"over": {"data": {"path": 5}}}, r"data\.path"),
    ("unknown preset", {"over": {"degradation": {"preset": "nope"}}}, r"preset 'nope'"),
    ("unknown degradation param", {"over": {"degradation": {"params": {"bogus": 1}}}}, r"."),
    ("bad model name", {"over": {"model": {"name": "nonet"}}}, r"nonet"),
    ("unknown model hparam", {"over": {"model": {"hparams": {"bogus": 1}}}}, r"bogus"),
    ("bad model hparam value", {"over": {"model": {"hparams": {"channels": [-1, 3]}}}},
     r"model 'srcnn' cannot be built"),
    ("bad degradation param value", {"over": {"degradation": {"params": {"sigma": "abc"}}}},
     r"degradation\.params"),
    ("unknown discriminator", {"over": {"loss": {"adversarial": 0.1},
                                        "discriminator": {"name": "zzz"}}}, r"zzz"),
    ("perceptual without weights", {"over": {"loss": {"perceptual": 1.0}}},
     r"feature_weights"),
    ("missing data CSV", {"over": {"data": {"source": "csv", "path": "/no/such.csv"}}},
     r"such\.csv"),
    ("val_paths naming no volume", {"over": {"data": {"val_paths": ["/no/x.nii"]}}},
     r"val_paths"),
    ("unknown top-level key", {"over": {"epochs": 3}}, r"unknown config key 'epochs'"),
    ("non-mapping YAML", {"text": "hello\n"}, r"mapping"),
    ("YAML list", {"text": "- seed: 0\n- device: cpu\n"}, r"mapping"),
    ("empty YAML", {"text": ""}, r"data\.path"),
    ("YAML syntax error", {"text": "seed: [0\n"}, r"not valid YAML"),
    ("python tag", {"text": "seed: !!python/object/apply:os.system ['true']\n"},
     r"not valid YAML"),
    ("binary file", {"raw": bytes(range(256)) * 64}, r"not UTF-8"),
    ("10 MB file", {"raw": b"# padding\n" * 1_000_000}, r"larger than"),
    ("alias bomb", {"text": BOMB}, r"YAML bomb"),
    ("recursive alias", {"text": "seed: &x [*x]\n"}, r"recursive"),
    ("deep nesting", {"text": "seed: " + "[" * 50_000 + "]" * 50_000 + "\n"}, r"."),
    ("missing data dir", {"which": "missing"}, r"does not exist"),
    ("empty data dir", {"which": "empty"}, r"no volumes"),
    ("corrupt .nii.gz data", {"which": "corrupt"}, r"corrupt/[ab]\.nii\.gz"),
]


@pytest.mark.parametrize("case,match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_start_writes_nothing(case, match, data, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _config(tmp_path, data, case.get("over"), case.get("text"), case.get("raw"),
                  case.get("which", "good"))
    sets = [a for s in case.get("sets", []) for a in ("--set", s)]
    rc = main(["train", str(cfg), "--run-dir", "run", "--no-progress", *sets])
    out, err = capsys.readouterr()
    line = _one_error(rc, out, err)
    assert re.search(match, line), f"{match!r} not in {line!r}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]  # no run/, no runs/


@pytest.mark.parametrize("kind", ["user's file", "a file", "previous run", "parent is a file",
                                  "resume a user's folder"])
def test_run_dir_refused_and_left_unchanged(kind, data, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _config(tmp_path, data)
    target = tmp_path / "mine"
    args = ["--run-dir", str(target)]
    if kind == "a file":
        target.write_text("not a directory\n")
    elif kind == "parent is a file":
        target.write_text("not a directory\n")
        args = ["--run-dir", str(target / "run")]
    else:
        target.mkdir()
        (target / "notes.txt").write_text("a user's notes\n")
        if kind == "previous run":
            (target / "manifest.json").write_text("{}\n")
        if kind == "resume a user's folder":
            args = ["--resume", str(target)]
    before = h.fingerprint(target)
    rc = main(["train", str(cfg), *args, "--no-progress"])
    out, err = capsys.readouterr()
    _one_error(rc, out, err)
    assert h.fingerprint(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "mine"]
    if target.is_dir():
        assert sorted(p.name for p in target.iterdir()) == sorted(
            Path(k).name for k in before)


def test_good_start_into_an_empty_run_dir(data, tmp_path, capsys, monkeypatch):
    """The control: the same config trains (one step) into an existing empty directory."""
    monkeypatch.chdir(tmp_path)
    cfg = _config(tmp_path, data)
    (tmp_path / "run").mkdir()
    rc = main(["train", str(cfg), "--run-dir", "run", "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    assert (tmp_path / "run" / "manifest.json").is_file()
    assert (tmp_path / "run" / "checkpoints" / "last.safetensors").is_file()
    # a second start into the run is refused and leaves it as it was; --resume continues it
    before = h.fingerprint(tmp_path / "run")
    rc = main(["train", str(cfg), "--run-dir", "run", "--no-progress"])
    assert "already holds a run" in _one_error(rc, *capsys.readouterr())
    assert h.fingerprint(tmp_path / "run") == before
    rc = main(["train", "--resume", "run", "--set", "train.steps=2", "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    assert "steps: 2" in out


@pytest.mark.parametrize("what", ["corrupt data + a user's --run-dir", "alias bomb",
                                  "binary config"])
def test_real_command(what, data, tmp_path):
    """End to end, as a user runs it: `python -m medsr train ...`."""
    mine = tmp_path / "mine"
    mine.mkdir()
    if what == "corrupt data + a user's --run-dir":
        cfg = _config(tmp_path, data, which="corrupt")
        (mine / "notes.txt").write_text("a user's notes\n")
    elif what == "alias bomb":
        cfg = _config(tmp_path, data, text=BOMB)
    else:
        cfg = _config(tmp_path, data, raw=b"\xff\xfe\x00seed: 0\x80\x81\n")
    before = h.fingerprint(mine)
    proc = h.medsr("train", cfg, "--run-dir", "mine", cwd=tmp_path, timeout=120)
    h.assert_one_line_error(proc)
    assert h.fingerprint(mine) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "mine"]
