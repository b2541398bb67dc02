"""``medsr infer``: super-resolve one scan or a cohort (thin wrapper over medsr.infer)."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from functools import partial
from pathlib import Path

from medsr.cli.args import (
    SPACING_RANGE,
    float_in_range,
    int_in_range,
    int_list,
    output_dtype,
    positive_list,
    scalar_or_list,
)
from medsr.errors import UserError
from medsr.infer import CLASSICAL_METHODS, DEFAULT_MAX_OUTPUT_VOXELS, infer_file
from medsr.inference import BLENDS, PRECISIONS
from medsr.provenance import run_with_sidecar  # issue 25


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return v


def _duration(text: str) -> float:
    """'300', '90s', '5m', '1h' -> seconds."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    t = text.strip().lower()
    mult = units.get(t[-1:], None)
    try:
        value = float(t[:-1] if mult else t) * (mult or 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a duration like 300, 90s or 5m, "
                                         f"got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"the budget must be a positive finite duration, "
                                         f"got {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="NIfTI/MGZ file, DICOM directory or file, TIFF stack, image, folder of "
                        "frames; several paths or glob patterns make a cohort run")
    p.add_argument("-o", "--output", help="output file or directory (format follows the suffix; "
                                          "default: <stem>_sr beside the input). For a cohort: "
                                          "the output directory")
    p.add_argument("--list", dest="list_file", metavar="CSV",
                   help="cohort list: a CSV with an 'input' column")
    p.add_argument("--summary", metavar="CSV", help="cohort summary CSV (default: "
                   "medsr_summary.csv in the output directory)")
    p.add_argument("--skip-existing", action="store_true",
                   help="cohort: leave scans whose output exists (restart an interrupted run)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--scale", type=positive_list(1e6), metavar="K|K1,K2,K3",
                   help="upsampling factor, one or per axis")
    g.add_argument("--spacing", type=positive_list(SPACING_RANGE[1], SPACING_RANGE[0]),
                   metavar="MM|MM1,MM2,MM3",
                   help="target voxel spacing in mm, one or per axis")
    p.add_argument("--method", default="auto", choices=("auto", *CLASSICAL_METHODS),
                   help="auto (default): the shipped network that fits the factors, cubic "
                        "B-spline where none does; or a classical method")
    p.add_argument("--model", metavar="NAME|PATH",
                   help="a shipped model (medsr models --pretrained) or a checkpoint "
                        "(.safetensors from medsr train)")
    p.add_argument("--tta", action="store_true",
                   help="flip self-ensemble (slower, slightly better)")
    p.add_argument("--max-memory", type=float_in_range(1e-3, 1e6, positive=True),
                   default=1.5, metavar="GB",
                   help="memory for network tiles in GB (default 1.5); tiles shrink to fit")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    sp = p.add_argument_group("speed (outputs unchanged unless noted)")
    sp.add_argument("--precision", default="auto", choices=PRECISIONS,
                    help="network arithmetic: auto = fp16 autocast on CUDA, fp32 on the CPU; "
                         "bf16 is much faster on CPUs with AMX but rounds to ~3 digits")
    sp.add_argument("--compile", dest="compile_model", action="store_true",
                    help="torch.compile the networks (tens of seconds up front; for long runs)")
    sp.add_argument("--tile", type=int_list, metavar="N|N1,N2[,N3]",
                    help="tile size in input voxels (default: chosen for the cache / GPU memory)")
    sp.add_argument("--batch", type=_positive_int, metavar="N",
                    help="slices per network call (default: chosen like --tile)")
    sp.add_argument("--tile-blend", dest="blend", default="crop", choices=BLENDS,
                    help="crop: exact tiles (receptive field within the halo); gaussian: "
                         "blend overlapping tiles, for networks with global context (RCAN)")
    ss = p.add_argument_group("self-supervised SR (a network trained on the scan itself)")
    ss.add_argument("--self-supervised", action="store_true",
                    help="train on the scan's own in-plane data, apply through-plane")
    ss.add_argument("--budget", type=_duration, metavar="T",
                    help="time budget of the whole command, e.g. 300, 90s, 5m (default 5m)")
    ss.add_argument("--slice-thickness", type=float_in_range(*SPACING_RANGE), metavar="MM",
                    help="slice thickness (default: DICOM SliceThickness, else the spacing); "
                         "with --self-supervised or --slice-profile")
    ss.add_argument("--slice-profile", metavar="auto|gaussian|rect|FILE.npy",
                    help="slice profile: auto (the default: estimated from a thick-slice "
                         "scan and used when the estimate is confident, else Gaussian for "
                         "--self-supervised and no projection), gaussian (FWHM = "
                         "thickness), rect (box of width = thickness) or a 1D kernel on the "
                         "output grid; it projects the output onto the scan's slices")
    ss.add_argument("--save-model", metavar="PATH",
                    help="save the fitted network to reuse on scans acquired the same way")
    ss.add_argument("--seed", type=int_in_range(0, 2**32 - 1),
                    help="seed (self-supervised training; default 0)")
    ss.add_argument("--steps", type=_positive_int, metavar="N",
                    help="train exactly N steps instead of as many as the budget allows "
                         "(the budget still caps them): with --seed, runs are "
                         "bit-identical on the CPU")
    p.add_argument("--dtype", type=output_dtype, help="output dtype (default: the input's)")
    p.add_argument("--volume", type=int_in_range(0, 2**31 - 1),
                   help="pick volume N (0-based) of a 4D input")
    p.add_argument("--series", help="pick a series (SeriesInstanceUID) in a mixed DICOM directory")
    p.add_argument("--input-spacing",
                   type=positive_list(SPACING_RANGE[1], SPACING_RANGE[0]),
                   help="override the input voxel spacing")
    p.add_argument("--keep-overshoot", action="store_true",
                   help="keep values below 0 in the output of a non-negative input (overshoot "
                        "of interpolation or networks at edges); by default they are "
                        "clipped at 0 and counted")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--no-sidecar", dest="sidecar", action="store_false",  # issue 25
                   help="write no provenance JSON beside a NIfTI/TIFF output")
    p.add_argument("--anonymize", action="store_true",
                   help="apply the basic DICOM de-identification profile to DICOM output")
    p.add_argument("--max-output-voxels", type=_positive_int, default=DEFAULT_MAX_OUTPUT_VOXELS,
                   help=f"refuse outputs larger than this (default {DEFAULT_MAX_OUTPUT_VOXELS:,})")


def _options(args: argparse.Namespace) -> dict:
    return dict(scale=scalar_or_list(args.scale), spacing=scalar_or_list(args.spacing),
                method=args.method, model=args.model, device=args.device, tta=args.tta,
                max_memory=args.max_memory * 1e9, overwrite=args.overwrite, dtype=args.dtype,
                volume_index=args.volume, series=args.series, input_spacing=args.input_spacing,
                max_output_voxels=args.max_output_voxels, anonymize=args.anonymize,
                self_supervised=args.self_supervised, budget_s=args.budget,
                slice_thickness=args.slice_thickness, slice_profile=args.slice_profile,
                save_model=args.save_model, seed=args.seed, steps=args.steps,
                tile=args.tile, batch=args.batch,
                precision=args.precision, compile_model=args.compile_model, blend=args.blend,
                keep_overshoot=args.keep_overshoot,
                sidecar=args.sidecar, command=getattr(args, "argv", None))  # issue 25


def run(args: argparse.Namespace) -> int:
    if not args.inputs and not args.list_file:
        raise UserError("give an input (a file, a DICOM directory, a folder of frames) or --list")
    cohort = (args.list_file is not None or len(args.inputs) > 1
              or any(c in args.inputs[0] for c in "*?[") and not Path(args.inputs[0]).exists())
    if not cohort:
        result = run_with_sidecar(infer_file, args.inputs[0], args.output, **_options(args),
                            budget_start=_budget_start(args.from_process))
        print(result.summary(), file=sys.stderr)
        return 0
    return _run_cohort(args)


def _budget_start(from_process: bool) -> float | None:
    """When the command started (``time.perf_counter()`` scale), so that a --budget covers
    starting Python too; None (this call) when medsr runs inside another program
    (``main(argv)`` called with a list, ``from_process`` false)."""
    if not from_process:
        return None
    try:  # Linux: the process start time, in clock ticks since boot
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    age = uptime - ticks / os.sysconf("SC_CLK_TCK")
    return time.perf_counter() - age if 0 <= age < 600 else None


def _run_cohort(args: argparse.Namespace) -> int:
    from medsr import cohort
    from medsr.infer import check_options

    options = _options(args)  # refuse flags that do not combine before any scan runs
    check_options(args.model, **{k: options[k] for k in _FLAG_OPTIONS})
    inputs = cohort.expand_inputs(args.inputs, args.list_file)
    out_dir = Path(args.output) if args.output else None
    from medsr.io.common import check_output, check_output_dir

    if out_dir is not None:
        check_output_dir(out_dir, inputs)  # not inside an input folder, not an input
    outputs = cohort.output_paths(inputs, out_dir)
    summary = Path(args.summary) if args.summary else (out_dir or Path(".")) / \
        "medsr_summary.csv"
    _check_summary(summary, inputs, args.list_file, outputs)
    if args.summary:  # rewritten every run, but never over an input or a user's folder
        check_output(args.summary, True, inputs)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(out_dir, os.W_OK):
            raise UserError(f"output directory {out_dir} is not writable")
    rank, world = cohort.init_distributed()
    rows = cohort.process_cohort(inputs, outputs, partial(_infer_one, _options(args)),
                                 skip_existing=args.skip_existing, rank=rank, world_size=world)
    rows = cohort.gather_rows(rows, inputs)
    failed = sum(r["status"] == "failed" for r in rows)
    if rank == 0:
        cohort.write_summary(rows, summary)
        print(f"{len(rows)} scans: {len(rows) - failed} ok or skipped, {failed} failed; "
              f"summary in {summary}", file=sys.stderr)
    cohort.finish_distributed()
    return 1 if failed else 0


def _same_path(a: Path, b: Path) -> bool:
    """``a`` and ``b`` name one file, however spelt (``./``, ``..``, symlinks, hard links)."""
    if os.path.abspath(a) == os.path.abspath(b) or os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def _check_summary(summary: Path, inputs: list[Path], list_file: str | None,
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


_FLAG_OPTIONS = ("method", "self_supervised", "scale", "spacing", "tta", "budget_s",
                 "steps", "seed", "save_model", "slice_thickness", "slice_profile", "device",
                 "max_memory", "tile", "batch", "precision", "compile_model", "blend")


def _infer_one(options: dict, src: Path, dst: Path):
    return run_with_sidecar(infer_file, src, dst, **options)  # issue 25
