"""Issue 24's CPU parts: no per-call receptive-field probe (the halo stored with the
weights, else cached per process), compressed NIfTI through the fast deflate with the
plain one as fallback (read back by nibabel and SimpleITK), reads and writes without
volume-sized second copies, and the network runner's normalisation in place.

Memory is measured with ``tracemalloc`` (numpy's and Python's allocations), never time:
the speed targets live in ``pipelines/benchmark_speed.py``.
"""

from __future__ import annotations

import copy
import gzip
import json
import tracemalloc
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from medsr import intensity, io, models, pretrained
from medsr.errors import InputError
from medsr.inference import model_sr, tiling
from medsr.inference import receptive_field as rf
from medsr.io import deflate
from medsr.io.dtype import cast_to_dtype
from medsr.models.checkpoint import read_checkpoint
from medsr.volume import Volume

EXAMPLE = Path(__file__).resolve().parents[1] / "docs/examples/mni152_t1_1x1x4mm.nii.gz"
BACKENDS = [b for b in deflate.GZIP_BACKENDS if deflate.gzip_backend(b) == b]


# ---------------------------------------------------------------- receptive field
@pytest.mark.parametrize("p", pretrained.shipped(), ids=lambda p: p.name)
def test_shipped_weights_carry_their_halo(p):
    """The stored halo is what the probe measures on the architecture, in the safetensors
    metadata and in the JSON beside it."""
    _, info = read_checkpoint(p.path)
    field = info[rf.FIELD_KEY]
    sidecar = json.loads(p.path.with_suffix(".json").read_text())
    assert sidecar[rf.FIELD_KEY] == field == {"halo": field["halo"], "extra": 3, "cap": 32}
    net, _ = model_sr.load(p.name, "cpu")
    fresh = copy.deepcopy(net)
    fresh._medsr_halo = None
    rf._HALOS.clear()
    assert rf.receptive_halo(fresh) == field["halo"]


def test_the_training_pipeline_ships_the_halo_it_measures(tmp_path):
    """pipelines/train_default.py stores the receptive field when it ships a run's
    checkpoint: stamping a shipped model again reproduces its file byte for byte."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "train_default", Path(__file__).resolve().parents[1] / "pipelines/train_default.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    src = pretrained.PRETRAINED["thick-slice-x4"].path
    state, info = read_checkpoint(src)
    bare = {k: v for k, v in info.items() if k != rf.FIELD_KEY}
    from medsr.models.checkpoint import save_model

    run = save_model(tmp_path / "best.safetensors", state, bare)  # as a run leaves it
    assert rf.FIELD_KEY not in read_checkpoint(run)[1]
    shipped = mod.ship_weights(run, tmp_path / "x.safetensors")
    assert shipped[rf.FIELD_KEY] == info[rf.FIELD_KEY]
    assert (tmp_path / "x.safetensors").read_bytes() == src.read_bytes()


def test_loading_a_shipped_model_runs_no_probe(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the receptive field was probed")

    monkeypatch.setattr(rf, "measured_radius", refuse)
    monkeypatch.setattr(rf, "_HALOS", {})
    net, info = model_sr.load("thick-slice-x4", "cpu")
    p = model_sr.Pass(net, info, (1, 1, 4))
    for tta in (False, True):  # the prepared (fused, channels-last) copy and the flips
        runnable = p.runnable(torch.device("cpu"), True, False, tta)
        assert rf.receptive_halo(runnable) == info[rf.FIELD_KEY]["halo"]
    data = np.random.default_rng(0).random((12, 10, 3), dtype=np.float32) * 100
    out = model_sr.run_passes(data, [p], device=torch.device("cpu"))
    assert out.shape == (12, 10, 12)


def test_the_probe_runs_once_per_architecture(monkeypatch):
    calls = []
    real = rf.measured_radius
    monkeypatch.setattr(rf, "measured_radius",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(rf, "_HALOS", {})
    make = lambda **kw: models.create("sp_vdsr", spatial_dims=2, scale=(1, 4), **kw)  # noqa: E731
    a, b = make(depth=3, features=8), make(depth=3, features=8)
    assert rf.receptive_halo(a) == rf.receptive_halo(b)
    assert len(calls) == 1  # b: same architecture, other weights
    deeper = make(depth=5, features=8)
    assert rf.receptive_halo(deeper) > rf.receptive_halo(a)
    cubic = make(depth=3, features=8, interpolation="cubic")
    assert rf.architecture_key(cubic) != rf.architecture_key(a)
    rf.receptive_halo(cubic)
    assert len(calls) == 3


@pytest.mark.parametrize("field", [{"halo": 99}, {"halo": 2}, {"halo": True}, {"halo": "7"},
                                   [7], None])
def test_implausible_stored_halos_are_measured_instead(field):
    net = models.create("sp_vdsr", spatial_dims=2, scale=(1, 4), depth=3, features=8)
    assert rf.remember_receptive_field(net, {rf.FIELD_KEY: field}) is None
    assert getattr(net, "_medsr_halo", None) is None


# ---------------------------------------------------------------- gzip
def _volume(shape=(23, 19, 7), dtype=np.int16, seed=0) -> Volume:
    data = (np.random.default_rng(seed).random(shape) * 3000 - 500).astype(dtype)
    affine = np.diag([0.9, 1.1, 3.0, 1.0])
    affine[:3, 3] = [-10, 5, 2]
    return Volume(data=data, affine=affine, meta={"format": "nifti", "dtype": np.dtype(dtype).name})


@pytest.mark.parametrize("backend", BACKENDS)
def test_written_gzip_reads_back_in_nibabel_and_simpleitk(tmp_path, monkeypatch, backend):
    sitk = pytest.importorskip("SimpleITK")
    monkeypatch.setenv("MEDSR_GZIP", backend)
    vol = _volume()
    path = io.write(vol, tmp_path / "a.nii.gz")
    with gzip.open(path) as f:  # valid gzip for Python's own reader, CRC included
        raw = f.read()
    assert len(raw) == 352 + vol.data.nbytes
    assert np.array_equal(np.asanyarray(nib.load(path).dataobj), vol.data)
    img = sitk.ReadImage(str(path))
    assert np.array_equal(sitk.GetArrayFromImage(img).transpose(2, 1, 0), vol.data)
    assert np.allclose(img.GetSpacing(), (0.9, 1.1, 3.0))
    again = io.write(vol, tmp_path / "b.nii.gz")  # mtime 0, no name: the same bytes
    assert path.read_bytes() == again.read_bytes()
    back = io.read(path)
    assert back.data.flags.c_contiguous and back.data.dtype == np.int16
    assert np.array_equal(back.data, vol.data) and np.allclose(back.affine, vol.affine)


def test_the_fallback_is_plain_gzip_and_reads_what_the_fast_one_wrote(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSR_GZIP", BACKENDS[0])
    vol = _volume(dtype=np.float32)
    path = io.write(vol, tmp_path / "fast.nii.gz")
    monkeypatch.setenv("MEDSR_GZIP", "gzip")
    assert deflate.gzip_backend() == "gzip"
    assert deflate._gzip_class("gzip") is gzip.GzipFile
    assert np.array_equal(io.read(path).data, vol.data)
    slow = io.write(vol, tmp_path / "slow.nii.gz")
    monkeypatch.setenv("MEDSR_GZIP", BACKENDS[0])
    assert np.array_equal(io.read(slow).data, vol.data)


def test_a_missing_fast_library_falls_back(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_fast(name, *args, **kwargs):
        if name.startswith(("isal", "zlib_ng")):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.delenv("MEDSR_GZIP", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_fast)
    assert deflate.gzip_backend() == "gzip"
    assert deflate.gzip_backend("isal") == "gzip"


def test_unknown_backend_is_one_line(monkeypatch):
    from medsr.errors import UserError

    monkeypatch.setenv("MEDSR_GZIP", "brotli")
    with pytest.raises(UserError, match="MEDSR_GZIP"):
        deflate.gzip_backend()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_streams_are_input_errors(tmp_path, monkeypatch, backend, damage):
    monkeypatch.setenv("MEDSR_GZIP", backend)
    path = io.write(_volume((40, 40, 20), seed=3), tmp_path / "a.nii.gz")
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0xFF
    else:
        raw = raw[: int(len(raw) * 0.7)]
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="a.nii.gz"):
        io.read(path)


@pytest.mark.parametrize("backend", BACKENDS)
def test_scaled_and_big_endian_data_read_as_nibabel_reads_them(tmp_path, monkeypatch, backend):
    monkeypatch.setenv("MEDSR_GZIP", backend)
    rng = np.random.default_rng(1)
    data = (rng.random((30, 20, 9)) * 1000).astype(np.int16)
    img = nib.Nifti1Image(data, np.eye(4))
    img.header.set_slope_inter(0.25, -7.0)
    nib.save(img, tmp_path / "scaled.nii.gz")
    want = np.asanyarray(nib.load(tmp_path / "scaled.nii.gz").dataobj).astype(np.float32)
    got = io.read(tmp_path / "scaled.nii.gz").data
    assert got.dtype == np.float32 and np.array_equal(got, want)
    big = nib.Nifti1Image(data.astype(">f4"), np.eye(4))
    nib.save(big, tmp_path / "big.nii.gz")
    got = io.read(tmp_path / "big.nii.gz").data
    assert got.dtype == np.float32 and got.dtype.isnative and np.array_equal(got, data)
    mgz = io.write(_volume(dtype=np.float32), tmp_path / "a.mgz")
    assert np.array_equal(io.read(mgz).data, np.asanyarray(nib.load(mgz).dataobj))


def test_reading_holds_one_copy(tmp_path):
    """Peak traced allocation of reading a compressed 3D NIfTI: the array and a slab, not
    the decompressed file plus a C-ordered copy of it (2x)."""
    data = np.zeros((256, 256, 96), np.float32)
    data[64:192, 64:192] = np.random.default_rng(0).random((128, 128, 96), dtype=np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "a.nii.gz")
    tracemalloc.start()
    vol = io.read(tmp_path / "a.nii.gz")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert np.array_equal(vol.data, data)
    assert peak < 1.3 * data.nbytes, peak / data.nbytes


# ---------------------------------------------------------------- writing
def test_float_to_integer_writes_cast_plane_by_plane(tmp_path):
    """The same bytes as casting first (round half to even, NaN to 0), without a
    volume-sized integer copy; values that clip still take cast_to_dtype's path and warn."""
    rng = np.random.default_rng(2)
    data = (rng.standard_normal((256, 256, 64)) * 3000).astype(np.float32)
    data[0, 0, 0], data[1, 1, 1], data[2, 2, 2] = np.nan, 0.5, -1.5
    vol = Volume(data=data, affine=np.eye(4), meta={"format": "nifti", "dtype": "int16"})
    tracemalloc.start()
    path = io.write(vol, tmp_path / "a.nii.gz")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 0.25 * data.nbytes, peak / data.nbytes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = cast_to_dtype(data, np.int16)
    assert np.array_equal(np.asanyarray(nib.load(path).dataobj), want)
    data[3, 3, 3] = 40000.0
    with pytest.warns(UserWarning, match="1 voxels outside"):
        path = io.write(vol, tmp_path / "b.nii.gz")
    assert np.asanyarray(nib.load(path).dataobj)[3, 3, 3] == 32767


# ---------------------------------------------------------------- the runner
def _reference_run(data, p):
    """run_passes as it was: (x - lo) / (hi - lo) out of place."""
    from medsr.intensity import input_range

    out = np.asarray(data, dtype=np.float32)
    lo, hi = input_range(out, 0.5, 99.5)
    x = ((out - lo) / (hi - lo)).astype(np.float32)
    net = p.runnable(torch.device("cpu"), True, False, False, "fp32")
    with torch.inference_mode():
        y = model_sr.apply_2d(net, x, p.factors, channels_last=True)
    y *= hi - lo
    y += lo
    return y


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.float64])
def test_in_place_normalisation_changes_no_bit_and_not_the_input(dtype):
    net, info = model_sr.load("thick-slice-x4", "cpu")
    p = model_sr.Pass(net, info, (1, 1, 4))
    data = (np.random.default_rng(4).random((14, 12, 4)) * 900).astype(dtype)
    before = data.copy()
    got = model_sr.run_passes(data, [p], device=torch.device("cpu"))
    assert np.array_equal(data, before)
    want = _reference_run(data, p)
    assert got.dtype == np.float32 and np.array_equal(got, want)


def test_all_finite():
    a = np.zeros((5, 6, 7), np.float32)
    assert intensity.all_finite(a) and intensity.all_finite(a[:0])
    for bad in (np.nan, np.inf, -np.inf):
        b = a.copy()
        b[2, 3, 4] = bad
        assert not intensity.all_finite(b)


@pytest.mark.parametrize("shape", [(16, 16, 4), (1, 5, 2), (37, 3, 61), (9,), (20, 30)])
def test_background_smoothing_is_scipys_bit_for_bit(shape):
    """The numpy smoothing that spares small inputs scipy.ndimage's import gives the
    same float32 bits as gaussian_filter(mode="nearest"), so the normalisation (and the
    output) does not depend on which ran."""
    from scipy.ndimage import gaussian_filter

    from medsr.intensity import smooth_nearest

    a = (np.random.default_rng(5).standard_normal(shape) * 1e3).astype(np.float32)
    assert np.array_equal(smooth_nearest(a), gaussian_filter(a, sigma=1.0, mode="nearest"))
    example = np.asarray(nib.load(EXAMPLE).dataobj,
                         dtype=np.float32)
    assert np.array_equal(smooth_nearest(example[:60, :50]),
                          gaussian_filter(example[:60, :50], sigma=1.0, mode="nearest"))


# ---------------------------------------------------------------- device-resident path
@pytest.mark.parametrize("name,factors", [("thick-slice-x4", (1, 1, 4)),
                                          ("in-plane-x2", (2, 2, 1))])
@pytest.mark.parametrize("blend", ["crop", "gaussian"])
@pytest.mark.parametrize("tta", [False, True])
def test_device_resident_path_gives_the_host_paths_bits(name, factors, blend, tta):
    """The path --device cuda takes (input, plane fusion, flips and tiles on the device,
    one copy back) run on the CPU: the same float32 arithmetic, so the same bits as the
    host path, with small tiles so that tiling, halos and fusion all take part. (No GPU
    here: its speed and its fp16 output are not measured by this test.)"""
    net, info = model_sr.load(name, "cpu")
    p = model_sr.Pass(net, info, factors)
    runnable = p.runnable(torch.device("cpu"), True, False, tta)
    data = (np.random.default_rng(6).random((21, 18, 7)) * 1000).astype(np.int16)
    before = data.copy()
    kw = dict(device="cpu", tile=(9, 8), batch=3, channels_last=True, blend=blend,
              normalise=intensity.Normalisation(12.5, 980.25))
    with torch.inference_mode():
        host = model_sr.apply_2d(runnable, data, factors, on_device=False, **kw)
        device = model_sr.apply_2d(runnable, data, factors, on_device=True, **kw)
    assert device.dtype == np.float32 and np.array_equal(host, device)
    assert np.array_equal(data, before)
    if not tta and blend == "crop":  # normalising slab by slab = normalising first
        x = data.astype(np.float32)
        x -= 12.5
        x /= 980.25 - 12.5
        kw.pop("normalise")
        with torch.inference_mode():
            first = model_sr.apply_2d(runnable, x, factors, on_device=False, **kw)
        assert np.array_equal(first, host)
    f32 = data.astype(np.float32)
    with torch.inference_mode():  # float32 input on the device path: never written
        model_sr.apply_2d(runnable, f32, factors, on_device=True, **kw)
    assert np.array_equal(f32, data.astype(np.float32))


def test_count_below_counts_as_numpy_does_without_a_volume_sized_mask():
    a = np.random.default_rng(1).normal(size=(300, 200, 200)).astype(np.float32)
    assert intensity.count_below(a, 0) == int(np.count_nonzero(a < 0))
    assert intensity.count_below(a[:0], 0) == 0
    tracemalloc.start()
    intensity.count_below(a, 0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < a.nbytes / 8  # a boolean mask of the whole would be a quarter of it


def test_tiles_accumulate_where_asked():
    net = models.create("sp_vdsr", spatial_dims=2, scale=(1, 2), depth=2, features=4).eval()
    x = torch.rand(2, 1, 13, 11)
    with torch.inference_mode():
        a = tiling.tiled_forward(net, x, (1, 2), (5, 4), (4, 4), blend="gaussian")
        b = tiling.tiled_forward(net, x, (1, 2), (5, 4), (4, 4), blend="gaussian",
                                 out_on_device=True)
    assert a.device.type == b.device.type == "cpu" and torch.equal(a, b)


@pytest.mark.parametrize("backend", BACKENDS)
def test_4d_and_vector_images_read_through_the_stream(tmp_path, monkeypatch, backend):
    """Layouts the slab reader leaves to nibabel (a volume of a 4D series, channels) read
    through the same fast stream."""
    monkeypatch.setenv("MEDSR_GZIP", backend)
    data = np.random.default_rng(7).random((9, 8, 5, 3), dtype=np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "s.nii.gz")
    assert np.array_equal(io.read(tmp_path / "s.nii.gz", volume=1).data, data[..., 1])
    nib.save(nib.Nifti1Image(data[:, :, :, None, :], np.eye(4)), tmp_path / "v.nii.gz")
    assert np.array_equal(io.read(tmp_path / "v.nii.gz").data, data)
