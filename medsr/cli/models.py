"""``medsr models``: list the networks (parameters, MACs per output voxel) or the shipped
pretrained weights."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import medsr


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scale", type=int, default=2, metavar="K",
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


def weight_cards(folder: Path | None = None) -> list[dict]:
    """The model cards (``medsr/weights/*.json``) shipped with the package."""
    folder = folder or Path(medsr.__file__).parent / "weights"
    return [json.loads(p.read_text()) | {"card": p.name} for p in sorted(folder.glob("*.json"))]


def run(args: argparse.Namespace) -> int:
    if args.pretrained:
        cards = weight_cards()
        if not cards:
            print("no pretrained weights ship with medsr yet (medsr/weights/ has no model "
                  "cards); train one with `medsr train`")
        for c in cards:
            print(f"{c['card']}: " + ", ".join(f"{k}={v}" for k, v in c.items() if k != "card"))
        return 0
    from medsr.models.complexity import zoo_table

    dims = tuple(sorted(set(args.spatial_dims or (2, 3))))
    if args.scale < 1:
        from medsr.errors import UserError

        raise UserError(f"--scale must be an integer >= 1, got {args.scale}")
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
