"""Offline data for the frames and microscopy models, and the held-out split.

Shared by pipelines/train_frames.py, pipelines/train_microscopy.py and
pipelines/benchmark_quality_frames.py so the benchmark never sees a training image.

Frames (scikit-image, no download): the 200 ``lfw_subset`` faces (25 x 25, grey) — faces
0..159 train, 160..199 are held out — and natural images: TRAIN_NATURAL train,
HELDOUT_NATURAL (``chelsea``, ``coffee``) are held out (``cat`` is ``chelsea`` again and
is not used at all).

Microscopy: ``skimage.data.cell()`` (660 x 550, 8-bit widefield): rows 0..439 train
(used twice, as is and transposed, so both lateral directions stand in for z), rows
440..659 are held out.
"""

from __future__ import annotations

import numpy as np
import skimage.data as skd

TRAIN_NATURAL = ("astronaut", "camera", "rocket", "hubble_deep_field", "immunohistochemistry",
                 "coins", "moon", "brick", "grass", "gravel", "clock", "page", "text", "retina")
HELDOUT_NATURAL = ("chelsea", "coffee")
N_TRAIN_FACES = 160
CELL_SPLIT = 440


def faces() -> np.ndarray:
    """(200, 25, 25) float64 grey faces in [0, 1]."""
    return skd.lfw_subset()


def natural(name: str) -> np.ndarray:
    """A scikit-image picture as uint8 (grey or RGB; alpha dropped)."""
    img = np.asarray(getattr(skd, name)())
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    return img


def heldout_frames() -> list[tuple[str, np.ndarray]]:
    """(name, uint8 image) pairs the frames model never saw: 40 faces and 2 photos."""
    f = faces()
    out = [(f"face{i:03d}", np.round(f[i] * 255).astype(np.uint8))
           for i in range(N_TRAIN_FACES, len(f))]
    out += [(n, natural(n)) for n in HELDOUT_NATURAL]
    return out


def cell_train() -> np.ndarray:
    return skd.cell()[:CELL_SPLIT]


def cell_heldout() -> np.ndarray:
    return skd.cell()[CELL_SPLIT:]
