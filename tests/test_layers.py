"""The package's layering (docs/architecture.md): imports point down the layers of the
import-linter contract in pyproject.toml, checked by the real ``lint-imports``, and no
function-level import defers a module that is cheap to import (only the CLI's commands,
the lazy packages and modules that pull in a heavy dependency may be imported late)."""

from __future__ import annotations

import ast
import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
# third-party imports worth deferring: each costs a noticeable share of start-up
HEAVY = {"torch", "monai", "pydicom", "tifffile", "matplotlib", "imageio", "nilearn",
         "torchio", "SimpleITK", "bids", "highdicom", "scipy", "skimage", "safetensors",
         "rich", "yaml", "PIL", "nibabel"}
# packages whose __init__ exports lazily (PEP 562): importing them late is the point
LAZY = {"medsr.degrade", "medsr.selfsup", "medsr.training", "medsr.evaluation"}


def _lint(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([LINT, "--no-cache"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.skipif(not Path(LINT).exists(), reason="import-linter is in the [test] extra")
def test_the_import_contract_holds():
    res = _lint(REPO, REPO)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "KEPT" in res.stdout and "BROKEN" not in res.stdout


@pytest.mark.skipif(not Path(LINT).exists(), reason="import-linter is in the [test] extra")
def test_an_upward_import_breaks_the_contract(tmp_path):
    """The contract can fail: a copy of the package where the geometry layer imports the
    pipeline is refused, naming the import."""
    shutil.copytree(REPO / "medsr", tmp_path / "medsr",
                    ignore=shutil.ignore_patterns("__pycache__", "weights"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    geometry = tmp_path / "medsr" / "geometry.py"
    geometry.write_text(geometry.read_text() + "\nfrom medsr.pipeline import infer_file  # up\n")
    res = _lint(tmp_path, tmp_path)
    assert res.returncode != 0 and "BROKEN" in res.stdout
    assert "medsr.geometry -> medsr.pipeline" in res.stdout


def _module_path(mod: str) -> Path | None:
    p = REPO.joinpath(*mod.split("."))
    for cand in (p / "__init__.py", p.with_suffix(".py")):
        if cand.exists():
            return cand
    return None


def _top_level_imports(path: Path) -> list[str]:
    out: list[str] = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for n in node.body if isinstance(node, (ast.If, ast.Try)) else [node]:
            if isinstance(n, ast.Import):
                out += [a.name for a in n.names]
            elif isinstance(n, ast.ImportFrom) and n.module and not n.level:
                out += [n.module] + [f"{n.module}.{a.name}" for a in n.names]
    return out


_in_progress: set[str] = set()  # breaks import cycles during the walk


@functools.cache
def _heavy(mod: str) -> bool:
    """Whether importing ``mod`` imports a HEAVY dependency (through medsr's own modules)."""
    if mod in LAZY:
        return True
    path = _module_path(mod)
    if path is None:
        return False
    _in_progress.add(mod)
    try:
        return any(name.split(".")[0] in HEAVY
                   or (name.startswith("medsr") and name not in _in_progress and _heavy(name))
                   for name in _top_level_imports(path))
    finally:
        _in_progress.discard(mod)


def test_function_level_imports_defer_only_heavy_modules():
    late = []
    for path in sorted((REPO / "medsr").rglob("*.py")):
        rel = path.relative_to(REPO)
        if rel.parts[1] == "cli":  # a command's modules load when it runs: --help stays fast
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for sub in ast.walk(node):
                if isinstance(sub, ast.ImportFrom) and (sub.module or "").startswith("medsr"):
                    names = [sub.module] + [f"{sub.module}.{a.name}" for a in sub.names]
                    if not any(_heavy(n) for n in names):
                        late.append(f"{rel}:{sub.lineno}: {ast.unparse(sub)}")
    assert not late, "imports to move to module level:\n" + "\n".join(late)
