"""How much self-supervision loses against pairs made along the true thick axis.

Self-supervised SR learns the thick axis from the scan's fine axes, which assumes they
carry the same kind of detail. An EPI breaks that: along its phase-encoding axis the
image is blurrier than along the readout axis. This pipeline measures the cost on the
dipy b0 slab (``benchmark_selfsup.py``'s ``b0``, thick slices simulated along its second
in-plane axis y, the one with less high-frequency power):

* ``self-sup``: pairs from the scan's fine axes (what ``medsr infer --self-supervised``
  does), trained on the thick-slice scan;
* ``oracle, fine axis``: the same network, start, steps and seed, trained on pairs made
  along the same fine axis, but from the ground truth of slices 0..4, whose thick axis
  is at full resolution: the pairs' companion axis is as fine as in the planes the
  network is applied to (the scan's own pairs have the thick axis coarse there, and a 2D
  image has no other companion);
* ``oracle, thick axis``: the same, with pairs made along the TRUE thick axis of that
  ground truth (impossible in practice: it needs the thin slices the scan does not have);

all three applied to the thick-slice scan as ``medsr`` does (both orientations, flips,
projection onto the slices) and scored on slices 5..9 only (held out from the oracles).
The gap between self-sup and the fine-axis oracle is what the coarse companion costs;
between the two oracles, what the thick axis's own statistics are worth; the gaps to
cubic, what each kind of pair can teach.

``--image t1`` does the same on the 2D T1 slice (``benchmark_selfsup.py``'s ``t1``, thick
along axis 0), whose axes have the same spectra: the oracles learn from columns 0..127
and all are scored on columns 128..255.

    python pipelines/selfsup_anisotropy.py [--image b0] [--profile rect] [--steps 4000]
    python pipelines/selfsup_anisotropy.py --image b0 --lr-band     # no training

``--lr-band`` asks whether the scan itself shows the mismatch: the thick-slice scan,
degraded once more along a fine axis with the same profile and factor, is equally coarse
along both axes; its share of power in the upper half of that common band, along the
fine axis and along the thick axis, is printed next to the truth's (HR) share above half
Nyquist. If the two agreed in direction, the pairs could be adapted to the thick axis.

Needs dipy (benchmark-only dependency, as benchmark_selfsup.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_selfsup import (  # noqa: E402
    band_share_line,
    high_band_share,
    load_image,
    run_cubic,
    score,
    thick_slices,
)

K = 4
# image: (thick axis, its fine companion (the fine axis the pairs degrade), axis split,
# first held-out index)
SPLITS = {"b0": (1, 0, 2, 5), "t1": (0, 1, 1, 128)}


def lr_band_line(lr, axis: int, profile: str) -> str:
    """The scan degraded once more along each long fine axis (``medsr.selfsup``'s own
    profile and pairs' operator): upper-band power share along that axis vs the thick one."""
    from medsr.selfsup import degrade_lines, scan_profile

    tp, kern, _, _ = scan_profile(lr, profile)
    parts = []
    for a in (a for a in tp.inplane_axes if lr.data.shape[a] // K >= 4):
        z = degrade_lines(np.asarray(lr.data, dtype=np.float32), kern, K, axis=a)
        share = high_band_share(z)
        fine, thick = share[a], share[axis]
        parts.append(f"fine axis {a} {100 * fine:.2f}% vs thick axis {axis} "
                     f"{100 * thick:.2f}% (thick / fine {thick / fine:.2f})")
    return "LR band, upper half: " + "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default="b0", choices=list(SPLITS))
    ap.add_argument("--profile", default="rect", choices=["rect", "gaussian"])
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr-band", action="store_true",
                    help="only compare the fine and thick axes within the scan's LR band")
    args = ap.parse_args(argv)
    import torch

    from medsr.intensity import Normalisation
    from medsr.selfsup import apply, fit, train
    from medsr.selfsup.api import LEARNING_RATE
    from medsr.selfsup.network import initial_model
    from medsr.selfsup.pairs import PairSampler

    torch.set_num_threads(args.threads)
    axis, companion, split, first = SPLITS[args.image]
    hr, lr = thick_slices(load_image(args.image), axis, K, args.profile)
    seen, held = [slice(None)] * 3, [slice(None)] * 3
    seen[split], held[split] = slice(0, first), slice(first, None)
    seen, held = tuple(seen), tuple(held)
    print(band_share_line(args.image, hr.data, axis))
    if args.lr_band:
        print(lr_band_line(lr, axis, args.profile))
        return 0

    def held_out(out: np.ndarray) -> str:
        p, s = score(hr.data[held], out[held])
        return f"PSNR {p:6.2f} SSIM {s:.4f}"

    print(f"{'cubic':<18} {held_out(run_cubic(lr, axis, K))}")
    t = time.perf_counter()
    fitted = fit(lr, steps=args.steps, seconds=1e9, profile=args.profile, seed=args.seed,
                 device="cpu")
    out = apply(lr, fitted.model, device="cpu", kernel=fitted.kernel).data
    print(f"{'self-sup':<18} {held_out(out)}  ({args.steps} steps, "
          f"{time.perf_counter() - t:.0f} s, started from {fitted.init})")

    # the oracles: pairs from the seen part of the ground truth (normalised as the
    # self-supervised run normalises the scan), from the start self-sup took
    norm = Normalisation.fit(np.asarray(lr.data, dtype=np.float32))
    train_part = np.ascontiguousarray(norm.apply(hr.data[seen]))
    for label, degraded, other in (("oracle, fine axis", companion, axis),
                                   ("oracle, thick axis", axis, companion)):
        t = time.perf_counter()
        sampler = PairSampler(train_part, (degraded,), other, fitted.kernel, K)
        torch.manual_seed(args.seed)
        model = initial_model(K, fitted.init.split(":")[0])[0]  # "default:FILE" | "scratch"
        train(model, sampler, seconds=1e9, max_steps=args.steps, seed=args.seed,
              lr=LEARNING_RATE)
        out = apply(lr, model, device="cpu", kernel=fitted.kernel).data
        print(f"{label:<18} {held_out(out)}  ({args.steps} steps, "
              f"{time.perf_counter() - t:.0f} s)")
    print(f"scored on indices {first}..{hr.spatial_shape[split] - 1} of axis {split}; "
          f"profile {args.profile}, x{K} along axis {axis}; torch threads {args.threads}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
