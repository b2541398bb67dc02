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
                   :mod:`medsr.inference.multiframe`, installed by ``train_frames.py
                   --multi-frame``, not shipped; used only when named);
    microscopy     2D network with scale (1, k) for the z axis of TIFF stacks.
Only the first two kinds are chosen automatically for scans; the others are picked by
:mod:`medsr.adapters.microscopy` for their own inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medsr.errors import UserError

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


_KIND_PURPOSE = {
    "through-plane": "upsamples one axis (thick slices)",
    "in-plane": "upsamples two in-plane axes",
    "frames": "upsamples pictures, frames and video in-plane",
    "microscopy": "upsamples the z axis of microscopy stacks",
}


def server_of(name: str) -> Pretrained | None:
    """The shipped model that serves ``name``: itself when shipped, else the shipped model of
    the same kind with the smallest factor above (x3 by x4 + band-limited resampling)."""
    p = PRETRAINED.get(name)
    if p is None:
        return None
    if p.available:
        return p
    if p.name.endswith("-mf"):  # multi-frame: no single-frame model stands in for it
        return None
    return _smallest_at_least(p.kind, p.factor)


def valid_names() -> list[str]:
    """The names ``--model`` takes: shipped models and those a shipped one serves."""
    return [n for n in PRETRAINED if server_of(n) is not None]


def resolve(ref: str | Path) -> tuple[str | Path, str | None]:
    """``--model NAME|PATH`` -> (the shipped name or checkpoint path to load, a note or None).

    A name that is not shipped but served by a larger shipped model of its kind is
    replaced by that one (with a note); an unknown name lists the valid names and the
    nearest match; a path that does not exist says so."""
    import difflib

    text = str(ref)
    if text in PRETRAINED:
        p, server = PRETRAINED[text], server_of(text)
        if server is None:
            raise UserError(f"model {text!r} is not installed ({p.path} missing) and no shipped "
                            f"model serves it; valid names: {', '.join(valid_names())}")
        if server is p:
            return text, None
        return server.name, (f"{text} is not shipped: {server.name} serves it (x{server.factor}"
                             f", then band-limited resampling to x{p.factor})")
    if Path(text).exists():
        return ref, None
    names = valid_names()
    near = difflib.get_close_matches(text, names, n=1, cutoff=0.6)
    hint = f"did you mean {near[0]}? " if near else ""
    looks_like_path = Path(text).suffix != "" or "/" in text or "\\" in text
    what = f"checkpoint {text} does not exist" if looks_like_path else \
        f"unknown model {text!r}"
    raise UserError(f"{what}; {hint}valid names: {', '.join(names)} (medsr models "
                    "--pretrained), or a .safetensors checkpoint from medsr train")


def purpose(scale: Sequence[int], spatial_dims: int, name: str | None = None) -> str:
    """What a network with this scale does, in words (for messages)."""
    p = PRETRAINED.get(name or "")
    if p is not None:
        return f"{_KIND_PURPOSE.get(p.kind, p.kind)} x{p.factor}"
    s = [int(v) for v in scale]
    if spatial_dims == 3:
        return f"upsamples the three axes by {s}"
    if min(s) == 1:
        return f"upsamples one axis x{max(s)}"
    if s[0] == s[1]:
        return f"upsamples two axes x{s[0]}"
    return f"upsamples two axes by {s}"


def describe_factors(K: Sequence[int]) -> str:
    """The integer factors a plan needs, in words: "one-axis x5", "two-axis x2", ..."""
    up = [int(k) for k in K if k > 1]
    if not up:
        return "no upsampling"
    words = {1: "one-axis", 2: "two-axis", 3: "three-axis"}[len(up)]
    return f"{words} x{up[0]}" if len(set(up)) == 1 else f"factors {list(K)}"


def suggestion(factors: Sequence[float]) -> str:
    """What to use instead for ``factors``: the shipped models ``--method auto`` would pick."""
    names = [p.name for p, _ in choose(factors)]
    return (f"use {' then '.join(names)} or --method auto" if names
            else "use --method auto (cubic where no network fits) or --scale/--spacing "
                 "to match the model")
