"""A hostile user's battery (issue 21, items 3 and 5): every option and header value is
validated where it enters.

Every case runs the real ``medsr`` CLI in its own process, forked from one driver that
imported medsr once (``forked_cli.py``), so hundreds of cases take seconds. A refused
case: exit 2, exactly one ``medsr: error:`` line, no traceback, nothing in the output
directory (no file, no ``.medsr-tmp-*``), no temporary beside the input, the input bytes
unchanged. An accepted case: exit 0, no traceback, no error line, an output written.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import robust_helpers as h
from forked_cli import ForkedCLI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


@pytest.fixture(scope="module")
def cli():
    with ForkedCLI() as runner:
        yield runner


def _check(proc, code: int, match: str | None, out_dir: Path, inputs: Path,
           before: dict) -> None:
    both = proc.stdout + proc.stderr
    assert "Traceback" not in both, both
    if code == 2:
        # a progress line (a slow network run on a loaded machine) is not an error line
        kept = "".join(ln + "\n" for ln in proc.stderr.splitlines()
                       if not ln.startswith("medsr: progress:"))
        h.assert_one_line_error(type(proc)(proc.returncode, proc.stdout, kept), match)
        assert h.entries(out_dir) == [], h.entries(out_dir)
    else:
        assert proc.returncode == code, f"exit {proc.returncode}\n{both}"
        assert not h.error_lines(proc) or all("error" not in ln for ln in h.error_lines(proc)), \
            proc.stderr
    assert h.stray_temporaries(inputs) == []
    assert h.fingerprint(inputs) == before


def _run(cli, tmp_path: Path, argv: list, code: int = 2, match: str | None = None,
         timeout: int = 60):
    """Run ``medsr ARGV`` (``{in}``/``{out}`` expanded) and check the contract."""
    ind, out = tmp_path / "in", tmp_path / "out"
    ind.mkdir(exist_ok=True)
    out.mkdir(exist_ok=True)
    before = h.fingerprint(ind)
    args = [str(a).replace("{in}", str(ind)).replace("{out}", str(out)) for a in argv]
    proc = cli.run_one(args, tmp_path, timeout=timeout)
    _check(proc, code, match, out, ind, before)
    if code == 0 and "-o" in args:
        assert h.entries(out), "no output written"
    return proc


def _volume(tmp_path: Path, name: str = "a.nii.gz", data=None) -> Path:
    (tmp_path / "in").mkdir(exist_ok=True)
    return h.nifti(tmp_path / "in" / name, h.small_volume() if data is None else data)


# ------------------------------------------------------------------- numeric options

OK, BAD = 0, 2
# (option, value, expected code, message pattern)
OPTION_CASES = [
    *[("--scale", v, BAD, m) for v, m in [
        ("1e308", "positive|from"), ("-inf", "positive"), ("inf", "positive"),
        ("1e-300", ">= 1"), ("1,,2", "comma list"), ("nan", "positive"),
        ("1e400", "positive"), ("-0", "positive"), ("2,2,2,2", "comma list"), ("", "comma"),
        (",", "comma"), ("2,nan,2", "positive"), ("0x10", "number"), ("1e7", "from"),
        ("2e5", "--max-output-voxels"), ("1.0000001e6", "from"), ("abc", "number")]],
    *[("--scale", v, OK, None) for v in ("2", "1", "1,1,2", "2x2x1", "1.5")],
    *[("--spacing", v, BAD, m) for v, m in [
        ("1e-20", "from"), ("nan,1,1", "positive"), ("inf", "positive"), ("0", "positive"),
        ("-1", "positive"), ("1e30", "from"), ("1,,1", "comma"), ("1e-5", "--max-output"),
        ("1e400", "positive"), ("5", ">= 1")]],
    *[("--spacing", v, OK, None) for v in ("0.5", "1,1,1")],
    *[("--input-spacing", v, BAD, m) for v in
      ("1e30", "0", "-4", "nan", "inf", "1e-9", "1,nan", "1,,1", "1,1,1,1", "2e6")
      for m in [None]],
    *[("--input-spacing", v, OK, None) for v in ("2", "1,1,2", "0.5,0.5")],
    *[("--max-memory", v, BAD, m) for v, m in [
        ("nan", "finite"), ("inf", "finite"), ("-inf", "finite"), ("-1", "positive"),
        ("0", "positive"), ("-0", "positive"), ("1e400", "finite"), ("1e-9", "from"),
        ("1e7", "from"), ("lots", "number")]],
    *[("--max-memory", v, OK, None) for v in ("0.5", "2")],
    *[("--dtype", v, BAD, "unsupported dtype") for v in
      ("object", "complex128", "complex64", "str", "bool", "U8", "datetime64", "void",
       "float128", "nonsense", "", "i2,i2", "f8[3]", "O")],
    *[("--dtype", v, OK, None) for v in ("int16", "float32", "uint8", "f8", "i4")],
    *[("--seed", v, BAD, "whole number") for v in
      ("-1", "2**40", "18446744073709551616", "1.5", "nan", "x", "4294967296")],
    ("--seed", "4294967295", BAD, "belongs to --self-supervised"),
    *[("--volume", v, BAD, m) for v, m in [("-1", "whole number"), ("x", "whole number"),
                                          ("1", "4D inputs only"), ("1e3", "whole number")]],
    *[("--tile", v, BAD, "positive|whole") for v in ("0", "-4", "x", "1.5")],
    *[("--batch", v, BAD, "positive") for v in ("0", "-1", "inf")],
    *[("--steps", v, BAD, "positive") for v in ("0", "-5")],
    *[("--max-output-voxels", v, BAD, m) for v, m in [
        ("0", "positive"), ("-1", "positive"), ("1e9", "positive"),
        ("100", "--max-output-voxels")]],
    *[("--budget", v, BAD, "budget|duration") for v in ("inf", "nan", "-5m", "0", "5y", "1e400")],
    *[("--slice-thickness", v, BAD, None) for v in ("nan", "inf", "0", "-1", "1e30")],
    *[("--method", v, BAD, "invalid choice") for v in ("magic", "", "CUBIC")],
    *[("--device", v, BAD, "invalid choice") for v in ("tpu", "cuda:99")],
    *[("--precision", v, BAD, "invalid choice") for v in ("fp8", "")],
    *[("--model", v, BAD, None) for v in ("bogus", "no/such/file.safetensors", "{in}")],
]


@pytest.mark.parametrize("option,value,code,match", OPTION_CASES,
                         ids=[f"{o} {v!r}" for o, v, _, _ in OPTION_CASES])
def test_infer_option(cli, tmp_path, option, value, code, match):
    _volume(tmp_path)
    method = [] if option in ("--method", "--model") else ["--method", "cubic"]
    scale = [] if option in ("--scale", "--spacing") else ["--scale", "1,1,2"]
    _run(cli, tmp_path, ["infer", "{in}/a.nii.gz", "-o", "{out}/o.nii.gz", *method, *scale,
                         f"{option}={value}"], code, match)


@settings(max_examples=3, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["--scale", "--spacing", "--input-spacing",
                                           "--max-memory"]),
                          st.floats(allow_nan=True, allow_infinity=True)),
                min_size=8, max_size=8))
def test_numeric_options_never_trace(cli, tmp_path_factory, values):
    """Any float for a numeric option: exit 0 with an output, or one error line, exit 2;
    one batch of forked processes per example."""
    from forked_cli import Case

    d = tmp_path_factory.mktemp("num")
    src = h.nifti(d / "a.nii.gz", h.small_volume())
    before = h.fingerprint(src)
    cases = []
    for i, (opt, v) in enumerate(values):
        (d / f"o{i}").mkdir()
        extra = [] if opt in ("--scale", "--spacing") else ["--scale", "1,1,2"]
        cases.append(Case(["infer", "a.nii.gz", "-o", f"o{i}/o.nii.gz", "--method", "linear",
                           *extra, f"{opt}={v!r}", "--max-output-voxels", "100000"], str(d)))
    for i, (case, proc) in enumerate(zip(cases, cli.run(cases))):
        both = proc.stdout + proc.stderr
        assert "Traceback" not in both, (case.argv, both)
        if proc.returncode == 0:
            assert (d / f"o{i}" / "o.nii.gz").is_file()
        else:
            h.assert_one_line_error(proc)
            assert h.entries(d / f"o{i}") == []
    assert h.fingerprint(src) == before and h.stray_temporaries(d) == []


# ------------------------------------------------------------------- NIfTI headers

def _set(fmt: str, offset: int, *values):
    def edit(raw: bytearray) -> None:
        struct.pack_into("<" + fmt, raw, offset, *values)
    return edit


NAN, INF = float("nan"), float("inf")
HEADER_CASES = [
    *[(f"pixdim {v}", h.set_pixdim([1.0, v, 1.0, 3.0]), BAD, "voxel size") for v in
      (1e30, 0.0, -1.0, NAN, INF, -INF, 1e-30, 1e7, 3e38)],
    ("pixdim 1e-5 ok", h.set_pixdim([1.0, 1e-5, 1e-5, 1e-5]), OK, None),
    *[(f"dims {d}", h.set_dims(d), BAD, None) for d in
      ([3, 0, 8, 4], [3, 8, -8, 4], [3, 30000, 30000, 30000], [0, 8, 8, 4], [9, 8, 8, 4],
       [3, 8, 8, 400], [3, 32767, 32767, 8])],
    *[(f"scl_slope {v}", _set("f", 112, v), BAD, "scl_slope") for v in (INF, -INF)],
    *[(f"scl_slope {v} means none", _set("f", 112, v), OK, None) for v in (NAN, 0.0, 1.0)],
    ("scl_inter inf", _set("ff", 112, 1.0, INF), BAD, "scl_inter"),
    ("scl_inter nan", _set("ff", 112, 2.0, NAN), BAD, "scl"),
    ("scl 2,1 ok", _set("ff", 112, 2.0, 1.0), OK, None),
    *[(f"datatype {v}", _set("h", 70, v), BAD, None) for v in (9999, 0, -1, 2048, 16, 64)],
    ("datatype complex64", _set("hh", 70, 32, 64), BAD, "complex"),
    ("vox_offset huge", _set("f", 108, 1e9), BAD, None),
    ("vox_offset nan", _set("f", 108, NAN), BAD, None),
    ("magic bogus", _set("4s", 344, b"xyz\x00"), BAD, None),
    ("sizeof_hdr bogus", _set("i", 0, 1234), BAD, None),
    ("sform 1e30", _set("4f", 280, 1e30, 0.0, 0.0, 0.0), BAD, "voxel size|affine"),
    ("sform nan", _set("4f", 280, NAN, 0.0, 0.0, 0.0), BAD, None),
    ("quatern inf", _set("f", 256, INF), BAD, None),
    ("qform only, sform 0", _set("h", 254, 0), OK, None),
]


@pytest.mark.parametrize("name,edit,code,match", HEADER_CASES,
                         ids=[c[0] for c in HEADER_CASES])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti_header(cli, tmp_path, name, edit, code, match, suffix):
    (tmp_path / "in").mkdir()
    src = h.nifti(tmp_path / "src.nii", h.small_volume())
    h.raw_header_edit(src, tmp_path / "in" / f"x{suffix}", edit)
    _run(cli, tmp_path, ["infer", f"{{in}}/x{suffix}", "-o", "{out}/o.nii.gz",
                         *h.X2_CUBIC], code, match)


def test_complex_nifti_is_refused(cli, tmp_path):
    data = (h.small_volume() + 1j * h.small_volume(1)).astype(np.complex64)
    _volume(tmp_path, "c.nii.gz", data)
    _run(cli, tmp_path, ["infer", "{in}/c.nii.gz", "-o", "{out}/o.nii.gz", *h.X2_CUBIC],
         BAD, "complex")


# ------------------------------------------------------------------- broken files

def _png(width: int, height: int, body: bytes = b"\x00" * 64) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(body))
            + chunk(b"IEND", b""))


def _real_picture(fmt: str) -> bytes:
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (24, 20), np.uint8)).save(
        buf, format=fmt)
    return buf.getvalue()


def _jpeg_bomb() -> bytes:
    raw = bytearray(_real_picture("JPEG"))
    i = raw.index(b"\xff\xc0")  # SOF0: length(2) precision(1) height(2) width(2)
    struct.pack_into(">HH", raw, i + 5, 60000, 60000)
    return bytes(raw)


def _imagej_tiff(spacing) -> bytes:
    from io import BytesIO

    import tifffile

    buf = BytesIO()
    tifffile.imwrite(buf, np.zeros((4, 8, 8), np.uint16) + 7, imagej=True,
                     metadata={"spacing": spacing, "unit": "micron", "axes": "ZYX"})
    return buf.getvalue()


def _nifti_bytes(gz: bool = True) -> bytes:
    import nibabel as nib

    img = nib.Nifti1Image(h.small_volume(), np.diag([1.0, 1.0, 3.0, 1.0]))
    raw = img.to_bytes()
    return gzip.compress(raw) if gz else raw


def _corrupt_gzip() -> bytes:
    raw = bytearray(_nifti_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 16] = b"\xff" * 16
    return bytes(raw)


def _complex_tiff() -> bytes:
    from io import BytesIO

    import tifffile

    buf = BytesIO()
    tifffile.imwrite(buf, np.ones((4, 8, 8), np.complex64), photometric="minisblack")
    return buf.getvalue()


# (name, file name, bytes maker or None for a directory, extra args, code, match)
FILE_CASES = [
    ("empty .nii", "x.nii", lambda: b"", [], BAD, None),
    ("empty .nii.gz", "x.nii.gz", lambda: b"", [], BAD, None),
    ("empty .tif", "x.tif", lambda: b"", [], BAD, None),
    ("empty .png", "x.png", lambda: b"", [], BAD, None),
    ("empty .jpg", "x.jpg", lambda: b"", [], BAD, None),
    ("empty .mgz", "x.mgz", lambda: b"", [], BAD, None),
    ("truncated .nii", "x.nii", lambda: _nifti_bytes(False)[:400], [], BAD, None),
    ("truncated .nii.gz", "x.nii.gz", lambda: _nifti_bytes()[:200], [], BAD, None),
    ("corrupt gzip", "x.nii.gz", _corrupt_gzip, [], BAD, None),
    ("gzip of nothing", "x.nii.gz", lambda: gzip.compress(b""), [], BAD, None),
    ("gzip of garbage", "x.nii.gz", lambda: gzip.compress(b"\x01" * 4000), [], BAD, None),
    ("plain .nii named .nii.gz", "x.nii.gz", lambda: _nifti_bytes(False), [], BAD, "gzip"),
    ("tif holding PNG", "x.tif", lambda: _real_picture("PNG"), [], BAD, "holds PNG"),
    ("png holding TIFF", "x.png", lambda: _imagej_tiff(1.0), [], BAD, "holds TIFF"),
    ("nii holding PNG", "x.nii", lambda: _real_picture("PNG"), [], BAD, "holds PNG"),
    ("tif holding JPEG", "x.tiff", lambda: _real_picture("JPEG"), [], BAD, "holds PNG"),
    ("jpg holding PNG", "x.jpg", lambda: _real_picture("PNG"), [], BAD, "holds PNG"),
    ("PNG bomb 60000^2", "x.png", lambda: _png(60000, 60000), [], BAD, "--max-output-voxels"),
    ("PNG 2^31 wide", "x.png", lambda: _png(2**31 - 1, 2), [], BAD, None),
    ("PNG zero size", "x.png", lambda: _png(0, 0), [], BAD, None),
    ("PNG over a low limit", "x.png", lambda: _real_picture("PNG"),
     ["--max-output-voxels", "100"], BAD, "--max-output-voxels"),
    ("PNG bad IDAT", "x.png", lambda: _png(64, 64, b"\x07" * 10), [], BAD, None),
    ("JPEG bomb 60000^2", "x.jpg", _jpeg_bomb, [], BAD, "--max-output-voxels"),
    ("truncated PNG", "x.png", lambda: _real_picture("PNG")[:100], [], BAD, None),
    ("truncated JPEG", "x.jpg", lambda: _real_picture("JPEG")[:300], [], BAD, None),
    ("truncated BMP", "x.bmp", lambda: _real_picture("BMP")[:100], [], BAD, None),
    ("random .bmp", "x.bmp", lambda: b"BM" + os.urandom(200), [], BAD, None),
    *[(f"ImageJ spacing {v}", "x.tif", (lambda v=v: _imagej_tiff(v)), [], BAD, "voxel size")
      for v in (-4.0, NAN, INF, 0.0 + 1e-30, 1e30)],
    ("ImageJ spacing 0 means 1", "x.tif", lambda: _imagej_tiff(0.0), [], OK, None),
    ("ImageJ spacing 2 ok", "x.tif", lambda: _imagej_tiff(2.0), [], OK, None),
    ("truncated TIFF", "x.tif", lambda: _imagej_tiff(1.0)[:300], [], BAD, None),
    ("TIFF header only", "x.tif", lambda: b"II*\x00\x08\x00\x00\x00", [], BAD, None),
    ("TIFF bad IFD offset", "x.tif", lambda: b"II*\x00\xff\xff\xff\x7f" + b"\x00" * 64, [],
     BAD, None),
    ("complex TIFF", "x.tif", _complex_tiff, [], BAD, "complex"),
    ("TIFF over a low limit", "x.tif", lambda: _imagej_tiff(1.0),
     ["--max-output-voxels", "100"], BAD, "--max-output-voxels"),
    ("NIfTI over a low limit", "x.nii", lambda: _nifti_bytes(False),
     ["--max-output-voxels", "100"], BAD, "--max-output-voxels"),
    ("random bytes no suffix", "scan", lambda: os.urandom(1000), [], BAD, "unknown image"),
    ("directory named .nii.gz (empty)", "x.nii.gz", None, [], BAD, "empty"),
]


@pytest.mark.parametrize("name,fname,make,extra,code,match", FILE_CASES,
                         ids=[c[0] for c in FILE_CASES])
def test_broken_file(cli, tmp_path, name, fname, make, extra, code, match):
    (tmp_path / "in").mkdir()
    target = tmp_path / "in" / fname
    if make is None:
        target.mkdir()
    else:
        target.write_bytes(make())
    out = "{out}/o.nii.gz" if fname.endswith(("nii", "gz", "scan", "mgz")) else \
        "{out}/o.tif"
    _run(cli, tmp_path, ["infer", f"{{in}}/{fname}", "-o", out, "--method", "cubic",
                         "--scale", "1,1,2", *extra], code, match)


def test_directory_named_nifti_with_a_text_file(cli, tmp_path):
    d = tmp_path / "in" / "x.nii.gz"
    d.mkdir(parents=True)
    (d / "notes.txt").write_text("hello")
    _run(cli, tmp_path, ["infer", "{in}/x.nii.gz", "-o", "{out}/o.nii.gz", *h.X2_CUBIC],
         BAD, "neither DICOM")


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_non_regular_input_is_refused(cli, tmp_path, kind):
    (tmp_path / "in").mkdir()
    if kind == "fifo":
        src = tmp_path / "in" / "x.nii.gz"
        os.mkfifo(src)
    else:
        src = Path("/dev/zero")
    (tmp_path / "out").mkdir()
    proc = cli.run_one(["infer", src, "-o", tmp_path / "out" / "o.nii.gz", *h.X2_CUBIC],
                       tmp_path, timeout=20)
    h.assert_one_line_error(proc, "not a regular file")
    assert h.entries(tmp_path / "out") == []


def test_corrupt_jpeg_dicom_is_corrupt_not_missing_decoder(cli, tmp_path):
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.encaps import encapsulate, generate_fragmented_frames

    ds = pydicom.dcmread(get_testdata_file("JPEG-lossy.dcm"))
    frame = bytearray(b"".join(next(generate_fragmented_frames(ds.PixelData))))
    frame[len(frame) // 3: len(frame) // 3 + 200] = b"\x00" * 200
    ds.PixelData = encapsulate([bytes(frame[: len(frame) // 2])])
    (tmp_path / "in" / "series").mkdir(parents=True)
    ds.save_as(tmp_path / "in" / "series" / "x.dcm")
    proc = _run(cli, tmp_path, ["infer", "{in}/series", "-o", "{out}/sr", *h.X2_CUBIC], BAD,
                "corrupt")
    assert "pip install" not in proc.stderr


# ------------------------------------------------------------------- checkpoints



def _save_ckpt(path: Path, state: dict, info) -> None:
    from safetensors.numpy import save_file

    meta = info if isinstance(info, str) else json.dumps(info)
    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(path),
              metadata={"medsr": meta})


def _info(**changes):
    def change(info: dict) -> dict:
        out = json.loads(json.dumps(info))
        for k, v in changes.items():
            if k.startswith("hp_"):
                out["hparams"][k[3:]] = v
            elif v is ...:
                out.pop(k)
            else:
                out[k] = v
        return out
    return change


def _first_weight(fn):
    def change(state: dict) -> dict:
        k = next(iter(state))
        return {**state, k: fn(state[k])}
    return change


# (name, info change, state change, code, match)
CKPT_CASES = [
    ("valid", None, None, OK, None),
    ("features 1e9", _info(hp_channels=10**9), None, BAD, "out of range"),
    ("channels 4000", _info(hp_channels=[4000, 4000]), None, BAD, "parameters"),
    ("features -1", _info(hp_channels=-1), None, BAD, "out of range"),
    ("features nan", _info(hp_channels=NAN), None, BAD, "sane"),
    ("features str", _info(hp_channels="many"), None, BAD, None),
    ("features dict", _info(hp_channels={"a": 1}), None, BAD, "unexpected"),
    ("unknown hparam", _info(hp_bogus=3), None, BAD, "no hyperparameter"),
    ("hparams list", _info(hparams=[1, 2]), None, BAD, "mapping"),
    ("architecture bogus", _info(architecture="resnet9000"), None, BAD, "unknown network"),
    ("architecture number", _info(architecture=7), None, BAD, "architecture"),
    ("scale 1000", _info(scale=[1000, 1000]), None, BAD, "scale"),
    ("scale 0", _info(scale=[0, 2]), None, BAD, "scale"),
    ("scale float", _info(scale=[2.5, 2]), None, BAD, "scale"),
    ("spatial_dims 7", _info(spatial_dims=7), None, BAD, "spatial_dims"),
    ("in_channels 1e6", _info(in_channels=10**6), None, BAD, "in_channels"),
    ("out_channels 0", _info(out_channels=0), None, BAD, "out_channels"),
    ("no architecture", _info(architecture=...), None, BAD, "lacks"),
    ("metadata not JSON", lambda i: "{not json", None, BAD, "corrupted medsr metadata"),
    ("wrong format", _info(format="other-1"), None, BAD, "format"),
    ("NaN weights", None, lambda s: {k: v * NAN for k, v in s.items()}, BAD, "NaN"),
    ("one Inf weight", None, _first_weight(lambda v: np.where(v == v.flat[0], INF, v)), BAD,
     "NaN or infinite"),
    ("missing tensor", None, lambda s: dict(list(s.items())[1:]), BAD, "do not fit|parameters"),
    ("extra tensor", None, lambda s: {**s, "extra.weight": np.ones(3, np.float32)}, BAD,
     "do not fit"),
    ("wrong shape", None, _first_weight(lambda v: np.ones((2, 2), np.float32)), BAD, None),
    ("overflowing output", None, lambda s: {k: v * 1e25 for k, v in s.items()}, BAD,
     "NaN or infinite"),
]


@pytest.mark.parametrize("name,info_change,state_change,code,match", CKPT_CASES,
                         ids=[c[0] for c in CKPT_CASES])
def test_checkpoint(cli, tmp_path, checkpoint_parts, name, info_change, state_change, code,
                    match):
    state, info = checkpoint_parts
    if info_change is not None:
        info = info_change(info)
    if state_change is not None:
        with np.errstate(all="ignore"):
            state = state_change(state)
    _volume(tmp_path)
    _save_ckpt(tmp_path / "in" / "m.safetensors", state, info)
    _run(cli, tmp_path, ["infer", "{in}/a.nii.gz", "-o", "{out}/o.nii.gz", "--model",
                         "{in}/m.safetensors", "--scale", "2,2,1"], code, match)


@pytest.mark.parametrize("cut", [0, 7, 100, -10])
def test_truncated_checkpoint(cli, tmp_path, checkpoint_parts, cut):
    _volume(tmp_path)
    _save_ckpt(tmp_path / "m.safetensors", *checkpoint_parts)
    raw = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "in" / "m.safetensors").write_bytes(raw[:cut])
    _run(cli, tmp_path, ["infer", "{in}/a.nii.gz", "-o", "{out}/o.nii.gz", "--model",
                         "{in}/m.safetensors", "--scale", "2,2,1"], BAD)


# ------------------------------------------------------------------- medsr models

MODELS_CASES = [
    (["--preset", "bogus"], "no network has a preset"),
    (["--preset", ""], "no network has a preset"),
    (["--scale", "0"], "whole number"),
    (["--scale", "-2"], "whole number"),
    (["--scale", "1000000"], "whole number"),
    (["--scale", "2.5"], "whole number"),
    (["--scale", "nan"], "whole number"),
    (["--spatial-dims", "4"], "invalid choice"),
    (["--spatial-dims", "x"], "invalid"),
    (["--bogus"], "unrecognized"),
]


@pytest.mark.parametrize("args,match", MODELS_CASES, ids=[" ".join(a) for a, _ in MODELS_CASES])
def test_models_options(cli, tmp_path, args, match):
    _run(cli, tmp_path, ["models", *args], BAD, match)


def test_models_pretrained_listing(cli, tmp_path):
    proc = _run(cli, tmp_path, ["models", "--pretrained"], OK)
    assert "thick_slice_x2" in proc.stdout


# ------------------------------------------------------------------- medsr eval

def _eval_inputs(tmp_path: Path) -> None:
    _volume(tmp_path, "ref.nii.gz", h.small_volume(0, (12, 12, 6)))
    _volume(tmp_path, "test.nii.gz", h.small_volume(1, (12, 12, 6)))
    _volume(tmp_path, "small.nii.gz", h.small_volume(1, (6, 6, 3)))
    _volume(tmp_path, "mask.nii.gz", np.ones((12, 12, 6), np.uint8))
    _volume(tmp_path, "badmask.nii.gz", np.ones((5, 5, 5), np.uint8))
    (tmp_path / "in" / "junk.nii.gz").write_bytes(b"junk")


REF, TST = ["--reference", "{in}/ref.nii.gz"], ["--test", "{in}/test.nii.gz"]
EVAL_CASES = [
    ([*REF, *TST, "--crop", "1000"], BAD, "too large"),
    ([*REF, *TST, "--crop", "6"], BAD, "too large"),
    ([*REF, *TST, "--crop", "-1"], BAD, "whole number"),
    ([*REF, *TST, "--crop", "nan"], BAD, "whole number"),
    ([*REF, *TST, "--crop", "1.5"], BAD, "whole number"),
    ([*REF, *TST, "--crop", "99999999999999999999"], BAD, "whole number"),
    ([*REF, *TST, "--crop", "5"], OK, None),
    ([*REF, *TST, "--crop", "2"], OK, None),
    ([*REF, "--test", "{in}/small.nii.gz"], BAD, "shapes differ"),
    ([*REF, "--test", "{in}/junk.nii.gz"], BAD, None),
    ([*REF, "--test", "{in}/missing.nii.gz"], BAD, "does not exist"),
    ([*REF, *TST, "--mask", "{in}/badmask.nii.gz"], BAD, "shape"),
    ([*REF, *TST, "--mask", "{in}/junk.nii.gz"], BAD, None),
    ([*REF, *TST, "--mask", "{in}/mask.nii.gz", "{in}/mask.nii.gz", "{in}/mask.nii.gz"], BAD,
     "one mask"),
    ([*REF, *TST, "--mask", "{in}/mask.nii.gz", "--auto-mask"], BAD, "not allowed"),
    ([*REF, *TST, "--mask", "{in}/mask.nii.gz"], OK, None),
    ([*REF, "{in}/ref.nii.gz", *TST], BAD, "paired"),
    ([*REF], BAD, "--test"),
    ([*REF, *TST, "--ssim-axis", "3"], BAD, "invalid choice"),
    ([*REF, *TST, "--ssim-mode", "4d"], BAD, "invalid choice"),
]


@pytest.mark.parametrize("args,code,match", EVAL_CASES,
                         ids=[" ".join(a).replace("{in}/", "") for a, _, _ in EVAL_CASES])
def test_eval_options(cli, tmp_path, args, code, match):
    _eval_inputs(tmp_path)
    _run(cli, tmp_path, ["eval", *args], code, match)


# ------------------------------------------------------------------- the runner itself

def test_forked_runner_reports_tracebacks_and_exit_codes(cli, tmp_path):
    """The runner shows what a real interpreter would: an uncaught exception's traceback
    with exit 1 (here a bad call of main), argparse's exit code, a hung case killed."""
    res = cli.run_one(["--version"], tmp_path)
    assert res.returncode == 0 and "medsr" in res.stdout
    res = cli.run_one(["infer", "--scale"], tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    shutil.rmtree(tmp_path)
    tmp_path.mkdir()
    res = cli.run_one(["models", "--pretrained"], tmp_path / "gone")  # chdir fails
    assert res.returncode == 1 and "Traceback" in res.stderr
