"""Untrusted files and strings (issue 11, item 3): no shell, no eval, no pickle; a YAML
config with a python tag and a pickled checkpoint that would run code are refused, and the
code does not run; file names with shell metacharacters are only ever file names."""

from __future__ import annotations

import ast
from pathlib import Path

import nibabel as nib
import pytest
import robust_helpers as h

import medsr

PACKAGE = Path(medsr.__file__).parent


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name):  # eval(...), exec(...)
                yield f.id, node
            elif isinstance(f, ast.Attribute):  # os.system(...); model.eval() is x.eval
                owner = f.value.id if isinstance(f.value, ast.Name) else "<expr>"
                yield f"{owner}.{f.attr}", node


def _kw(node: ast.Call, key: str):
    for k in node.keywords:
        if k.arg == key:
            return k.value
    return None


def _problems(source: str, where: str) -> list[str]:
    """Dangerous calls in ``source``: shell=True, os.system/popen, eval/exec, pickle,
    yaml.load without SafeLoader, torch.load without weights_only=True, np.load with
    allow_pickle, subprocess with a command string."""
    problems = []
    for name, node in _calls(ast.parse(source)):
        at = f"{where}:{node.lineno} {name}"
        shell = _kw(node, "shell")
        if shell is not None and not (isinstance(shell, ast.Constant) and not shell.value):
            problems.append(at + " shell=")
        if name in ("os.system", "os.popen", "eval", "exec", "pickle.load", "pickle.loads",
                    "yaml.load", "yaml.unsafe_load", "yaml.full_load", "marshal.loads",
                    "dill.load", "cloudpickle.load", "subprocess.getoutput",
                    "subprocess.getstatusoutput"):
            problems.append(at)
        if name == "torch.load":
            w = _kw(node, "weights_only")
            if not (isinstance(w, ast.Constant) and w.value is True):
                problems.append(at + " without weights_only=True")
        if name in ("np.load", "numpy.load"):
            a = _kw(node, "allow_pickle")
            if not (isinstance(a, ast.Constant) and a.value is False):
                problems.append(at + " without allow_pickle=False")
        if name.startswith("subprocess.") and node.args and isinstance(
                node.args[0], (ast.Constant, ast.JoinedStr, ast.BinOp)):
            problems.append(at + " with a command string")
    return problems


def test_the_scan_finds_what_it_looks_for():
    bad = ("import os, subprocess, torch, yaml\nos.system(x)\nsubprocess.run(f'ls {p}')\n"
           "subprocess.run(['ls'], shell=True)\ntorch.load(p)\nyaml.load(t)\neval(s)\n"
           "model.eval()\ntorch.load(p, weights_only=True)\nyaml.safe_load(t)\n")
    found = _problems(bad, "x")
    assert len(found) == 6, found


def test_package_has_no_shell_eval_or_pickle_calls():
    problems = []
    for py in sorted(PACKAGE.rglob("*.py")):
        problems += _problems(py.read_text(encoding="utf-8"), str(py.relative_to(PACKAGE)))
    assert problems == []


def test_shell_metacharacters_in_paths_are_just_names(tmp_path):
    """A directory and file named with $(...), ; and backticks go through infer; nothing
    they spell is executed."""
    d = tmp_path / "in $(touch pwned_dir); `touch pwned_tick`"
    d.mkdir()
    src = h.nifti(d / "a;$(touch pwned_file);b.nii.gz", h.small_volume())
    p1 = h.medsr("infer", src, "-o", d / "sr;$(touch pwned_out).nii.gz", *h.X2_CUBIC,
                 cwd=tmp_path)
    assert p1.returncode == 0, p1.stderr
    assert nib.load(d / "sr;$(touch pwned_out).nii.gz").shape == (16, 16, 8)
    p3 = h.medsr("infer", d / "$(touch pwned_missing).nii.gz", cwd=tmp_path)
    h.assert_one_line_error(p3, r"does not exist")
    pwned = [p for p in tmp_path.rglob("pwned*")] + list(Path.cwd().glob("pwned*"))
    assert pwned == []


EVIL_YAML = "seed: !!python/object/apply:os.system ['touch {marker}']\n"


def test_yaml_config_with_python_tag_is_refused(tmp_path):
    marker = tmp_path / "PWNED_YAML"
    cfg = tmp_path / "evil.yaml"
    cfg.write_text(EVIL_YAML.format(marker=marker))
    proc = h.medsr("train", cfg, "--run-dir", tmp_path / "run", cwd=tmp_path)
    h.assert_one_line_error(proc)
    assert not marker.exists()
    assert not (tmp_path / "run").exists()


def _evil_pickle(path: Path, marker: Path) -> None:
    torch = pytest.importorskip("torch")
    import os

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": Payload()}, path)


@pytest.mark.parametrize("name", ["evil.pt", "evil.safetensors"])
def test_pickled_checkpoint_that_runs_code_is_refused(tmp_path, name):
    marker = tmp_path / "PWNED_PICKLE"
    ck = tmp_path / name
    _evil_pickle(ck, marker)
    before = h.fingerprint(ck)
    data = h.nifti(tmp_path / "hr.nii.gz", h.small_volume(0, (16, 16, 8)))
    proc = h.medsr("eval", "--model", ck, "--data", data, "--out", tmp_path / "ev",
                   "--no-figures", cwd=tmp_path)
    h.assert_one_line_error(proc, r"evil")
    assert not marker.exists()
    assert h.fingerprint(ck) == before
