"""``medsr bids BIDS_DIR OUTPUT_DIR participant|group``: the BIDS App (medsr.bids)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medsr.bids import DEFAULT_SUFFIXES, BidsRun, group, participant, strip_prefix
from medsr.cli.args import SPACING_RANGE, positive_list, scalar_or_list
from medsr.inference.classical import CLASSICAL_METHODS


def _words(values: list[str] | None) -> list[str]:
    """'T1w,T2w' 'FLAIR' -> ['T1w', 'T2w', 'FLAIR']."""
    return [w for v in values or [] for w in v.split(",") if w.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bids_dir", metavar="BIDS_DIR", help="the raw BIDS dataset")
    p.add_argument("output_dir", metavar="OUTPUT_DIR",
                   help="the derivatives dataset (e.g. BIDS_DIR/derivatives/medsr)")
    p.add_argument("analysis_level", choices=("participant", "group"),
                   help="participant: super-resolve; group: write the cohort summary")
    p.add_argument("--participant-label", nargs="+", metavar="LABEL",
                   help="participants to process (01 or sub-01; default: all)")
    p.add_argument("--session-label", nargs="+", metavar="LABEL",
                   help="sessions to process (default: all)")
    p.add_argument("--suffix", nargs="+", metavar="SUFFIX",
                   help="anatomical suffixes, e.g. T1w,T2w,FLAIR (the default)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--scale", type=positive_list(1e6), metavar="K|K1,K2,K3",
                   help="upsampling factor, one or per axis")
    g.add_argument("--spacing", type=positive_list(SPACING_RANGE[1], SPACING_RANGE[0]),
                   metavar="MM|MM1,MM2,MM3", help="target voxel spacing in mm")
    p.add_argument("--method", default="auto", choices=("auto", *CLASSICAL_METHODS),
                   help="auto (default): the shipped network that fits, else cubic")
    p.add_argument("--model", metavar="NAME|PATH", help="a shipped model or a checkpoint")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--res-label", metavar="LABEL",
                   help="the res-<label> of the outputs (default: from --spacing/--scale)")
    p.add_argument("--overwrite", action="store_true",
                   help="make finished outputs again (default: skip them)")


def run(args: argparse.Namespace) -> int:
    req = BidsRun(Path(args.bids_dir), Path(args.output_dir),
                  participants=strip_prefix(_words(args.participant_label), "sub-"),
                  sessions=strip_prefix(_words(args.session_label), "ses-"),
                  suffixes=_words(args.suffix) or list(DEFAULT_SUFFIXES),
                  scale=scalar_or_list(args.scale), spacing=scalar_or_list(args.spacing),
                  model=args.model, method=args.method, device=args.device,
                  label=args.res_label, overwrite=args.overwrite,
                  command=getattr(args, "argv", None))
    if args.analysis_level == "group":
        path, n_missing = group(req)
        print(f"summary in {path}" + (f"; {n_missing} scans have no output" if n_missing
                                      else ""), file=sys.stderr)
        return 1 if n_missing else 0
    failures, n = participant(req)
    for line in failures:
        print(f"medsr: error: {line}", file=sys.stderr)
    print(f"{n} scans: {n - len(failures)} ok or skipped, {len(failures)} failed; outputs in "
          f"{req.output_dir}", file=sys.stderr)
    return 1 if failures else 0
