"""Start-up: ``medsr --help``, ``medsr infer`` and ``medsr eval`` import only what they use
(issue 24 item 1); the extras (issue 22 item 6): a command whose extra is missing says
so in one line and exits 2.

Each command runs in a fresh interpreter (``medsr.cli.main([...])``), which then prints
``sorted(sys.modules)``. A deny-listed module in that list fails its own test case, so a
regression names the command and the module. Cases blocked by a file this change could
not edit are ``xfail(strict=True)`` naming the file and line: they turn red when fixed,
and the mark then goes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

# Modules no command below needs, with why:
NEVER = {
    "monai.networks.nets": "MONAI's network zoo: medsr's networks are torch.nn (medsr.models)",
    "torch._dynamo": "only torch.compile (--compile) needs it; torch.compiler.disable and "
                     "meta-device init import it (seconds)",
    "transformers": "imported by monai.networks.nets (Transchex); nothing of medsr uses it",
    "nilearn": "the MNI152 training template (medsr train, the [train] extra)",
    "highdicom": "test-only DICOM checks",
    "SimpleITK": "test-only reference reader",
    "torchio": "degradation artefacts (medsr degrade/train, the [train] extra)",
    "tensorboard": "training logs (the [train] extra)",
    "sklearn": "nothing in medsr; only MONAI's optional metrics import it",
    "pandas": "nothing in medsr; only MONAI's profiling utilities import it",
    "pydicom": "a NIfTI input reads no DICOM",
    "skimage": "only medsr eval --auto-mask (Otsu) uses it",
}
# ... and per command.
ONLY = {
    "help": {
        "torch": "building the parser needs no tensors",
        "scipy.sparse": "the interpolation operators, built when a resize runs",
        "monai": "no MONAI reader or transform runs",
        "matplotlib": "no figure",
        "nibabel": "no file is read",
    },
    "infer_cubic": {
        "matplotlib": "medsr infer draws no figure",
        "monai": "a NIfTI is read by nibabel; no MONAI transform runs for cubic B-splines",
        "torch": "classical resampling is numpy/scipy",
        "medsr.models": "no network runs",
        "medsr.models.checkpoint": "no network runs",
        "medsr.training": "training (its data are MONAI datasets)",
    },
    "infer_model": {
        "matplotlib": "medsr infer draws no figure",
        "monai": "medsr's networks and the runner are torch.nn; a NIfTI is read by nibabel",
        "medsr.training": "training: data (MONAI datasets), losses, the loop; inference "
                          "normalises with medsr.intensity",
        "medsr.selfsup.api": "no self-supervised fit without --self-supervised",
    },
    "eval": {
        "matplotlib": "no --json/--csv/--figure: no figure",
        "torch": "comparing files is numpy/scipy",
        "monai": "no MONAI reader or transform runs",
        "medsr.models": "no network runs",
    },
}

_NIBABEL = ("nibabel/nifti1.py:43 `optional_package('pydicom')` imports pydicom whenever it "
            "is installed (third party; PIL follows)")
# (command, module) -> why it is still imported
BLOCKED = {
    ("infer_cubic", "pydicom"): _NIBABEL,
    ("infer_model", "pydicom"): _NIBABEL,
    ("eval", "pydicom"): _NIBABEL,
}

PRELUDE = textwrap.dedent("""
    import json, sys
    from medsr.cli import main
    try:
        rc = main(json.loads(sys.argv[1]))
    except SystemExit as exc:
        rc = exc.code
    print("MODULES" + json.dumps({"rc": rc, "modules": sorted(sys.modules)}))
""")


def _run(argv: list[str], prelude: str = "") -> dict:
    proc = subprocess.run([sys.executable, "-c", prelude + PRELUDE, json.dumps(argv)],
                          capture_output=True, text=True, timeout=600)
    line = [x for x in proc.stdout.splitlines() if x.startswith("MODULES")]
    assert line, proc.stderr[-2000:]
    out = json.loads(line[-1][len("MODULES"):])
    out["stderr"] = proc.stderr
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict]:
    d = tmp_path_factory.mktemp("startup")
    rng = np.random.default_rng(0)
    thick = d / "thick.nii.gz"
    nib.save(nib.Nifti1Image(rng.random((16, 16, 4)).astype(np.float32),
                             np.diag([1.0, 1.0, 4.0, 1.0])), thick)
    ref, test = d / "ref.nii.gz", d / "test.nii.gz"
    hr = rng.random((16, 16, 16)).astype(np.float32)
    nib.save(nib.Nifti1Image(hr, np.eye(4)), ref)
    nib.save(nib.Nifti1Image(hr + 0.01, np.eye(4)), test)
    argvs = {
        "help": ["--help"],
        "infer_cubic": ["infer", str(thick), "-o", str(d / "cubic.nii.gz"), "--method", "cubic"],
        "infer_model": ["infer", str(thick), "-o", str(d / "model.nii.gz")],
        "eval": ["eval", "--reference", str(ref), "--test", str(test)],
    }
    out = {}
    for name, argv in argvs.items():
        out[name] = _run(argv)
        assert out[name]["rc"] == 0, out[name]["stderr"][-2000:]
    return out


def _cases():
    for command in ONLY:
        for module, why in {**NEVER, **ONLY[command]}.items():
            marks = ()
            if (command, module) in BLOCKED:
                marks = pytest.mark.xfail(strict=True, reason=BLOCKED[command, module])
            yield pytest.param(command, module, why, marks=marks, id=f"{command}-{module}")


@pytest.mark.parametrize("command, module, why", list(_cases()))
def test_command_does_not_import(runs, command: str, module: str, why: str) -> None:
    loaded = runs[command]["modules"]
    assert module not in loaded, f"medsr {command} imported {module} ({why})"


def test_the_network_path_still_loads_the_network(runs) -> None:
    """The deny-lists are not vacuous: the default network really ran."""
    assert "medsr.models.vdsr" in runs["infer_model"]["modules"]
    assert "medsr.models.vdsr" not in runs["infer_cubic"]["modules"]


# --------------------------------------------------------------------- missing extras
_BLOCK = textwrap.dedent("""
    import importlib.abc, sys
    class _Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {blocked!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None
    sys.meta_path.insert(0, _Block())
""")


def _without(modules: set[str], argv: list[str]) -> dict:
    return _run(argv, _BLOCK.format(blocked=modules))


def _one_line(stderr: str) -> str:
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert len(lines) == 1, stderr[-2000:]
    return lines[0]


def test_train_without_the_training_extras_says_so(tmp_path) -> None:
    config = str(Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml")
    out = _without({"nilearn"}, ["train", config, "--run-dir", str(tmp_path / "r")])
    assert out["rc"] == 2
    assert _one_line(out["stderr"]) == ("medsr: error: medsr train needs the training extras: "
                                        "pip install 'medsr[train]'")
    assert not (tmp_path / "r").exists()


def test_eval_figure_without_matplotlib(tmp_path) -> None:
    ref = tmp_path / "ref.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((8, 8, 8)).astype(np.float32),
                             np.eye(4)), ref)
    base = ["eval", "--reference", str(ref), "--test", str(ref)]
    # an explicit --figure cannot be honoured: one line, exit 2, nothing written
    out = _without({"matplotlib"}, [*base, "--figure", str(tmp_path / "f.png")])
    assert out["rc"] == 2
    assert "pip install 'medsr[train]'" in _one_line(out["stderr"])
    assert not (tmp_path / "f.png").exists()
    # the implicit figure beside --json is left out with a note; the table is written
    out = _without({"matplotlib"}, [*base, "--json", str(tmp_path / "m.json")])
    assert out["rc"] == 0, out["stderr"][-2000:]
    assert "no figure: matplotlib is not installed" in out["stderr"]
    assert (tmp_path / "m.json").exists() and not (tmp_path / "m.png").exists()


def test_video_without_the_video_extras_says_so(tmp_path) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42")  # never decoded: the check comes first
    out = _without({"imageio", "imageio_ffmpeg"},
                   ["infer", str(video), "-o", str(tmp_path / "out.mp4")])
    assert out["rc"] == 2
    line = _one_line(out["stderr"])
    assert line.startswith("medsr: error:") and "pip install 'medsr[video]'" in line
