"""The training config schema: defaults, YAML, --set overrides, type checks, typos."""

from __future__ import annotations

import pytest

from medsr.errors import UserError
from medsr.training.config import defaults, load_config, parse_set


def _write(tmp_path, text: str):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_unknown_key_names_key_and_allowed(tmp_path):
    p = _write(tmp_path, "data: {source: mni152}\ntrain:\n  stpes: 10\n")
    with pytest.raises(UserError) as exc:
        load_config(p)
    msg = str(exc.value)
    assert "train.stpes" in msg
    for allowed in ("steps", "val_every", "ckpt_every", "grad_clip", "ema"):
        assert allowed in msg
    assert "\n" not in msg


def test_unknown_top_level_key_from_set():
    with pytest.raises(UserError, match=r"'optimizer'.*allowed.*optim"):
        load_config(None, ["data.source=mni152", "optimizer.lr=1"])


def test_set_overrides_and_types(tmp_path):
    p = _write(tmp_path, "data: {source: mni152}\noptim: {lr: 0.01}\nmodel: {hparams: {a: 1}}\n")
    cfg = load_config(p, ["optim.lr=1e-4", "train.steps=7", "model.scale=[1, 4]",
                          "model.hparams.b=true", "sampling.mode=3d"])
    assert cfg["optim"]["lr"] == pytest.approx(1e-4)
    assert cfg["train"]["steps"] == 7 and isinstance(cfg["train"]["steps"], int)
    assert cfg["model"]["scale"] == [1, 4]
    assert cfg["model"]["hparams"] == {"a": 1, "b": True}  # open section merged, not replaced
    assert cfg["train"]["val_every"] == defaults()["train"]["val_every"]
    with pytest.raises(UserError, match="train.steps.*int"):
        load_config(p, ["train.steps=many"])
    with pytest.raises(UserError, match="train.amp.*true, false or bf16"):
        load_config(p, ["train.amp=3"])
    with pytest.raises(UserError, match="sampling.mode.*2d, 2.5d, 3d"):
        load_config(p, ["sampling.mode=4d"])
    with pytest.raises(UserError, match="key=value"):
        parse_set("train.steps")


def test_yaml_is_safe_loaded(tmp_path):
    p = _write(tmp_path, "seed: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(p)


def test_folder_source_needs_path():
    with pytest.raises(UserError, match="data.path"):
        load_config(None, [])
