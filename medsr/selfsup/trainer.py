"""A training loop that lives within a wall-clock budget.

After a few calibration steps the loop estimates how many steps fit in the time it was
given and uses that number as the length of its cosine learning-rate schedule; on a
shared machine it re-plans that length every ~10% of the run from the recent step time.
It stops at the planned step or as soon as the clock runs out, whichever comes first, and
reports how far it got. With ``max_steps`` nothing depends on the clock: two runs with
the same seed and the same ``steps`` are identical on CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from medsr.selfsup.pairs import PairSampler

CALIBRATION_STEPS = 6
MIN_LR_FRACTION = 0.05
LOSSES = {"mse": nn.MSELoss, "l1": nn.L1Loss}


@dataclass
class TrainReport:
    steps: int = 0
    planned_steps: int = 0
    seconds: float = 0.0
    seconds_per_step: float = 0.0
    stopped_by: str = ""          # "steps" (all planned done) or "budget"
    loss_first: float = float("nan")
    loss_last: float = float("nan")  # mean over the last 10% of steps
    losses: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("losses")
        return d


def lr_at(step: int, total: int, base: float) -> float:
    """``base`` for the calibration steps, then cosine decay to ``MIN_LR_FRACTION * base``
    at step ``total`` (so the first steps do not depend on the planned total)."""
    if step <= CALIBRATION_STEPS:
        return base
    t = min(1.0, (step - CALIBRATION_STEPS) / max(1, total - CALIBRATION_STEPS))
    return base * (MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * t)))


def train(model: nn.Module, sampler: PairSampler, *, seconds: float, seed: int = 0,
          device: torch.device | str = "cpu", batch: int = 16, lr: float = 1e-3,
          max_steps: int | None = None, reserve_s: float = 0.0, loss: str = "mse",
          progress: Callable[[int, int, float], None] | None = None) -> TrainReport:
    """Fit ``model`` on pairs from ``sampler`` for at most ``seconds`` (and ``max_steps``).

    ``reserve_s``: of those seconds, what to leave unused at the end (the caller's
    inference), as timed at the start. The machine may be shared: the reserve is scaled
    by how much slower (or faster) recent steps run than the calibration steps, so
    training stops early enough when the load rises. ``progress(step, planned, loss)`` is
    called after every step. ``loss``: "mse" (the conditional mean, what PSNR rewards;
    the default, measured in docs/self-supervised.md) or "l1".
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    start = time.perf_counter()
    end = start + max(0.0, seconds)
    deadline = end - reserve_s
    rng = np.random.default_rng(seed)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = LOSSES[loss]()
    rep = TrainReport()
    planned = max_steps if max_steps is not None else None
    calib_start = None
    per_step = recent = None
    last = start
    replan_every = 10
    step = 0
    while True:
        total = planned if planned is not None else step + 1  # unknown yet: lr stays base
        if planned is not None and step >= planned:
            rep.stopped_by = "steps"
            break
        now = time.perf_counter()
        if now >= deadline and step > 0:
            rep.stopped_by = "budget"
            break
        lo, hi = sampler.sample(rng, batch)
        lo, hi = lo.to(device), hi.to(device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total, lr)
        opt.zero_grad(set_to_none=True)
        err = loss_fn(model(lo), hi)
        err.backward()
        opt.step()
        value = float(err.detach())
        rep.losses.append(value)
        step += 1
        now = time.perf_counter()
        if per_step is not None:  # track the load: scale the reserve by the slow-down
            recent = 0.95 * recent + 0.05 * (now - last) if recent else now - last
            slow = min(3.0, max(0.5, recent / per_step))
            deadline = end - reserve_s * slow
            if max_steps is None and (step - 1 - CALIBRATION_STEPS) % replan_every == 0:
                # the load changed: re-plan the schedule's length to the time left
                planned = step + max(1, int(0.95 * (deadline - now) / recent))
        last = now
        if step == 1:
            calib_start = time.perf_counter()  # the first step pays one-off costs
        elif planned is None and step == 1 + CALIBRATION_STEPS:
            per_step = (now - calib_start) / CALIBRATION_STEPS
            left = deadline - now
            planned = step + max(0, int(0.95 * left / per_step))
            replan_every = max(10, (planned - step) // 10)
        if progress is not None:
            progress(step, planned or 0, value)
    rep.steps = step
    rep.planned_steps = planned if planned is not None else step
    rep.seconds = time.perf_counter() - start
    rep.seconds_per_step = rep.seconds / max(1, step)
    if rep.losses:
        rep.loss_first = rep.losses[0]
        tail = rep.losses[-max(1, len(rep.losses) // 10):]
        rep.loss_last = float(np.mean(tail))
    model.eval()
    return rep
