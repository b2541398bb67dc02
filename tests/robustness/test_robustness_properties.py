"""Property-based tests (hypothesis): every NIfTI header a generator can write either
loads with the affine the NIfTI-1 standard defines or raises InputError; every set of
degradation parameters either raises UserError or gives a finite result of the right
shape. Never another exception."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsr.errors import InputError, UserError

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

# NIfTI-1 datatype codes -> numpy item size (0 for codes the standard does not define)
DATATYPES = {2: 1, 4: 2, 8: 4, 16: 4, 64: 8, 256: 1, 512: 2, 768: 4, 1024: 8, 1280: 8,
             32: 8, 1792: 16, 128: 3, 2304: 4, 3: 0, 9999: 0}
INTEGER_CODES = {2, 4, 8, 256, 512, 768}
special = st.sampled_from([0.0, -1.0, float("nan"), float("inf"), -float("inf"), 1e-30, 1e30])
positive = st.floats(0.05, 20.0)


@st.composite
def headers(draw):
    """Half the headers are sane apart from one field or none (they mostly load), half are
    hostile in every field (they mostly fail)."""
    sane = draw(st.booleans())
    ndim = draw(st.integers(3, 5))
    dims = [draw(st.integers(1, 5)) for _ in range(ndim)]
    if draw(st.booleans()) and ndim >= 4:
        dims[3] = 1  # a vector image (I, J, K, 1, C) or one-volume 4D
    if draw(st.integers(0, 9)) == 0:
        dims[draw(st.integers(0, ndim - 1))] = draw(st.sampled_from([0, -3]))
    value = positive if sane else st.one_of(positive, special)
    srow_value = st.floats(-0.5, 0.5) if sane else st.one_of(st.floats(-3, 3), special)
    srow = [[draw(srow_value) for _ in range(4)] for _ in range(3)]
    if sane:  # diagonally dominant: never singular
        for i in range(3):
            srow[i][i] = draw(st.sampled_from([-1.0, 1.0])) * draw(st.floats(1.5, 4.0))
            srow[i][3] = draw(st.floats(-200, 200))
    return {
        "ndim": ndim, "dims": dims, "pixdim": [draw(value) for _ in range(3)],
        "qfac": draw(st.sampled_from([-1.0, 0.0, 1.0])),
        "datatype": draw(st.sampled_from(sorted(INTEGER_CODES) if sane else sorted(DATATYPES))),
        "slope": draw(st.one_of(st.just(1.0), st.floats(-5, 5), *([] if sane else [special]))),
        "inter": draw(st.one_of(st.just(0.0), st.floats(-100, 100),
                                *([] if sane else [special]))),
        "qform_code": draw(st.integers(0, 4)),
        "sform_code": draw(st.integers(0, 4)),
        "quat": [draw(st.floats(-0.57, 0.57)) for _ in range(3)],
        "qoffset": [draw(st.floats(-200, 200)) for _ in range(3)],
        "srow": srow,
        "truncate": draw(st.integers(0, 5)) == 0,
    }


def write_raw(path: Path, f: dict) -> None:
    """The header built field by field (nibabel's raw field access, no checks) + data."""
    hdr = nib.Nifti1Header()
    dim = np.ones(8, np.int16)
    dim[0] = f["ndim"]
    dim[1:1 + f["ndim"]] = f["dims"]
    hdr["dim"] = dim
    pixdim = np.ones(8, np.float32)
    pixdim[0] = f["qfac"]
    pixdim[1:4] = f["pixdim"]
    hdr["pixdim"] = pixdim
    hdr["datatype"] = f["datatype"]
    hdr["bitpix"] = max(DATATYPES[f["datatype"]], 1) * 8
    hdr["scl_slope"], hdr["scl_inter"] = f["slope"], f["inter"]
    hdr["qform_code"], hdr["sform_code"] = f["qform_code"], f["sform_code"]
    hdr["quatern_b"], hdr["quatern_c"], hdr["quatern_d"] = f["quat"]
    hdr["qoffset_x"], hdr["qoffset_y"], hdr["qoffset_z"] = f["qoffset"]
    hdr["srow_x"], hdr["srow_y"], hdr["srow_z"] = f["srow"]
    hdr["vox_offset"] = 352
    hdr["magic"] = b"n+1"
    n = int(np.prod([max(d, 0) for d in f["dims"]])) * max(DATATYPES[f["datatype"]], 1)
    if f["truncate"]:
        n = n // 2
    data = np.random.default_rng(n).integers(0, 256, size=n, dtype=np.uint8).tobytes()
    path.write_bytes(hdr.binaryblock + b"\x00" * 4 + data)


def expected_affine(f: dict) -> np.ndarray:
    """NIfTI-1 methods 3 (sform), 2 (qform), else nibabel's documented fallback (x flipped,
    centred on the grid), written out from the standard's formulas."""
    if f["sform_code"] > 0:
        return np.vstack([np.array(f["srow"], float), [0, 0, 0, 1]])
    zooms = np.array(f["pixdim"], float)
    if f["qform_code"] > 0:
        b, c, d = f["quat"]
        a = np.sqrt(max(0.0, 1.0 - (b * b + c * c + d * d)))
        R = np.array([[a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
                      [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
                      [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b]])
        qfac = -1.0 if f["qfac"] < 0 else 1.0
        A = np.eye(4)
        A[:3, :3] = R @ np.diag([zooms[0], zooms[1], zooms[2] * qfac])
        A[:3, 3] = f["qoffset"]
        return A
    shape = np.array(f["dims"][:3], float)
    A = np.diag([-zooms[0], zooms[1], zooms[2], 1.0])
    A[:3, 3] = -((shape - 1) / 2) * np.diag(A)[:3]
    return A


def clean(f: dict) -> bool:
    """Headers that must load: sane sizes, zooms, datatype, scaling, affine, full data."""
    pix_ok = all(np.isfinite(p) and 1e-3 < p < 1e3 for p in f["pixdim"])
    srow_ok = f["sform_code"] == 0 or (np.all(np.isfinite(f["srow"])) and abs(
        np.linalg.det(np.array(f["srow"])[:, :3])) > 1e-6)
    slope_ok = np.isfinite(f["slope"]) and np.isfinite(f["inter"])
    shape_ok = all(d > 0 for d in f["dims"]) and (f["ndim"] == 3 or (
        f["ndim"] == 4) or (f["ndim"] == 5 and f["dims"][3] == 1))
    return (pix_ok and srow_ok and slope_ok and shape_ok and not f["truncate"]
            and f["datatype"] in INTEGER_CODES)


@SETTINGS
@given(f=headers())
def test_nifti_header_fields_load_correctly_or_raise_input_error(tmp_path_factory, f):
    from medsr import io

    path = tmp_path_factory.mktemp("hdr") / "h.nii"
    write_raw(path, f)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vol = io.read(path, volume=0 if f["ndim"] == 4 else None)
    except InputError:
        assert not clean(f), f"a clean header was refused: {f}"
        return
    # loaded: the affine is the one the standard defines, the data has the header's size
    np.testing.assert_allclose(vol.affine, expected_affine(f), rtol=1e-5, atol=1e-4)
    assert vol.spatial_shape == tuple(f["dims"][:3])
    assert np.all(np.isfinite(vol.data.astype(np.complex128 if np.iscomplexobj(vol.data)
                                              else np.float64)))


# ---------------------------------------------------------------------------- degradation

numbers = st.one_of(st.floats(-2, 6), st.integers(-1, 5), special)
# Known bugs of medsr.degrade excluded here and pinned by the strict xfails below: a
# factor of 1e30 (ValueError) and an infinite slice thickness (OverflowError).
geometric = st.one_of(st.floats(-2, 6), st.integers(-1, 5),
                      st.sampled_from([0.0, -1.0, float("nan"), -float("inf"), 1e-30]))


@st.composite
def degradation_params(draw):
    p = {"scale": draw(st.one_of(geometric, st.lists(geometric, min_size=1, max_size=4)))}
    options = {
        "profile": st.sampled_from(["gaussian", "rect", "none", "kernel", "boxcar"]),
        "fwhm": st.one_of(st.none(), geometric, st.lists(geometric, min_size=3, max_size=3)),
        "thickness": st.one_of(st.none(), geometric),
        "units": st.sampled_from(["voxel", "mm", "lr", "inch"]),
        "downsample": st.sampled_from(["decimate", "area", "kspace", "bicubic", "median"]),
        "window": st.sampled_from([None, "hann", "tukey", "blackman"]),
        "zero_filled": st.booleans(),
        "noise": st.sampled_from(["none", "gaussian", "rician", "poisson-gaussian", "salt"]),
        "sigma": st.one_of(numbers, st.fixed_dictionaries(
            {"per_channel": st.lists(numbers, min_size=1, max_size=2)})),
        "relative": st.booleans(),
        "gain": st.one_of(st.none(), numbers),
        "jpeg_quality": st.one_of(st.none(), st.integers(-5, 105)),
    }
    for name, strat in options.items():
        if draw(st.booleans()):
            p[name] = draw(strat)
    return p


@SETTINGS
@given(p=degradation_params())
def test_degradation_parameters_user_error_or_valid_result(p):
    from medsr.degrade import Degradation

    x = np.random.default_rng(0).random((1, 10, 9, 6)).astype(np.float32) * 100
    try:
        d = Degradation(**p)
        d.set_random_state(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y = d(x, spacing=(1.0, 1.0, 2.0))
    except UserError:
        return
    y = np.asarray(y)
    assert y.ndim == 4 and y.shape[0] == 1
    assert np.all(np.isfinite(y)), f"non-finite output for {p}"
    factors = d.last_params["resolved"]["scale"]
    for n_in, n_out, k in zip(x.shape[1:], y.shape[1:], factors):
        assert k >= 1
        if d.last_params["zero_filled"]:
            assert n_out == n_in
        else:
            assert abs(n_out - n_in / k) < 1, (x.shape, y.shape, factors)


@pytest.mark.parametrize("params", [{"scale": 1e30},
                                    {"scale": 2, "thickness": float("inf"), "units": "mm"}])
def test_huge_or_infinite_sizes_are_user_errors(params):
    from medsr.degrade import Degradation

    with pytest.raises(UserError):
        d = Degradation(**params)
        x = np.random.default_rng(0).random((1, 10, 9, 6)).astype(np.float32)
        d(x, spacing=(1.0, 1.0, 2.0))


@pytest.mark.parametrize("code", [5, -1, 1000])
def test_out_of_range_xform_codes(tmp_path, code):
    """Codes the standard does not define: InputError or the standard's affine."""
    from medsr import io

    f = {"ndim": 3, "dims": [4, 4, 3], "pixdim": [1.0, 2.0, 3.0], "qfac": 1.0, "datatype": 4,
         "slope": 1.0, "inter": 0.0, "qform_code": 0, "sform_code": code,
         "quat": [0.0, 0.0, 0.0], "qoffset": [0.0, 0.0, 0.0],
         "srow": [[1.0, 0, 0, 5], [0, 2.0, 0, 6], [0, 0, 3.0, 7]], "truncate": False}
    write_raw(tmp_path / "c.nii", f)
    try:
        vol = io.read(tmp_path / "c.nii")
    except InputError:
        return
    assert np.all(np.isfinite(vol.affine))
