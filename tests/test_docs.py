"""Every fenced code block of README.md and docs/*.md (not docs/benchmarks/) is run or
explicitly skipped, so the docs cannot drift from the code.

- ```python blocks run in a temp dir holding tiny fixture files under the names the
  snippets use; the blocks of one page share a namespace, in order, as a reader runs them.
- ```bash blocks: every ``medsr ...`` command (``&&`` chains split, ``\\`` continuations
  joined, comments dropped, unquoted globs expanded as a shell would) runs in-process
  through ``medsr.cli.main`` in that temp dir; the exit code must be 0 and the outputs
  listed in OUTPUTS must exist. Only the speed overrides of SPEED are appended.
  ``cmp A B`` and ``mkdir -p`` run in Python. Any other command must be in SKIP with a
  reason.
- ```yaml blocks (config fragments) are merged onto configs/smoke.yaml and validated by
  ``medsr.training.config.load_config`` (unknown keys, wrong types).
- ```text blocks (output, formulas, synopses) are not code; a synopsis that starts with
  ``medsr COMMAND`` has each of its ``--flags`` checked against the real parser.
- ``<!-- docs-test: skip (reason) -->`` on the line before a block skips the whole block.

A block or command that is neither run nor skipped fails the test.
"""

from __future__ import annotations

import filecmp
import glob
import re
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md"] + sorted(p.relative_to(ROOT).as_posix()
                               for p in (ROOT / "docs").glob("*.md"))
SKIP_MARK = re.compile(r"<!--\s*docs-test:\s*skip\s*\((.+)\)\s*-->")

# Commands that cannot run here, by their exact text (after comment stripping).
SKIP = {
    "python3 -m venv .venv": "set-up: the test runs inside a virtual environment",
    ". .venv/bin/activate": "set-up: the test runs inside a virtual environment",
    "pip install torch==2.13.0": "installs from the network",
    "pip install -e .": "installs from the network",
    "pip install -q torch==2.13.0": "installs from the network",
    'pip install -q -e ".[test]"': "installs from the network",
    "ruff check .": "the linter: CI runs it itself",
    "lint-imports": "the import contract: CI runs it itself (tests/test_layers.py too)",
    "pytest -q": "the whole test suite, which contains this test",
    "torchrun --nproc_per_node 2 -m medsr train configs/smoke.yaml --run-dir runs/ddp":
        "two processes; tests/test_train_distributed.py runs medsr under torchrun",
    "torchrun --nproc_per_node 4 -m medsr train cfg.yaml --run-dir runs/x": "4 processes",
    "torchrun --nproc_per_node 4 --no-python medsr train cfg.yaml --run-dir runs/x":
        "4 processes",
}

# Appended speed overrides (the only change made to a documented command), by prefix.
SPEED = [
    ("medsr train", ["--set", "train.steps=2", "--set", "train.val_every=1",
                     "--set", "train.ckpt_every=2"]),
    # fixed steps, not a short budget: a short budget is refused when the machine is loaded
    (r"medsr infer .*--self-supervised", ["--steps", "2"]),
    (r"medsr models$", ["--spatial-dims", "2"]),  # the 3D column alone takes ~30 s
]
# The same for python blocks: textual substitutions.
SPEED_PY = {"budget_s=300": "budget_s=300, steps=2"}

# What each documented command must write (globs relative to its working directory).
OUTPUTS = {
    "medsr infer docs/examples/mni152_t1_1x1x4mm.nii.gz -o out/mni152_sr.nii.gz --overwrite":
        ["out/mni152_sr.nii.gz"],
    "medsr infer scan.nii.gz": ["scan_sr.nii.gz"],
    "medsr infer dicom_dir/ -o out_dir/": ["out_dir"],
    "medsr infer scan.nii.gz --spacing 1 --method lanczos": ["scan_sr.nii.gz"],
    "medsr infer scan.nii.gz --scale 1,1,4 -o out.nii.gz --tta": ["out.nii.gz"],
    "medsr infer scan.nii.gz --self-supervised --budget 5m": ["scan_sr.nii.gz"],
    "medsr infer 'cohort/*.nii.gz' -o out/": ["out/a_sr.nii.gz", "out/b_sr.nii.gz"],
    "medsr infer stack.tif": ["stack_sr.tif"],
    "medsr infer frames/": ["frames_sr"],
    "medsr degrade hr.nii.gz -o lr.nii.gz --preset mri-thick-slice --scale 1,1,4 --seed 0":
        ["lr.nii.gz"],
    "medsr eval --reference hr.nii.gz --test sr.nii.gz --json metrics.json": ["metrics.json"],
    "medsr train configs/smoke.yaml": ["runs/smoke-*/checkpoints/last.safetensors"],
    "medsr models": [],
    "medsr models --pretrained": [],
    "medsr train cfg.yaml --run-dir runs/x": ["runs/x/checkpoints/last.safetensors"],
    "medsr infer dicom_dir/ -o dicom_dir_sr/": ["dicom_dir_sr/*"],
    "medsr infer dicom_dir/ -o out.nii.gz": ["out.nii.gz"],
    "medsr infer thick.nii.gz --slice-profile gaussian": ["thick_sr.nii.gz"],
    "medsr infer thick.nii.gz --slice-profile rect --slice-thickness 5": ["thick_sr.nii.gz"],
    "medsr infer thick.nii.gz --slice-profile profile.npy": ["thick_sr.nii.gz"],
    "medsr train configs/models/rcan_2d.yaml --set train.steps=20000 --run-dir runs/rcan":
        ["runs/rcan/checkpoints/best.safetensors"],
    "medsr eval --run runs/rcan --data data/test/*.nii.gz": ["runs/rcan/eval/eval.csv"],
    "medsr infer scan.nii.gz --scale 2,2,1 --model runs/rcan/checkpoints/best.safetensors":
        ["scan_sr.nii.gz"],
    "medsr train configs/smoke.yaml --run-dir a": ["a/checkpoints/last.safetensors"],
    "medsr train configs/smoke.yaml --run-dir b": ["b/checkpoints/last.safetensors"],
    "medsr eval --run runs/x --data data/test": ["runs/x/eval/eval.csv"],
    "medsr eval --model best.safetensors --data a.nii.gz b.nii.gz --mask brain.nii.gz --crop 4":
        ["medsr-eval/eval.csv"],
    "medsr eval --model best.safetensors --data hr/*.nii.gz --lr-data lr/*.nii.gz "
    "--out eval-paired": ["eval-paired/eval.csv"],
    # docs/pipelines.md (issue 25): the BIDS App on the page's toy dataset
    "medsr bids bids bids/derivatives/medsr participant --participant-label 01 --spacing 1":
        ["bids/derivatives/medsr/sub-01/anat/sub-01_res-1mm_T1w.nii.gz"],
    "medsr bids bids bids/derivatives/medsr participant --spacing 1":
        ["bids/derivatives/medsr/sub-02/anat/sub-02_res-1mm_T1w.nii.gz"],
    "medsr bids bids bids/derivatives/medsr group --spacing 1":
        ["bids/derivatives/medsr/medsr_summary.csv"],
}


@dataclass
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    skip: str | None


def parse_blocks(page: str) -> list[Block]:
    """The fenced code blocks of one markdown page."""
    lines = (ROOT / page).read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = re.match(r"^\s*(```+)\s*([\w-]*)", lines[i])
        if not m:
            i += 1
            continue
        fence, start, body = m.group(1), i, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        prev = next((s for s in reversed(lines[:start]) if s.strip()), "")
        mark = SKIP_MARK.search(prev)
        blocks.append(Block(page, start + 1, m.group(2), "\n".join(body),
                            mark.group(1) if mark else None))
        i += 1
    return blocks


def commands(text: str) -> list[str]:
    """Shell commands of a bash block: continuations joined, comments and blank lines
    dropped, ``&&`` chains split."""
    out, joined = [], ""
    for raw in text.splitlines():
        joined += raw.rstrip()
        if joined.endswith("\\"):
            joined = joined[:-1] + " "
            continue
        line = re.sub(r"(^|\s+)#.*$", "", joined).strip()
        joined = ""
        if line:
            out += [" ".join(part.split()) for part in line.split(" && ")]
    return out


def argv(command: str) -> list[str]:
    """The words a shell would pass: quotes removed, unquoted globs expanded."""
    lexer = shlex.shlex(command, posix=False)
    lexer.whitespace_split = True
    words = []
    for raw in lexer:
        word = shlex.split(raw)[0]
        matches = sorted(glob.glob(word)) if raw[0] not in "'\"" and set("*?[") & set(raw) else []
        words += matches or [word]
    return words


# ---- fixtures: tiny inputs under the names the docs use ------------------------------

def _pattern(shape) -> np.ndarray:
    x = np.indices(shape).astype(np.float32)
    return 400 + 150 * np.sin(x[0] / 2.5) * np.cos(x[1] / 3.0) + 60 * np.cos(x[2] / 1.7)


def _nifti(path: Path, shape, spacing) -> None:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(_pattern(shape).astype(np.float32),
                             np.diag([*spacing, 1.0])), str(path))


def _png(path: Path, size: int = 16, shift: int = 0) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.stack([_pattern((size, size, 1))[..., 0] * f for f in (0.3, 0.4, 0.5)], -1)
    Image.fromarray(np.roll(rgb, shift, 1).clip(0, 255).astype(np.uint8)).save(path)


def make_inputs(d: Path) -> None:
    """Every input file the pages' commands and snippets name, tiny (the README's
    docs/examples scan too: a 16x16x4 stand-in under its name)."""
    import tifffile
    from dicom_fixtures import oblique_case, write_series

    (d / "configs").symlink_to(ROOT / "configs")
    shutil.copy(ROOT / "configs" / "smoke.yaml", d / "cfg.yaml")
    _nifti(d / "docs/examples/mni152_t1_1x1x4mm.nii.gz", (16, 16, 4), (1, 1, 4))
    for name in ("scan", "thick"):
        _nifti(d / f"{name}.nii.gz", (16, 16, 4), (1, 1, 4))
    for name in ("hr", "sr", "a", "b"):
        _nifti(d / f"{name}.nii.gz", (16, 16, 4), (1, 1, 1))
    for name in ("hr/a", "hr/b", "data/test/c"):
        _nifti(d / f"{name}.nii.gz", (16, 16, 4), (1, 1, 1))
    for name in ("lr/a", "lr/b"):
        _nifti(d / f"{name}.nii.gz", (8, 8, 4), (2, 2, 1))
    _nifti(d / "lr.nii.gz", (8, 8, 4), (2, 2, 1))
    mask = np.zeros((16, 16, 4), np.uint8)
    mask[2:14, 2:14] = 1
    import nibabel as nib

    nib.save(nib.Nifti1Image(mask, np.eye(4)), str(d / "brain.nii.gz"))
    for name in ("a", "b"):
        _nifti(d / "cohort" / f"{name}.nii.gz", (16, 16, 4), (1, 1, 4))
    np.save(d / "profile.npy", np.array([0.25, 0.5, 0.25]))
    case = oblique_case((12, 10, 4))
    write_series(d / "dicom_dir", case["stored"], case["A_lps"], slope=case["slope"],
                 intercept=case["intercept"])
    stack = (_pattern((4, 16, 16)) / 4).astype(np.uint16)  # z, y, x
    tifffile.imwrite(d / "stack.tif", stack, imagej=True, resolution=(10.0, 10.0),
                     metadata={"axes": "ZYX", "spacing": 0.4, "unit": "micron"})
    _png(d / "face.png")
    for i in range(3):
        _png(d / "frames" / f"f{i:02d}.png", shift=i)
    try:
        from medsr.io.video import write_video
        from medsr.volume import Volume

        frames = np.stack([np.asarray(__import__("PIL.Image").Image.open(p))
                           for p in sorted((d / "frames").glob("*.png"))], axis=2)
        write_video(Volume(frames, np.eye(4), {"fps": 6.0}), d / "clip.mp4")
    except ImportError:  # no imageio-ffmpeg: the video lines fail with a clear message
        pass


# ---- the checks ----------------------------------------------------------------------

def _speed(command: str) -> list[str]:
    return next((extra for prefix, extra in SPEED if re.match(prefix, command)), [])


def _run_bash(block: Block, d: Path) -> list[str]:
    from medsr.cli import main

    problems = []
    for command in commands(block.text):
        where = f"{block.page}:{block.line}: {command!r}"
        if command in SKIP:
            continue
        if command.startswith("mkdir -p "):
            for path in argv(command)[2:]:
                (d / path).mkdir(parents=True, exist_ok=True)
            continue
        if command.startswith("cmp "):
            a, b = argv(command)[1:3]
            if not filecmp.cmp(d / a, d / b, shallow=False):
                problems.append(f"{where}: files differ")
            continue
        if not command.startswith("medsr "):
            problems.append(f"{where}: neither run nor in SKIP")
            continue
        if command not in OUTPUTS:
            problems.append(f"{where}: add its outputs to OUTPUTS")
            continue
        for path in (p for out in OUTPUTS[command] for p in d.glob(out)):
            # the lines are alternatives, and outputs are never overwritten: each line
            # starts without its own outputs
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        start = time.perf_counter()
        rc = main(argv(command)[1:] + _speed(command))
        print(f"docs-test: {time.perf_counter() - start:.1f} s rc {rc}: {command}")
        if rc != 0:
            problems.append(f"{where}: exit code {rc}")
        missing = [out for out in OUTPUTS[command] if not any(d.glob(out))]
        if missing:
            problems.append(f"{where}: did not write {missing}")
    return problems


def _check_synopsis(block: Block) -> list[str]:
    m = re.match(r"\s*medsr (\w+)", block.text)
    if not m:
        return []
    from medsr.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices[m.group(1)]
    known = {o for a in sub._actions for o in a.option_strings}
    return [f"{block.page}:{block.line}: {flag} is not an option of medsr {m.group(1)}"
            for flag in re.findall(r"--[\w-]+", block.text) if flag not in known]


def run_page(page: str, d: Path) -> list[str]:
    """Run every block of ``page`` in ``d``; return the problems found."""
    from medsr.training.config import load_config

    namespace: dict = {"__name__": "__docs__"}
    problems = []
    for block in parse_blocks(page):
        if block.skip:
            continue
        if block.lang == "python":
            code = block.text
            for slow, fast in SPEED_PY.items():
                code = code.replace(slow, fast)
            exec(compile(code, f"{page}:{block.line}", "exec"), namespace)
        elif block.lang == "bash":
            problems += _run_bash(block, d)
        elif block.lang == "yaml":
            (d / "_block.yaml").write_text(block.text)
            load_config(d / "_block.yaml", base=load_config(ROOT / "configs" / "smoke.yaml"))
        elif block.lang == "text":
            problems += _check_synopsis(block)
        else:
            problems.append(f"{page}:{block.line}: block language {block.lang!r} is neither "
                            "run nor skipped (python, bash, yaml, text or a skip marker)")
    return problems


def test_blocks_are_parsed():
    """The parser sees the blocks (a broken parser would make every page pass)."""
    blocks = [b for p in PAGES for b in parse_blocks(p)]
    assert len(blocks) > 20 and {b.lang for b in blocks} >= {"python", "bash", "yaml"}
    assert commands("medsr a \\\n  b  # c\nx && y") == ["medsr a b", "x", "y"]
    assert all(b.skip for b in blocks if b.lang == "bash" and "SBATCH" in b.text)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A smoke run of a few steps: the run and checkpoint a page's eval commands name."""
    from medsr.cli import main

    run_dir = tmp_path_factory.mktemp("docs_run") / "run"
    assert main(["train", str(ROOT / "configs" / "smoke.yaml"), "--run-dir", str(run_dir),
                 *_speed("medsr train")]) == 0
    return run_dir


@pytest.mark.parametrize("page", PAGES)
def test_page(page, tmp_path, monkeypatch, request):
    """Every block of the page runs (or is explicitly skipped) and does what it says."""
    if any(b.lang in ("python", "bash") and not b.skip for b in parse_blocks(page)):
        make_inputs(tmp_path)
        if any("best.safetensors" in b.text for b in parse_blocks(page) if not b.skip):
            run_dir = request.getfixturevalue("trained_run")
            shutil.copytree(run_dir, tmp_path / "runs" / "x")
            shutil.copy(run_dir / "checkpoints" / "best.safetensors", tmp_path)
        monkeypatch.chdir(tmp_path)
    problems = run_page(page, tmp_path)
    assert not problems, "\n".join(problems)
