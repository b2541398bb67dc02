"""``medsr bids``: a BIDS App that super-resolves the anatomical scans of a BIDS dataset
into a BIDS-derivatives dataset (docs/pipelines.md).

``participant`` level: the layout is parsed by pybids (:func:`find_inputs`); each scan
``sub-01/[ses-x/]anat/sub-01[_ses-x]..._T1w.nii.gz`` is written as
``OUTPUT_DIR/sub-01/[ses-x/]anat/sub-01[_ses-x]..._res-<label>_T1w.nii.gz`` by
:func:`medsr.pipeline.infer_file` (the ``res`` entity: same space, another sampling grid;
:func:`res_label`), with a JSON sidecar (BIDS ``Sources``, ``Resolution`` and medsr's
provenance record, :mod:`medsr.provenance`), and ``dataset_description.json``
(``DatasetType: derivative``, ``GeneratedBy`` with version and model). A scan whose
output and sidecar exist is skipped; a scan that fails is reported and the others go on.

``group`` level: ``OUTPUT_DIR/medsr_summary.csv``, one row per scan the participant level
would process (ok, or missing), from the sidecars (listed in ``.bidsignore``).
"""

from __future__ import annotations

import contextlib
import csv
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsr import __version__
from medsr.errors import UserError, one_line
from medsr.extras import missing
from medsr.io.common import atomic_path
from medsr.pipeline import infer_file
from medsr.provenance import generated_by, record, write_json

DEFAULT_SUFFIXES = ("T1w", "T2w", "FLAIR")
BIDS_VERSION = "1.10.0"
SUMMARY = "medsr_summary.csv"
README = """# medsr super-resolution derivatives

Anatomical scans of the raw dataset (`DatasetLinks.raw`) super-resolved by medsr
(`medsr bids`). Each `*_res-<label>_<suffix>.nii.gz` has a JSON sidecar: its `Sources`,
the meaning of its `res` label (`Resolution`), and how it was made (medsr version and
commit, command, input SHA-256, output grid, method, model and weights SHA-256).
`medsr_summary.csv` (group level) lists every scan.
"""
SUMMARY_FIELDS = ("subject", "session", "input", "output", "status", "error", "seconds",
                  "shape_in", "shape_out", "spacing_in", "spacing_out", "method", "model",
                  "model_sha256")


def require_pybids() -> None:
    """One line when the ``[bids]`` extra is missing."""
    if missing(["bids"]):
        raise UserError("medsr bids needs the BIDS extras (pybids): pip install 'medsr[bids]'")


@dataclass
class BidsRun:
    """What ``medsr bids`` was asked to do."""

    bids_dir: Path
    output_dir: Path
    participants: list[str] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)
    suffixes: Sequence[str] = DEFAULT_SUFFIXES
    scale: float | list[float] | None = None
    spacing: float | list[float] | None = None
    model: str | None = None
    method: str = "auto"
    device: str = "auto"
    label: str | None = None
    overwrite: bool = False
    command: list[str] | None = None
    options: dict[str, Any] = field(default_factory=dict)  # more infer_file options

    @property
    def res(self) -> str:
        return self.label or res_label(self.scale, self.spacing)


def res_label(scale: Any = None, spacing: Any = None) -> str:
    """The ``res-<label>`` of the outputs: ``1mm``/``0p5mm`` (--spacing), ``x4`` (--scale),
    ``1x1x2mm`` / ``x1x1x4`` per axis, ``sr`` (the default plan, which depends on each
    scan). BIDS labels are alphanumeric: a decimal point becomes ``p``."""
    def num(v: float) -> str:
        return f"{float(v):g}".replace(".", "p").replace("-", "")

    if spacing is not None:
        values = [spacing] if not isinstance(spacing, (list, tuple)) else list(spacing)
        return "x".join(num(v) for v in values) + "mm"
    if scale is not None:
        values = [scale] if not isinstance(scale, (list, tuple)) else list(scale)
        return "x" + "x".join(num(v) for v in values)
    return "sr"


def strip_prefix(values: Sequence[str], prefix: str) -> list[str]:
    """'sub-01' and '01' alike -> '01'."""
    return [v[len(prefix):] if v.startswith(prefix) else v for v in values]


def check_dirs(run: BidsRun) -> None:
    """OUTPUT_DIR is neither BIDS_DIR, nor inside it (except under its derivatives/),
    nor a folder holding it."""
    b, o = run.bids_dir.resolve(), run.output_dir.resolve()
    if not b.is_dir():
        raise UserError(f"BIDS_DIR {run.bids_dir} is not a directory")
    if o == b or o in b.parents:
        raise UserError(f"OUTPUT_DIR {run.output_dir} would hold the raw dataset; use "
                        "e.g. BIDS_DIR/derivatives/medsr")
    if b in o.parents and o.relative_to(b).parts[0] != "derivatives":
        raise UserError(f"OUTPUT_DIR {run.output_dir} lies inside the raw dataset; use "
                        "BIDS_DIR/derivatives/medsr or a folder outside it")
    if o.exists() and not o.is_dir():
        raise UserError(f"OUTPUT_DIR {run.output_dir} is not a directory")


def layout_of(bids_dir: Path) -> Any:
    """The pybids layout of ``bids_dir`` (derivatives not indexed); one line when it is
    not a BIDS dataset."""
    require_pybids()
    import bids

    if not (bids_dir / "dataset_description.json").is_file():
        raise UserError(f"{bids_dir} is not a BIDS dataset (no dataset_description.json)")
    try:
        return bids.BIDSLayout(str(bids_dir), validate=True, derivatives=False)
    except Exception as exc:  # pybids raises its own errors for unreadable datasets
        raise UserError(f"{bids_dir}: pybids cannot read the dataset "
                        f"({type(exc).__name__}: {exc})") from exc


def find_inputs(layout: Any, run: BidsRun) -> list[Any]:
    """The anatomical NIfTI files of the chosen participants, sessions and suffixes."""
    subjects = set(layout.get_subjects())
    unknown = [p for p in run.participants if p not in subjects]
    if unknown:
        raise UserError(f"participant(s) {', '.join(unknown)} not in {run.bids_dir} (it has "
                        f"{', '.join(sorted(subjects)) or 'none'})")
    query: dict[str, Any] = {"datatype": "anat", "suffix": list(run.suffixes),
                             "extension": [".nii", ".nii.gz"], "return_type": "object"}
    if run.participants:
        query["subject"] = run.participants
    if run.sessions:
        query["session"] = run.sessions
    return sorted(layout.get(**query), key=lambda f: f.path)


def output_path(src: Any, run: BidsRun) -> Path:
    """``sub-01/anat/sub-01_run-2_T1w.nii.gz`` -> ``OUT/sub-01/anat/sub-01_run-2_res-<label>
    _T1w.nii.gz``: the input's entities (in BIDS order), ``res`` added after them."""
    path = Path(src.path)
    rel = path.relative_to(run.bids_dir.resolve()) if path.is_absolute() else path
    ext = ".nii.gz" if path.name.endswith(".nii.gz") else ".nii"
    stem = path.name[: -len(ext)]
    head, _, suffix = stem.rpartition("_")
    return run.output_dir / rel.parent / f"{head}_res-{run.res}_{suffix}.nii.gz"


def _bids_uri(src: Any, run: BidsRun) -> str:
    rel = Path(src.path).resolve().relative_to(run.bids_dir.resolve())
    return f"bids:raw:{rel.as_posix()}"


def write_dataset_description(run: BidsRun) -> Path:
    """``OUTPUT_DIR/dataset_description.json`` (rewritten atomically each run; one written
    by another tool is refused) and ``.bidsignore`` for the summary."""
    out = run.output_dir
    desc = out / "dataset_description.json"
    if desc.exists():
        import json

        try:
            old = json.loads(desc.read_text(encoding="utf-8"))
            ours = any(g.get("Name") == "medsr" for g in old.get("GeneratedBy", []))
        except (OSError, ValueError, AttributeError, TypeError):
            ours = False
        if not ours:
            raise UserError(f"{desc} was not written by medsr; give medsr its own "
                            "OUTPUT_DIR (e.g. BIDS_DIR/derivatives/medsr)")
    model = run.model or "auto (the shipped network that fits each scan)"
    data = {
        "Name": "medsr super-resolution",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{**generated_by(str(model)),
                         "Description": f"medsr bids, res-{run.res}, method {run.method}"}],
        "DatasetLinks": {"raw": Path(os.path.relpath(run.bids_dir.resolve(),
                                                      out.resolve())).as_posix()},
        "SourceDatasets": [{"URL": run.bids_dir.resolve().as_uri()}],
    }
    write_json(data, desc, overwrite=True)
    for name, text in ((".bidsignore", f"{SUMMARY}\n"), ("README.md", README)):
        if not (out / name).exists():
            with atomic_path(out / name) as tmp:
                tmp.write_text(text, encoding="utf-8")
    return desc


def _resolution(run: BidsRun) -> dict[str, str]:
    if run.spacing is not None:
        what = f"resampled to {run.spacing} mm voxels"
    elif run.scale is not None:
        what = f"upsampled by {run.scale} per axis"
    else:
        what = "upsampled to isotropic voxels at the finest input spacing"
    return {run.res: f"super-resolved by medsr {__version__}: {what}, same field of view "
                     "(A @ S, docs/geometry.md)"}


def _raw_metadata(src: Any) -> dict[str, Any]:
    """The raw file's sidecar metadata (BIDS inheritance, by pybids); {} when unreadable."""
    try:
        return dict(src.get_metadata())
    except Exception:  # a malformed raw sidecar must not fail the scan
        return {}


def process_one(src: Any, run: BidsRun, infer: Callable[..., Any] | None = None
                ) -> tuple[str, Any]:
    """("ok" | "skipped", result or None) for one scan; raises on failure."""
    dst = output_path(src, run)
    sidecar = dst.with_name(dst.name[: -len(".nii.gz")] + ".json")
    if dst.exists() and sidecar.exists() and not run.overwrite:
        return "skipped", None
    made = [p for p in (dst.parent, *dst.parent.parents) if not p.exists()]
    dst.parent.mkdir(parents=True, exist_ok=True)
    # an output without its sidecar is an interrupted scan: made again
    redo = run.overwrite or (dst.exists() and not sidecar.exists())
    try:
        result = (infer or infer_file)(src.path, dst, scale=run.scale, spacing=run.spacing,
                                       model=run.model, method=run.method, device=run.device,
                                       overwrite=redo, progress=False, **run.options)
    except BaseException:
        for p in made:  # no empty sub-XX/anat folders left for a failed scan
            with contextlib.suppress(OSError):
                p.rmdir()
        raise
    words = ["medsr", *run.command] if run.command is not None else None
    rec = record(result, command=words, model=run.model, device=run.device,
                 precision=str(run.options.get("precision", "auto")))
    data = {"Description": f"{src.entities.get('suffix')} super-resolved by medsr",
            "Sources": [_bids_uri(src, run)], "Resolution": _resolution(run),
            "SkullStripped": bool(_raw_metadata(src).get("SkullStripped", False)), **rec}
    write_json(data, sidecar, overwrite=True, inputs=[src.path])
    return "ok", result


def participant(run: BidsRun, log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)
                ) -> tuple[list[str], int]:
    """Process every chosen scan: (one line per failure, number of scans); a failure
    does not stop the others."""
    check_dirs(run)
    layout = layout_of(run.bids_dir)
    inputs = find_inputs(layout, run)
    if not inputs:
        raise UserError(f"no anatomical {'/'.join(run.suffixes)} NIfTI files for these "
                        f"participants/sessions in {run.bids_dir}")
    run.output_dir.mkdir(parents=True, exist_ok=True)
    write_dataset_description(run)
    failures = []
    for src in inputs:
        rel = Path(src.path).resolve().relative_to(run.bids_dir.resolve()).as_posix()
        try:
            status, result = process_one(src, run)
        except UserError as exc:  # reported once, at the end (one line per failure)
            msg = str(exc) if rel in str(exc) or src.path in str(exc) else f"{rel}: {exc}"
            failures.append(one_line(msg))
            continue
        except Exception as exc:  # a bug, not the scan: keep going, keep the trace
            failures.append(one_line(f"{rel}: internal error: {type(exc).__name__}: {exc}"))
            log(f"medsr: internal error on {rel}:\n{traceback.format_exc()}")
            continue
        log(f"skip {rel}: done earlier" if status == "skipped" else result.summary())
    return failures, len(inputs)


def group(run: BidsRun) -> tuple[Path, int]:
    """``OUTPUT_DIR/medsr_summary.csv`` over every scan the participant level would
    process; returns (path, number of scans without an output)."""
    import json

    if not (run.output_dir / "dataset_description.json").is_file():
        raise UserError(f"{run.output_dir} holds no medsr derivatives; run the participant "
                        "level first")
    rows, n_missing = [], 0
    for src in find_inputs(layout_of(run.bids_dir), run):
        dst = output_path(src, run)
        sidecar = dst.with_name(dst.name[: -len(".nii.gz")] + ".json")
        row = {k: "" for k in SUMMARY_FIELDS}
        row.update(subject=src.entities.get("subject", ""),
                   session=src.entities.get("session", ""),
                   input=Path(src.path).resolve().relative_to(run.bids_dir.resolve()).as_posix(),
                   output=dst.relative_to(run.output_dir).as_posix())
        try:
            rec = json.loads(sidecar.read_text(encoding="utf-8")) if dst.exists() else None
        except (OSError, ValueError):
            rec = None
        if rec is None:
            n_missing += 1
            row.update(status="missing", error="no output (failed or not run)")
        else:
            models = rec.get("model") or []
            row.update(status="ok", seconds=rec.get("seconds", ""),
                       shape_in="x".join(map(str, rec["input_grid"]["shape"])),
                       shape_out="x".join(map(str, rec["output"]["shape"])),
                       spacing_in="x".join(f"{v:.6g}" for v in rec["input_grid"]["spacing"]),
                       spacing_out="x".join(f"{v:.6g}" for v in rec["output"]["spacing"]),
                       method=rec.get("method", ""),
                       model=" + ".join(m["name"] for m in models),
                       model_sha256=" + ".join(m.get("sha256") or "" for m in models))
        rows.append(row)
    path = run.output_dir / SUMMARY
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return path, n_missing

