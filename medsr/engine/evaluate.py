"""Model evaluation: per-volume PSNR / SSIM / NRMSE of a network and of the interpolation
baselines under one stated degradation, as CSV, Markdown and JSON tables plus figures.

For every HR volume: LR = D(HR) (seeded; or a paired LR file), SR = model(LR) by the one
runner of ``medsr infer`` (:func:`medsr.pipeline.run.super_resolve_volume`: tiled, fused over
planes, flips with ``tta``, exact grid, clipped), baselines = resize(LR) by nearest /
linear / cubic / Lanczos onto the HR grid, and every result is scored against HR in the
HR intensity units (data range = HR max - min, as ``medsr eval --reference --test``),
optionally inside a mask and without a border of ``crop`` voxels.
"""

from __future__ import annotations

import argparse
import csv
import glob as globmod
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

import medsr.io
from medsr import metrics
from medsr.engine.checkpoint import load_model
from medsr.engine.predict import volume_factors
from medsr.errors import UserError
from medsr.geometry import downsampled_affine, plan_grid
from medsr.inference.resolvers import net_passes
from medsr.interpolate import resize
from medsr.io.common import atomic_path
from medsr.pipeline.run import super_resolve_volume

BASELINES = ("nearest", "linear", "cubic", "lanczos")
METRICS = ("psnr", "ssim", "nrmse")


def _degradation_for(info: dict[str, Any], degradation: Any, factors: tuple[int, int, int]):
    from medsr import degrade

    if degradation is None:
        d = info.get("degradation") or {}
        if d.get("spec"):
            return degrade.Degradation.from_dict(d["spec"])
        return degrade.load_preset(d.get("preset") or "bicubic", scale=factors,
                                   **(d.get("params") or {}))
    if isinstance(degradation, str):
        return degrade.load_preset(degradation, scale=factors)
    if isinstance(degradation, dict):
        return degrade.Degradation.from_dict(degradation)
    return degradation


def _as_chw(data: np.ndarray) -> np.ndarray:
    data = np.asarray(data, dtype=np.float32)
    return data[None] if data.ndim == 3 else np.moveaxis(data, -1, 0)


def evaluate_model(model_or_path: Any, data: list[str | os.PathLike], degradation: Any = None,
                   *, info: dict[str, Any] | None = None, lr_data: list | None = None,
                   masks: list | None = None, crop: int = 0, axis: int | None = None,
                   methods: tuple[str, ...] = BASELINES, seed: int = 0,
                   device: str = "cpu", batch_size: int | None = None, tta: bool = False,
                   figures_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Score a model and the baselines on ``data``; returns ``{"rows", "summary", ...}``.

    ``model_or_path``: a checkpoint path, or an ``nn.Module`` together with ``info``.
    ``degradation``: None (the one the checkpoint was trained with), a preset name, a
    ``Degradation.to_dict()`` mapping, or a Degradation. ``masks``: one path for all
    volumes or one per volume. The model's output is what ``medsr infer --model`` writes
    for the LR volume (``tta``: the flip self-ensemble, ``--tta``).
    """
    if isinstance(model_or_path, (str, os.PathLike)):
        model, info = load_model(model_or_path, device=device)
        label = Path(model_or_path).name
    else:
        label = str((info or {}).get("architecture") or "the network")
        model = model_or_path
        if info is None:
            raise UserError("evaluate_model needs the checkpoint info with a model object")
    if not data:
        raise UserError("no evaluation volumes given")
    if lr_data is not None and len(lr_data) != len(data):
        raise UserError("give one paired LR file per HR volume")
    if masks is not None and len(masks) not in (1, len(data)):
        raise UserError("give one mask for all volumes or one per volume")
    factors = volume_factors(info, axis)
    normal = None if int(info["spatial_dims"]) == 3 else (
        axis if axis is not None else int((info.get("sampling") or {}).get("axes", [2])[0]))
    d = _degradation_for(info, degradation, factors) if lr_data is None else None
    rows: list[dict[str, Any]] = []
    degr_params: list[dict] = []
    for i, path in enumerate(data):
        hr_vol = medsr.io.read(path)
        hr = _as_chw(hr_vol.data)
        name = Path(path).name
        if lr_data is not None:
            lr_vol = medsr.io.read(lr_data[i])
            lr = _as_chw(lr_vol.data)
        else:
            d.set_random_state(seed + i)
            lr = d(hr, spacing=tuple(float(s) for s in hr_vol.spacing))
            lr = np.asarray(lr.cpu().numpy() if isinstance(lr, torch.Tensor) else lr, np.float32)
            degr_params.append(getattr(d, "last_params", {}))
            lr_vol = hr_vol.with_data(lr[0] if lr.shape[0] == 1 else np.moveaxis(lr, 0, -1),
                                      affine=downsampled_affine(hr_vol.affine, factors))
        expected = tuple(int(n // k) for n, k in zip(hr.shape[1:], factors))
        if tuple(lr.shape[1:]) != expected:
            raise UserError(f"{name}: LR shape {tuple(lr.shape[1:])} is not HR shape "
                            f"{tuple(hr.shape[1:])} / factors {factors}; crop the HR volume to "
                            "a multiple of the scale or check the degradation")
        hr = hr[(slice(None),) + tuple(slice(0, n * k) for n, k in zip(expected, factors))]
        mask = None
        if masks is not None:
            m = medsr.io.read(masks[0] if len(masks) == 1 else masks[i]).data
            mask = np.asarray(m).reshape(m.shape[:3])[tuple(slice(0, s) for s in hr.shape[1:])] > 0
        lr_arr = lr[0] if lr.shape[0] == 1 else np.moveaxis(lr, 0, -1)
        outputs: dict[str, np.ndarray] = {}
        for m_name in methods:
            outputs[m_name] = _as_chw(resize(lr_arr, factors, method=m_name,
                                             shape_out=hr.shape[1:]))
        grid = plan_grid(lr_vol, scale=factors)
        sr = super_resolve_volume(lr_vol, grid, passes=net_passes(grid, model, info, label),
                                  device=device, tta=tta, batch=batch_size, progress=False,
                                  label=name)
        outputs["model"] = _as_chw(sr.volume.data)
        ref = hr[0] if hr.shape[0] == 1 else np.moveaxis(hr, 0, -1)
        data_range = metrics.default_data_range(ref, crop)
        for m_name, out in outputs.items():
            test = out[0] if out.shape[0] == 1 else np.moveaxis(out, 0, -1)
            if test.shape != ref.shape:
                raise UserError(f"{m_name} output shape {test.shape} != HR shape {ref.shape}")
            scores = metrics.evaluate(ref, test, data_range=data_range, mask=mask, crop=crop)
            rows.append({"volume": name, "method": m_name,
                         **{k: float(scores[k]) for k in METRICS}})
        if figures_dir is not None:
            _figure(Path(figures_dir), name, lr, outputs, hr, factors, normal)
    return {"rows": rows, "summary": summarise(rows), "model": {
        k: info.get(k) for k in ("architecture", "scale", "spatial_dims", "step")},
        "factors": list(factors), "degradation": degr_params or "paired LR",
        "crop": crop, "mask": [str(m) for m in masks] if masks else None}


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean and (population) std per method and metric, in first-seen method order."""
    out: dict[str, dict[str, float]] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        sel = [r for r in rows if r["method"] == method]
        stats: dict[str, float] = {"n": len(sel)}
        for k in METRICS:
            v = np.array([r[k] for r in sel], dtype=np.float64)
            stats[f"{k}_mean"], stats[f"{k}_std"] = float(v.mean()), float(v.std())
        out[method] = stats
    return out


def _figure(out_dir: Path, name: str, lr: np.ndarray, outputs: dict, hr: np.ndarray,
            factors: tuple[int, int, int], normal: int | None) -> Path:
    from medsr.engine.figures import comparison_figure

    out_dir.mkdir(parents=True, exist_ok=True)
    ax = 2 if normal is None else normal
    idx = hr.shape[1 + ax] // 2
    lidx = min(idx // factors[ax], lr.shape[1 + ax] - 1)

    def cut(a: np.ndarray, i: int) -> np.ndarray:
        return np.take(a[0], i, axis=ax)

    panels = {"LR": cut(lr, lidx), "cubic": cut(outputs["cubic"], idx) if "cubic" in outputs
              else None, "SR": cut(outputs["model"], idx), "HR": cut(hr, idx)}
    panels = {k: v for k, v in panels.items() if v is not None}
    stem = name.split(".")[0]
    return comparison_figure(panels, panels["HR"], out_dir / f"{stem}.png",
                             title=f"{name} (slice {idx} along axis {ax})")


# --- output tables -------------------------------------------------------------------------

def write_tables(result: dict[str, Any], out_dir: str | os.PathLike) -> dict[str, Path]:
    """eval.csv (one row per volume and method), eval.md and eval.json in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / "eval.csv", "md": out_dir / "eval.md", "json": out_dir / "eval.json"}
    with atomic_path(paths["csv"]) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["volume", "method", *METRICS])
            for r in result["rows"]:
                w.writerow([r["volume"], r["method"], *[repr(r[k]) for k in METRICS]])
    with atomic_path(paths["md"]) as tmp:
        tmp.write_text(markdown(result), encoding="utf-8")
    with atomic_path(paths["json"]) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return paths


def markdown(result: dict[str, Any]) -> str:
    """Per-volume PSNR / SSIM / NRMSE by method, then mean ± std."""
    methods = list(result["summary"])
    lines = ["| volume | metric | " + " | ".join(methods) + " |",
             "|---|---|" + "---|" * len(methods)]
    for vol in dict.fromkeys(r["volume"] for r in result["rows"]):
        for k in METRICS:
            vals = {r["method"]: r[k] for r in result["rows"] if r["volume"] == vol}
            lines.append(f"| {vol} | {k} | " + " | ".join(_num(vals.get(m), k) for m in methods)
                         + " |")
    for k in METRICS:
        s = result["summary"]
        lines.append(f"| **mean ± std** | {k} | " + " | ".join(
            f"{_num(s[m][f'{k}_mean'], k)} ± {_num(s[m][f'{k}_std'], k)}" for m in methods) + " |")
    return "\n".join(lines) + "\n"


def _num(v: float | None, metric: str) -> str:
    if v is None:
        return ""
    return f"{v:.2f}" if metric == "psnr" else f"{v:.4f}"


# --- CLI -------------------------------------------------------------------------------------

def add_model_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``medsr eval (--run DIR | --model PATH) --data ...``."""
    g = parser.add_argument_group("model evaluation")
    g.add_argument("--run", help="a training run directory (uses its best checkpoint)")
    g.add_argument("--model", help="a checkpoint (.safetensors)")
    g.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="which checkpoint of --run (default best)")
    g.add_argument("--data", nargs="+", help="HR volumes: files, globs or folders")
    g.add_argument("--lr-data", nargs="+", help="paired LR volumes (skip the degradation)")
    g.add_argument("--degradation", help="a preset name (default: the one trained with)")
    g.add_argument("--crop", type=int, default=0, help="border voxels left out of the scores")
    g.add_argument("--axis", type=int, choices=(0, 1, 2), help="slice normal for 2D models")
    g.add_argument("--out", help="output folder for tables and figures "
                                 "(default RUN/eval or ./medsr-eval)")
    g.add_argument("--no-figures", action="store_true", help="skip the per-volume figures")
    g.add_argument("--seed", type=int, default=0, help="seed of the degradation")
    g.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    g.add_argument("--tta", action="store_true", help="the flip self-ensemble (as infer --tta)")
    if not any("--mask" in a.option_strings for a in parser._actions):
        g.add_argument("--mask", nargs="+", help="mask volume(s): one for all or one per volume")


def _expand(paths: list[str]) -> list[str]:
    out: list[str] = []
    for p in paths:
        if Path(p).is_dir():
            out += sorted(str(f) for f in Path(p).iterdir()
                          if f.is_file() and not f.name.startswith(".") and f.suffix != ".json")
        elif any(c in p for c in "*?["):
            out += sorted(globmod.glob(p))
        else:
            out.append(p)
    return out


def _check_out(out: Path, overwrite: bool, inputs: list) -> None:
    """``--out`` follows every output's rules (:func:`check_output`): not an input, not in
    or holding one; an existing folder only with ``overwrite`` and only if medsr wrote it
    (an empty one is taken as it is)."""
    from medsr.io.common import check_output

    inputs = [p for p in inputs if not str(p).startswith("mni152:")]
    exists = os.path.lexists(out)
    if exists and (out.is_symlink() or not out.is_dir()):
        raise UserError(f"--out {out} exists and is not a folder; choose another --out")
    empty = exists and not any(True for _ in out.iterdir())
    try:
        check_output(out, overwrite or empty, inputs)
    except UserError as exc:  # its advice names infer's -o
        msg = str(exc).replace("another -o", "another --out").replace("with -o", "with --out")
        raise type(exc)(msg) from None


def evaluate_model_cli(args: argparse.Namespace) -> int:
    """``medsr eval --run DIR | --model PATH --data ...``: tables + figures; exit code."""
    from medsr.devices import select_device

    if bool(getattr(args, "run", None)) == bool(getattr(args, "model", None)):
        raise UserError("give exactly one of --run DIR or --model PATH")
    if not getattr(args, "data", None):
        raise UserError("--data is required with --run / --model")
    if args.run:
        ckpt = Path(args.run) / "checkpoints" / f"{getattr(args, 'checkpoint', 'best')}.safetensors"
        if not ckpt.exists():
            ckpt = Path(args.run) / "checkpoints" / "last.safetensors"
        if not ckpt.exists():
            raise UserError(f"{args.run} holds no checkpoint (checkpoints/*.safetensors)")
    else:
        ckpt = Path(args.model)
    data = _expand(args.data)
    if not data:
        raise UserError(f"no volumes match --data {' '.join(args.data)}")
    out = Path(args.out) if getattr(args, "out", None) else (
        Path(args.run) / "eval" if args.run else Path("medsr-eval"))
    masks = getattr(args, "mask", None)
    masks = [masks] if isinstance(masks, str) else masks
    lr_data = _expand(args.lr_data) if getattr(args, "lr_data", None) else None
    _check_out(out, bool(getattr(args, "overwrite", False)),
               [ckpt, *args.data, *data, *(args.lr_data or []), *(lr_data or []),
                *(masks or [])])
    device = select_device(getattr(args, "device", "auto"))
    with atomic_path(out) as tmp:  # the folder appears whole, or not at all
        result = evaluate_model(ckpt, data, getattr(args, "degradation", None),
                                lr_data=lr_data,
                                masks=masks, crop=int(getattr(args, "crop", 0) or 0),
                                axis=getattr(args, "axis", None),
                                seed=int(getattr(args, "seed", 0)),
                                device=str(device), tta=bool(getattr(args, "tta", False)),
                                figures_dir=None if getattr(
                                    args, "no_figures", False) else tmp / "figures")
        result["checkpoint"] = str(ckpt)
        written = write_tables(result, tmp)
    paths = {k: out / p.name for k, p in written.items()}
    print(markdown(result), end="")
    print(f"tables: {paths['csv']}, {paths['md']}, {paths['json']}")
    return 0
