"""Many scans in one run: each on its own, a summary CSV, sharding under torchrun.

Inputs are anything ``medsr infer`` takes one at a time: scans, TIFF stacks, pictures,
frames folders and video files (``'clips/*.mp4'``; each video is written back as a video).

A failure of one scan (a corrupt file, a bad header) is reported in the summary and on
stderr, and the others go on; the run's exit code is 1 when any scan failed. Under
``torchrun`` scan i is processed by rank i % world_size only, and rank 0 gathers the
rows and writes the summary. ``skip_existing`` makes an interrupted run restartable:
outputs are written atomically, so an existing output is a finished one. On such a
restart the summary keeps what the earlier run recorded for a skipped scan (its timing,
shapes, method and model; :func:`write_summary`), with the status "skipped".
"""

from __future__ import annotations

import csv
import glob
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from medsr import distributed
from medsr.devices import select_device
from medsr.errors import UserError, one_line
from medsr.io import default_output_path, detect_format
from medsr.io.common import atomic_path, check_output, check_output_dir
from medsr.io.video import is_video
from medsr.options import InferOptions
from medsr.pipeline import infer_file_with_sidecar, modes
from medsr.provenance import model_identity

SUMMARY_FIELDS = ("input", "output", "status", "error", "seconds", "shape_in", "shape_out",
                  "spacing_in", "spacing_out", "method", "model",
                  "model_sha256")  # the weights' SHA-256 per network (medsr.provenance)


def expand_inputs(inputs: Sequence[str], list_file: str | None = None) -> list[Path]:
    """Paths, glob patterns and the ``input`` column of a CSV, in order, duplicates dropped."""
    items: list[str] = []
    for text in inputs:
        if any(c in text for c in "*?[") and not Path(text).exists():
            matches = sorted(glob.glob(text))
            if not matches:
                raise UserError(f"no file matches {text!r}")
            items.extend(matches)
        else:
            items.append(text)
    if list_file is not None:
        path = Path(list_file)
        if not path.is_file():
            raise UserError(f"cohort list {path} does not exist")
        try:
            with path.open(newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                if not reader.fieldnames or "input" not in reader.fieldnames:
                    raise UserError(f"cohort list {path} needs a header row with an 'input' "
                                    "column")
                for row in reader:
                    value = (row.get("input") or "").strip()
                    if value:
                        p = Path(value)
                        items.append(str(p if p.is_absolute() else path.parent / p))
        except (UnicodeDecodeError, csv.Error, ValueError) as exc:
            raise UserError(f"cohort list {path} is not a UTF-8 CSV file ({type(exc).__name__})"
                            ) from exc
    seen: set[str] = set()
    out: list[Path] = []
    for it in items:
        key = os.path.abspath(it)
        if key not in seen:
            seen.add(key)
            out.append(Path(it))
    if not out:
        raise UserError("no inputs given")
    return out


def output_paths(inputs: Sequence[Path], out_dir: Path | None) -> list[Path]:
    """``<stem>_sr`` names in ``out_dir`` (or beside each input); collisions are an error.

    A video file keeps its container (``clip.mp4`` -> ``clip_sr.mp4``), as ``medsr infer``
    does for a single video."""
    outs = []
    for p in inputs:
        try:
            default = (p.with_name(f"{p.stem}_sr{p.suffix}") if is_video(p)
                       else default_output_path(p, detect_format(p)))
        except UserError:
            default = p.with_name(p.name + "_sr")  # unreadable input: reported when processed
        outs.append(default if out_dir is None else out_dir / default.name)
    seen: dict[str, Path] = {}
    for p, o in zip(inputs, outs):
        key = os.path.abspath(o)
        if key in seen:
            raise UserError(f"{seen[key]} and {p} would both be written to {o}; "
                            "give them different names or separate runs")
        seen[key] = p
    given = {}  # one scan's output is never another scan's input, however spelt
    for q in inputs:
        given.update({os.path.abspath(q): q, os.path.realpath(q): q})
    for p, o in zip(inputs, outs):
        for key in (os.path.abspath(o), os.path.realpath(o)):
            if given.get(key, p) != p:
                raise UserError(f"{p} would be written to {o}, which is the input "
                                f"{given[key]}; write the outputs elsewhere with -o")
    return outs


def _fmt(values: Sequence[float] | None) -> str:
    return "" if values is None else "x".join(f"{v:.6g}" for v in values)


def process_cohort(inputs: Sequence[Path], outputs: Sequence[Path],
                   infer_one: Callable[[Path, Path], Any], *, skip_existing: bool = False,
                   rank: int = 0, world_size: int = 1,
                   log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
                   model_path: str | None = None) -> list[dict[str, str]]:
    """Run ``infer_one(input, output)`` on this rank's share; one summary row per scan
    (``model_path``: the --model argument, so a checkpoint's SHA-256 is found by path)."""
    rows: list[dict[str, str]] = []
    for i, (src, dst) in enumerate(zip(inputs, outputs)):
        if i % world_size != rank:
            continue
        row = {k: "" for k in SUMMARY_FIELDS}
        row.update(input=str(src), output=str(dst))
        t0 = time.perf_counter()
        if skip_existing and dst.exists():
            row["status"] = "skipped"
            rows.append(row)
            log(f"skip {src.name}: {dst} exists")
            continue
        try:
            result = infer_one(src, dst)
            row.update(status="ok", shape_in=_fmt(result.shape_in),
                       shape_out=_fmt(result.shape_out), spacing_in=_fmt(result.spacing_in),
                       spacing_out=_fmt(result.spacing_out),
                       **_method_model(result, model_path))
            log(result.summary())
        except UserError as exc:
            msg = str(exc) if str(src) in str(exc) else f"{src}: {exc}"
            row.update(status="failed", error=msg)
            log(f"medsr: error: {one_line(msg)}")
        except Exception as exc:  # a bug, not a user error: keep going, keep the trace
            row.update(status="failed", error=f"internal error: {type(exc).__name__}: {exc}")
            log(f"medsr: internal error on {src}:\n{traceback.format_exc()}")
        row["seconds"] = f"{time.perf_counter() - t0:.3f}"  # a tiny scan takes < 5 ms
        rows.append(row)
    return rows


def _method_model(result: Any, given: str | None = None) -> dict[str, str]:
    """The summary's method ("cubic", "network", "self-supervised", ...), model (the
    network's name or checkpoint; "" for classical methods) and the weights' SHA-256 of an
    InferResult (``given``: the --model argument, the checkpoint's full path)."""
    method = str(getattr(result, "method", "") or "")
    model = str(getattr(result, "model", "") or "")
    if model and method == model:  # a network: its name was the method shown
        method = "network"
    if getattr(result, "tta", False):
        method += " + tta"
    sha = (" + ".join(m["sha256"] or "" for m in model_identity(model, given))
           if model else "")
    return {"method": method, "model": model, "model_sha256": sha}


def gather_rows(rows: list[dict[str, str]], inputs: Sequence[Path]) -> list[dict[str, str]]:
    """Collect every rank's rows on all ranks (a no-op without a process group), in input order."""
    rows = [r for part in distributed.all_gather_objects(rows) for r in part]
    order = {str(p): i for i, p in enumerate(inputs)}
    return sorted(rows, key=lambda r: order.get(r["input"], len(order)))


def read_summary(path: Path) -> list[dict[str, str]]:
    """The rows of an existing summary CSV ([] when there is none or it is unreadable)."""
    try:
        with Path(path).open(newline="", encoding="utf-8") as f:
            return [{k: (v or "") for k, v in r.items() if k in SUMMARY_FIELDS}
                    for r in csv.DictReader(f)]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def merge_skipped(rows: Sequence[dict[str, str]], earlier: Sequence[dict[str, str]]
                  ) -> list[dict[str, str]]:
    """``rows`` where each skipped scan (matched by input path) keeps its earlier row's
    timing, shapes, method and model; its status stays "skipped"."""
    before = {os.path.abspath(r.get("input", "")): r for r in earlier if r.get("input")}
    out = []
    for row in rows:
        old = before.get(os.path.abspath(row["input"])) if row.get("status") == "skipped" else None
        if old is not None:
            row = {**{k: old.get(k, "") for k in SUMMARY_FIELDS}, "input": row["input"],
                   "output": row["output"], "status": "skipped", "error": ""}
        out.append(row)
    return out


def write_summary(rows: Sequence[dict[str, str]], path: Path, merge: bool = True) -> Path:
    """The summary CSV, written atomically; with ``merge`` a skipped scan keeps the row an
    earlier run wrote to ``path`` (:func:`merge_skipped`)."""
    if merge:
        rows = merge_skipped(rows, read_summary(path))
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def run_cohort(inputs: Sequence[str], list_file: str | None, output: str | None,
               options: InferOptions, *, summary: str | None = None,
               skip_existing: bool = False, sidecar: bool = True,
               command: Sequence[str] | None = None) -> int:
    """``medsr infer`` over many inputs (paths, globs, a ``--list`` CSV) with ``options``:
    flags, outputs and the summary checked before any scan runs; exit code 1 when any
    scan failed. Each output gets its provenance sidecar unless ``sidecar`` is false."""
    modes.check(options)  # refuse flags that do not combine before any scan runs
    paths = expand_inputs(inputs, list_file)
    out_dir = Path(output) if output else None
    if out_dir is not None:
        check_output_dir(out_dir, paths)  # not inside an input folder, not an input
    outputs = output_paths(paths, out_dir)
    summary_path = Path(summary) if summary else (out_dir or Path(".")) / "medsr_summary.csv"
    check_summary(summary_path, paths, list_file, outputs)
    if summary:  # rewritten every run, but never over an input or a user's folder
        check_output(summary, True, paths)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(out_dir, os.W_OK):
            raise UserError(f"output directory {out_dir} is not writable")
    rank, world = init_distributed()

    def infer_one(src: Path, dst: Path) -> Any:
        return infer_file_with_sidecar(src, dst, options, sidecar=sidecar, command=command)

    rows = process_cohort(paths, outputs, infer_one, skip_existing=skip_existing, rank=rank,
                          world_size=world,
                          model_path=str(options.run.model) if options.run.model else None)
    rows = gather_rows(rows, paths)
    failed = sum(r["status"] == "failed" for r in rows)
    if rank == 0:
        write_summary(rows, summary_path)
        print(f"{len(rows)} scans: {len(rows) - failed} ok or skipped, {failed} failed; "
              f"summary in {summary_path}", file=sys.stderr)
    finish_distributed()
    return 1 if failed else 0


def _same_path(a: Path, b: Path) -> bool:
    """``a`` and ``b`` name one file, however spelt (``./``, ``..``, symlinks, hard links)."""
    if os.path.abspath(a) == os.path.abspath(b) or os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def check_summary(summary: Path, inputs: list[Path], list_file: str | None,
                  outputs: list[Path]) -> None:
    """The summary CSV replaces none of the run's inputs, its --list file or its outputs."""
    if list_file is not None and _same_path(summary, Path(list_file)):
        raise UserError(f"the summary {summary} is the cohort list {list_file}; "
                        "choose another --summary")
    for p in inputs:
        if _same_path(summary, p):
            raise UserError(f"the summary {summary} is the input {p}; "
                            "choose another --summary")
    spelt = {Path(os.path.abspath(summary)), Path(os.path.realpath(summary))}
    for o in outputs:
        within = any(Path(f(o)) in s.parents for s in spelt
                     for f in (os.path.abspath, os.path.realpath))
        if within or _same_path(summary, o):
            raise UserError(f"the summary {summary} would replace {o}, an output of this run; "
                            "choose another --summary")


def init_distributed() -> tuple[int, int]:
    """Join torchrun's process group (gloo: inference shards need no GPU collectives)."""
    distributed.setup(select_device("auto"), backend="gloo")
    return distributed.rank(), distributed.world_size()


def finish_distributed() -> None:
    """Leave the process group cleanly (all ranks wait for rank 0's summary first)."""
    distributed.barrier()
    distributed.cleanup()
