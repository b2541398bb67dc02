"""Where the training volumes come from: a folder, a glob, a CSV, or the MNI152 template.

Each volume is an item ``{"image": str, "lr": str | None, "mask": str | None}``;
``image`` is a path or ``"mni152:<resolution>"`` for the template shipped with nilearn.
"""

from __future__ import annotations

import csv
import glob as globmod
from pathlib import Path

import numpy as np

import medsr.io
from medsr.errors import UserError
from medsr.volume import Volume

MNI_PREFIX = "mni152:"


def list_items(data_cfg: dict) -> list[dict]:
    """The volume items named by the ``data`` section of a config (sorted, stable)."""
    source, path = data_cfg["source"], data_cfg["path"]
    if source == "mni152":
        res = int(data_cfg["resolution"])
        if res not in (1, 2):
            raise UserError(f"config key 'data.resolution' must be 1 or 2 for mni152, got {res}")
        return [{"image": f"{MNI_PREFIX}{res}", "lr": None, "mask": None}]
    if source == "folder":
        folder = Path(path)
        if not folder.is_dir():
            raise UserError(f"data folder {folder} does not exist")
        files = sorted(p for p in folder.glob(data_cfg["pattern"]) if not p.name.startswith("."))
        items = [{"image": str(p), "lr": None, "mask": None} for p in files]
    elif source == "glob":
        items = [{"image": p, "lr": None, "mask": None} for p in sorted(globmod.glob(str(path)))]
    else:
        items = _read_csv(Path(path))
    if not items:
        raise UserError(f"no volumes found for data.source={source} data.path={path}")
    return items


def _read_csv(path: Path) -> list[dict]:
    """Columns ``image`` (HR, required), ``lr`` and ``mask`` (optional); relative to the CSV."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise UserError(f"cannot read data CSV {path}: {exc.strerror or exc}") from exc
    if not rows or "image" not in rows[0]:
        raise UserError(f"data CSV {path} needs a header with an 'image' column "
                        "(optional 'lr', 'mask')")

    def resolve(v: str | None) -> str | None:
        if not v:
            return None
        p = Path(v)
        return str(p if p.is_absolute() else path.parent / p)

    return [{"image": resolve(r["image"]), "lr": resolve(r.get("lr")),
             "mask": resolve(r.get("mask"))} for r in rows]


def split_items(items: list[dict], val_fraction: float, seed: int,
                val_paths: list[str] | None = None) -> tuple[list[dict], list[dict]]:
    """Train / validation split by volume (never by slice: no leakage between them).

    With a single volume, both sets are that volume (recorded as a warning by the caller).
    """
    if val_paths:
        wanted = {str(Path(p).resolve()) for p in val_paths}
        val = [it for it in items if str(Path(it["image"]).resolve()) in wanted]
        train = [it for it in items if it not in val]
        if not val or not train:
            raise UserError("data.val_paths must name some, not all, of the training volumes")
        return train, val
    if len(items) == 1:
        return list(items), list(items)
    n_val = max(1, int(round(len(items) * val_fraction))) if val_fraction > 0 else 0
    n_val = min(n_val, len(items) - 1)
    order = np.random.default_rng(seed).permutation(len(items))
    val_idx = set(order[:n_val].tolist())
    train = [it for i, it in enumerate(items) if i not in val_idx]
    val = [it for i, it in enumerate(items) if i in val_idx] or list(train)
    return train, val


def load_mni152(resolution: int = 2) -> Volume:
    """The MNI152 T1 template shipped inside nilearn, as a medsr Volume (no network)."""
    from nilearn.datasets import load_mni152_template

    img = load_mni152_template(resolution=resolution)
    return Volume(np.asarray(img.get_fdata(), dtype=np.float32), img.affine,
                  {"format": "nifti", "path": f"{MNI_PREFIX}{resolution}"})


def read_item(spec: str) -> Volume:
    """A Volume for an item's path (or the MNI template)."""
    if spec.startswith(MNI_PREFIX):
        return load_mni152(int(spec[len(MNI_PREFIX):]))
    return medsr.io.read(spec)
