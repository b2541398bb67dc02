"""Around a single-channel super-resolver: channels, colour (luma/chroma), microscopy
percentiles. :func:`for_kind` picks the adapter for a kind of input (:func:`kind_of`)."""

from __future__ import annotations

from collections.abc import Callable

from medsr.adapters.channels import SR, per_channel
from medsr.adapters.colour import super_resolve_colour
from medsr.adapters.kinds import DEFAULT_FRAMES_SCALE, FRAME_FORMATS, kind_of, spacing_unit
from medsr.adapters.microscopy import super_resolve_stack
from medsr.geometry import OutputGrid
from medsr.volume import Volume

Adapter = Callable[[Volume, OutputGrid, SR], Volume]

__all__ = ["DEFAULT_FRAMES_SCALE", "FRAME_FORMATS", "SR", "Adapter", "for_kind", "kind_of",
           "per_channel", "spacing_unit", "super_resolve_colour", "super_resolve_stack"]


def for_kind(kind: str | None) -> Adapter:
    """The adapter of a kind (:func:`kind_of`): microscopy stacks per channel with
    percentile normalisation, frames through luma (bicubic chroma), scans per channel."""
    return {"stack": super_resolve_stack, "frames": super_resolve_colour}.get(kind,
                                                                              per_channel)
