"""A model against the interpolation baselines on held-out volumes: per-volume PSNR /
SSIM / NRMSE under one stated degradation, as ``medsr eval (--run DIR | --model PATH)
--data ...`` writes them (CSV, Markdown, JSON, figures).

For every HR volume: LR = D(HR) (seeded; or a paired LR file), SR = model(LR) by the one
runner of ``medsr infer`` (:func:`medsr.pipeline.super_resolve_volume`: tiled, fused over
planes, flips with ``tta``, exact grid, clipped; :func:`predict_volume` is that call for
one array), baselines = resize(LR) by nearest / linear / cubic / Lanczos onto the HR grid,
and every result is scored against HR in the HR intensity units (data range = HR max -
min, as ``medsr eval --reference --test``), optionally inside a mask and without a border
of ``crop`` voxels. The summary is :func:`medsr.evaluation.report.summary` (mean, sample
std with ddof=1).
"""

from __future__ import annotations

import glob as globmod
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import medsr.io
from medsr import degrade, metrics
from medsr.devices import select_device
from medsr.errors import UserError
from medsr.evaluation import report
from medsr.evaluation.figures import benchmark_figure
from medsr.evaluation.report import METRICS, STD_CONVENTION
from medsr.geometry import downsampled_affine, plan_grid
from medsr.inference.resolvers import net_passes
from medsr.interpolate import resize
from medsr.io.common import atomic_path, check_output
from medsr.models.checkpoint import load_model
from medsr.pipeline import super_resolve_volume
from medsr.provenance import sha256_of
from medsr.volume import Volume

__all__ = ["BASELINES", "METRICS", "benchmark_command", "benchmark_model", "default_axis",
           "predict_volume", "summarise", "volume_factors"]

BASELINES = ("nearest", "linear", "cubic", "lanczos")


# --- the model through the one runner ---------------------------------------------------------

def volume_factors(info: dict[str, Any], axis: int | None = None) -> tuple[int, int, int]:
    """Per-volume-axis factors the model realises (1 along the slice normal in 2D)."""
    scale = [int(k) for k in info["scale"]]
    if int(info["spatial_dims"]) == 3:
        return tuple(scale)  # type: ignore[return-value]
    normal = default_axis(info) if axis is None else int(axis)
    out = [1, 1, 1]
    for ax, k in zip([a for a in range(3) if a != normal], scale):
        out[ax] = k
    return tuple(out)  # type: ignore[return-value]


def default_axis(info: dict[str, Any]) -> int:
    """The first slice normal the model was trained on (2 when unknown)."""
    axes = (info.get("sampling") or {}).get("axes") or [2]
    return int(axes[0])


def predict_volume(model: nn.Module, volume: Volume | np.ndarray, info: dict[str, Any], *,
                   axis: int | None = None, batch_size: int | None = None,
                   device: str | torch.device = "cpu", tta: bool = False) -> np.ndarray:
    """The super-resolved array, shape = input shape x :func:`volume_factors` (channels last
    kept), float32 in the input's intensity units: what ``medsr infer --model`` makes
    (:func:`medsr.pipeline.super_resolve_volume`: tiled, fused over planes, exact grid,
    clipped at 0 for a non-negative input)."""
    vol = volume if isinstance(volume, Volume) else Volume(np.asarray(volume), np.eye(4), {})
    if vol.data.ndim not in (3, 4):
        raise UserError(f"expected a (I, J, K[, C]) volume, got shape {vol.data.shape}")
    out = run_network(vol, model, info, volume_factors(info, axis),
                      name=str(info.get("architecture") or "the network"), device=device,
                      tta=tta, batch_size=batch_size)
    return np.asarray(out.data, dtype=np.float32)


def run_network(vol: Volume, model: nn.Module, info: dict[str, Any],
                factors: tuple[int, int, int], *, name: str,
                device: str | torch.device = "cpu", tta: bool = False,
                batch_size: int | None = None, label: str = "volume") -> Volume:
    """``vol`` super-resolved by ``factors`` with a loaded network: the one runner,
    :func:`medsr.pipeline.super_resolve_volume` (``name`` is the network's name in its
    messages, ``label`` the volume's)."""
    grid = plan_grid(vol, scale=factors)
    return super_resolve_volume(vol, grid, passes=net_passes(grid, model, info, name),
                                device=device, tta=tta, batch=batch_size, progress=False,
                                label=label).volume


# --- scoring ----------------------------------------------------------------------------------

def _degradation_for(info: dict[str, Any], degradation: Any,
                     factors: tuple[int, int, int]) -> Any:
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


def benchmark_model(model_or_path: Any, data: list[str | os.PathLike], degradation: Any = None,
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
            raise UserError("benchmark_model needs the checkpoint info with a model object")
    if not data:
        raise UserError("no evaluation volumes given")
    if lr_data is not None and len(lr_data) != len(data):
        raise UserError("give one paired LR file per HR volume")
    if masks is not None and len(masks) not in (1, len(data)):
        raise UserError("give one mask for all volumes or one per volume")
    factors = volume_factors(info, axis)
    normal = None if int(info["spatial_dims"]) == 3 else (
        axis if axis is not None else default_axis(info))
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
        sr = run_network(lr_vol, model, info, factors, name=label, device=device, tta=tta,
                         batch_size=batch_size, label=name)
        outputs["model"] = _as_chw(sr.data)
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
            benchmark_figure(Path(figures_dir), name, lr, outputs, hr, factors, normal)
    return {"rows": rows, "summary": summarise(rows), "model": {
        k: info.get(k) for k in ("architecture", "scale", "spatial_dims", "step")},
        "factors": list(factors), "degradation": degr_params or "paired LR",
        "crop": crop, "mask": [str(m) for m in masks] if masks else None,
        "std": STD_CONVENTION}


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean and sample std (ddof=1) per method and metric, in first-seen method order:
    :func:`medsr.evaluation.report.summary` with flat keys (``psnr_mean``, ``psnr_std``)."""
    return report.flat_summaries(rows)


# --- the command ------------------------------------------------------------------------------

def expand_paths(paths: list[str]) -> list[str]:
    """Files, globs and folders (their files, sorted, no hidden or .json files) -> files."""
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


def check_out_folder(out: Path, overwrite: bool, inputs: list) -> None:
    """``--out`` follows every output's rules (:func:`check_output`): not an input, not in
    or holding one; an existing folder only with ``overwrite`` and only if medsr wrote it
    (an empty one is taken as it is)."""
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


def checkpoint_of(run: str | os.PathLike | None, model: str | os.PathLike | None,
                  checkpoint: str = "best") -> Path:
    """The checkpoint: ``model``, or ``run``'s ``checkpoints/<checkpoint>.safetensors``
    (``last`` when that one is missing)."""
    if bool(run) == bool(model):
        raise UserError("give exactly one of --run DIR or --model PATH")
    if model:
        return Path(model)
    ckpt = Path(run) / "checkpoints" / f"{checkpoint}.safetensors"
    if not ckpt.exists():
        ckpt = Path(run) / "checkpoints" / "last.safetensors"
    if not ckpt.exists():
        raise UserError(f"{run} holds no checkpoint (checkpoints/*.safetensors)")
    return ckpt


def benchmark_command(*, data: list[str] | None, run: str | None = None,
                      model: str | None = None, checkpoint: str = "best",
                      lr_data: list[str] | None = None, degradation: str | None = None,
                      masks: list[str] | None = None, crop: int = 0, axis: int | None = None,
                      out: str | None = None, figures: bool = True, seed: int = 0,
                      device: str = "auto", tta: bool = False,
                      overwrite: bool = False) -> dict[str, Any]:
    """``medsr eval (--run DIR | --model PATH) --data ...``: :func:`benchmark_model`, its
    tables (:func:`medsr.evaluation.report.write_benchmark_tables`) and figures in the
    folder ``out`` (default RUN/eval or ./medsr-eval; it appears whole or not at all),
    the Markdown table printed. Returns the result (``checkpoint`` added)."""
    if bool(run) == bool(model):
        raise UserError("give exactly one of --run DIR or --model PATH")
    if not data:
        raise UserError("--data is required with --run / --model")
    ckpt = checkpoint_of(run, model, checkpoint)
    files = expand_paths(data)
    if not files:
        raise UserError(f"no volumes match --data {' '.join(data)}")
    folder = Path(out) if out else (Path(run) / "eval" if run else Path("medsr-eval"))
    lr_files = expand_paths(lr_data) if lr_data else None
    check_out_folder(folder, overwrite, [ckpt, *data, *files, *(lr_data or []),
                                         *(lr_files or []), *(masks or [])])
    dev = select_device(device)
    with atomic_path(folder) as tmp:  # the folder appears whole, or not at all
        result = benchmark_model(ckpt, files, degradation, lr_data=lr_files, masks=masks,
                                 crop=int(crop or 0), axis=axis, seed=int(seed),
                                 device=str(dev), tta=tta,
                                 figures_dir=tmp / "figures" if figures else None)
        result["checkpoint"] = str(ckpt)
        result["checkpoint_sha256"] = sha256_of(ckpt)  # the identity sidecars and cohorts use
        written = report.write_benchmark_tables(result, tmp)
    paths = {k: folder / p.name for k, p in written.items()}
    print(report.benchmark_markdown(result), end="")
    print(f"tables: {paths['csv']}, {paths['md']}, {paths['json']}")
    return result
