"""What kind of input a volume is (scan, microscopy stack, frames) and its spacing unit."""

from __future__ import annotations

from medsr.volume import Volume

FRAME_FORMATS = ("image", "frames", "video")
DEFAULT_FRAMES_SCALE = 4  # pictures / frames / video with no --scale: x4 in-plane


def kind_of(vol: Volume) -> str | None:
    """'frames' for pictures, frames folders, video and RGB(A) TIFFs (TIFF samples axis S),
    'stack' for other TIFFs (microscopy), None for everything else (scans)."""
    fmt = vol.meta.get("format")
    if fmt in FRAME_FORMATS:
        return "frames"
    if fmt == "tiff":
        rgb = "S" in (vol.meta.get("tiff_axes") or "") and vol.channels in (3, 4)
        return "frames" if rgb else "stack"
    return None


def spacing_unit(vol: Volume) -> str:
    """The unit of ``vol.spacing`` for messages: the file's ('µm', 'mm' ...) for TIFF
    stacks, 'px' for pictures, frames, video and TIFFs without one, 'mm' for scans."""
    unit = vol.meta.get("unit")
    if unit:
        return {"um": "µm", "micron": "µm"}.get(str(unit), str(unit))
    return "px" if vol.meta.get("format") in (*FRAME_FORMATS, "tiff") else "mm"
