"""Issue 20 items 4 and 5: which `medsr infer` options combine (medsr.pipeline.modes, one rule for
all), model names (medsr.pretrained.resolve), and honest self-supervised budgets (the
trainer's planning on a fake clock; no wall-time assertions)."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from medsr.cli import main
from medsr.pipeline import modes
from medsr.pipeline.selfsup_run import self_supervised_budget
from medsr.selfsup import FEW_STEPS, save_fitted
from medsr.selfsup.network import build
from medsr.selfsup.trainer import reserve_scale, steps_that_fit, train

DOCS = Path(__file__).resolve().parent.parent / "docs" / "inference.md"
TINY = {"depth": 2, "features": 4}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A tiny thick-slice scan (x4 along axis 2) and a saved self-supervised fit for it."""
    d = tmp_path_factory.mktemp("flags")
    rng = np.random.default_rng(0)
    A = np.diag([1.0, 1.0, 4.0, 1.0])
    A[:3, 3] = [3.0, -5.0, 7.0]
    scan = d / "thick.nii.gz"
    nib.save(nib.Nifti1Image((rng.random((12, 12, 4)) * 300).astype(np.float32), A), scan)
    torch.manual_seed(0)
    fit = save_fitted(d / "fit.safetensors", build(4, **TINY), {"init": "scratch"})
    return {"scan": scan, "fit": fit, "dir": d}


BASE = {"network": [], "classical": ["--method", "cubic"],
        "self-supervised": ["--self-supervised", "--steps", "1"], "saved-fit": ["--model", "FIT"]}
ARGS = {"--scale/--spacing": ["--scale", "1,1,4"], "--method CLASSICAL": ["--method", "linear"],
        "--model": ["--model", "thick-slice-x4"], "--tta": ["--tta"],
        "--budget": ["--budget", "10s"], "--steps": ["--steps", "3"],
        "--save-model": ["--save-model", "SAVE"], "--seed": ["--seed", "1"],
        "--slice-thickness": ["--slice-thickness", "4"],
        "--slice-profile": ["--slice-profile", "gaussian"], "--device": ["--device", "cpu"],
        "--max-memory": ["--max-memory", "1"], "--tile": ["--tile", "32"],
        "--batch": ["--batch", "2"], "--precision": ["--precision", "fp32"],
        "--compile": ["--compile"], "--tile-blend": ["--tile-blend", "gaussian"]}
CELLS = [(opt, mode, row.get(mode, modes.OK)) for opt, row in modes.RULES.items()
         for mode in modes.MODES]


def _argv(files, mode: str, opt: str, out: Path) -> list[str]:
    subst = {"FIT": str(files["fit"]), "SAVE": str(files["dir"] / "saved.safetensors")}
    extra = [subst.get(a, a) for a in BASE[mode] + ARGS[opt]]
    return ["infer", str(files["scan"]), "-o", str(out), "--overwrite", *extra]


def test_every_option_has_an_example_and_the_docs_print_the_table():
    assert set(ARGS) == set(modes.RULES)
    for opt, row in modes.RULES.items():
        for mode, rule in row.items():
            assert mode in modes.MODES and (rule == modes.OK or rule[0] in
                                            (modes.ERROR, modes.NOTE)), (opt, mode)
    assert modes.table() in DOCS.read_text(), "docs/inference.md: paste modes.table()"


@pytest.mark.parametrize(("opt", "mode", "rule"),
                         [c for c in CELLS if c[2] != modes.OK and c[2][0] == modes.ERROR],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_an_option_that_does_not_apply_is_a_one_line_error(files, capsys, opt, mode, rule):
    out = files["dir"] / f"err_{abs(hash((opt, mode)))}.nii.gz"
    assert main(_argv(files, mode, opt, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medsr: error: "), err
    named = ARGS[opt][0] if opt != "--method CLASSICAL" else "--method linear"
    assert named in err[0], err[0]
    assert not out.exists()


@pytest.mark.parametrize(("opt", "mode"),
                         [(o, m) for o, m, r in CELLS if r != modes.OK and r[0] == modes.NOTE
                          and m != "self-supervised"], ids=lambda v: v)
def test_an_option_that_only_changes_speed_is_a_note(files, capsys, opt, mode):
    out = files["dir"] / f"note_{abs(hash((opt, mode)))}.nii.gz"
    assert main(_argv(files, mode, opt, out)) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "note:" in line]
    assert any(ARGS[opt][0] in n for n in notes), notes
    assert nib.load(out).shape == (12, 12, 16)


def test_self_supervised_notes_speed_options_stop_reason_and_few_steps(files, capsys):
    """The self-supervised notes in one run (each costs a training run): every speed
    option is noted, --steps stops by steps, and few steps say the default is likely
    better."""
    speed = [o for o, m, r in CELLS if m == "self-supervised" and r != modes.OK
             and r[0] == modes.NOTE]
    assert speed
    out = files["dir"] / "ss.nii.gz"
    argv = ["infer", str(files["scan"]), "-o", str(out), "--self-supervised", "--steps", "2",
            "--seed", "3"] + [a for o in speed for a in ARGS[o]]
    assert main(argv) == 0
    err = capsys.readouterr().err
    for o in speed:
        assert re.search(rf"note: {re.escape(o)} only sets speed", err), o
    assert "2 training steps" in err and "stopped by steps" in err
    assert f"under {FEW_STEPS:,}" in err and "likely worse than the shipped default" in err
    assert nib.load(out).shape == (12, 12, 16)


def test_check_options_returns_the_mode_and_refuses_silently_ignored_flags():
    assert modes.check_options() == ("network", [])
    assert modes.check_options(self_supervised=True, budget_s=10, tta=True)[0] == \
        "self-supervised"
    for kw in (dict(method="cubic", tta=True), dict(budget_s=10.0), dict(seed=1),
               dict(method="cubic", model="thick-slice-x4"), dict(slice_thickness=4.0)):
        with pytest.raises(Exception, match="--"):
            modes.check_options(**kw)
    mode, notes = modes.check_options(method="cubic", slice_thickness=4.0,
                                      slice_profile="rect", tile=[32])
    assert mode == "classical" and len(notes) == 1 and "--tile" in notes[0]


def test_unknown_model_lists_the_names_and_the_nearest(files, capsys):
    out = files["dir"] / "unknown.nii.gz"
    assert main(["infer", str(files["scan"]), "-o", str(out), "--model", "thik-slice-x4"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "unknown model 'thik-slice-x4'" in err and "did you mean thick-slice-x4?" in err
    for name in ("thick-slice-x2", "thick-slice-x3", "in-plane-x2", "frames-x4"):
        assert name in err
    assert not out.exists()


def test_thick_slice_x3_is_served_by_x4_and_lands_on_the_x3_grid(tmp_path, capsys):
    rng = np.random.default_rng(1)
    A = np.diag([0.9, 0.9, 2.7, 1.0])
    A[:3, 3] = [-4.0, 2.0, 9.0]
    src = tmp_path / "x3.nii.gz"
    nib.save(nib.Nifti1Image((rng.random((10, 9, 4)) * 200).astype(np.float32), A), src)
    out = tmp_path / "out.nii.gz"
    assert main(["infer", str(src), "-o", str(out), "--model", "thick-slice-x3"]) == 0
    err = capsys.readouterr().err
    assert "thick-slice-x3 is not shipped: thick-slice-x4 serves it" in err
    summary = [line for line in err.splitlines() if line.startswith("x3.nii.gz: ")]
    assert "thick-slice-x4" in summary[0]  # the summary names the model used
    img = nib.load(out)
    assert img.shape == (10, 9, 12)
    S = np.eye(4)
    S[2, 2], S[2, 3] = 1 / 3, (1 / 3 - 1) / 2  # the x3 grid, centres preserved
    np.testing.assert_allclose(img.affine, A @ S, atol=1e-5)


def test_a_checkpoint_for_other_axes_says_what_it_is_for(tmp_path, capsys):
    A = np.diag([1.0, 1.0, 5.0, 1.0])
    src = tmp_path / "x5.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 3), np.float32), A), src)
    assert main(["infer", str(src), "-o", str(tmp_path / "o.nii.gz"), "--model",
                 "in-plane-x2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "in-plane-x2 upsamples two in-plane axes x2" in err
    assert "this scan needs one-axis x5" in err and "thick-slice-x6 or --method auto" in err


# ------------------------------------------------------------------ budgets (item 4)

class _Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class _TimedNet(nn.Module):
    """Each forward advances the fake clock by ``step_s(n)`` for the n-th step."""

    def __init__(self, clock: _Clock, step_s) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))
        self.clock, self.step_s, self.n = clock, step_s, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.clock.t += self.step_s(self.n)
        self.n += 1
        return x * self.w


class _Pairs:
    def sample(self, rng, batch):
        x = torch.from_numpy(rng.random((batch, 1, 4, 4)).astype(np.float32))
        return x, 2 * x


def _run(step_s, seconds=30.0, reserve=3.0, max_steps=None):
    clock = _Clock()
    start = clock.t
    rep = train(_TimedNet(clock, step_s), _Pairs(), seconds=seconds, reserve_s=reserve,
                max_steps=max_steps, clock=clock, batch=2)
    return rep, clock.t - start


def test_planning_helpers():
    assert steps_that_fit(10, 10.0, 1.0) == 19  # 95% of 10 s at 1 s a step
    assert steps_that_fit(10, 0.5, 1.0) == 10 and steps_that_fit(10, -3.0, 1.0) == 10
    assert reserve_scale(0.05, 0.1) == 1.0  # faster than calibration: never shrinks
    assert reserve_scale(0.2, 0.1) == pytest.approx(2.0) and reserve_scale(9.0, 0.1) == 3.0
    # the command's budget less what reading took (and starting) and writing will take
    assert self_supervised_budget(60.0, 2.0, 0.5, 4.0) == pytest.approx(52.0)


@pytest.mark.parametrize("case", ["steady", "warm-up", "load-rises"])
def test_training_spends_the_budget_and_leaves_the_reserve(case):
    step_s = {"steady": lambda n: 0.1,
              "warm-up": lambda n: 1.0 if n < 7 else 0.1,   # calibration slower than later
              "load-rises": lambda n: 0.1 if n < 60 else 0.2}[case]
    rep, used = _run(step_s)
    assert rep.stopped_by == "budget" and rep.steps == rep.planned_steps
    assert used <= 30.0 - 3.0 + 1e-9  # never into the inference reserve
    slack = 3.0 * (reserve_scale(0.2, 0.1) - 1) if case == "load-rises" else 0.0
    assert used >= 30.0 - 3.0 - slack - 2 * 0.2 - 0.05 * 27, (used, rep.steps)


def test_a_budget_shorter_than_one_step_still_trains_one():
    rep, used = _run(lambda n: 0.1, seconds=3.05, reserve=3.0)  # 0.05 s left for training
    assert rep.steps == 1 and rep.stopped_by == "budget" and used == pytest.approx(0.1)


def test_fixed_steps_stop_by_steps_and_a_spent_budget_by_the_budget():
    rep, _ = _run(lambda n: 0.1, max_steps=12)
    assert rep.steps == 12 and rep.stopped_by == "steps"
    rep, _ = _run(lambda n: 0.1, max_steps=1000)
    assert rep.steps < 1000 and rep.stopped_by == "budget"


def test_the_cli_builds_frozen_validated_options_once():
    """Issue 22 item 1: `medsr infer`'s arguments become one InferOptions (frozen, checked),
    equal to the flat keywords of the Python call."""
    import dataclasses

    from medsr.cli import build_parser
    from medsr.cli.infer import build_options
    from medsr.errors import UserError
    from medsr.options import GridRequest, InferOptions, RunOptions

    args = build_parser().parse_args(["infer", "a.nii.gz", "--scale", "1,1,4", "--method",
                                      "lanczos", "--tile", "64,64", "--volume", "1"])
    opts = build_options(args)
    assert opts == InferOptions.from_kwargs(scale=[1, 1, 4], method="lanczos", tile=[64, 64],
                                            volume_index=1)
    assert opts.grid.scale == (1.0, 1.0, 4.0) and opts.run.tile == (64, 64)
    assert opts.read.volume == 1 and opts.run.auto_profile and opts.run.profile is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.run.method = "cubic"  # type: ignore[misc]
    with pytest.raises(TypeError, match="unknown option"):
        InferOptions.from_kwargs(scael=2)
    with pytest.raises(UserError, match="give --scale or --spacing, not both"):
        GridRequest(scale=2, spacing=1)
    with pytest.raises(UserError, match="--batch"):
        RunOptions(batch=0)
