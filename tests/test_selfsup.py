"""Self-supervised through-plane SR (medsr.selfsup) on small synthetic volumes."""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from slice_simulation import thick_slices
from torch import nn

from medsr import geometry
from medsr.degrade import Degradation, degrade_volume
from medsr.errors import UserError
from medsr.interpolate import resize
from medsr.metrics import psnr
from medsr.selfsup import (
    PairSampler,
    apply,
    apply_saved,
    auto_start,
    degrade_lines,
    detect_through_plane,
    fit,
    flip_sets,
    load_fitted,
    profile_kernel,
    save_fitted,
    slice_thickness,
    super_resolve_self_supervised,
)
from medsr.selfsup.api import mix_prior
from medsr.selfsup.budget import INFERENCE_MARGIN, BudgetTooShort
from medsr.selfsup.consistency import project
from medsr.selfsup.network import build
from medsr.volume import Volume

TINY = {"architecture": "sp_vdsr", "depth": 3, "features": 8}  # keeps the tests fast


pytestmark = pytest.mark.usefixtures("one_thread")


def _phantom(shape=(40, 36, 32), seed=0) -> np.ndarray:
    """Smooth blobs plus a few sharp-edged boxes: structure at several scales."""
    rng = np.random.default_rng(seed)
    x = ndi.gaussian_filter(rng.standard_normal(shape), 2.0)
    for _ in range(6):
        lo = [int(rng.integers(0, max(1, n - 6))) for n in shape]
        x[tuple(slice(a, a + int(rng.integers(3, 8))) for a in lo)] += 0.5
    return (100 * x + 50).astype(np.float32)


def _volume(spacing=(1.0, 1.0, 4.0), shape=(40, 36, 10), oblique=False, seed=0) -> Volume:
    A = np.diag([*spacing, 1.0])
    if oblique:
        c, s = np.cos(0.3), np.sin(0.3)
        R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
        A[:3, :3] = R @ np.diag(spacing) @ np.diag([-1, 1, 1])
        A[:3, 3] = [12.5, -40.0, 7.25]
    return Volume(_phantom(shape, seed), A)


# ----------------------------------------------------------------------- axis detection
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_detects_the_coarse_axis_and_factor(axis):
    spacing = [0.9, 0.9, 0.9]
    spacing[axis] = 3.6
    tp = detect_through_plane(_volume(tuple(spacing), (12, 12, 12), oblique=True))
    assert tp.axis == axis and tp.k == 4 and tp.factor == 4.0 and tp.exact
    assert sorted(tp.inplane_axes) == [a for a in range(3) if a != axis]
    assert tp.spacing_hr == pytest.approx(0.9)


def test_one_slice_2d_image_uses_its_fine_axis():
    vol = Volume(_phantom((40, 12, 1)), np.diag([1.0, 3.0, 1.0, 1.0]))  # K = 1 ignored
    tp = detect_through_plane(vol)
    assert (tp.axis, tp.k, tp.inplane_axes) == (1, 3, (0,))


def test_an_intermediate_axis_is_neither_fine_nor_thick():
    # a CT's 1.5 mm slices across a thick axis of 1.9 mm over 0.96 mm voxels: the 1.5 mm
    # axis is not on the fine grid, so it makes no training pairs and no estimate
    tp = detect_through_plane(_volume((1.914, 0.957, 1.5), (12, 12, 12)))
    assert (tp.axis, tp.k, tp.inplane_axes) == (0, 2, (1,))
    # within the tolerance of the finest spacing an axis still counts as fine
    tp = detect_through_plane(_volume((0.9, 0.95, 3.0), (12, 12, 12)))
    assert tp.inplane_axes == (0, 1)


def test_non_integer_factor_rounds_up_and_isotropic_is_refused():
    tp = detect_through_plane(_volume((1.0, 1.0, 2.5), (8, 8, 8)))
    assert (tp.k, tp.factor, tp.exact) == (3, 2.5, False)
    assert tp.spacing_hr == pytest.approx(2.5 / 3)
    with pytest.raises(UserError, match="isotropic"):
        detect_through_plane(_volume((1.0, 1.0, 1.1), (8, 8, 8)))


# ----------------------------------------------------------------------- slice profile
def _variance(k: np.ndarray) -> float:
    x = np.arange(k.size) - (k.size - 1) / 2  # about the kernel's centre (a tap or between)
    return float(np.sum(k * x * x))


@pytest.mark.parametrize("thickness", [4.0, 2.0, 6.0])  # equal to, gap, overlap
def test_gaussian_profile_fwhm_is_the_thickness(thickness):
    vol = _volume((1.0, 1.0, 4.0), (8, 8, 8))
    tp = detect_through_plane(vol)
    th, src = slice_thickness(vol, tp, thickness)
    assert (th, src) == (thickness, "argument")
    k = profile_kernel(tp, th, "gaussian")
    sigma = thickness / (2 * np.sqrt(2 * np.log(2)))  # FWHM -> sigma, in 1 mm voxels
    # x4: LR samples fall half-way between two fine voxels, so the kernel is centred there
    assert k.sum() == pytest.approx(1.0) and k.size % 2 == 0
    np.testing.assert_allclose(k, k[::-1], atol=1e-15)
    assert np.argmax(k) == k.size // 2 - 1
    # integrating over a voxel adds the variance of a unit box, 1/12
    assert _variance(k) == pytest.approx(sigma**2 + 1 / 12, rel=1e-3)


def test_thickness_sources_and_rect_profile():
    vol = _volume((0.5, 0.5, 3.0), (8, 8, 8))
    tp = detect_through_plane(vol)
    assert slice_thickness(vol, tp) == (3.0, "spacing")
    dicom = vol.with_data(vol.data, dicom={"slice_thickness": 2.0})
    assert slice_thickness(dicom, tp) == (2.0, "dicom")
    assert slice_thickness(dicom, tp, 5.0) == (5.0, "argument")
    # k = 6 (even): a 2 mm box on the 0.5 mm grid, centred between two voxels, covers
    # exactly 4 of them
    np.testing.assert_allclose(profile_kernel(tp, 2.0, "rect"), [0.25] * 4)
    user = profile_kernel(tp, 2.0, kernel=np.array([1.0, 1.0]))  # even: kept for even k
    np.testing.assert_allclose(user, [0.5, 0.5])
    odd = detect_through_plane(_volume((1.0, 1.0, 3.0), (8, 8, 8)))  # k = 3: on a voxel
    np.testing.assert_allclose(profile_kernel(odd, 2.0, "rect"), [0.25, 0.5, 0.25])
    np.testing.assert_allclose(profile_kernel(odd, 2.0, kernel=np.array([1.0, 1.0])),
                               [0.25, 0.5, 0.25])  # even kernel re-centred for odd k
    with pytest.raises(UserError):
        slice_thickness(vol, tp, -1.0)


# ----------------------------------------------------------------------- pair geometry
@pytest.mark.parametrize("k,profile", [(4, "gaussian"), (4, "rect"), (3, "rect"),
                                       (2, "gaussian"), (6, "rect")])
def test_in_plane_degradation_reproduces_the_through_plane_acquisition(k, profile):
    """An isotropic volume acquired thick along z, and the same volume transposed so
    that x plays z: the pair generator's LR along x equals the exact acquisition's LR
    (for even k, a box slice is exactly the mean of its k voxels)."""
    hr = _phantom((24, 20, 12 * k))
    lr_z = thick_slices(hr, k, profile)
    if k % 2:  # odd k: medsr.degrade's decimation samples on a voxel, the same thing
        key = "fwhm" if profile == "gaussian" else "thickness"
        acq = Degradation(scale=[1, 1, k], profile=profile, downsample="decimate",
                          **{key: [None, None, float(k)]})
        np.testing.assert_allclose(acq(hr[None].astype(np.float64))[0], lr_z, atol=1e-3)
    tp_vol = Volume(np.zeros((2, 2, 2), np.float32), np.diag([1.0, 1.0, float(k), 1.0]))
    kern = profile_kernel(detect_through_plane(tp_vol), float(k), profile)
    lr_x = degrade_lines(np.moveaxis(hr, 2, 0), kern, k, axis=0)
    np.testing.assert_allclose(np.moveaxis(lr_x, 0, 2), lr_z, rtol=0, atol=1e-3)


def test_sampled_patches_are_degraded_crops_with_consistent_flips():
    k = 4
    data = _phantom((30, 28, 6))
    kern = profile_kernel(detect_through_plane(_volume((1, 1, 4.0), (4, 4, 4))), 4.0)
    s = PairSampler(data, (0, 1), 2, kern, k, patch=16)
    rng = np.random.default_rng(3)
    for _ in range(4):
        lr, hr = s.sample(rng, 6)
        assert lr.shape == (6, 1, 16, 4) and hr.shape == (6, 1, 16, 16)
        src_i, s_i, b_i, a_i, flips = s.last_draw
        src = s.sources[src_i]
        for n in range(6):
            rows = slice(b_i[n], b_i[n] + 16)
            h = src.hr[s_i[n], rows, a_i[n]:a_i[n] + 16]
            # LR = the plane's profile-weighted sums around a0 + k m + (k - 1) / 2 (the
            # even kernel centred half-way between two voxels), without the sampler
            plane = np.pad(src.hr[s_i[n]].astype(np.float64), [(0, 0), (32, 32)],
                           mode="symmetric")
            pos = a_i[n] + k * np.arange(4) + (k - 1) / 2
            first = (pos - (kern.size - 1) / 2).astype(int) + 32
            expect = np.stack([plane[rows, f:f + kern.size] @ kern for f in first], axis=1)
            if flips[n, 0]:
                h, expect = h[::-1], expect[::-1]
            if flips[n, 1]:
                h, expect = h[:, ::-1], expect[:, ::-1]
            np.testing.assert_array_equal(hr[n, 0].numpy(), h)
            np.testing.assert_allclose(lr[n, 0].numpy(), expect, atol=1e-3)
    # both in-plane axes are degraded (the axis swap), each with the other fine axis and
    # with the thick axis as the companion
    assert sorted(src.axes[1:] for src in s.sources) == [(0, 1), (1, 0), (2, 0), (2, 1)]


def test_a_thin_slabs_short_axis_is_not_degraded_into_pairs():
    # 10 fine slices at x4 would give 2-sample LR lines, unlike any plane the network sees
    data = _phantom((40, 10, 8))
    kern = np.array([0.25, 0.5, 0.25])
    s = PairSampler(data, (0, 1), 2, kern, 4, patch=16)
    # axis 0 degraded, with the other fine axis and with the thick axis as companions
    assert s.degraded_axes == (0,) and [src.axes for src in s.sources] == [(2, 1, 0), (1, 2, 0)]
    # planes (slab axis, degraded axis) and (thick axis, degraded axis)
    assert s.patch_shapes == [(10, 16), (8, 16)]
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(20):
        lr, hr = s.sample(rng, 3)
        seen.add(s.last_draw[0])
        assert lr.shape[2:] == (s.patch_shapes[s.last_draw[0]][0], 4)
        assert hr.shape[2:] == s.patch_shapes[s.last_draw[0]]
    assert seen == {0, 1}
    # when every fine axis is short they are all used (nothing better to learn from)
    s = PairSampler(_phantom((12, 10, 8)), (0, 1), 2, kern, 4, patch=16)
    assert s.degraded_axes == (0, 1)


def test_sampling_prefers_structure():
    data = np.zeros((8, 64, 64), np.float32)
    data[:, :, 40:] = np.random.default_rng(0).standard_normal((8, 64, 24)) * 10
    kern = np.array([0.25, 0.5, 0.25])
    s = PairSampler(data, (1, 2), 0, kern, 2, patch=8)
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(20):
        s.sample(rng, 10)
        src_i, _, b_i, a_i, _ = s.last_draw
        col = a_i if s.sources[src_i].axes[2] == 2 else b_i
        hits += int(np.sum(col + 8 > 40))
    assert hits > 0.8 * 200  # textured third of the image gets most patches


# ----------------------------------------------------------------------- fusion
class _ShiftNet(nn.Module):
    """Linear (1, k) net: x + 0.5 (x[u+1] - x[u-1]) along the plane's first axis, then
    nearest-neighbour upsampling along the second: its two orientations differ."""

    def __init__(self, k: int):
        super().__init__()
        self.scale = (1, k)
        self.conv = nn.Conv2d(1, 1, (3, 1), padding=(1, 0), bias=False)
        with torch.no_grad():
            self.conv.weight[:] = torch.tensor([-0.5, 1.0, 0.5]).view(1, 1, 3, 1)

    def forward(self, x):
        return torch.repeat_interleave(self.conv(x), self.scale[1], dim=3)


@pytest.mark.parametrize("k,profile", [(4, "rect"), (4, "gaussian"), (3, "gaussian"),
                                       (2, "rect")])
def test_consistency_projection_reacquires_the_slices_and_nears_the_truth(k, profile):
    """The projected output, acquired again by the benchmark's independent simulation,
    gives back the slices; it is closer to the truth than what went in (the truth
    re-acquires them too) and projecting twice changes nothing."""
    truth = _phantom((10, 9, 12 * k)).astype(np.float64)
    lr = thick_slices(truth, k, profile)
    rng = np.random.default_rng(1)
    guess = truth + ndi.gaussian_filter(rng.standard_normal(truth.shape), 1.0) * 20.0
    tp_vol = Volume(np.zeros((2, 2, 2), np.float32), np.diag([1.0, 1.0, float(k), 1.0]))
    kern = profile_kernel(detect_through_plane(tp_vol), float(k), profile)
    out = project(guess, lr, 2, kern, k)
    scale = np.abs(lr).max()
    assert np.abs(thick_slices(out, k, profile) - lr).max() < 1e-4 * scale
    assert np.abs(thick_slices(guess, k, profile) - lr).max() > 1e-2 * scale
    err_in, err_out = np.linalg.norm(guess - truth), np.linalg.norm(out - truth)
    assert err_out < err_in
    np.testing.assert_allclose(project(out, lr, 2, kern, k), out, atol=1e-4 * scale)
    if profile == "rect" and k % 2 == 0:  # a box slice is the mean of its k voxels: the
        groups = (out - guess).reshape(10, 9, -1, k)  # correction is one shift per slice
        np.testing.assert_allclose(groups, np.repeat(groups[..., :1], k, axis=-1), atol=1e-3)
    with pytest.raises(ValueError, match="expected"):
        project(guess[:, :, :-1], lr, 2, kern, k)


def test_consistency_projection_in_blocks_is_the_same(monkeypatch):
    """Large volumes are projected a slab at a time; the slabs change nothing (up to
    float32 summation order)."""
    from medsr.selfsup import consistency

    rng = np.random.default_rng(0)
    sr, lr = rng.random((9, 7, 24, 2)), rng.random((9, 7, 6, 2))
    kern = profile_kernel(detect_through_plane(
        Volume(np.zeros((2, 2, 2), np.float32), np.diag([1.0, 1.0, 4.0, 1.0]))), 4.0)
    whole = project(sr, lr, 2, kern, 4)
    monkeypatch.setattr(consistency, "BLOCK_BYTES", 200)
    np.testing.assert_allclose(project(sr, lr, 2, kern, 4), whole, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(project(sr[..., 0], lr[..., 0], 2, kern, 4), whole[..., 0],
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("n_lr", [9, 10])
@pytest.mark.parametrize("profile", ["gaussian", "rect"])
def test_projection_of_a_real_shaped_scan_reacquires_its_slices(k, n_lr, profile, tmp_path):
    """A CT-like scan (0.96 x 0.96 x 1.5 mm voxels, negative HU, odd and even slice
    counts) thickened x2 / x4 along its 1.5 mm axis: the scan's own task is x4 / x7 to
    the 0.96 mm in-plane spacing, the plan is x2 / x4 on a 1.5 mm grid, and the profile
    must be sampled on the plan's grid. Whatever goes in, the projection comes out
    re-acquiring the slices exactly and no farther from the truth (the truth re-acquires
    them too): with the profile alone (an independent simulation) and with medsr's own
    degradation (profile, then area sampling: the profile convolved with a k-voxel box,
    given as taps, what pipelines/benchmark_real.py projects under)."""
    from medsr.degrade.downsample import lr_affine
    from medsr.degrade.profiles import profile_kernel as degrade_kernel
    from medsr.geometry import plan_grid
    from medsr.pipeline.projection import project_onto_slices

    spacing = (0.957, 0.957, 1.5)
    truth = (10.0 * _phantom((12, 10, k * n_lr)) - 1024.0).astype(np.float32)
    hr = Volume(truth, np.diag([*spacing, 1.0]))
    factors = (1, 1, k)
    affine = lr_affine(hr.affine, hr.spatial_shape, factors)
    assert detect_through_plane(Volume(truth[:, :, ::k], affine)).k != k  # the trap
    degraded = degrade_volume(hr, Degradation(scale=list(factors), profile=profile,
                                              downsample="area"))
    taps = tmp_path / "acquired.npy"
    np.save(taps, np.convolve(degrade_kernel(profile, float(k)), np.full(k, 1.0 / k)))
    rng = np.random.default_rng(k + n_lr)
    guesses = [truth + 200.0 * ndi.gaussian_filter(rng.standard_normal(truth.shape), 1.0),
               1000.0 * rng.standard_normal(truth.shape)]
    for lr_data, given, acquire in (
            (thick_slices(truth, k, profile), profile,
             lambda x: thick_slices(x, k, profile)),
            (degraded.data, taps,
             lambda x: degrade_volume(hr.with_data(x.astype(np.float32)), Degradation(
                 scale=list(factors), profile=profile, downsample="area")).data)):
        lr = Volume(np.asarray(lr_data, dtype=np.float32), affine)
        plan = plan_grid(lr, scale=factors)
        assert tuple(plan.shape_out) == truth.shape
        for guess in guesses:
            out, note = project_onto_slices(lr, lr.with_data(guess.astype(np.float32),
                                                             affine=plan.affine_out),
                                            plan, given)
            assert "thickness" in note
            x = out.data.astype(np.float64)
            # exact up to the ridge (RIDGE) and float32: a far guess leaves a little more
            left = np.abs(acquire(x) - lr.data).max()
            assert left <= 1e-3 * np.abs(acquire(guess) - lr.data).max()
            assert np.linalg.norm(x - truth) <= np.linalg.norm(guess - truth)


def _pipelines(*names: str) -> list:
    """The scripts ``names`` of pipelines/, imported as modules."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipelines"))
    try:
        return [importlib.import_module(n) for n in names]
    finally:
        sys.path.pop(0)


def test_benchmark_real_acquires_what_the_named_profile_projects():
    """pipelines/benchmark_real.py's ``degrade`` (written from first principles) acquires
    thick slices as ``--slice-profile gaussian|rect`` models them: a box is exactly the
    mean of its k voxels, and the projection's operator under the named profile (built
    on the plan's grid, as ``project_onto_slices`` builds it) reproduces the LR away from
    the borders."""
    (bench,) = _pipelines("benchmark_real")
    from medsr.selfsup.consistency import thick_operator

    truth = (10.0 * _phantom((6, 5, 36)) - 1024.0).astype(np.float32)
    hr = Volume(truth, np.diag([0.957, 0.957, 1.5, 1.0]))
    for profile, name in bench.PROFILES.items():
        for k in (2, 3, 4, 6):
            lr = bench.degrade(hr, (1, 1, k), profile)
            np.testing.assert_allclose(lr.affine[:3, 2], [0, 0, 1.5 * k])
            if name == "rect":
                blocks = truth.reshape(6, 5, 36 // k, k).mean(axis=3)
                np.testing.assert_allclose(lr.data, blocks, rtol=0, atol=1e-3)
            tp = detect_through_plane(lr).on_grid(k)
            a = thick_operator(36 // k, profile_kernel(tp, 1.5 * k, name), k)
            inner = slice(2, 36 // k - 2)  # the borders are mirrored differently
            np.testing.assert_allclose(np.einsum("mn,ijn->ijm", a, truth)[..., inner],
                                       lr.data[..., inner], rtol=0, atol=1e-3)


def test_defaults_dev_summarises_gains_per_case():
    """pipelines/defaults_dev.py's summary: each candidate against cubic and each later
    column against each earlier one, matched case by case (not by row order)."""
    (dev,) = _pipelines("defaults_dev")
    rows = []
    for case, scores in (("a", {"cubic": 30.0, "old": 31.0, "new": 31.5}),
                         ("b", {"new": 29.0, "cubic": 28.0, "old": 29.5})):
        for method, p in scores.items():
            rows.append({"subject": "s", "case": case, "profile": "box", "method": method,
                         "psnr": p, "ssim": 0.9, "seconds": 1.0})
    text = dev.markdown(rows, ["old", "new"])
    assert "- old - cubic: mean +1.25 dB, min +1.00, max +1.50 (2 cases, 2 s in all)" in text
    assert "- new - cubic: mean +1.25 dB, min +1.00, max +1.50" in text
    assert "- new - old: mean +0.00 dB, min -0.50, max +0.50" in text
    assert "| s | a | box | 30.00 / 0.900 | 31.00 / 0.900 | 31.50 / 0.900 |" in text


def test_benchmark_real_readme_table_from_rows():
    """README's table (``benchmark_real.py --readme-table``): the default in bold, its
    gain over cubic in PSNR and SSIM, '-' where a method did not run (in-plane
    projection)."""
    (bench,) = _pipelines("benchmark_real")
    rows = [{"subject": "ct", "case": "in-plane-x2", "profile": "box", "method": m,
             "psnr": p, "ssim": q} for m, p, q in (("cubic", 38.3, 0.985), ("ibp", 31.75, 0.934),
                                                    ("old default", 38.23, 0.986),
                                                    ("default", 39.71, 0.990))]
    text = bench.readme_table(rows)
    assert ("| ct | in-plane-x2 | box | 38.30 / 0.985 | 31.75 / 0.934 | 38.23 / 0.986 | "
            "**39.71 / 0.990** | - | +1.41 dB, +0.005 |") in text
    assert bench.readme_table(rows[:2]).count("\n") == 2  # no default: header only


def test_benchmark_real_merges_runs_split_over_processes(tmp_path):
    """``benchmark_real.py --merge A B``: one JSON and one table from runs split over
    processes, no runs and no data needed; rows in subject and case order, each
    subject's gain over cubic from its own rows."""
    (bench,) = _pipelines("benchmark_real")

    def part(name, subject, cases):
        rows = [{"subject": subject, "contrast": "T1", "case": case, "factors": [2, 1, 1],
                 "profile": "box", "method": m, "psnr": p, "ssim": q, "psnr_slices": p,
                 "ssim_slices": q, "seconds": 1.0}
                for case in cases for m, p, q in (("cubic", 28.0, 0.90),
                                                  ("selfsup 300s", 29.5, 0.93))]
        for r in rows[1::2]:  # what a self-supervised run records
            r.update(steps=900, init="default:thick_slice_x2.safetensors",
                     load_average=[4.0, 4.0, 4.0], profile_used="unknown: a mixture")
        f = tmp_path / name
        f.write_text(json.dumps({"rows": rows, "refused": []}))
        return f

    a = part("a.json", "ct", ["one-axis-x4", "one-axis-x2"])
    b = part("b.json", "b0", ["one-axis-x2"])
    out, md = tmp_path / "all.json", tmp_path / "all.md"
    assert bench.main(["--merge", str(a), str(b), "--json", str(out),
                       "--markdown", str(md)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["subject"], r["case"]) for r in rows][::2] == [
        ("ct", "one-axis-x2"), ("ct", "one-axis-x4"), ("b0", "one-axis-x2")]
    table = md.read_text()
    assert "| ct | one-axis-x2 | box | 28.00 / 0.900 | 29.50 / 0.930 |" in table
    assert "| b0 | one-axis-x2 | box |" in table
    assert "above cubic in PSNR and SSIM: 3 of 3 runs" in table


def test_reference_blur_measures_an_axis_made_of_thick_slices():
    """pipelines/reference_blur.py finds the box a reference's axis was acquired with
    (relative to its finest axis), and benchmark_real thickens the finest axis, not one
    carrying blur of its own."""
    blur, bench = _pipelines("reference_blur", "benchmark_real")
    rng = np.random.default_rng(0)
    fine = ndi.gaussian_filter(rng.standard_normal((96, 96, 288)), 0.7)  # 0.5 mm voxels
    # slices 3 mm thick (a box of six voxels), reconstructed every 1.5 mm (three voxels)
    thick = ndi.uniform_filter1d(fine, 6, axis=2, mode="wrap")[:, :, ::3]
    sp = (0.5, 0.5, 1.5)
    width, rms = blur.box_width(thick, sp, 2)
    assert width == pytest.approx(3.0, rel=0.15) and rms < 0.2
    assert blur.box_width(thick, sp, 1)[0] < 0.6  # about as sharp as axis 0
    assert blur.box_width(thick, sp, 0) == (0.0, 0.0)
    assert bench.one_axis(sp) == 0 and bench.one_axis((2.0, 1.0, 1.0)) == 1


def test_template_benchmark_degrades_like_the_real_scan_benchmark():
    """pipelines/benchmark_quality.py's ``gaussian`` and ``box`` LR are benchmark_real's
    physical acquisition (a box is the mean of its k voxels, no area sampling on top),
    in-plane and along one axis; ``kspace`` stays medsr's Degradation."""
    quality, real = _pipelines("benchmark_quality", "benchmark_real")
    truth = _phantom((12, 8, 24))
    hr = Volume(truth, np.diag([1.0, 1.0, 1.0, 1.0]))
    for factors in ((2, 2, 1), (4, 4, 1), (1, 1, 4), (1, 1, 6)):
        for profile in ("gaussian", "box"):
            lr = quality.degrade(hr, factors, profile)
            ref = real.degrade(hr, factors, profile)
            np.testing.assert_array_equal(lr.data, ref.data)
            np.testing.assert_array_equal(lr.affine, ref.affine)
        blocks = truth.reshape(12 // factors[0], factors[0], 8 // factors[1], factors[1],
                               24 // factors[2], factors[2]).mean(axis=(1, 3, 5))
        np.testing.assert_allclose(quality.degrade(hr, factors, "box").data, blocks,
                                   rtol=0, atol=1e-4)
    d = Degradation(scale=[1, 1, 4], profile="none", downsample="kspace")
    d.set_random_state(0)
    np.testing.assert_array_equal(quality.degrade(hr, (1, 1, 4), "kspace").data,
                                  degrade_volume(hr, d).data)


def test_mix_prior_averages_weights():
    a, b = build(3, depth=3, features=8), build(3, depth=3, features=8)
    with torch.no_grad():
        for p in b.parameters():
            p.add_(1.0)
    wa = {n: v.clone() for n, v in a.state_dict().items()}
    wb = {n: v.clone() for n, v in b.state_dict().items()}
    mix_prior(a, wb, 0.25)
    for n, v in a.state_dict().items():
        torch.testing.assert_close(v, 0.75 * wa[n] + 0.25 * wb[n])


def test_self_supervised_output_is_consistent_with_the_scan():
    """End to end: the output, re-acquired with the profile (independent simulation),
    is the scan; without the projection it is not."""
    vol = _volume((1.0, 1.0, 4.0), (24, 20, 8))
    kw = dict(budget_s=60.0, steps=3, device="cpu", progress=False, network=TINY,
              profile="gaussian", tta=False)
    out, rep = super_resolve_self_supervised(vol, **kw)
    assert rep["consistency"] and rep["prior_weight"] == 0.0  # scratch: nothing to mix
    scale = np.abs(vol.data).max()
    again = thick_slices(out.data, 4, "gaussian")
    assert np.abs(again - vol.data).max() < 1e-4 * scale
    raw, _ = super_resolve_self_supervised(vol, consistency=False, **kw)
    assert np.abs(thick_slices(raw.data, 4, "gaussian") - vol.data).max() > 1e-3 * scale
    # the projection is the call's last step (what benchmark_selfsup relies on)
    np.testing.assert_allclose(
        out.data, project(raw.data, vol.data, 2, np.asarray(rep["slice_profile"]), 4),
        atol=1e-4 * scale)
    with pytest.raises(UserError, match="prior_weight"):
        super_resolve_self_supervised(vol, prior_weight=1.5, **kw)


def test_fusion_averages_both_in_plane_orientations():
    vol = _volume((1.0, 1.0, 3.0), (14, 12, 5))
    out = apply(vol, _ShiftNet(3), device="cpu", tta=False)
    x = vol.data.astype(np.float64)

    def diff(ax):  # central difference with half-sample symmetric edges
        p = np.pad(x, [(1, 1) if a == ax else (0, 0) for a in range(3)], mode="symmetric")
        sl = [slice(None)] * 3
        hi, lo = list(sl), list(sl)
        hi[ax], lo[ax] = slice(2, None), slice(None, -2)
        return p[tuple(hi)] - p[tuple(lo)]

    up = lambda a: np.repeat(a, 3, axis=2)  # noqa: E731
    fused = up(x + 0.25 * (diff(0) + diff(1)))
    one_way = up(x + 0.5 * diff(0))
    np.testing.assert_allclose(out.data, fused, atol=1e-3)
    assert np.abs(out.data - one_way).max() > 1.0


def test_test_time_flips_average_over_the_tasks_symmetries():
    """The shift net's derivative term is odd under a flip of its plane's first axis: the
    mean over flip_sets cancels it exactly (edges included), leaving x upsampled."""
    vol = _volume((1.0, 1.0, 3.0), (14, 12, 5))
    tp = detect_through_plane(vol)
    assert flip_sets(tp, vol.spatial_shape) == [(), (2,), (0, 1), (0, 1, 2)]
    out = apply(vol, _ShiftNet(3), device="cpu", tta=True)
    np.testing.assert_allclose(out.data, np.repeat(vol.data, 3, axis=2), atol=1e-3)
    plain = apply(vol, _ShiftNet(3), device="cpu", tta=False)
    assert np.abs(plain.data - out.data).max() > 1.0


# ----------------------------------------------------------------------- end to end
def test_geometry_is_the_upsampled_affine_exactly():
    vol = _volume((1.0, 1.0, 3.0), (16, 14, 5), oblique=True)
    out = apply(vol, _ShiftNet(3), device="cpu", tta=False)
    assert out.spatial_shape == (16, 14, 15)
    np.testing.assert_array_equal(out.affine, geometry.upsampled_affine(vol.affine, (1, 1, 3)))


def test_non_integer_factor_lands_on_the_centre_preserving_grid():
    vol = _volume((1.0, 2.5, 1.0), (16, 6, 14), oblique=True)
    out = apply(vol, _ShiftNet(3), device="cpu", tta=False)
    shape_out = geometry.output_shape(vol.spatial_shape, (1, 2.5, 1))
    assert out.spatial_shape == shape_out == (16, 15, 14)
    np.testing.assert_array_equal(
        out.affine, geometry.upsampled_affine(vol.affine, (1, 2.5, 1), vol.spatial_shape,
                                              shape_out))
    np.testing.assert_allclose(geometry.spacing_of(out.affine), [1.0, 1.0, 1.0])
    # a constant stays constant through SR + resampling
    const = apply(vol.with_data(np.full(vol.spatial_shape, 7.0, np.float32)), _ShiftNet(3),
                  device="cpu")
    np.testing.assert_allclose(const.data, 7.0, atol=1e-3)


def test_budget_is_honoured_and_steps_reported():
    vol = _volume((1.0, 1.0, 4.0), (48, 44, 12))
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # one-off import, per process
    out, rep = super_resolve_self_supervised(vol, budget_s=8.0, device="cpu", progress=False,
                                             network=TINY)
    assert rep["train"]["steps"] > 10 and rep["train"]["stopped_by"] in ("budget", "steps")
    # training used the time the budget left it (less the inference reserve)
    assert rep["train"]["seconds"] > 0.5 * rep["train_s_allowed"] > 0.5
    assert rep["seconds"] >= rep["train"]["seconds"]  # the run's time includes training
    assert rep["through_plane"]["axis"] == 2 and rep["through_plane"]["k"] == 4
    # no profile given: the widths are the estimate's (blind default), else the spacing
    est = rep["profile_estimate"]
    assert rep["slice_thickness_source"] == ("estimate" if est and est["best"] else "spacing")
    assert rep["init"] == "scratch" and out.spatial_shape == (48, 44, 48)
    np.testing.assert_array_equal(out.affine, geometry.upsampled_affine(vol.affine, (1, 1, 4)))


def test_a_budget_without_time_to_train_is_refused_not_overrun():
    vol = _volume((1.0, 1.0, 4.0), (24, 20, 6))
    with pytest.raises(BudgetTooShort, match=r"0.001 s budget is too short.*--budget \d+s"):
        super_resolve_self_supervised(vol, budget_s=1e-3, device="cpu", progress=False,
                                      network=TINY)
    # the budget it names leaves training a quarter: set-up, the inference reserve and
    # the command's own reading and writing included
    short = BudgetTooShort(60.0, 5.0, 40.0, 4).around(60.0, 2.0, 1.0)
    need = 2.0 + 1.0 + 5.0 + 0.5 + INFERENCE_MARGIN * 40.0
    suggested = int(re.search(r"--budget (\d+)s", str(short)).group(1))
    assert 0.75 * suggested >= need > 0.75 * (suggested - 1)
    assert "4 test-time flips" in str(short) and "writing will take about 1.0 s" in str(short)


def test_seeded_runs_are_identical_and_saved_model_reproduces(tmp_path):
    vol = _volume((1.0, 3.0, 1.0), (32, 8, 30))
    kw = dict(budget_s=60.0, steps=3, seed=7, device="cpu", progress=False, network=TINY,
              tta=True)
    a, rep_a = super_resolve_self_supervised(vol, save_model=tmp_path / "fit", **kw)
    b, _ = super_resolve_self_supervised(vol, **kw)
    np.testing.assert_array_equal(a.data, b.data)
    c, _ = super_resolve_self_supervised(vol, **{**kw, "seed": 8})
    assert not np.array_equal(a.data, c.data)
    saved = tmp_path / "fit.safetensors"
    assert rep_a["saved_model"] == str(saved) and saved.with_suffix(".json").is_file()
    model, info = load_fitted(saved)
    assert info["selfsup"]["through_plane"]["k"] == 3 and info["selfsup"]["seed"] == 7
    np.testing.assert_array_equal(apply_saved(vol, saved, device="cpu").data, a.data)
    kernel = np.asarray(info["selfsup"]["slice_profile"])
    np.testing.assert_array_equal(apply(vol, model, device="cpu", kernel=kernel).data, a.data)
    # the same model on another scan acquired the same way; a different factor is refused
    other = _volume((1.0, 3.0, 1.0), (20, 6, 18), seed=1)
    assert apply(other, model, device="cpu").spatial_shape == (20, 18, 18)
    with pytest.raises(UserError, match="factor"):
        apply(_volume((1.0, 2.0, 1.0), (20, 6, 18)), model, device="cpu")


def test_untrained_is_near_lanczos_and_training_beats_it_on_known_truth():
    hr = Volume(_phantom((48, 48, 48), seed=2), np.eye(4))
    acq = Degradation(scale=[1, 1, 4], profile="gaussian", downsample="decimate",
                      fwhm=[None, None, 4.0])
    lr = degrade_volume(hr, acq)
    lr = lr.with_data(lr.data.astype(np.float32))
    lanczos = resize(lr.data, [1, 1, 4], "lanczos")
    kw = dict(device="cpu", batch=8, patch=24, network=TINY, seconds=60.0)
    untrained = apply(lr, fit(lr, steps=1, lr=0.0, **kw).model, device="cpu")
    assert psnr(lanczos, untrained.data) > 40.0  # starts (close to) Lanczos
    f = fit(lr, steps=100, **kw)
    assert f.train_report.steps == 100 and f.train_report.stopped_by == "steps"
    sr = apply(lr, f.model, device="cpu")
    assert psnr(hr.data, sr.data) > psnr(hr.data, lanczos) + 1.0
    assert psnr(hr.data, sr.data) > psnr(hr.data, resize(lr.data, [1, 1, 4], "cubic")) + 1.0


def test_dicom_series_slice_thickness_is_read_from_the_header(tmp_path):
    import dicom_fixtures as fx  # tests/ is on sys.path (pytest rootdir-less import)
    import pydicom

    from medsr.io import read

    case = fx.oblique_case((12, 10, 6))
    fx.write_series(tmp_path / "s", case["stored"], case["A_lps"], slope=case["slope"],
                 intercept=case["intercept"], rng=case["rng"])
    for f in (tmp_path / "s").iterdir():  # thickness 2 mm, spacing 3 mm: a 1 mm gap
        ds = pydicom.dcmread(f)
        ds.SliceThickness = "2.0"
        ds.save_as(f)
    vol = read(tmp_path / "s")
    tp = detect_through_plane(vol)
    assert tp.axis == 2 and tp.factor == pytest.approx(3.0 / 0.8) and tp.k == 4
    assert slice_thickness(vol, tp) == (2.0, "dicom")
    k = profile_kernel(tp, 2.0)  # FWHM 2 mm on the 0.75 mm output grid
    sigma = 2.0 / 0.75 / (2 * np.sqrt(2 * np.log(2)))
    assert _variance(k) == pytest.approx(sigma**2 + 1 / 12, rel=1e-3)


def test_init_default_fine_tunes_the_shipped_model_and_auto_chooses_by_probe(
        tmp_path, monkeypatch):
    vol = _volume((1.0, 3.0, 1.0), (32, 8, 30))
    monkeypatch.setenv("MEDSR_WEIGHTS", str(tmp_path))
    kw = dict(budget_s=60.0, steps=1, device="cpu", progress=False, tta=True)
    with pytest.raises(UserError, match="no shipped"):
        super_resolve_self_supervised(vol, init="default", **kw)
    # a "shipped" default: a fitted x3 model stored under the default's name
    src = fit(vol, steps=2, device="cpu", network=TINY, seconds=60.0)
    save_fitted(tmp_path / "thick_slice_x3.safetensors", src.model, {"note": "test"})
    out, rep = super_resolve_self_supervised(vol, init="default", lr=0.0, prior_weight=0.5,
                                             **kw)
    assert rep["init"] == "default:thick_slice_x3.safetensors"
    # lr 0: the shipped weights, unchanged (averaged with themselves), are what was applied
    assert rep["prior_weight"] == 0.5 and rep["consistency"]
    kernel = np.asarray(rep["slice_profile"])
    np.testing.assert_allclose(out.data, apply(vol, src.model, device="cpu",
                                               kernel=kernel).data, atol=1e-4)
    # auto fine-tunes a default whose prior fits the scan's pairs: one that is exactly
    # Lanczos (residual zeroed) errs as much as Lanczos on them
    lanczos = build(3, depth=3, features=8)
    for m in lanczos.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.zeros_(m.weight)
            torch.nn.init.zeros_(m.bias)
    save_fitted(tmp_path / "thick_slice_x3.safetensors", lanczos, {"note": "test"})
    _, rep = super_resolve_self_supervised(vol, **kw)
    assert rep["init"] == "default:thick_slice_x3.safetensors"
    assert rep["auto_probe_mse_default"] == pytest.approx(rep["auto_probe_mse_lanczos"],
                                                          rel=1e-4)
    # auto_start tells, without training, where the run started and on what evidence
    ev = auto_start(vol, device="cpu")
    assert ev["init"] == rep["init"]
    assert ev["auto_probe_mse_default"] == rep["auto_probe_mse_default"]
    # ... and starts from scratch when the default's prior is wrong for the scan
    bad = build(3, depth=3, features=8)
    with torch.no_grad():
        for m in bad.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.mul_(50.0)
    save_fitted(tmp_path / "thick_slice_x3.safetensors", bad, {"note": "test"})
    out_auto, rep = super_resolve_self_supervised(vol, **kw)
    assert rep["init"] == "scratch"
    assert rep["auto_probe_mse_default"] > 2 * rep["auto_probe_mse_lanczos"]
    # the same network, pairs and result as asking for scratch
    out_scratch, _ = super_resolve_self_supervised(vol, init="scratch", **kw)
    np.testing.assert_array_equal(out_auto.data, out_scratch.data)
    # no default for the factor: scratch, and the report says why
    (tmp_path / "thick_slice_x3.safetensors").unlink()
    _, rep = super_resolve_self_supervised(vol, **kw)
    assert rep["init"] == "scratch" and "no shipped default" in rep["auto"]
    with pytest.raises(UserError, match="init must be"):
        super_resolve_self_supervised(vol, init="pretrained", **kw)


def test_a_2d_image_with_one_coarse_axis_end_to_end():
    vol = Volume(_phantom((40, 12, 1)), np.diag([0.5, 1.5, 1.0, 1.0]))
    out, rep = super_resolve_self_supervised(vol, budget_s=60.0, steps=3, device="cpu",
                                             progress=False, network=TINY, patch=16)
    assert rep["through_plane"]["axis"] == 1 and rep["through_plane"]["inplane_axes"] == (0,)
    assert out.spatial_shape == (40, 36, 1)
    np.testing.assert_array_equal(out.affine, geometry.upsampled_affine(vol.affine, (1, 3, 1)))
    assert np.isfinite(out.data).all()


# ------------------------------------------------------------ blind profile (no profile given)
def test_a_mixture_sampler_degrades_each_batch_with_one_of_its_kernels():
    k = 4
    data = _phantom((30, 28, 6))
    tp = detect_through_plane(_volume((1, 1, 4.0), (4, 4, 4)))
    kernels = [profile_kernel(tp, 4.0, "rect"), profile_kernel(tp, 4.0, "gaussian")]
    mixed = PairSampler(data, (0, 1), 2, kernels, k, patch=16)
    alone = [PairSampler(data, (0, 1), 2, kk, k, patch=16) for kk in kernels]
    rng = np.random.default_rng(5)
    used = set()
    for _ in range(12):
        lr, hr = mixed.sample(rng, 3)
        src_i, s_i, b_i, a_i, flips = mixed.last_draw
        used.add(mixed.last_kernel)
        ref = alone[mixed.last_kernel].sources[src_i]
        n_b, n_a = 16, 16
        for n in range(3):
            low = ref.lr_src[0][s_i[n], b_i[n]:b_i[n] + n_b, a_i[n] + 1:a_i[n] + n_a:k]
            if flips[n, 0]:
                low = low[::-1]
            if flips[n, 1]:
                low = low[:, ::-1]
            np.testing.assert_array_equal(lr[n, 0].numpy(), low)
    assert used == {0, 1}  # both kernels, one per batch
    # one kernel draws nothing more from the stream than before (seeded runs unchanged)
    a, b = np.random.default_rng(1), np.random.default_rng(1)
    alone[0].sample(a, 2)
    PairSampler(data, (0, 1), 2, [kernels[0]], k, patch=16).sample(b, 2)
    assert a.random() == b.random()


def _estimate(family: str, confident: bool, width: float = 9.0):
    from medsr.selfsup.profile_estimate import ProfileEstimate

    other = "rect" if family == "gaussian" else "gaussian"
    return ProfileEstimate(family, width, confident, 2, 4.0, 0.05, 3.0 if confident else 1.2,
                           "" if confident else "the other fits nearly as well",
                           {family: [width, 0.01], other: [width * 1.3, 0.012]})


def test_the_blind_default_mixes_both_profiles(monkeypatch):
    """No profile given: both families train the network (one per batch) at the
    estimate's widths, and the report says so (a confident estimate alone only where
    BLIND_TRUST_CONFIDENT is set); a told profile overrides all of it without estimating."""
    import medsr.selfsup.blind as pe  # where the blind default looks the estimate up

    vol = _volume((1.0, 1.0, 4.0), (24, 20, 8))
    kw = dict(budget_s=60.0, steps=2, device="cpu", progress=False, network=TINY, tta=False)
    monkeypatch.setattr(pe, "estimate_profile", lambda v: _estimate("gaussian", False))
    out, rep = super_resolve_self_supervised(vol, **kw)
    assert rep["profile"] == "mixture" and "mixture" in rep["profile_used"]
    mix = rep["profile_mixture"]
    assert mix["families"] == ["rect", "gaussian"]
    assert mix["widths_mm"] == {"gaussian": 9.0, "rect": pytest.approx(11.7)}
    # the pairs span the estimate's error: each family at 0.8, 1 and 1.25 x its width
    assert mix["spread"] == [0.8, 1.0, 1.25] and len(mix["kernels"]) == 6
    tp = detect_through_plane(vol)
    for i, (width, fam) in enumerate([(11.7 * f, "rect") for f in (0.8, 1.0, 1.25)]
                                     + [(9.0 * f, "gaussian") for f in (0.8, 1.0, 1.25)]):
        np.testing.assert_allclose(mix["kernels"][i], profile_kernel(tp, width, fam))
    # ... while the projection stays under the mean of the two at their widths
    two = [profile_kernel(tp, 11.7, "rect"), profile_kernel(tp, 9.0, "gaussian")]
    n = max(kk.size for kk in two)
    np.testing.assert_allclose(rep["slice_profile"],
                               np.mean([np.pad(kk, (n - kk.size) // 2) for kk in two], 0))
    assert "each at 0.8, 1 and 1.25x" in rep["profile_used"]
    assert rep["profile_estimate"]["family"] == "gaussian"
    assert rep["slice_thickness_source"] == "estimate"
    # a thickness given (or from the header) sets both widths
    _, rep = super_resolve_self_supervised(vol, slice_thickness=5.0, **kw)
    assert rep["profile_mixture"]["widths_mm"] == {"rect": 5.0, "gaussian": 5.0}
    assert rep["profile_mixture"]["spread"] == [1.0]  # a thickness is not spread
    assert len(rep["profile_mixture"]["kernels"]) == 2
    # a confident estimate still mixes (it can be confidently wrong), and says so
    monkeypatch.setattr(pe, "estimate_profile", lambda v: _estimate("rect", True, 4.4))
    _, rep = super_resolve_self_supervised(vol, **kw)
    assert rep["profile"] == "mixture" and "confident" in rep["profile_used"]
    assert rep["profile_mixture"]["widths_mm"] == {"rect": 4.4, "gaussian": pytest.approx(5.72)}
    # ... and is used alone where the module is set to trust it
    monkeypatch.setattr("medsr.selfsup.blind.BLIND_TRUST_CONFIDENT", True)
    _, rep = super_resolve_self_supervised(vol, **kw)
    assert rep["profile"] == "rect" and "profile_mixture" not in rep
    assert rep["slice_thickness_mm"] == pytest.approx(4.4)
    np.testing.assert_allclose(rep["slice_profile"], profile_kernel(tp, 4.4, "rect"))
    assert "confident" in rep["profile_used"]

    # told: no estimate at all, the given family at the thickness
    def refuse(v):
        raise AssertionError("a told profile must not be estimated")

    import medsr.selfsup.profile_estimate as estimator

    monkeypatch.setattr(pe, "estimate_profile", refuse)
    monkeypatch.setattr(estimator, "estimate_profile", refuse)
    _, rep = super_resolve_self_supervised(vol, profile="rect", **kw)
    assert rep["profile"] == "rect" and "profile_mixture" not in rep
    np.testing.assert_allclose(rep["slice_profile"], profile_kernel(tp, 4.0, "rect"))
    _, rep = super_resolve_self_supervised(vol, slice_profile=np.ones(4), **kw)
    assert rep["profile"] == "kernel"
