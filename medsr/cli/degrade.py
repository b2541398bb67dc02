"""``medsr degrade``: simulate low-resolution data, LR = D(HR; sigma), with a sidecar JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from medsr.cli.args import (
    float_in_range,
    float_list,
    int_in_range,
    output_dtype,
    scalar_or_list,
    width_list,
)
from medsr.errors import UserError

# Mirrors medsr.degrade.compose (not imported here: the parser must stay light).
MAX_FACTOR = 1000
MAX_WIDTH = 1.0e4
MAX_SIGMA = 1.0e30  # noise std / gain in intensity units (relative: see compose)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="HR image: NIfTI/MGH, DICOM series, TIFF stack, picture, frames")
    p.add_argument("-o", "--output", required=True,
                   help="LR output (format follows the suffix); a sidecar <stem>.json is "
                        "written beside it")
    p.add_argument("--preset", help="named degradation (e.g. mri-thick-slice, mri-kspace, "
                                    "bicubic, microscopy-axial, video); options below override it")
    p.add_argument("--scale", type=float_list, metavar="K|K1,K2,K3",
                   help="HR -> LR factor, one (every axis longer than 1 voxel) or per axis")
    p.add_argument("--profile", choices=("gaussian", "rect", "none"),
                   help="slice profile / PSF")
    p.add_argument("--fwhm", type=width_list(MAX_WIDTH), metavar="F|F1,F2,F3",
                   help="Gaussian FWHM per axis (default: k, i.e. thickness = spacing)")
    p.add_argument("--thickness", type=width_list(MAX_WIDTH), metavar="T|T1,T2,T3",
                   help="rect slice thickness per axis (gap if < spacing, overlap if >)")
    p.add_argument("--units", choices=("voxel", "mm", "lr"),
                   help="units of --fwhm/--thickness: HR voxels, mm, or multiples of the LR "
                        "spacing (default voxel)")
    p.add_argument("--kernel", help="user PSF / slice profile (.npy), implies profile 'kernel'")
    p.add_argument("--downsample", choices=("decimate", "area", "kspace", "bicubic"))
    p.add_argument("--window", choices=("none", "hann", "tukey"), help="k-space window")
    p.add_argument("--zero-filled", action="store_true",
                   help="k-space truncation returned on the HR grid (scanner zero filling)")
    p.add_argument("--noise", choices=("none", "gaussian", "rician", "poisson-gaussian"))
    p.add_argument("--sigma", type=float_list, metavar="S|S1,S2,...",
                   help="noise std (per channel): intensity units unless relative")
    p.add_argument("--gain", type=float_in_range(0.0, MAX_SIGMA, positive=True),
                   help="Poisson-Gaussian: intensity units per photon")
    rel = p.add_mutually_exclusive_group()
    rel.add_argument("--relative", dest="relative", action="store_true", default=None,
                     help="sigma and gain are fractions of the 1-99 percentile range")
    rel.add_argument("--absolute", dest="relative", action="store_false",
                     help="sigma and gain are in intensity units")
    p.add_argument("--jpeg-quality", type=int_in_range(1, 100),
                   help="JPEG round trip (1-100) after the noise")
    p.add_argument("--seed", type=int_in_range(0, 2**32 - 1),
                   help="random seed (default: drawn and recorded)")
    p.add_argument("--dtype", type=output_dtype, help="output dtype (default: the input's)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    o: dict[str, Any] = {}
    for name in ("scale", "fwhm", "thickness"):
        v = scalar_or_list(getattr(args, name))
        if v is not None:
            o[name] = v
    if args.sigma is not None:
        o["sigma"] = args.sigma[0] if len(args.sigma) == 1 else {"per_channel": args.sigma}
    for name in ("profile", "units", "downsample", "noise", "gain", "relative", "jpeg_quality"):
        v = getattr(args, name)
        if v is not None:
            o[name] = v
    if args.window is not None:
        o["window"] = None if args.window == "none" else args.window
    if args.zero_filled:
        o["zero_filled"] = True
        o.setdefault("downsample", "kspace")
    if args.kernel:
        o["kernel"] = str(Path(args.kernel).resolve())
        o["profile"] = "kernel"
    return o


def run(args: argparse.Namespace) -> int:
    from medsr.degrade import Degradation, degrade_file, load_preset

    overrides = _overrides(args)
    if args.preset:
        d = load_preset(args.preset, **overrides)
    elif "scale" in overrides:
        d = Degradation.from_dict(overrides)
    else:
        raise UserError("give --preset NAME or --scale K (see medsr degrade --help)")
    rec = degrade_file(args.input, args.output, d, seed=args.seed, overwrite=args.overwrite,
                       dtype=args.dtype, preset=args.preset)
    print(f"{Path(args.input).name}: {'x'.join(map(str, rec['hr_shape'][:3]))} -> "
          f"{'x'.join(map(str, rec['lr_shape'][:3]))} ({rec['output']}, parameters in "
          f"{Path(rec['sidecar']).name})", file=sys.stderr)
    return 0
