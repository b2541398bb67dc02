"""The one per-channel loop: a single-channel super-resolver over every channel."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from medsr.geometry import OutputGrid
from medsr.volume import Volume

SR = Callable[[Volume, OutputGrid], Volume]


def per_channel(vol: Volume, grid: OutputGrid, sr: SR) -> Volume:
    """``sr(one_channel, grid)`` on each channel of ``vol`` (last axis of 4D data; a 3D
    volume is one channel and goes to ``sr`` as it is), stacked back on ``grid``."""
    data = vol.data
    if data.ndim == 3:
        return sr(vol, grid)
    outs = [sr(vol.with_data(data[..., c]), grid).data for c in range(data.shape[3])]
    return vol.with_data(np.stack(outs, axis=-1), affine=grid.affine_out)
