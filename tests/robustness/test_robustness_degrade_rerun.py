"""Issue 21 rerun, ``medsr degrade``: nonsense numbers, dtypes and kernels are refused with
one error line (exit 2, nothing written, input unchanged); a factor larger than an axis
gives the error alone, without the "not a multiple" warning first.

Each case is a real CLI process forked from one driver (``forked_cli.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import robust_helpers as h
from forked_cli import ForkedCLI

OK, BAD = 0, 2


@pytest.fixture(scope="module")
def cli():
    with ForkedCLI() as runner:
        yield runner


def _run(cli, tmp_path: Path, extra: list[str], code: int, match: str | None = None):
    ind, out = tmp_path / "in", tmp_path / "out"
    ind.mkdir(exist_ok=True)
    out.mkdir(exist_ok=True)
    h.nifti(ind / "a.nii.gz", h.small_volume())
    before = h.fingerprint(ind)
    scale = [] if any(a.startswith("--scale") for a in extra) else ["--scale", "2"]
    args = ["degrade", str(ind / "a.nii.gz"), "-o", str(out / "lr.nii.gz"), *scale,
            *[a.replace("{in}", str(ind)) for a in extra]]
    proc = cli.run_one(args, tmp_path)
    both = proc.stdout + proc.stderr
    assert "Traceback" not in both, both
    if code == BAD:
        h.assert_one_line_error(proc, match)
        assert "warning" not in proc.stderr, proc.stderr
        assert h.entries(out) == [], h.entries(out)
    else:
        assert proc.returncode == 0, both
        assert sorted(p.name for p in out.iterdir()) == ["lr.json", "lr.nii.gz"]
    assert h.stray_temporaries(ind) == []
    assert h.fingerprint(ind) == before
    return proc


OPTION_CASES = [
    *[(["--noise", "gaussian", "--sigma", v], BAD, "sigma") for v in
      ("nan", "inf", "-inf", "1e400", "-1", "-0.1", "1e31", "1,,2", "", "abc", "0.1,nan")],
    *[(["--noise", "rician", "--sigma", v], BAD, "sigma") for v in ("1e400", "nan")],
    (["--noise", "gaussian", "--sigma", "100", "--relative"], BAD, "relative"),
    *[(["--noise", "poisson-gaussian", "--gain", v], BAD, "--gain") for v in
      ("0", "-1", "nan", "inf", "1e400", "-0")],
    (["--noise", "poisson-gaussian", "--gain", "1e-300"], BAD, "too small"),
    (["--noise", "poisson-gaussian", "--gain", "1e-300", "--relative"], BAD, "too small"),
    *[([opt, v], BAD, opt) for opt in ("--thickness", "--fwhm") for v in
      ("0", "-0", "0,0,0", "-1", "nan", "inf", "1e400", "1e5", "1,nan,1", "1,,1",
       "1,1,1,1", "")],
    (["--thickness", "0", "--profile", "rect"], BAD, "--thickness"),
    *[(["--scale", v], BAD, "scale|factor|number") for v in
      ("0", "-2", "0.5", "nan", "inf", "1e400", "1e4", "2,2,2,2", "")],
    (["--scale", "100"], BAD, "cannot be downsampled by 100"),
    (["--scale", "3,100,1"], BAD, "cannot be downsampled by 100"),
    *[(["--seed", v], BAD, "--seed") for v in ("-1", "4294967296", "1.5", "nan", "1e3")],
    *[(["--dtype", v], BAD, "unsupported dtype") for v in
      ("bool", "complex64", "object", "str", "float16x", "")],
    *[(["--jpeg-quality", v], BAD, "--jpeg-quality") for v in ("0", "101", "-1", "50.5")],
    # still accepted
    *[(extra, OK, None) for extra in (
        ["--noise", "gaussian", "--sigma", "0.1", "--relative"],
        ["--noise", "rician", "--sigma", "5"],
        ["--noise", "poisson-gaussian", "--gain", "2"],
        ["--thickness", "2", "--profile", "rect"], ["--thickness", "0,0,2"],
        ["--fwhm", "1.5"], ["--scale", "1,1,2"], ["--seed", "0"], ["--seed", "4294967295"],
        ["--dtype", "float32"], ["--jpeg-quality", "90"], ["--scale", "3"])],
]


@pytest.mark.parametrize("extra,code,match", OPTION_CASES,
                         ids=[" ".join(e) for e, _, _ in OPTION_CASES])
def test_degrade_option(cli, tmp_path, extra, code, match):
    _run(cli, tmp_path, extra, code, match)


KERNELS = {
    "negative": (np.array([-1.0, -2.0, -1.0]), "sums to"),
    "zero_sum": (np.array([1.0, -2.0, 1.0]), "sums to"),
    "complex": (np.array([1 + 1j, 2, 1]), "complex"),
    "nan": (np.array([1.0, np.nan, 1.0]), "not finite"),
    "inf": (np.array([1.0, np.inf, 1.0]), "not finite"),
    "empty": (np.zeros(0), "empty"),
    "empty_2d": (np.zeros((0, 3)), "empty"),
    "scalar": (np.array(1.0), "dimensions"),
    "four_d": (np.ones((1, 3, 3, 3)), "dimensions"),
    "two_d_on_3d": (np.ones((3, 3)), "2-D kernel"),
    "strings": (np.array(["a", "b"]), "real numbers"),
    "bool": (np.array([True, True]), None),  # bool casts to 0/1: accepted
    "ok_1d": (np.array([1.0, 2.0, 1.0]), None),
    "ok_3d_psf": (np.ones((3, 3, 3)), None),
}


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_degrade_kernel(cli, tmp_path, name):
    k, match = KERNELS[name]
    (tmp_path / "in").mkdir()
    np.save(tmp_path / "in" / "k.npy", k)
    code = OK if match is None else BAD
    _run(cli, tmp_path, ["--kernel", "{in}/k.npy"], code, match)


def test_limits_mirror_compose():
    from medsr.cli import degrade as cli_degrade
    from medsr.degrade import compose

    assert cli_degrade.MAX_FACTOR == compose.MAX_FACTOR
    assert cli_degrade.MAX_WIDTH == compose.MAX_WIDTH
    assert cli_degrade.MAX_SIGMA == compose.MAX_SIGMA
