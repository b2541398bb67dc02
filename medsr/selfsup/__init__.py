"""Self-supervised SR of one thick-slice scan, learned from the scan itself (SMORE/ECLARE).

The scan's fine in-plane axes, degraded with the through-plane slice profile and factor,
train a small 2D network with scale (1, k); the network is then applied through-plane
from both in-plane orientations (and under the task's flips) and the results averaged. See
docs/self-supervised.md.
"""

from __future__ import annotations

from medsr._lazy import lazy_exports

# name -> submodule. Imported on first use (PEP 562), so that ``medsr infer``, which needs
# only :mod:`medsr.selfsup.profile_estimate`, does not import the fitting machinery
# (networks, checkpoints, training data).
_WHERE = {
    **dict.fromkeys(("Fitted", "apply", "apply_saved", "auto_start", "fit", "flip_sets",
                     "super_resolve_self_supervised"), "api"),
    **dict.fromkeys(("FEW_STEPS", "BudgetTooShort"), "budget"),
    **dict.fromkeys(("ThroughPlane", "detect_through_plane", "profile_kernel", "scan_profile",
                     "slice_thickness"), "axes"),
    **dict.fromkeys(("load_fitted", "save_fitted"), "network"),
    **dict.fromkeys(("PairSampler", "degrade_lines"), "pairs"),
    **dict.fromkeys(("TrainReport", "train"), "trainer"),
}

__all__ = sorted(_WHERE)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _WHERE)
