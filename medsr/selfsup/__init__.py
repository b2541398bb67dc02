"""Self-supervised SR of one thick-slice scan, learned from the scan itself (SMORE/ECLARE).

The scan's fine in-plane axes, degraded with the through-plane slice profile and factor,
train a small 2D network with scale (1, k); the network is then applied through-plane
from both in-plane orientations (and under the task's flips) and the results averaged. See
docs/self-supervised.md.
"""

from medsr.selfsup.api import (
    FEW_STEPS,
    Fitted,
    apply,
    apply_saved,
    auto_start,
    fit,
    flip_sets,
    super_resolve_self_supervised,
)
from medsr.selfsup.axes import (
    ThroughPlane,
    detect_through_plane,
    profile_kernel,
    scan_profile,
    slice_thickness,
)
from medsr.selfsup.network import load_fitted, save_fitted
from medsr.selfsup.pairs import PairSampler, degrade_lines
from medsr.selfsup.trainer import TrainReport, train

__all__ = ["FEW_STEPS", "Fitted", "PairSampler", "ThroughPlane", "TrainReport", "apply",
           "apply_saved", "auto_start", "degrade_lines", "detect_through_plane", "fit", "flip_sets",
           "load_fitted", "profile_kernel", "save_fitted", "scan_profile", "slice_thickness",
           "super_resolve_self_supervised", "train"]
