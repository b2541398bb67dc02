"""Fit a through-plane network on one scan and apply it to the same scan (or a cohort).

    >>> from medsr.selfsup import super_resolve_self_supervised
    >>> sr, report = super_resolve_self_supervised(vol, budget_s=300)

The whole call (set-up, training and inference) stays within ``budget_s``: the time
inference will take is estimated by running a batch of the scan's own planes through the
network, and held back from the training time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medsr import geometry
from medsr.devices import select_device
from medsr.errors import UserError
from medsr.inference.apply import apply_2d
from medsr.intensity import Normalisation
from medsr.interpolate import resize
from medsr.progress import progress_bar
from medsr.selfsup.axes import (
    ThroughPlane,
    detect_through_plane,
    scan_profile,
)
from medsr.selfsup.blind import blind_profiles
from medsr.selfsup.budget import (
    FEW_STEPS,
    INFERENCE_MARGIN,
    TTA_MAX_SHARE,
    BudgetTooShort,
    estimate_inference,
    halo_of,
)
from medsr.selfsup.consistency import project
from medsr.selfsup.network import (
    ARCHITECTURE,
    AUTO_MAX_RATIO,
    architecture_of,
    build,
    choose_start,
    initial_model,
    load_fitted,
    save_fitted,
)
from medsr.selfsup.pairs import PairSampler
from medsr.selfsup.trainer import TrainReport, train
from medsr.volume import Volume

RESAMPLE_METHOD = "lanczos"
LEARNING_RATE = 2e-3  # from scratch and when fine-tuning (measured: docs/self-supervised.md)
# share of the shipped default in a fine-tuned network's final weights (WiSE-FT); off:
# measured +0.14 dB on the t1 slice, -1.2 dB on INIA19 at x4 box (docs/self-supervised.md)
PRIOR_WEIGHT = 0.0


@dataclass
class Fitted:
    """A network fitted on a scan, with the task it was fitted for."""

    model: nn.Module
    through_plane: ThroughPlane
    kernel: np.ndarray
    thickness_mm: float
    thickness_source: str
    init: str
    train_report: TrainReport
    extra: dict[str, Any] = field(default_factory=dict)

    def selfsup_info(self, seed: int) -> dict[str, Any]:
        return {"through_plane": self.through_plane.to_dict(),
                "slice_thickness_mm": self.thickness_mm,
                "slice_thickness_source": self.thickness_source,
                "slice_profile": [float(v) for v in self.kernel], "init": self.init,
                "seed": seed, "train": self.train_report.to_dict(), **self.extra}


def flip_sets(tp: ThroughPlane, shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Test-time flips: every combination of flipping the fine axes (together) and the
    thick axis. Each orientation's planes (u, t) then see all four flips of their two
    axes; all are exact symmetries of the task (the LR grid k m + (k - 1) / 2 is
    symmetric under a flip of the thick axis)."""
    fine = tuple(ax for ax in tp.inplane_axes if shape[ax] > 1)
    return [(), (tp.axis,), fine, (*fine, tp.axis)]


def _training_array(vol: Volume) -> np.ndarray:
    data = np.asarray(vol.data, dtype=np.float32)
    return data.mean(axis=3) if data.ndim == 4 else data


def _seed(seed: int, device: torch.device) -> None:
    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


@dataclass
class _Setup:
    tp: ThroughPlane
    thickness: float
    source: str
    kernel: np.ndarray
    data: np.ndarray
    sampler: PairSampler
    model: nn.Module
    started: str
    profile: str
    evidence: dict[str, Any]
    project: bool = True  # whether the output is projected under ``kernel``


def _prepare(vol: Volume, *, slice_thickness: float | None, slice_profile: np.ndarray | None,
             profile: str, seed: int, device: torch.device, init: str, patch: int,
             network: dict[str, Any] | None, thick_companion: bool = True,
             gradient_weighted: bool = True,
             in_budget: Callable[[], None] = lambda: None) -> _Setup:
    """Everything training needs: the task, the profile, the pair sampler, the network
    (``in_budget`` is called between the stages: it raises when the time is up)."""
    project_out = True
    evidence: dict[str, Any] = {}
    if profile == "auto" and slice_profile is None:
        blind = blind_profiles(vol, slice_thickness)
        tp = blind["task"]
        kernels, kernel = blind["kernels"], blind["kernel"]
        thickness, source = blind["thickness_mm"], blind["thickness_source"]
        project_out, profile = blind["project"], blind["profile"]
        evidence["profile_used"] = blind["description"]
        evidence["profile_estimate"] = blind["estimate"]
        if len(kernels) > 1:
            evidence["profile_mixture"] = {
                "families": blind["families"], "widths_mm": blind["widths_mm"],
                "spread": blind["spread"],
                "kernels": [[float(v) for v in kk] for kk in kernels]}
    else:
        tp, kernel, thickness, source = scan_profile(vol, profile, slice_thickness,
                                                     slice_profile)
        kernels = [kernel]
    # the first optimiser in a process imports torch._dynamo (seconds): pay it here, in the
    # set-up the budget accounts for, not in the first timed training step
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    data = _training_array(vol)
    norm = Normalisation.fit(data)
    sampler = PairSampler(norm.apply(data), tp.inplane_axes, tp.axis, kernels, tp.k, patch,
                          gradient_weighted=gradient_weighted,
                          thick_companion=thick_companion)
    in_budget()
    _seed(seed, device)
    if network:
        if init == "default":
            raise UserError("init='default' fine-tunes the shipped network; do not also "
                            "give a network specification")
        spec = dict(network)
        model, started = build(tp.k, spec.pop("architecture", ARCHITECTURE), **spec), "scratch"
    elif init == "auto":
        model, started, probe = choose_start(tp.k, sampler, seed, device)
        evidence.update(probe)
    else:
        model, started = initial_model(tp.k, init)
    return _Setup(tp, thickness, source, kernel, data, sampler, model, started,
                  "kernel" if slice_profile is not None else profile, evidence, project_out)


def fit(vol: Volume, *, seconds: float = 240.0, slice_thickness: float | None = None,
        slice_profile: np.ndarray | None = None, profile: str = "auto", seed: int = 0,
        device: str | torch.device = "auto", init: str = "auto", steps: int | None = None,
        batch: int = 16, patch: int = 48, lr: float = LEARNING_RATE,
        network: dict[str, Any] | None = None, loss: str = "mse",
        thick_companion: bool = True, gradient_weighted: bool = True,
        on_step: Callable[[int, int, float], None] | None = None) -> Fitted:
    """Train a (1, k) network on pairs made from ``vol``'s fine axes for ``seconds``
    (``profile`` as in :func:`super_resolve_self_supervised`; "auto": blind)."""
    dev = select_device(device)
    st = _prepare(vol, slice_thickness=slice_thickness, slice_profile=slice_profile,
                  profile=profile, seed=seed, device=dev, init=init, patch=patch,
                  network=network, thick_companion=thick_companion,
                  gradient_weighted=gradient_weighted)
    rep = train(st.model, st.sampler, seconds=seconds, seed=seed, device=dev, batch=batch,
                lr=lr, max_steps=steps, loss=loss, progress=on_step)
    return Fitted(st.model, st.tp, st.kernel, st.thickness, st.source, st.started, rep,
                  {"profile": st.profile, "projected": st.project, **st.evidence})


def auto_start(vol: Volume, *, slice_thickness: float | None = None,
               slice_profile: np.ndarray | None = None, profile: str = "auto",
               seed: int = 0, device: str | torch.device = "auto", patch: int = 48
               ) -> dict[str, Any]:
    """Where ``init="auto"`` would start on ``vol`` and why, without training: ``init``
    ("scratch" or "default:FILE") and the probe errors of :func:`choose_start`."""
    st = _prepare(vol, slice_thickness=slice_thickness, slice_profile=slice_profile,
                  profile=profile, seed=seed, device=select_device(device), init="auto",
                  patch=patch, network=None)
    return {"init": st.started, **st.evidence}


def apply(vol: Volume, model: nn.Module, *, device: str | torch.device = "auto",
          batch: int = 8, tta: bool = True, kernel: np.ndarray | None = None,
          progress: Callable[[int, int], None] | None = None) -> Volume:
    """Super-resolve ``vol``'s thick axis with a fitted (1, k) network, both orientations
    fused (and with ``tta`` the mean over :func:`flip_sets`), with ``kernel`` (the slice
    profile on the fine grid) made consistent with the acquired slices
    (:mod:`medsr.selfsup.consistency`), then resample to the exact spacing ratio if it is
    not the integer k."""
    dev = select_device(device)
    tp = detect_through_plane(vol)
    k = int(model.scale[1])
    if k != tp.k:
        raise UserError(f"the model upsamples by {k} but this scan needs factor "
                        f"{tp.factor:.4g} (x{tp.k} then resampling) along axis {tp.axis}")
    model = model.to(dev).eval()
    data = np.asarray(vol.data, dtype=np.float32)
    chans = [data] if data.ndim == 3 else [data[..., c] for c in range(data.shape[3])]
    factors = [1, 1, 1]
    factors[tp.axis] = k
    flips = flip_sets(tp, data.shape[:3]) if tta else [()]
    runs = len(flips) * len(chans)
    halo = halo_of(model)
    outs = []
    for c, ch in enumerate(chans):
        norm = Normalisation.fit(ch)
        x = norm.apply(ch)
        acc = None
        for i, fl in enumerate(flips):
            on = None
            if progress is not None:
                def on(done: int, total: int, n: int = c * len(flips) + i) -> None:
                    progress(n * total + done, runs * total)
            xf = np.ascontiguousarray(np.flip(x, fl)) if fl else x
            with torch.no_grad():
                y = apply_2d(model, xf, factors, device=dev, batch=batch, halo=halo,
                             fuse=True, progress=on)
            y = np.flip(y, fl) if fl else y
            acc = np.array(y) if acc is None else np.add(acc, y, out=acc)
        outs.append(norm.invert(acc / len(flips)))
    out = outs[0] if len(outs) == 1 else np.stack(outs, axis=3)
    if kernel is not None:
        out = project(out, data, tp.axis, kernel, k)
    shape_in = vol.spatial_shape
    f = np.ones(3)
    f[tp.axis] = tp.factor
    if tp.exact:
        affine = geometry.upsampled_affine(vol.affine, f)
    else:
        shape_out = geometry.output_shape(shape_in, f)
        r = np.ones(3)
        r[tp.axis] = tp.factor / k
        out = resize(out, r, RESAMPLE_METHOD, shape_out=shape_out).astype(np.float32)
        affine = geometry.upsampled_affine(vol.affine, f, shape_in, shape_out)
    return vol.with_data(out, affine)


def apply_saved(vol: Volume, model_path: str | Path, *, device: str | torch.device = "auto",
                tta: bool = True, consistency: bool = True) -> Volume:
    """Apply a model saved with ``save_model=`` to another scan acquired the same way
    (with the test-time flips unless ``tta=False``, and made consistent with its slices
    under the slice profile the model was fitted for unless ``consistency=False``)."""
    model, info = load_fitted(model_path, device=select_device(device))
    ss = info.get("selfsup", {})
    profile = ss.get("slice_profile") if ss.get("projected", True) else None
    kernel = np.asarray(profile, dtype=np.float64) if consistency and profile else None
    return apply(vol, model, device=device, tta=tta, kernel=kernel)


def mix_prior(model: nn.Module, prior: dict[str, torch.Tensor], weight: float) -> None:
    """Set ``model``'s weights to (1 - weight) * its own + weight * ``prior`` (a state dict
    of the same network): a fine-tuned network averaged with where it started (WiSE-FT,
    Wortsman et al. 2022), which keeps the prior's robustness on what the scan's pairs do
    not show (measured: docs/self-supervised.md)."""
    state = model.state_dict()
    with torch.no_grad():
        for name, value in state.items():
            if value.is_floating_point():
                value.mul_(1.0 - weight).add_(prior[name].to(value.device), alpha=weight)


def super_resolve_self_supervised(
        vol: Volume, *, budget_s: float = 300, slice_thickness: float | None = None,
        slice_profile: np.ndarray | None = None, seed: int = 0,
        device: str | torch.device = "auto", init: str = "auto",
        save_model: Path | None = None, progress: bool | None = True, profile: str = "auto",
        steps: int | None = None, batch: int = 16, patch: int = 48,
        lr: float = LEARNING_RATE, network: dict[str, Any] | None = None,
        loss: str = "mse", tta: bool | None = None, thick_companion: bool = True,
        gradient_weighted: bool = True,
        prior_weight: float = PRIOR_WEIGHT, consistency: bool = True
        ) -> tuple[Volume, dict[str, Any]]:
    """SR of ``vol``'s thick axis by a network trained on the scan itself, within ``budget_s``.

    Returns the super-resolved Volume (affine ``geometry.upsampled_affine``) and a report
    (task found, slice profile and where its thickness came from, steps trained, times).
    ``slice_profile``: a 1D kernel sampled on the output through-plane grid (overrides
    ``profile``, "gaussian" with FWHM = thickness or "rect" of width = thickness, or
    "auto", the default: not known, a mixture of both at the widths the scan's estimate
    fits, :func:`blind_profiles`; the report's "profile_used" says what was used).
    ``steps`` fixes the number of training steps (the budget still caps it); ``network``
    (``{"architecture": name, **hparams}``) replaces the default network (from scratch).
    A budget that set-up and inference alone do not fit in is refused (a UserError that
    names the budget needed) rather than overrun; one that leaves any time to training
    takes at least one step.
    ``loss``: "mse" or "l1"; ``tta``: average the four flips of :func:`flip_sets` at
    inference (None: when their estimated time fits in ``TTA_MAX_SHARE`` of the budget,
    and always with ``steps``, so that nothing then depends on the clock);
    ``thick_companion=False`` leaves out the pairs whose companion is the thick axis
    (:class:`PairSampler`; an ablation), ``gradient_weighted=False`` draws
    patches uniformly (another). A fine-tuned default ends as the average of its
    trained weights and the default's, ``prior_weight`` of the latter (:func:`mix_prior`);
    ``consistency`` projects the output onto the scan's own slices under the profile
    (:mod:`medsr.selfsup.consistency`).
    """
    t0 = time.perf_counter()
    if not budget_s > 0:
        raise UserError(f"the time budget must be positive, got {budget_s} s")
    if not 0.0 <= prior_weight <= 1.0:
        raise UserError(f"prior_weight must be in [0, 1], got {prior_weight}")
    if save_model is not None and not Path(save_model).parent.is_dir():
        raise UserError(f"cannot save the model: directory {Path(save_model).parent} "
                        "does not exist")
    dev = select_device(device)

    def in_budget() -> None:  # between set-up stages: refuse as soon as the budget is gone
        if time.perf_counter() - t0 >= budget_s:
            raise BudgetTooShort(budget_s, time.perf_counter() - t0, None)

    st = _prepare(vol, slice_thickness=slice_thickness, slice_profile=slice_profile,
                  profile=profile, seed=seed, device=dev, init=init, patch=patch,
                  network=network, thick_companion=thick_companion,
                  gradient_weighted=gradient_weighted, in_budget=in_budget)
    model, tp = st.model, st.tp
    fine_tuned = st.started != "scratch"
    prior = {n: v.detach().clone() for n, v in model.state_dict().items()} if fine_tuned else {}
    in_budget()
    est_infer = estimate_inference(model, st.data, tp, dev) * vol.channels
    n_flips = len(flip_sets(tp, st.data.shape))
    if tta is None:  # with fixed steps nothing may depend on the clock: flips always
        tta = steps is not None or n_flips * est_infer <= TTA_MAX_SHARE * budget_s
    if tta:
        est_infer *= n_flips
    setup = time.perf_counter() - t0
    reserve = INFERENCE_MARGIN * est_infer + 0.5
    train_s = budget_s - setup - reserve
    if train_s <= 0:  # set-up and inference alone do not fit: refuse, do not overrun
        raise BudgetTooShort(budget_s, setup, est_infer, n_flips if tta else 1)
    _seed(seed, dev)
    # medsr's one progress reporter: a bar on a terminal, timed lines in a batch job's log
    with progress_bar("self-supervised training", progress) as train_update:
        def on_step(step: int, planned: int, loss: float) -> None:
            train_update(step, planned or None, f"loss {loss:.4f}")

        rep = train(model, st.sampler, seconds=train_s + reserve, reserve_s=reserve,
                    seed=seed, device=dev, batch=batch, lr=lr, max_steps=steps,
                    loss=loss, progress=on_step)
    if fine_tuned and prior_weight > 0:
        mix_prior(model, prior, prior_weight)
    t_apply0 = time.perf_counter()
    with progress_bar("applying", progress) as on_slices:
        out = apply(vol, model, device=dev, tta=tta, progress=on_slices,
                    kernel=st.kernel if consistency and st.project else None)
    apply_s = time.perf_counter() - t_apply0
    fitted = Fitted(model, tp, st.kernel, st.thickness, st.source, st.started, rep,
                    {"profile": st.profile, "projected": consistency and st.project,
                     **st.evidence})
    probe = st.evidence.get("auto_probe_mse_default"), st.evidence.get("auto_probe_mse_lanczos")
    prior_wrong = None not in probe and probe[0] >= AUTO_MAX_RATIO * probe[1]
    report: dict[str, Any] = {
        "few_steps": rep.steps < FEW_STEPS and not prior_wrong,
        "method": "self-supervised", "architecture": architecture_of(model),
        **fitted.selfsup_info(seed), "device": str(dev), "budget_s": float(budget_s),
        "learning_rate": lr, "loss": loss, "test_time_flips": n_flips if tta else 1,
        "thick_companion": thick_companion, "gradient_weighted": gradient_weighted,
        "prior_weight": prior_weight if fine_tuned else 0.0,
        "consistency": consistency and st.project,
        "setup_s": setup, "train_s_allowed": max(0.0, train_s),
        "inference_s_estimated": est_infer, "inference_s": apply_s,
        "shape_in": list(vol.spatial_shape), "shape_out": list(out.spatial_shape),
    }
    if save_model is not None:
        report["saved_model"] = str(save_fitted(save_model, model, fitted.selfsup_info(seed)))
    report["seconds"] = time.perf_counter() - t0
    return out, report
