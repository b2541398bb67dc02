"""DICOM patient geometry (LPS) to and from a Volume's affine.

Reading (:func:`stack_geometry`): slices are ordered by ImagePositionPatient projected on
the slice normal n = row_cos x col_cos, never by InstanceNumber (which scanners and
anonymisers scramble). With i = column, j = row, k = slice:

    A_lps = [row_cos * column_spacing, col_cos * row_spacing, step, IPP_first]

where PixelSpacing = [row spacing, column spacing] and step = n * slice spacing (or the
measured step between positions when the stack is sheared, e.g. CT gantry tilt). A stack
with different orientations or pixel spacings, duplicate positions, missing slices or
uneven spacing is refused with one line.

Writing (:func:`output_geometry`): orientation, spacings and per-slice positions of a
Volume's affine, with k turned to run along the normal.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from medsr.errors import InputError, OutputError
from medsr.geometry import ras_to_lps
from medsr.io.dicom.frames import Frame

# Relative tolerances of the geometry checks.
_ORIENT_TOL = 1e-4     # direction cosines
_SPACING_RTOL = 0.01   # slice spacing: 1 % of the median step


# ---------------------------------------------------------------------------- reading


def _is_frame_of_many(fr: Frame, frames: list[Frame]) -> bool:
    return sum(1 for other in frames if other.file == fr.file) > 1


def stack_geometry(frames: list[Frame], what: str) -> tuple[list[int], np.ndarray, bool]:
    """Order of the frames along the normal and the LPS affine. Returns (order, A_lps,
    has_geometry)."""
    f0 = frames[0]
    ps = f0.pixel_spacing  # present ones were checked finite and positive when read
    if ps is None:
        ps = np.array([1.0, 1.0])
    for fr in frames[1:]:
        if fr.pixel_spacing is not None and not np.allclose(fr.pixel_spacing, ps, rtol=1e-4):
            raise InputError(f"{what}: slices have different PixelSpacing "
                             f"({ps.tolist()} and {fr.pixel_spacing.tolist()})")
    has_geometry = all(fr.position is not None and fr.orientation is not None
                       for fr in frames)
    partial = [fr for fr in frames if fr.position is None or fr.orientation is None]
    if not has_geometry and len(partial) < len(frames):
        fr = partial[0]
        name = fr.file.name + (f" frame {fr.index + 1}" if _is_frame_of_many(fr, frames)
                               else "")
        lacks = "ImagePositionPatient" if fr.position is None else "ImageOrientationPatient"
        raise InputError(f"{what}: slice {name} has no {lacks} while "
                         f"{len(frames) - len(partial)} other slice(s) have one; its place "
                         "in the volume is unknown")
    if not has_geometry:
        if len(frames) > 1:
            warnings.warn(f"{what}: no ImagePositionPatient/ImageOrientationPatient; "
                          "slices kept in file/frame order (no patient geometry)", stacklevel=3)
        step = f0.spacing_between or f0.thickness or 1.0
        A = np.diag([ps[1], ps[0], step, 1.0])
        order = sorted(range(len(frames)), key=lambda i: (str(frames[i].file),
                                                          frames[i].index))
        return order, A, False

    iop = f0.orientation
    row_cos, col_cos = iop[:3], iop[3:]
    nr, nc = np.linalg.norm(row_cos), np.linalg.norm(col_cos)
    if nr < 0.5 or nc < 0.5 or abs(np.dot(row_cos, col_cos)) > 1e-3 * nr * nc:
        raise InputError(f"{what}: invalid ImageOrientationPatient {iop.tolist()}")
    row_cos, col_cos = row_cos / nr, col_cos / nc
    for fr in frames[1:]:
        if not np.allclose(fr.orientation, iop, atol=_ORIENT_TOL):
            raise InputError(f"{what}: slices have different orientations "
                             f"(ImageOrientationPatient {iop.tolist()} and "
                             f"{fr.orientation.tolist()}); it is not one volume")
    normal = np.cross(row_cos, col_cos)
    pos = np.array([fr.position for fr in frames])
    dist = pos @ normal
    order = sorted(range(len(frames)), key=lambda i: dist[i])
    d = dist[order]
    A = np.eye(4)
    A[:3, 0] = row_cos * ps[1]
    A[:3, 1] = col_cos * ps[0]
    A[:3, 3] = pos[order[0]]
    if len(frames) == 1:
        step = f0.spacing_between or f0.thickness or 1.0
        A[:3, 2] = normal * abs(step)
        return order, A, True

    diffs = np.diff(d)
    scale = max(float(np.median(np.abs(diffs))), 1e-6)
    dup = np.flatnonzero(diffs < 1e-3 * max(scale, 1.0) + 1e-4)
    if dup.size:
        at = ", ".join(f"{d[i]:.4g}" for i in dup[:5])
        raise InputError(f"{what}: {dup.size} duplicate slice position(s) along the normal "
                         f"(at {at} mm): several stacks, echoes or time points in one "
                         "series cannot be read as one volume")
    spacing = float(np.median(diffs))
    if np.any(np.abs(diffs - spacing) > _SPACING_RTOL * spacing + 1e-4):
        ratio = diffs / spacing
        if np.allclose(ratio, np.round(ratio), atol=0.05) and np.all(np.round(ratio) >= 1):
            missing = [d[i] + m * spacing for i, r in enumerate(np.round(ratio).astype(int))
                       for m in range(1, r)]
            shown = ", ".join(f"{x:.4g}" for x in missing[:8])
            more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
            raise InputError(f"{what}: {len(missing)} slice(s) missing at {shown}{more} mm "
                             f"along the normal (spacing {spacing:.4g} mm); "
                             "the series is incomplete")
        raise InputError(f"{what}: uneven slice spacing ({diffs.min():.4g} to "
                         f"{diffs.max():.4g} mm); cannot be read as one regular volume")
    # Step between slices: the fitted line through the positions. It equals normal*spacing
    # unless the stack is sheared (gantry tilt), in which case the measured step is the
    # truth and the affine is not orthogonal.
    k = np.arange(len(order))
    P = pos[order]
    step_vec = np.polyfit(k, P, 1)[0]
    in_plane = step_vec - normal * np.dot(step_vec, normal)
    if np.linalg.norm(in_plane) > 1e-3 * spacing + 1e-4:
        warnings.warn(f"{what}: slice positions are sheared relative to the slice normal "
                      "(gantry tilt?); the affine keeps the measured step", stacklevel=3)
        A[:3, 2] = step_vec
    else:
        A[:3, 2] = normal * spacing
    return order, A, True


# ---------------------------------------------------------------------------- writing


def output_geometry(affine_ras: np.ndarray, n_slices: int) -> dict[str, Any]:
    """Orientation, spacings and per-slice positions (LPS) of a Volume's affine, with
    ``flip`` True when k runs against the slice normal (written reversed so that
    InstanceNumber follows the normal)."""
    A = ras_to_lps(affine_ras)
    a0, a1, a2 = A[:3, 0], A[:3, 1], A[:3, 2]
    col_spacing, row_spacing = float(np.linalg.norm(a0)), float(np.linalg.norm(a1))
    if col_spacing == 0 or row_spacing == 0:
        raise OutputError("cannot write DICOM: the affine has a zero voxel size in-plane")
    row_cos, col_cos = a0 / col_spacing, a1 / row_spacing
    if abs(float(np.dot(row_cos, col_cos))) > 1e-4:
        raise OutputError("cannot write DICOM: the in-plane axes of the affine are not "
                          "orthogonal (sheared grid)")
    normal = np.cross(row_cos, col_cos)
    step = float(np.dot(a2, normal))
    flip = step < 0
    if flip:
        A = A.copy()
        A[:3, 3] = A[:3, 3] + a2 * (n_slices - 1)
        A[:3, 2] = -a2
        step = -step
    if n_slices > 1 and step <= 1e-9:
        raise OutputError("cannot write DICOM: the slice axis lies in the image plane")
    positions = [A[:3, :] @ np.array([0.0, 0.0, k, 1.0]) for k in range(n_slices)]
    return {"iop": np.concatenate([row_cos, col_cos]), "row_spacing": row_spacing,
            "col_spacing": col_spacing, "spacing": step if step > 0 else
            float(np.linalg.norm(a2)), "positions": positions, "normal": normal,
            "flip": flip, "A_lps": A}
