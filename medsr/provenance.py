"""How an output was made: the JSON sidecar beside each NIfTI/MGH/TIFF output.

``medsr infer`` writes ``<output stem>.json`` beside ``<output stem>.nii.gz`` (or ``.tif``,
``.mgz``) unless ``--no-sidecar``; a DICOM series records its source in its own header
(DerivationDescription, SourceImageSequence) and gets none. The record (:func:`record`):

- ``GeneratedBy``: medsr, its version, the git commit when run from a checkout;
- ``command``: the command line; ``input``: path and SHA-256 (of every file, for a
  directory); ``output``: path, shape, spacing and the 4x4 affine (A @ S);
- ``factors``, ``method`` and ``model``: each network's name, weight file and SHA-256
  (the shipped files in ``medsr/weights`` or the checkpoint given);
- ``slice_profile`` for self-supervised runs: assumed or estimated, family, thickness,
  the kernel taps; ``device`` and ``precision``; ``seconds`` (wall time); ``notes``.

The sidecar follows the output's rules (:func:`medsr.io.common.check_output`: never an
input, an existing one only with ``--overwrite``; checked before any work by
:func:`check_sidecar`) and is written atomically. One exception: a medsr sidecar whose
output no longer exists is stale and is replaced (deleting an output and running again
needs no ``--overwrite``, as for the output itself).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from medsr import __version__, io, pretrained
from medsr.io.common import atomic_path, check_output
from medsr.io.video import is_video

SIDECAR_FORMATS = ("nifti", "mgh", "tiff")
_SUFFIXES = (".nii.gz", ".ome.tiff", ".ome.tif", ".nii", ".mgz", ".mgh", ".tiff", ".tif")


def sidecar_path(output: str | os.PathLike) -> Path | None:
    """``scan_sr.nii.gz`` -> ``scan_sr.json``; None for outputs that get no sidecar."""
    p = Path(output)
    low = p.name.lower()
    for suffix in _SUFFIXES:
        if low.endswith(suffix) and len(p.name) > len(suffix):
            return p.with_name(p.name[: -len(suffix)] + ".json")
    return None


def planned_output(input_path: str | os.PathLike, output: str | os.PathLike | None) -> Path:
    """Where ``medsr infer`` writes ``input_path`` (as :func:`medsr.pipeline.infer_file`)."""

    p = Path(input_path)
    if output is not None:
        return Path(output)
    if is_video(p):
        return p.with_name(f"{p.stem}_sr{p.suffix}")
    return io.default_output_path(p, io.detect_format(p))


def check_sidecar(output: str | os.PathLike, overwrite: bool,
                  inputs: Sequence[str | os.PathLike] = ()) -> bool:
    """Refuse the sidecar of ``output`` like an output (exists without ``overwrite``, an
    input ...) before any work; returns whether an existing one may be replaced. A
    medsr sidecar whose output is gone is stale (it describes nothing) and is replaced."""
    path = sidecar_path(output)
    if path is None:
        return overwrite
    stale = not os.path.lexists(output) and _is_medsr_sidecar(path)
    check_output(path, overwrite or stale, list(inputs))
    return overwrite or stale


def _is_medsr_sidecar(path: Path) -> bool:
    """``path`` is a JSON record medsr wrote (its GeneratedBy names medsr)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return any(g.get("Name") == "medsr" for g in data.get("GeneratedBy", []))
    except (OSError, ValueError, AttributeError, TypeError):
        return False


def sha256_of(path: str | os.PathLike) -> str | None:
    """SHA-256 of a file; of a directory, over its files' relative paths and hashes in
    sorted order; None when it cannot be read."""
    p = Path(path)
    try:
        if p.is_file():
            h = hashlib.sha256()
            with p.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            return h.hexdigest()
        if p.is_dir():
            h = hashlib.sha256()
            for f in sorted(q for q in p.rglob("*") if q.is_file()):
                h.update(f"{f.relative_to(p).as_posix()}\0{sha256_of(f)}\n".encode())
            return h.hexdigest()
    except OSError:
        return None
    return None


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the medsr checkout this runs from (None when installed from a wheel
    or git is missing); ``+dirty`` when it has uncommitted changes."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], text=True,
                              capture_output=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no", "--", "medsr"], text=True,
                               capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def generated_by(model: str | None = None) -> dict[str, Any]:
    """BIDS-style ``GeneratedBy`` entry for medsr (its version, commit, model)."""
    entry: dict[str, Any] = {"Name": "medsr", "Version": __version__}
    commit = git_commit()
    if commit:
        entry["Commit"] = commit
    if model:
        entry["Model"] = model
    return entry


def model_identity(model: str | None, given: str | os.PathLike | None = None
                   ) -> list[dict[str, Any]]:
    """Each network of ``model`` ("thick-slice-x4", "a + b", or a checkpoint) with its
    weight file and SHA-256; ``given`` is the --model argument (a path's full spelling)."""
    out: list[dict[str, Any]] = []
    for name in [m.strip() for m in str(model or "").split(" + ") if m.strip()]:
        shipped = pretrained.PRETRAINED.get(name)
        path: Path | None = None
        if shipped is not None and shipped.available:
            path = shipped.path
        else:
            for cand in (given, name):
                if cand is not None and Path(cand).is_file() and \
                        Path(cand).name == Path(name).name:
                    path = Path(cand)
                    break
        out.append({"name": name, "shipped": shipped is not None,
                    "weights": str(path) if path else None,
                    "sha256": sha256_of(path) if path else None})
    return out


def runtime(result: Any, device: str = "auto", precision: str = "auto") -> dict[str, str]:
    """The device and arithmetic the run used: the network's, or NumPy's for classical
    methods (a self-supervised run reports its own device)."""
    prov = getattr(result, "provenance", {}) or {}
    if prov.get("device"):
        return {"device": str(prov["device"]), "precision": prov.get("precision", "fp32")}
    if not getattr(result, "model", ""):
        return {"device": "cpu", "precision": "numpy float32/float64"}
    from medsr.devices import select_device
    from medsr.inference.accelerate import resolve_precision

    dev = select_device(device)
    return {"device": str(dev), "precision": resolve_precision(precision, dev)}


def record(result: Any, *, command: Sequence[str] | str | None = None,
           model: str | os.PathLike | None = None, device: str = "auto",
           precision: str = "auto") -> dict[str, Any]:
    """The provenance record of an :class:`~medsr.pipeline.InferResult` (see the module
    doc); ``model``, ``device``, ``precision`` as given to ``medsr infer``."""
    import numpy as np

    prov = dict(getattr(result, "provenance", {}) or {})
    s_in = np.asarray(result.spacing_in, dtype=float)
    s_out = np.asarray(result.spacing_out, dtype=float)
    factors = [float(f"{v:.10g}") for v in s_in / s_out]
    cmd = command if command is None or isinstance(command, str) else \
        " ".join(_quote(c) for c in command)
    models = model_identity(result.model, model)
    init = (prov.get("slice_profile") or {}).get("initial_weights")
    if init:
        models += [{**m, "role": "initial weights"} for m in model_identity(init)]
    return {
        "GeneratedBy": [generated_by(result.model or None)],
        "command": cmd,
        "input": {"path": str(result.input), "sha256": sha256_of(result.input)},
        "output": {"path": str(result.output), "shape": list(result.shape_out),
                   "spacing": [float(v) for v in s_out], "unit": result.unit,
                   "affine": prov.get("affine_out")},
        "input_grid": {"shape": list(result.shape_in), "spacing": [float(v) for v in s_in]},
        "factors": factors,
        "method": result.method,
        "model": models,
        "tta": bool(result.tta),
        "slice_profile": prov.get("slice_profile"),
        **runtime(result, device, precision),
        "seconds": round(float(result.seconds), 3),
        "notes": list(result.notes),
    }


def _quote(word: str) -> str:
    import shlex

    return shlex.quote(str(word))


def write_json(data: dict[str, Any], path: str | os.PathLike, *, overwrite: bool = False,
               inputs: Sequence[str | os.PathLike] = ()) -> Path:
    """``data`` as indented JSON at ``path``, atomically, under the output rules."""
    out = check_output(path, overwrite, list(inputs))
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=_plain) + "\n", encoding="utf-8")
    return out


def _plain(value: Any) -> Any:
    """NumPy scalars and arrays, paths: as JSON understands them."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def write_sidecar(result: Any, *, overwrite: bool = False,
                  command: Sequence[str] | str | None = None,
                  model: str | os.PathLike | None = None, device: str = "auto",
                  precision: str = "auto") -> Path | None:
    """Write the sidecar of ``result`` beside its output; None for DICOM, pictures,
    frames and video (they get none)."""
    path = sidecar_path(result.output)
    if path is None or Path(result.output).is_dir():
        return None
    data = record(result, command=command, model=model, device=device, precision=precision)
    return write_json(data, path, overwrite=overwrite, inputs=[result.input])


def run_with_sidecar(infer: Callable[..., Any], input_path: str | os.PathLike,
                     output: str | os.PathLike | None = None, *, sidecar: bool = True,
                     command: Sequence[str] | str | None = None, **options: Any) -> Any:
    """``infer(input_path, output, **options)`` (:func:`medsr.pipeline.infer_file`) with its
    sidecar: refused before any work when it may not be written, written after the
    output. ``command`` is the command line (words after ``medsr``, or one string)."""
    overwrite = replace = bool(options.get("overwrite", False))
    if sidecar:
        out = planned_output(input_path, output)
        check_output(out, overwrite, [input_path])  # the output's own refusal comes first
        replace = check_sidecar(out, overwrite, [input_path])
    result = infer(input_path, output, **options)
    if sidecar:
        words = command if command is None or isinstance(command, str) else \
            ["medsr", *command]
        write_sidecar(result, overwrite=replace, command=words, model=options.get("model"),
                      device=str(options.get("device", "auto")),
                      precision=str(options.get("precision", "auto")))
    return result


def selfsup_part(report: dict[str, Any], family: str, estimated_mm: bool,
                 estimate: str | None, auto_profile: bool) -> dict[str, Any]:
    """What a self-supervised run adds to the record, from its report: its device and the
    slice profile, given (``--slice-profile``), estimated (the confident estimate was
    used) or a mixture (of both families, not knowing which; family "mixture"), with its
    parameters (family, thickness and where it came from, the taps on the output grid:
    of the projection, the mixture's mean; the estimate's words)."""
    mixed = report.get("profile") == "mixture"
    source = "given" if not auto_profile else "mixture" if mixed else "estimated"
    profile = {
        "source": source,
        "family": report.get("profile") or family,
        "thickness_mm": report.get("slice_thickness_mm"),
        "thickness_source": "estimate" if estimated_mm else report.get("slice_thickness_source"),
        "kernel": report.get("slice_profile"),
        "estimate": estimate,
        "mixture": report.get("profile_mixture"),
        "initial_weights": report.get("init") if report.get("init") != "scratch" else None,
    }
    return {"slice_profile": profile, "device": report.get("device"), "precision": "fp32"}
