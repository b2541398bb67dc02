"""A training loop that lives within a wall-clock budget.

After a few calibration steps the loop estimates how many steps fit in the time it was
given (:func:`steps_that_fit`) and uses that number as the length of its cosine
learning-rate schedule; on a shared machine it re-plans that length every ~10% of the run
from the recent step time, and at every step of the last such stretch, so that it stops
when the next step would not fit (the budget stopped it), not at a count planned from an
older step time. With ``max_steps`` nothing depends on the clock: two runs with the same
seed and the same ``steps`` are identical on CPU.
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
PLAN_FILL = 0.95          # plan steps for this share of the time left (step-time jitter)
MAX_SLOWDOWN = 3.0        # the inference reserve grows with the step time up to this
MIN_LR_FRACTION = 0.05
LOSSES = {"mse": nn.MSELoss, "l1": nn.L1Loss}


@dataclass
class TrainReport:
    steps: int = 0
    planned_steps: int = 0
    seconds: float = 0.0
    seconds_per_step: float = 0.0
    stopped_by: str = ""  # "budget" (time: no further step fits) or "steps" (max_steps)
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


def steps_that_fit(step: int, seconds_left: float, seconds_per_step: float,
                   fill: float = PLAN_FILL) -> int:
    """The planned total after ``step`` steps: ``step`` plus the whole steps of
    ``seconds_per_step`` that fit in ``fill`` of ``seconds_left`` (0 when none fits)."""
    if seconds_per_step <= 0:
        return step + 1
    return step + max(0, int(fill * max(0.0, seconds_left) / seconds_per_step))


def reserve_scale(recent_s: float, calibrated_s: float) -> float:
    """How much to grow the inference reserve when steps run ``recent_s`` against
    ``calibrated_s`` in calibration: a loaded machine slows inference too (up to
    MAX_SLOWDOWN); never below 1, since calibration steps also pay warm-up costs and the
    inference estimate was timed warm (a shrunk reserve overran the budget)."""
    return min(MAX_SLOWDOWN, max(1.0, recent_s / max(calibrated_s, 1e-12)))


def train(model: nn.Module, sampler: PairSampler, *, seconds: float, seed: int = 0,
          device: torch.device | str = "cpu", batch: int = 16, lr: float = 1e-3,
          max_steps: int | None = None, reserve_s: float = 0.0, loss: str = "mse",
          progress: Callable[[int, int, float], None] | None = None,
          clock: Callable[[], float] = time.perf_counter) -> TrainReport:
    """Fit ``model`` on pairs from ``sampler`` for at most ``seconds`` (and ``max_steps``).

    ``reserve_s``: of those seconds, what to leave unused at the end (the caller's
    inference), as timed at the start. The machine may be shared: the reserve is scaled
    up by how much slower recent steps run than the calibration steps
    (:func:`reserve_scale`), so training stops early enough when the load rises.
    ``clock`` (seconds; tests pass a fake one) times everything.
    ``progress(step, planned, loss)`` is called after every step. ``loss``: "mse" (the
    conditional mean, what PSNR rewards; the default, measured in docs/self-supervised.md)
    or "l1".
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    start = clock()
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
        now = clock()
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
        now = clock()
        if per_step is not None:  # track the load: scale the reserve by the slow-down
            recent = 0.95 * recent + 0.05 * (now - last) if recent else now - last
            deadline = end - reserve_s * reserve_scale(recent, per_step)
            if max_steps is None and ((step - 1 - CALIBRATION_STEPS) % replan_every == 0
                                      or planned - step <= replan_every):
                # the load changed (or the end is near): re-plan to the time left
                planned = steps_that_fit(step, deadline - now, recent)
        last = now
        if step == 1:
            calib_start = clock()  # the first step pays one-off costs
        elif planned is None and step == 1 + CALIBRATION_STEPS:
            per_step = (now - calib_start) / CALIBRATION_STEPS
            planned = steps_that_fit(step, deadline - now, per_step)
            replan_every = max(10, (planned - step) // 10)
        if progress is not None:
            progress(step, planned or 0, value)
    if max_steps is None:
        rep.stopped_by = "budget"  # the plan was the time: no further step fitted
    rep.steps = step
    rep.planned_steps = planned if planned is not None else step
    rep.seconds = clock() - start
    rep.seconds_per_step = rep.seconds / max(1, step)
    if rep.losses:
        rep.loss_first = rep.losses[0]
        tail = rep.losses[-max(1, len(rep.losses) // 10):]
        rep.loss_last = float(np.mean(tail))
    model.eval()
    return rep
