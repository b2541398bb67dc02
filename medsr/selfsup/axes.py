"""Which axis is thick, by how much, and what its slice profile looks like.

The through-plane axis t is the axis of largest spacing among the axes longer than one
voxel (a 2D image or a one-slice volume with one coarse axis qualifies: its fine axis
supplies the training pairs). The target spacing is the finest in-plane spacing, so the
exact factor is f = s_t / s_in. The network works with the integer k = ceil(f) (f within
1e-3 of an integer counts as that integer): it super-resolves t to spacing s_t / k, and a
band-limited resample then lands on the exact centre-preserving grid of
:mod:`medsr.geometry` (n_out = round(n f)).

The slice profile is a 1D kernel on that fine grid (spacing s_t / k, centred on its
middle tap, summing to 1): a Gaussian with FWHM = slice thickness, a box (rect) of width
= thickness, or a user kernel. Thickness and spacing are separate, so gaps
(thickness < spacing) and overlaps are modelled.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from medsr.degrade.profiles import gaussian_kernel, rect_kernel
from medsr.errors import UserError
from medsr.volume import Volume

MIN_FACTOR = 1.2  # below this the scan is not anisotropic enough to learn from itself
FINE_TOLERANCE = 1.1  # an axis within this of the finest spacing is fine: its data make
                      # training pairs on the fine grid (s_t / k) and feed the profile estimate
PROFILES = ("gaussian", "rect")


@dataclass(frozen=True)
class ThroughPlane:
    """The super-resolution task a thick-slice scan poses."""

    axis: int                     # through-plane axis t (0, 1 or 2)
    factor: float                 # exact s_t / s_in
    k: int                        # integer factor the network realises
    inplane_axes: tuple[int, ...]  # fine axes (spacing within FINE_TOLERANCE of the finest),
                                   # longer than one voxel: the training-pair sources
    spacing: tuple[float, float, float]
    spacing_hr: float             # s_t / k, the grid of the network output and the profile

    @property
    def exact(self) -> bool:
        return float(self.k) == self.factor

    def on_grid(self, k: int) -> ThroughPlane:
        """The same thick axis super-resolved by the integer factor ``k`` instead: output
        spacing s_t / k. A plan may upsample the thick axis by another factor than the
        task's own (which aims at the finest in-plane spacing: a 3 mm axis over 0.96 mm
        voxels is k = 4, a plan's x2 is a 1.5 mm grid), and a slice profile sampled on
        the task's grid is then the wrong width and centring on the plan's."""
        k = int(k)
        if k < 1:
            raise ValueError(f"the factor must be a positive integer, got {k}")
        return replace(self, factor=float(k), k=k, spacing_hr=self.spacing[self.axis] / k)

    def to_dict(self) -> dict:
        return asdict(self)


def _integer(f: float, tol: float = 1e-3) -> int | None:
    r = round(f)
    return int(r) if abs(f - r) <= tol * max(1.0, f) else None


def detect_through_plane(vol: Volume) -> ThroughPlane:
    """Find the thick axis and the factor from the voxel spacing of ``vol``."""
    shape = vol.spatial_shape
    spacing = vol.spacing
    present = [ax for ax in range(3) if shape[ax] > 1]
    if len(present) < 2:
        raise UserError(f"self-supervised SR needs at least a 2D image; got shape {shape}")
    t = max(present, key=lambda ax: (spacing[ax], -ax))
    fine = [ax for ax in present if ax != t]
    s_in = float(min(spacing[ax] for ax in fine))
    factor = float(spacing[t]) / s_in
    if factor < MIN_FACTOR:
        raise UserError(
            f"the scan is nearly isotropic (spacing {np.round(spacing, 4).tolist()} mm, "
            f"largest/finest = {factor:.3g}); self-supervised SR needs one axis at least "
            f"{MIN_FACTOR}x coarser than the others")
    ki = _integer(factor)
    if ki is not None:
        factor, k = float(ki), ki
    else:
        k = int(math.ceil(factor))
    # an intermediate axis (a CT's 1.5 mm slices across a 1.9 mm thick axis over 0.96 mm
    # voxels) is neither: its samples are not on the fine grid the pairs and the estimate
    # assume, and its own slice profile is not the in-plane one
    inplane = tuple(ax for ax in fine if spacing[ax] < spacing[t] / MIN_FACTOR
                    and spacing[ax] <= s_in * FINE_TOLERANCE)
    return ThroughPlane(axis=t, factor=factor, k=k, inplane_axes=inplane or tuple(fine),
                        spacing=tuple(float(s) for s in spacing),
                        spacing_hr=float(spacing[t]) / k)


def slice_thickness(vol: Volume, tp: ThroughPlane, given: float | None = None
                    ) -> tuple[float, str]:
    """(thickness in mm, where it came from): the argument, DICOM SliceThickness, or spacing.

    An explicit value wins over the header (the user knows better than a possibly stale
    tag); a header value is used only when it is a positive number.
    """
    if given is not None:
        if not (math.isfinite(given) and given > 0):
            raise UserError(f"slice thickness must be a positive number of mm, got {given}")
        return float(given), "argument"
    dicom = vol.meta.get("dicom") if isinstance(vol.meta, dict) else None
    if isinstance(dicom, dict):
        th = dicom.get("slice_thickness")
        try:
            th = float(th) if th is not None else None
        except (TypeError, ValueError):
            th = None
        if th is not None and math.isfinite(th) and th > 0:
            return th, "dicom"
    return float(tp.spacing[tp.axis]), "spacing"


def profile_kernel(tp: ThroughPlane, thickness_mm: float, profile: str = "gaussian",
                   kernel: np.ndarray | None = None) -> np.ndarray:
    """The slice profile as a 1D kernel on the fine grid (spacing s_t / k), centred where
    an LR sample lies on that grid: on a fine voxel for odd k (odd length), half-way
    between two for even k (even length; a 4 mm box over 1 mm voxels is exactly four taps
    of 1/4, not a blurred 5-tap box).

    ``kernel`` (a user profile, already sampled on that grid) wins over ``profile``: an
    even-length one is centred between its two middle taps, an odd-length one on its
    middle tap; only where that disagrees with k's parity is it shifted by half a tap.
    """
    even = tp.k % 2 == 0
    if kernel is not None:
        k = np.asarray(kernel, dtype=np.float64)
        if k.ndim != 1 or k.size == 0 or not np.all(np.isfinite(k)):
            raise UserError("a slice profile must be a finite 1D array (taps on the output "
                            f"through-plane grid), got shape {k.shape}")
        if abs(k.sum()) < 1e-12:
            raise UserError("the slice profile sums to zero; cannot normalise it")
        if k.size % 2 == 0 and not even:  # centred between the two middle taps: shift
            kp = np.pad(k, 1)
            k = 0.5 * (kp[:-1] + kp[1:])
        return k / k.sum()
    width = thickness_mm / tp.spacing_hr
    centre = 0.5 if even else 0.0
    if profile == "gaussian":
        return gaussian_kernel(width, centre)
    if profile == "rect":
        return rect_kernel(width, centre)
    raise UserError(f"unknown slice profile {profile!r}; choose {', '.join(PROFILES)} "
                    "or give a kernel")


def scan_profile(vol: Volume, profile: str = "gaussian", thickness: float | None = None,
                 kernel: np.ndarray | None = None, k: int | None = None
                 ) -> tuple[ThroughPlane, np.ndarray, float, str]:
    """(task, slice profile on the fine grid, thickness mm, where it came from) of a
    thick-slice scan: what the training pairs and the projection onto the slices share.

    ``k``: the integer factor of the fine grid when it is not the task's own (a plan's
    upsampling of the thick axis, :meth:`ThroughPlane.on_grid`); the task returned is
    then on that grid too."""
    tp = detect_through_plane(vol)
    if k is not None:
        tp = tp.on_grid(k)
    mm, source = slice_thickness(vol, tp, thickness)
    return tp, profile_kernel(tp, mm, profile, kernel), mm, source
