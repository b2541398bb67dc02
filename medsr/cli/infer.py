"""``medsr infer``: super-resolve a scan (thin wrapper over medsr.infer)."""

from __future__ import annotations

import argparse
import sys

from medsr.cli.args import float_list, scalar_or_list
from medsr.infer import CLASSICAL_METHODS, DEFAULT_MAX_OUTPUT_VOXELS, infer_file


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="NIfTI/MGZ file, DICOM directory or file, TIFF stack, image, "
                                 "or folder of frames")
    p.add_argument("-o", "--output", help="output file or directory (format follows the suffix; "
                                          "default: <stem>_sr beside the input)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--scale", type=float_list, metavar="K|K1,K2,K3",
                   help="upsampling factor, one or per axis")
    g.add_argument("--spacing", type=float_list, metavar="MM|MM1,MM2,MM3",
                   help="target voxel spacing in mm, one or per axis")
    p.add_argument("--method", default="cubic", choices=CLASSICAL_METHODS,
                   help="classical method (default: cubic B-spline)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--dtype", help="output dtype (default: the input's)")
    p.add_argument("--volume", type=int, help="pick volume N (0-based) of a 4D input")
    p.add_argument("--series", help="pick a series (SeriesInstanceUID) in a mixed DICOM directory")
    p.add_argument("--input-spacing", type=float_list, help="override the input voxel spacing")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--anonymize", action="store_true",
                   help="apply the basic DICOM de-identification profile to DICOM output")
    p.add_argument("--max-output-voxels", type=int, default=DEFAULT_MAX_OUTPUT_VOXELS,
                   help=f"refuse outputs larger than this (default {DEFAULT_MAX_OUTPUT_VOXELS:,})")


def run(args: argparse.Namespace) -> int:
    result = infer_file(args.input, args.output, scale=scalar_or_list(args.scale),
                        spacing=scalar_or_list(args.spacing), method=args.method,
                        overwrite=args.overwrite, dtype=args.dtype, volume_index=args.volume,
                        series=args.series, input_spacing=args.input_spacing,
                        max_output_voxels=args.max_output_voxels, anonymize=args.anonymize)
    print(result.summary(), file=sys.stderr)
    return 0
