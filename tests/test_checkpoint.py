"""Checkpoints: safetensors round trip, metadata, and refusal of anything that could run code."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from medsr import models
from medsr.errors import UserError
from medsr.models.checkpoint import load_model, read_checkpoint, read_info, save_model

INFO = {"architecture": "espcn", "hparams": {"features": 8, "features2": 4}, "scale": [2, 2],
        "spatial_dims": 2, "in_channels": 1, "out_channels": 1,
        "normalisation": {"method": "percentile", "lower": 0.5, "upper": 99.5}}


def _net():
    torch.manual_seed(0)
    return models.create("espcn", spatial_dims=2, scale=(2, 2), features=8, features2=4)


def test_round_trip(tmp_path):
    net = _net()
    path = save_model(tmp_path / "m.safetensors", net.state_dict(), INFO)
    model, info = load_model(path)
    assert info["architecture"] == "espcn" and info["scale"] == [2, 2]
    assert json.loads((tmp_path / "m.json").read_text())["hparams"] == INFO["hparams"]
    x = torch.rand(2, 1, 9, 11)
    with torch.no_grad():
        assert torch.equal(model(x), net.eval()(x))
    assert not model.training
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]  # no temp


def test_read_info_is_the_metadata_alone(tmp_path):
    path = save_model(tmp_path / "m.safetensors", _net().state_dict(), INFO)
    assert read_info(path) == read_checkpoint(path)[1]
    torch.save(_net().state_dict(), tmp_path / "m.pt")
    for bad in (tmp_path / "m.pt", tmp_path / "missing.safetensors"):
        with pytest.raises(UserError):
            read_info(bad)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(UserError, match="corrupted"):
        read_info(path)


def test_save_is_deterministic(tmp_path):
    net = _net()
    a = save_model(tmp_path / "a.safetensors", net.state_dict(), INFO).read_bytes()
    b = save_model(tmp_path / "b.safetensors", net.state_dict(), INFO).read_bytes()
    assert a == b


@pytest.mark.parametrize("damage", ["truncate", "garbage", "header"])
def test_corrupted_checkpoint_refused(tmp_path, damage):
    path = save_model(tmp_path / "m.safetensors", _net().state_dict(), INFO)
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(b"this is not a checkpoint at all" * 10)
    else:
        path.write_bytes(raw[:8] + b"{" + b"\x00" * 40 + raw[49:])
    with pytest.raises(UserError):
        load_model(path)


def test_non_medsr_safetensors_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(UserError, match="not a medsr checkpoint"):
        load_model(tmp_path / "x.safetensors")


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):  # unpickling this would create a file
        return (open, (self.target, "w"))


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".safetensors", ".ckpt"])
def test_pickle_with_code_is_never_run(tmp_path, suffix):
    target = tmp_path / "pwned.txt"
    path = tmp_path / f"evil{suffix}"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "x": _Evil(str(target))}, path)
    with pytest.raises(UserError, match="refusing|not a checkpoint|corrupted"):
        load_model(path)
    assert not target.exists()
    # a raw (non-zip) pickle too
    raw = tmp_path / f"raw{suffix}"
    raw.write_bytes(pickle.dumps(_Evil(str(target)), protocol=2))
    with pytest.raises(UserError):
        load_model(raw)
    assert not target.exists()
    # sanity: the payload is real (plain pickle would create the file)
    pickle.loads(raw.read_bytes()).close()
    assert target.exists()


def test_foreign_weights_only_file(tmp_path):
    net = _net()
    path = tmp_path / "foreign.pth"
    torch.save({"state_dict": net.state_dict()}, path)
    with pytest.raises(UserError, match="no medsr metadata"):
        load_model(path)
    model, info = load_model(path, architecture=INFO)
    state, _ = read_checkpoint(path)
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    x = torch.rand(1, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), net.eval()(x))


def test_wrong_architecture_is_user_error(tmp_path):
    path = save_model(tmp_path / "m.safetensors", _net().state_dict(),
                      {**INFO, "hparams": {"features": 16, "features2": 4}})
    # a bigger network than the file holds is refused before it is built
    with pytest.raises(UserError, match=r"more than 648 \(the weights in the file\)"):
        load_model(path)
    # a smaller one is built, and its shapes do not fit the weights
    path = save_model(tmp_path / "s.safetensors", _net().state_dict(),
                      {**INFO, "hparams": {"features": 4, "features2": 4}})
    with pytest.raises(UserError, match="do not fit"):
        load_model(path)
