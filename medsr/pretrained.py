"""The weights that ship with medsr, and which one ``medsr infer`` picks with no flags.

An explicit mapping (no import side effects): name -> file in ``medsr/weights`` and what
it does. Each file has a model card beside it (``<file>.md``) and the checkpoint JSON
(``<file>.json``). The scan models were trained by ``pipelines/train_default.py``, the
frames and microscopy models by ``pipelines/train_frames.py`` and
``pipelines/train_microscopy.py``.

Kinds:
    through-plane  2D network with scale (1, k): one coarse axis (thick slices), applied
                   on the two planes that contain that axis and fused;
    in-plane       2D network with scale (k, k): two axes, applied slice by slice;
    frames         2D network on the luma of pictures / frames / video, x k in-plane
                   (``frames-x4-mf``: multi-frame, neighbouring frames as channels,
                   :mod:`medsr.multiframe`, installed by ``train_frames.py
                   --multi-frame``, not shipped; used only when named);
    microscopy     2D network with scale (1, k) for the z axis of TIFF stacks.
Only the first two kinds are chosen automatically for scans; the others are picked by
:mod:`medsr.microscopy` for their own inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class Pretrained:
    name: str
    file: str
    kind: str       # "through-plane" | "in-plane"
    factor: int

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.file

    @property
    def available(self) -> bool:
        return self.path.is_file()


PRETRAINED: dict[str, Pretrained] = {
    p.name: p for p in (
        *(Pretrained(f"thick-slice-x{k}", f"thick_slice_x{k}.safetensors", "through-plane", k)
          for k in (2, 3, 4, 5, 6)),
        *(Pretrained(f"in-plane-x{k}", f"in_plane_x{k}.safetensors", "in-plane", k)
          for k in (2, 4)),
        Pretrained("frames-x4", "frames_x4.safetensors", "frames", 4),
        Pretrained("frames-x4-mf", "frames_x4_mf.safetensors", "frames", 4),
        Pretrained("microscopy-z4", "microscopy_z4.safetensors", "microscopy", 4),
    )
}


def shipped() -> list[Pretrained]:
    """The pretrained models whose weight files are present."""
    return [p for p in PRETRAINED.values() if p.available]


def integer_factors(factors: Sequence[float], tol: float = 1e-6) -> tuple[int, int, int]:
    """Round each factor up to the next integer (SR to K, then resample to the exact grid)."""
    return tuple(max(1, math.ceil(float(k) - tol)) for k in factors)  # type: ignore[return-value]


def _smallest_at_least(kind: str, k: int) -> Pretrained | None:
    """The shipped model of ``kind`` with the smallest factor >= k (SR further, then the
    exact grid is reached by band-limited resampling)."""
    fits = [p for p in shipped() if p.kind == kind and p.factor >= k]
    return min(fits, key=lambda p: p.factor) if fits else None


def choose(factors: Sequence[float]) -> list[tuple[Pretrained, int | tuple[int, int]]]:
    """The passes that realise ``factors`` with shipped weights.

    Returns a list of (model, axes) passes — axes is the coarse axis for a through-plane
    model or the pair of axes for an in-plane one — or [] when nothing shipped fits. Each
    pass uses the shipped model with the smallest factor >= the factor needed (e.g. x3 by
    the x4 model); the caller resamples from that grid to the exact one.
    """
    K = integer_factors(factors)
    up = [ax for ax in range(3) if K[ax] > 1]
    if len(up) == 1:
        p = _smallest_at_least("through-plane", K[up[0]])
        return [(p, up[0])] if p else []
    if len(up) == 2 and K[up[0]] == K[up[1]]:
        p = _smallest_at_least("in-plane", K[up[0]])
        return [(p, (up[0], up[1]))] if p else []
    if len(up) == 3 and K[0] == K[1]:
        # in-plane on the (0, 1) planes, then through-plane along axis 2
        first = _smallest_at_least("in-plane", K[0])
        second = _smallest_at_least("through-plane", K[2])
        return [(first, (0, 1)), (second, 2)] if first and second else []
    return []
