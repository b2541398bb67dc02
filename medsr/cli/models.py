"""``medsr models``: list the networks (parameters, MACs per output voxel) or the shipped
pretrained weights."""

from __future__ import annotations

import argparse
import json

from medsr.cli.args import int_in_range
from medsr.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", type=int_in_range(1, 16), default=2, metavar="K",
                   help="isotropic factor for the table (default 2)")
    p.add_argument("--spatial-dims", type=int, choices=(2, 3), action="append",
                   help="2 or 3 (repeat for both; default both)")
    p.add_argument("--preset", help="use this preset where a network defines it (e.g. light)")
    p.add_argument("--pretrained", action="store_true",
                   help="list the shipped pretrained weights (model cards) instead")


def _human(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:.0f}"


def run(args: argparse.Namespace) -> int:
    if args.pretrained:
        from medsr import pretrained

        print("pretrained models (medsr infer picks the one that fits, --model NAME forces one)")
        for p in pretrained.PRETRAINED.values():
            if p.available:
                info = json.loads(p.path.with_suffix(".json").read_text())
                print(f"  {p.name:16s} {p.kind:14s} x{p.factor}  {info['architecture']} "
                      f"{json.dumps(info['hparams'].get('features'))} features, "
                      f"card: {p.path.with_suffix('.md')}")
            else:
                print(f"  {p.name:16s} {p.kind:14s} x{p.factor}  (not shipped: the next larger "
                      "model of its kind serves this factor)")
        return 0
    from medsr.models.complexity import zoo_table

    dims = tuple(sorted(set(args.spatial_dims or (2, 3))))
    if args.preset is not None:
        from medsr.models.registry import PRESETS

        names = sorted({n for presets in PRESETS.values() for n in presets})
        if args.preset not in names:
            raise UserError(f"no network has a preset {args.preset!r}; presets: "
                            f"{', '.join(names)}")
    rows = zoo_table(args.scale, dims, args.preset)
    header = ["network"] + [f"{h} {d}D" for d in dims for h in ("params", "MACs/voxel")]
    table = [[r["name"] + (f" [{r['preset']}]" if r["preset"] else "")]
             + [v for d in dims for v in (_human(r[f"params_{d}d"]), _human(r[f"macs_{d}d"]))]
             for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table)]
    print(f"networks at scale x{args.scale} (MACs of learned layers per output voxel)")
    for line in [header, *table]:
        print("  ".join(str(x).ljust(w) if i == 0 else str(x).rjust(w)
                        for i, (x, w) in enumerate(zip(line, widths))))
    return 0
