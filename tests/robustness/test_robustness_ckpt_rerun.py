"""Hostile checkpoint metadata, rerun of the issue 21 battery with new values.

``medsr infer a.nii.gz -o o.nii.gz --scale 2,2,1 --model m.safetensors`` with valid
weights and hostile JSON metadata: nesting 10000 levels deep, huge metadata, NaN or
inverted normalisation percentiles, unknown normalisation method or sampling mode, a huge
context. Each is refused when the checkpoint is read: exit 2, one ``medsr: error:`` line,
no traceback, nothing written, the input unchanged. A pickle that would run code (``.pt``,
``.pth``, ``.bin``, ``.ckpt``) is refused with that one line and no torch warning before it.
"""

from __future__ import annotations

import json
import os
import pickle

import pytest
import robust_helpers as h
from forked_cli import ForkedCLI
from test_robustness_hostile import BAD, NAN, OK, _run, _save_ckpt, _volume


@pytest.fixture(scope="module")
def cli():
    with ForkedCLI() as runner:
        yield runner




INFER = ["infer", "{in}/a.nii.gz", "-o", "{out}/o.nii.gz", "--model", "{in}/m.safetensors",
         "--scale", "2,2,1"]
GOOD_NORM = {"method": "percentile", "lower": 0.5, "upper": 99.5}
GOOD_SAMPLING = {"mode": "2d", "axes": [2], "context": 1, "patch_size": [32, 32]}


class Raw(str):
    """A value spliced into the metadata as raw JSON text."""


def _text(info: dict, changes: dict) -> str:
    out = json.loads(json.dumps(info))
    raws = {}
    for k, v in changes.items():
        if isinstance(v, Raw):
            raws[k] = v
            out[k] = f"@@{k}@@"
        else:
            out[k] = v
    text = json.dumps(out)
    for k, v in raws.items():
        text = text.replace(json.dumps(f"@@{k}@@"), v)
    return text


DEEP = Raw("[" * 10000 + "]" * 10000)
DEEP_OBJ = Raw('{"a":' * 10000 + "1" + "}" * 10000)
DEEP_100 = Raw("[" * 100 + "]" * 100)

# (name, metadata changes, code, match)
CASES = [
    ("valid with normalisation and sampling",
     {"normalisation": GOOD_NORM, "sampling": GOOD_SAMPLING, "name": "tiny"}, OK, None),
    ("nested arrays 10000 deep", {"notes": DEEP}, BAD, "metadata.*invalid"),
    ("nested objects 10000 deep", {"degradation": DEEP_OBJ}, BAD, "metadata.*invalid"),
    ("nested arrays 100 deep", {"notes": DEEP_100}, BAD, "metadata.*invalid"),
    ("nested in hparams", {"hparams": Raw('{"channels": ' + DEEP + "}")}, BAD,
     "metadata.*invalid"),
    ("huge metadata", {"notes": "x" * 2_000_000}, BAD, "metadata.*invalid"),
    ("normalisation NaN", {"normalisation": {**GOOD_NORM, "lower": NAN}}, BAD,
     "normalisation lower"),
    ("normalisation upper inf", {"normalisation": Raw('{"lower": 0.5, "upper": Infinity}')},
     BAD, "normalisation upper"),
    ("normalisation upper < lower", {"normalisation": {**GOOD_NORM, "lower": 99, "upper": 1}},
     BAD, "below upper"),
    ("normalisation equal", {"normalisation": {**GOOD_NORM, "lower": 5, "upper": 5}}, BAD,
     "below upper"),
    ("normalisation out of range", {"normalisation": {**GOOD_NORM, "upper": 1e308}}, BAD,
     "percentile from 0 to 100"),
    ("normalisation negative", {"normalisation": {**GOOD_NORM, "lower": -5}}, BAD,
     "percentile"),
    ("normalisation string", {"normalisation": {**GOOD_NORM, "upper": "99"}}, BAD,
     "percentile"),
    ("normalisation bool", {"normalisation": {**GOOD_NORM, "lower": True}}, BAD, "percentile"),
    ("normalisation unknown method", {"normalisation": {**GOOD_NORM, "method": "zscore"}}, BAD,
     "normalisation method"),
    ("normalisation list", {"normalisation": [0.5, 99.5]}, BAD, "normalisation must be"),
    ("sampling bad mode", {"sampling": {**GOOD_SAMPLING, "mode": "4d"}}, BAD, "sampling mode"),
    ("sampling mode not a string", {"sampling": {**GOOD_SAMPLING, "mode": [1]}}, BAD,
     "sampling mode"),
    ("sampling mode 3d for a 2D net", {"sampling": {**GOOD_SAMPLING, "mode": "3d"}}, BAD,
     "does not fit"),
    ("huge context", {"sampling": {**GOOD_SAMPLING, "context": 10**12}}, BAD,
     "sampling context"),
    ("negative context", {"sampling": {**GOOD_SAMPLING, "context": -1}}, BAD,
     "sampling context"),
    ("float context", {"sampling": {**GOOD_SAMPLING, "context": 1.5}}, BAD, "sampling context"),
    ("2.5d context vs channels", {"sampling": {**GOOD_SAMPLING, "mode": "2.5d", "context": 3}},
     BAD, "does not fit"),
    ("bad axes", {"sampling": {**GOOD_SAMPLING, "axes": [7]}}, BAD, "sampling axes"),
    ("axes not a list", {"sampling": {**GOOD_SAMPLING, "axes": "xyz"}}, BAD, "sampling axes"),
    ("sampling not a mapping", {"sampling": "2d"}, BAD, "sampling must be"),
    ("name with a newline", {"name": "a\nmedsr: error: fake"}, BAD, "name"),
    ("huge name", {"name": "n" * 100_000}, BAD, "name"),
    ("architecture with a newline", {"architecture": "srcnn\nboom"}, BAD, "architecture"),
]


@pytest.mark.parametrize("name,changes,code,match", CASES, ids=[c[0] for c in CASES])
def test_hostile_metadata(cli, tmp_path, checkpoint_parts, name, changes, code, match):
    state, info = checkpoint_parts
    _volume(tmp_path)
    _save_ckpt(tmp_path / "in" / "m.safetensors", state, _text(info, changes))
    proc = _run(cli, tmp_path, INFER, code, match)
    if code == BAD:
        assert len([ln for ln in proc.stderr.splitlines() if ln.strip()]) == 1, proc.stderr


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _raw_pickle(path, marker) -> None:
    path.write_bytes(pickle.dumps({"state_dict": _Payload(str(marker))}, protocol=4))


def _torch_zip(path, marker) -> None:
    import torch

    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _Payload(str(marker))}, path,
               pickle_protocol=4)


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin", ".ckpt"])
@pytest.mark.parametrize("make", [_raw_pickle, _torch_zip], ids=["raw pickle", "torch zip"])
def test_pickle_refused_without_a_torch_warning(cli, tmp_path, suffix, make):
    _volume(tmp_path)
    marker = tmp_path / "PWNED"
    make(tmp_path / "in" / f"evil{suffix}", marker)
    argv = [*INFER[:-3], f"{{in}}/evil{suffix}", *INFER[-2:]]
    proc = _run(cli, tmp_path, argv, BAD, "refusing|not a checkpoint|plain")
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("medsr: error:"), proc.stderr
    assert not marker.exists()


def test_read_checkpoint_of_deep_torch_metadata_is_one_user_error(tmp_path):
    """A plain-weights torch file whose medsr metadata text nests 10000 levels."""
    import torch

    from medsr.errors import UserError
    from medsr.models.checkpoint import read_checkpoint

    path = tmp_path / "m.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "medsr": str(DEEP)}, path)
    with pytest.raises(UserError, match="metadata.*invalid"):
        read_checkpoint(path)
    assert h.entries(tmp_path) == ["m.pt"]
