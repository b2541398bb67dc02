"""The self-supervised time budget: what inference will take, what is held back for it,
and the refusal of a budget that set-up and inference alone do not fit in.

The whole call stays within its budget: the time inference will take is estimated by
running a batch of the scan's own planes through the network (:func:`estimate_inference`)
and held back from training (``INFERENCE_MARGIN`` times that); a budget without room to
train is refused (:class:`BudgetTooShort`), never overrun.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn

from medsr.errors import UserError
from medsr.inference.receptive_field import receptive_halo
from medsr.inference.tiling import reflect_pad
from medsr.selfsup.axes import ThroughPlane

# reserve this many times the estimated inference time (the estimate runs real planes
# through the network: within ~5% of the real time on a quiet machine; the trainer grows
# the reserve when the load rises, but only after enough steps to see it: with 1.15, a
# 60 s run on a 2-core EPYC that two busy processes joined after the estimate ended at
# 64.9 s, 8% over)
INFERENCE_MARGIN = 1.3
# fewer training steps than this: likely worse than the shipped default. The measured
# wins over it trained 2,400 steps or more; the network was +4.1 dB over cubic after
# 1,000 and +1.1 dB after 150 (docs/self-supervised.md), below the default's +2 to +5.
FEW_STEPS = 1000
TTA_MAX_SHARE = 0.25     # auto test-time flips when their inference fits in this budget share
MAX_HALO = 32


def halo_of(model: nn.Module) -> int:
    """Tile halo covering the receptive field: the summed radii of the convolutions
    (an upper bound for a feed-forward net) plus 3 for a Lanczos-3 skip."""
    return receptive_halo(model, extra=3, cap=MAX_HALO)


class BudgetTooShort(UserError):
    """A budget that set-up and inference alone do not fit in (refused, not overrun)."""

    def __init__(self, budget_s: float, setup_s: float, inference_s: float | None,
                 flips: int = 1, spent_s: float = 0.0, write_s: float = 0.0) -> None:
        self.budget_s, self.setup_s, self.inference_s = budget_s, setup_s, inference_s
        self.flips, self.spent_s, self.write_s = flips, spent_s, write_s
        super().__init__(self.message())

    def around(self, budget_s: float, spent_s: float, write_s: float) -> BudgetTooShort:
        """The same refusal for a command whose ``budget_s`` also pays for what came
        before this call (``spent_s``: starting, reading) and writing after it."""
        return BudgetTooShort(budget_s, self.setup_s, self.inference_s, self.flips,
                              spent_s, write_s)

    def message(self) -> str:
        known = self.inference_s is not None
        need = (self.spent_s + self.write_s + self.setup_s + 0.5
                + (INFERENCE_MARGIN * self.inference_s if known else self.setup_s))
        parts = [f"starting and reading took {self.spent_s:.1f} s, writing will take about "
                 f"{self.write_s:.1f} s"] if self.spent_s or self.write_s else []
        parts.append(f"set-up {self.setup_s:.1f} s" if known else
                     f"set-up used the rest ({self.setup_s:.1f} s) before it was done")
        if known:
            flips = f" with {self.flips} test-time flips" if self.flips > 1 else ""
            parts.append(f"applying the network about {self.inference_s:.1f} s{flips}")
        # suggest a budget that leaves training a quarter of it
        return (f"the {self.budget_s:g} s budget is too short for this scan on this "
                f"machine: {', '.join(parts)}, leaving no time to train; give at least "
                f"--budget {math.ceil(need / 0.75)}s (minutes for a result better than the "
                "shipped default)")


def estimate_inference(model: nn.Module, data: np.ndarray, tp: ThroughPlane,
                        device: torch.device, batch: int = 8) -> float:
    """Seconds the fused application to ``data`` will take: a batch of real planes, timed
    as ``apply_2d`` runs them (best of two, per orientation, scaled to the slice count)."""
    shape = data.shape
    others = [ax for ax in range(3) if ax != tp.axis and shape[ax] > 1]
    total = 0.0
    model.to(device).eval()
    for u in others or [tp.axis]:
        w = next(ax for ax in range(3) if ax not in (u, tp.axis))
        n = min(batch, shape[w])
        mid = shape[w] // 2 - n // 2
        planes = np.moveaxis(data, (w, u, tp.axis), (0, 1, 2))[mid:mid + n]
        x = torch.from_numpy(np.ascontiguousarray(planes, dtype=np.float32))[:, None]
        x = reflect_pad(x.to(device), (halo_of(model),) * 2)  # as tiled_forward pads
        best = float("inf")
        with torch.no_grad():
            for _ in range(2):
                t = time.perf_counter()
                model(x)
                best = min(best, time.perf_counter() - t)
        total += best * shape[w] / n
    model.train()
    return total
