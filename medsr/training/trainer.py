"""The trainer object: one optimisation step (:meth:`Trainer.step`) over the bookkeeping all
steps share (learning rate, metrics, validation, best and last checkpoints, the training
state that makes a resume bit-exact). :class:`GANTrainer` (SRGAN / ESRGAN / EnhanceNet
configs) replaces only the step, adding the discriminator's update.

Under torchrun the network is wrapped in DistributedDataParallel (:meth:`Trainer.start`);
``model`` stays the bare network (saved without a "module." prefix, used for validation
and EMA), rank 0 alone writes.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from medsr import distributed
from medsr.errors import UserError
from medsr.models.checkpoint import save_model
from medsr.training import determinism
from medsr.training.build import build_optimizer, lr_at
from medsr.training.ema import EMA
from medsr.training.figures import training_curve
from medsr.training.logs import MetricsLog, Progress
from medsr.training.losses import CombinedLoss, discriminator_loss
from medsr.training.losses.ssim import ssim
from medsr.training.precision import training_precision
from medsr.training.state import (
    flatten_optimizer,
    latest_state,
    load_state,
    save_state_versioned,
    unflatten_optimizer,
)

log = logging.getLogger("medsr.train")


@dataclass
class RunState:
    """Counters that must survive a resume."""

    step: int = 0
    best_psnr: float = -math.inf
    best_step: int = -1
    acc: dict[str, float] = field(default_factory=dict)
    acc_n: int = 0


@torch.no_grad()
def validate(model: nn.Module, batch: dict[str, torch.Tensor], device: torch.device,
             chunk: int = 8) -> tuple[float, float]:
    """Mean PSNR / SSIM over the fixed validation patches (normalised intensities, range 1).

    Under torchrun each rank scores its contiguous block of the patches; the per-patch
    values are put in place in a zero vector and summed over ranks (adding zeros is exact),
    so every rank gets the very per-patch list, and mean, a single process computes.
    """
    n = batch["lr"].shape[0]
    mine = distributed.shard(n) if distributed.is_active() else range(n)
    was = model.training
    model.eval()
    values = np.zeros((2, n), dtype=np.float64)
    for a in range(mine.start, mine.stop, chunk):
        b = min(a + chunk, mine.stop)
        lr = batch["lr"][a:b].to(device)
        hr = batch["hr"][a:b].to(device)
        sr = model(lr).float()
        for i in range(sr.shape[0]):
            mse = float(torch.mean((sr[i] - hr[i]) ** 2))
            values[0, a + i] = 10.0 * math.log10(1.0 / mse) if mse > 0 else 100.0
            values[1, a + i] = float(ssim(sr[i:i + 1], hr[i:i + 1], data_range=1.0))
    model.train(was)
    if distributed.is_active():
        values = distributed.all_reduce_sum(torch.from_numpy(values), device).numpy()
    return float(np.mean(values[0].tolist())), float(np.mean(values[1].tolist()))


class Trainer:
    """A network, its loss, optimiser, EMA and AMP scaler, and the run's bookkeeping.

    ``disc`` (a discriminator) is carried, saved and restored here; only
    :class:`GANTrainer` trains it.
    """

    def __init__(self, cfg: dict, model: nn.Module, loss_fn: CombinedLoss,
                 device: torch.device, *, info: dict[str, Any],
                 val_batch: dict[str, torch.Tensor], run_dir: Path,
                 disc: nn.Module | None = None) -> None:
        self.cfg, self.model, self.loss_fn, self.device = cfg, model, loss_fn, device
        self.info, self.val_batch, self.run_dir = info, val_batch, run_dir
        self.ckpt_dir = run_dir / "checkpoints"
        self.main = distributed.is_main_process()
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.total = int(cfg["train"]["steps"])
        self.chunks = int(cfg["train"]["micro_batches"])
        self.clip = float(cfg["train"]["grad_clip"])
        self.amp_dtype, use_scaler = training_precision(cfg["train"]["amp"], device)
        self.optimizer = build_optimizer(model.parameters(), cfg["optim"])
        self.ema = EMA(model, cfg["train"]["ema"]) if cfg["train"]["ema"] > 0 else None
        self.disc = disc
        self.opt_d = None if disc is None else build_optimizer(
            disc.parameters(), {**cfg["optim"], "weight_decay": 0.0},
            lr=float(cfg["discriminator"]["lr"]))
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        self.state = RunState()
        self.net: nn.Module = model
        self.disc_net: nn.Module | None = disc
        self.bar: Progress | None = None
        columns = ["step", "lr", "loss", *[f"loss_{t}" for t in sorted(loss_fn.weights)]]
        columns += ["loss_d"] if disc is not None else []
        self.metrics = MetricsLog(run_dir / "metrics.csv", [*columns, "val_psnr", "val_ssim"])

    # --- one step ------------------------------------------------------------------------

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One optimiser step on ``batch``; the batch means of the loss and its terms.

        The batch may be split into ``train.micro_batches`` chunks: the gradient is that of
        the mean over the chunks, as DDP averages over ranks, and all chunks but the last
        skip DDP's all-reduce.
        """
        lr_t, hr_t = self._to_device(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum, parts_sum = 0.0, {}
        chunks = self.chunks
        for i, (lr_c, hr_c) in enumerate(zip(lr_t.chunk(chunks), hr_t.chunk(chunks))):
            last = i == chunks - 1
            with (contextlib.nullcontext() if self.world == 1 or last
                  else self.net.no_sync()):  # type: ignore[operator]
                with self._autocast():
                    loss, parts = self.loss_fn(self.net(lr_c), hr_c, None, None)
                self._backward(loss / chunks if chunks > 1 else loss)
            loss_sum += float(loss.detach())
            _accumulate(parts_sum, parts)
        self._step_generator()
        self._finish_step()
        return _means(loss_sum, parts_sum, chunks)

    def _to_device(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        cuda = self.device.type == "cuda"
        return (batch["lr"].to(self.device, non_blocking=cuda),
                batch["hr"].to(self.device, non_blocking=cuda))

    def _autocast(self) -> torch.autocast:
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype,
                              enabled=self.amp_dtype is not None)

    def _backward(self, loss: torch.Tensor) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def _step_generator(self) -> None:
        """Unscale, clip and apply the network's gradients."""
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
        else:
            self.optimizer.step()

    def _finish_step(self) -> None:
        if self.scaler is not None:
            self.scaler.update()
        if self.ema is not None:
            self.ema.update(self.model)

    # --- bookkeeping ---------------------------------------------------------------------

    def set_lr(self, step: int) -> float:
        """Set and return the learning rate of (0-based) ``step`` (a pure function of it)."""
        lr_now = lr_at(step, self.cfg["optim"], self.cfg["schedule"], self.total)
        for g in self.optimizer.param_groups:
            g["lr"] = lr_now
        return lr_now

    def start(self, progress: bool | None) -> None:
        """Training mode, the progress bar, and DDP's wrappers under torchrun."""
        self.bar = Progress(self.total, self.state.step, progress)
        self.model.train()
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
            if self.disc is not None:
                self.disc_net = DistributedDataParallel(self.disc, device_ids=ids)

    def record(self, step: int, lr_now: float, vals: dict[str, float]) -> None:
        """After step ``step``: average over ranks, log, validate, keep the best, save."""
        if self.world > 1:  # the mean of the ranks' local-batch means = the global-batch mean
            summed = distributed.all_reduce_sum(list(vals.values()), self.device)
            vals = {k: float(v) / self.world for k, v in zip(vals, summed.tolist())}
        if not math.isfinite(vals["loss"]):  # the same decision on every rank
            raise UserError(f"training diverged at step {step + 1} (loss is not finite); "
                            "lower optim.lr or set train.grad_clip")
        st, t = self.state, self.cfg["train"]
        st.step = s = step + 1
        for k, v in vals.items():
            st.acc[k] = st.acc.get(k, 0.0) + v
        st.acc_n += 1
        do_val = s % t["val_every"] == 0 or s == self.total
        row: dict[str, Any] = {}
        if do_val or s % t["log_every"] == 0 or s == self.total:
            row = {"step": s, "lr": lr_now, **{k: v / max(1, st.acc_n) for k, v in st.acc.items()}}
            st.acc, st.acc_n = {}, 0
        if do_val:
            self._validate(s, row)
        if row and self.main:
            self.metrics.write(row)
        if self.bar is not None:
            self.bar.update(s, row)
        if s % t["ckpt_every"] == 0 or s == self.total:
            self.save(s)

    def _validate(self, s: int, row: dict[str, Any]) -> None:
        psnr, ssim_v = validate(_ema_model(self.model, self.ema), self.val_batch, self.device)
        row.update(val_psnr=psnr, val_ssim=ssim_v)
        if psnr > self.state.best_psnr:
            self.state.best_psnr, self.state.best_step = psnr, s
            if self.main:
                save_model(self.ckpt_dir / "best.safetensors", _export(self.model, self.ema),
                           {**self.info, "step": s, "val_psnr": psnr, "val_ssim": ssim_v})

    def save(self, step: int) -> None:
        """The training state (every rank's RNG gathered) and ``last.safetensors``."""
        r_t, r_m = determinism.rng_state()
        per_rank = distributed.all_gather_objects(({k: v.clone() for k, v in r_t.items()}, r_m))
        if not self.main:
            return
        st = self.state
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        o_t, o_m = flatten_optimizer(self.optimizer, "optim")
        tensors.update(o_t)
        meta: dict[str, Any] = {"step": step, "best_psnr": st.best_psnr,
                                "best_step": st.best_step, "acc": st.acc,
                                "acc_n": st.acc_n, "optimizer": o_m}
        if self.ema is not None:
            tensors.update({f"ema.{k}": v for k, v in self.ema.state_dict().items()})
        if self.disc is not None and self.opt_d is not None:
            tensors.update({f"disc.{k}": v for k, v in self.disc.state_dict().items()})
            d_t, d_m = flatten_optimizer(self.opt_d, "optim_d")
            tensors.update(d_t)
            meta["optimizer_d"] = d_m
        if self.scaler is not None:
            meta["scaler"] = self.scaler.state_dict()
        tensors.update(r_t)
        meta["rng"] = r_m
        for r, (t_r, m_r) in enumerate(per_rank[1:], start=1):
            tensors.update({f"rank{r}.{k}": v for k, v in t_r.items()})
            meta.setdefault("rng_ranks", {})[str(r)] = m_r
        save_state_versioned(self.ckpt_dir, step, tensors, meta)
        save_model(self.ckpt_dir / "last.safetensors", _export(self.model, self.ema),
                   {**self.info, "step": step})

    def resume(self) -> None:
        """Load the newest training state of the run: weights, optimisers, RNG, counters."""
        tensors, meta = load_state(latest_state(self.ckpt_dir))
        self.model.load_state_dict(_sub(tensors, "model."))
        unflatten_optimizer(self.optimizer, tensors, meta["optimizer"], "optim")
        if self.ema is not None:
            self.ema.load_state_dict(_sub(tensors, "ema."))
        if self.disc is not None and self.opt_d is not None:
            self.disc.load_state_dict(_sub(tensors, "disc."))
            unflatten_optimizer(self.opt_d, tensors, meta["optimizer_d"], "optim_d")
        if self.scaler is not None and meta.get("scaler"):
            self.scaler.load_state_dict(meta["scaler"])
        _restore_rng(tensors, meta, self.rank)
        self.state = RunState(step=meta["step"], best_psnr=meta["best_psnr"],
                              best_step=meta["best_step"], acc=meta["acc"], acc_n=meta["acc_n"])

    def finish(self) -> dict[str, Any]:
        """Close the bar and logs, draw the training curve (rank 0); the run's summary."""
        if self.bar is not None:
            self.bar.close()
        self.metrics.close()
        if self.main:
            training_curve(self.run_dir / "metrics.csv", self.run_dir / "training_curve.png")
        return {"run_dir": str(self.run_dir), "steps": self.state.step,
                "best_psnr": self.state.best_psnr, "best_step": self.state.best_step,
                "last": str(self.ckpt_dir / "last.safetensors"),
                "best": str(self.ckpt_dir / "best.safetensors")}


class GANTrainer(Trainer):
    """A trainer whose step also updates the discriminator (adversarial loss > 0)."""

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """The generator's step (its loss sees the discriminator's logits), then the
        discriminator's step on real HR against the detached SR (one chunk only)."""
        assert self.disc is not None and self.opt_d is not None and self.disc_net is not None
        kind = self.cfg["loss"]["adversarial_kind"]
        lr_t, hr_t = self._to_device(batch)
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            sr = self.net(lr_t)
            self.disc.requires_grad_(False)
            fake = self.disc(sr)
            real = self.disc(hr_t) if kind == "relativistic" else None
            loss, parts = self.loss_fn(sr, hr_t, fake, real)
        self._backward(loss)
        parts_sum: dict[str, float] = {}
        _accumulate(parts_sum, parts)
        self._step_generator()
        self.disc.requires_grad_(True)
        with self._autocast():
            ld = discriminator_loss(kind, self.disc_net(hr_t), self.disc_net(sr.detach()))
        self.opt_d.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(ld).backward()
            self.scaler.step(self.opt_d)
        else:
            ld.backward()
            self.opt_d.step()
        self._finish_step()
        return {**_means(0.0 + float(loss.detach()), parts_sum, 1), "loss_d": float(ld.detach())}


def _accumulate(total: dict[str, float], parts: dict[str, float]) -> None:
    for k, v in parts.items():
        total[k] = total.get(k, 0.0) + v


def _means(loss_sum: float, parts_sum: dict[str, float], chunks: int) -> dict[str, float]:
    return {"loss": loss_sum / chunks, **{f"loss_{k}": v / chunks for k, v in parts_sum.items()}}


def _restore_rng(tensors: dict[str, torch.Tensor], meta: dict, rank: int) -> None:
    """This rank's saved RNG states (rank 0's when the run was saved with fewer ranks)."""
    own = _sub(tensors, f"rank{rank}.") if rank > 0 else {}
    if own and str(rank) in meta.get("rng_ranks", {}):
        determinism.set_rng_state(own, meta["rng_ranks"][str(rank)])
    else:
        if rank > 0:
            log.warning("no saved RNG state for rank %d (the run was saved with fewer "
                        "processes); using rank 0's", rank)
        determinism.set_rng_state(tensors, meta["rng"])


def _sub(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _export(model: nn.Module, ema: EMA | None) -> dict[str, torch.Tensor]:
    """The weights a checkpoint carries: the EMA average when EMA is on."""
    return ema.weights_for(model) if ema is not None else model.state_dict()


def _ema_model(model: nn.Module, ema: EMA | None) -> nn.Module:
    if ema is None:
        return model
    m = copy.deepcopy(model)
    m.load_state_dict(ema.weights_for(model))
    return m
