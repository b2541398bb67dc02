"""``medsr infer``: parse, build the option objects once (:func:`build_options`), call
:func:`medsr.pipeline.infer_file` (one input) or :func:`medsr.cohort.run_cohort`."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from medsr.cli.args import (
    SPACING_RANGE,
    duration,
    float_in_range,
    int_in_range,
    int_list,
    output_dtype,
    positive_int,
    positive_list,
    scalar_or_list,
)
from medsr.errors import UserError
from medsr.inference import BLENDS, PRECISIONS
from medsr.inference.classical import CLASSICAL_METHODS
from medsr.options import (
    DEFAULT_MAX_OUTPUT_VOXELS,
    GridRequest,
    InferOptions,
    ReadOptions,
    RunOptions,
    SelfSupOptions,
    WriteOptions,
)
from medsr.pipeline import infer_file_with_sidecar


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
    sp.add_argument("--batch", type=positive_int, metavar="N",
                    help="slices per network call (default: chosen like --tile)")
    sp.add_argument("--tile-blend", dest="blend", default="crop", choices=BLENDS,
                    help="crop: exact tiles (receptive field within the halo); gaussian: "
                         "blend overlapping tiles, for networks with global context (RCAN)")
    ss = p.add_argument_group("self-supervised SR (a network trained on the scan itself)")
    ss.add_argument("--self-supervised", action="store_true",
                    help="train on the scan's own in-plane data, apply through-plane")
    ss.add_argument("--budget", type=duration, metavar="T",
                    help="time budget of the whole command, e.g. 300, 90s, 5m (default 5m)")
    ss.add_argument("--slice-thickness", type=float_in_range(*SPACING_RANGE), metavar="MM",
                    help="slice thickness (default: DICOM SliceThickness, else the spacing); "
                         "with --self-supervised or --slice-profile")
    ss.add_argument("--slice-profile", metavar="auto|gaussian|rect|FILE.npy",
                    help="slice profile: auto (the default: estimated from a thick-slice "
                         "scan and used when the estimate is confident, else no projection; "
                         "--self-supervised trains on a mixture of box and Gaussian at "
                         "0.8-1.25x the estimated widths), gaussian (FWHM = "
                         "thickness), rect (box of width = thickness) or a 1D kernel on the "
                         "output grid; it projects the output onto the scan's slices")
    ss.add_argument("--save-model", metavar="PATH",
                    help="save the fitted network to reuse on scans acquired the same way")
    ss.add_argument("--seed", type=int_in_range(0, 2**32 - 1),
                    help="seed (self-supervised training; default 0)")
    ss.add_argument("--steps", type=positive_int, metavar="N",
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
    p.add_argument("--max-output-voxels", type=positive_int, default=DEFAULT_MAX_OUTPUT_VOXELS,
                   help=f"refuse outputs larger than this (default {DEFAULT_MAX_OUTPUT_VOXELS:,})")


def build_options(args: argparse.Namespace, budget_start: float | None = None
                  ) -> InferOptions:
    """The option objects of parsed ``medsr infer`` arguments."""
    limit = args.max_output_voxels
    return InferOptions(
        read=ReadOptions(volume=args.volume, series=args.series,
                         input_spacing=args.input_spacing, max_voxels=limit),
        grid=GridRequest(scale=scalar_or_list(args.scale),
                         spacing=scalar_or_list(args.spacing), max_output_voxels=limit),
        run=RunOptions(method=args.method, model=args.model, device=args.device,
                       tta=args.tta, max_memory=args.max_memory * 1e9, tile=args.tile,
                       batch=args.batch, precision=args.precision,
                       compile_model=args.compile_model, blend=args.blend,
                       slice_profile=args.slice_profile,
                       slice_thickness=args.slice_thickness,
                       keep_overshoot=args.keep_overshoot),
        selfsup=SelfSupOptions(enabled=args.self_supervised, budget_s=args.budget,
                               steps=args.steps, seed=args.seed, save_model=args.save_model,
                               budget_start=budget_start),
        write=WriteOptions(overwrite=args.overwrite, dtype=args.dtype,
                           anonymize=args.anonymize))


def run(args: argparse.Namespace) -> int:
    """``medsr infer``: one input, or a cohort (several inputs, a glob or ``--list``)."""
    if not args.inputs and not args.list_file:
        raise UserError("give an input (a file, a DICOM directory, a folder of frames) or --list")
    single = (args.list_file is None and len(args.inputs) == 1
              and not (any(c in args.inputs[0] for c in "*?[")
                       and not Path(args.inputs[0]).exists()))
    if single:
        options = build_options(args, _budget_start(args.from_process))
        result = infer_file_with_sidecar(args.inputs[0], args.output, options,
                                         sidecar=args.sidecar, command=_command(args))
        print(result.summary(), file=sys.stderr)
        return 0
    from medsr import cohort  # imports torch (its process group): only for cohorts

    return cohort.run_cohort(args.inputs, args.list_file, args.output, build_options(args),
                             summary=args.summary, skip_existing=args.skip_existing,
                             sidecar=args.sidecar, command=_command(args))


def _command(args: argparse.Namespace) -> list[str] | None:
    """The command line's words after ``medsr`` (for the provenance sidecar)."""
    return getattr(args, "argv", None)


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
