"""Bad command-line arguments and resource limits (issue 11, items 1 and 5): exit 2, one
line, nothing written, the limit's error names the flag that raises it."""

from __future__ import annotations

import pytest
import robust_helpers as h

BAD_INFER = [
    (["--scale", "-2"], r"positive"),
    (["--scale", "0"], r"positive"),
    (["--scale", "0.5"], r">= 1"),
    (["--scale", "2,0.5,2"], r">= 1"),
    (["--scale", "nan"], r"positive"),
    (["--scale", "2", "--spacing", "1"], r"not allowed with"),
    (["--spacing", "0"], r"positive"),
    (["--spacing", "-1"], r"positive"),
    (["--scale", "two"], r"expected a number"),
    (["--method", "magic"], r"invalid choice"),
]


@pytest.mark.parametrize("args,match", BAD_INFER, ids=[" ".join(a) for a, _ in BAD_INFER])
def test_bad_infer_arguments(tmp_path, args, match):
    src = h.nifti(tmp_path / "a.nii.gz", h.small_volume())
    (tmp_path / "out").mkdir()
    proc = h.medsr("infer", src, "-o", tmp_path / "out" / "o.nii.gz", *args, cwd=tmp_path)
    h.assert_one_line_error(proc, match)
    assert h.entries(tmp_path / "out") == []


def test_bad_degrade_arguments(tmp_path):
    """One run (degrade imports MONAI, slow to start); the rest is covered in-process by
    the property test of the degradation parameters."""
    src = h.nifti(tmp_path / "a.nii.gz", h.small_volume())
    (tmp_path / "out").mkdir()
    proc = h.medsr("degrade", src, "-o", tmp_path / "out" / "lr.nii.gz", "--scale", "0.5",
                   cwd=tmp_path)
    h.assert_one_line_error(proc, r">= 1")
    assert h.entries(tmp_path / "out") == []


def test_max_output_voxels_names_the_flag(tmp_path):
    src = h.nifti(tmp_path / "a.nii.gz", h.small_volume())  # 8x8x4 -> 16x16x8 = 2048
    (tmp_path / "out").mkdir()
    proc = h.medsr("infer", src, "-o", tmp_path / "out" / "o.nii.gz", *h.X2_CUBIC,
                   "--max-output-voxels", "2000", cwd=tmp_path)
    h.assert_one_line_error(proc, r"2,048 voxels.*limit of 2,000.*--max-output-voxels")
    assert h.entries(tmp_path / "out") == []
    ok = h.medsr("infer", src, "-o", tmp_path / "out" / "o.nii.gz", *h.X2_CUBIC,
                 "--max-output-voxels", "2048", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr


def test_default_limit_refuses_a_huge_plan_before_allocating(tmp_path):
    """--scale 1000 on 8x8x4 asks for 2.6e11 voxels: refused at once (no MemoryError)."""
    src = h.nifti(tmp_path / "a.nii.gz", h.small_volume())
    proc = h.medsr("infer", src, "-o", tmp_path / "o.nii.gz", "--scale", "1000", cwd=tmp_path,
                   timeout=30)
    h.assert_one_line_error(proc, r"--max-output-voxels")
