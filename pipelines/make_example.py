"""Make the example thick-slice scan that the README's quick start super-resolves.

The MNI152 T1 template (1 mm, shipped inside nilearn) is cropped to 188 slices (a
multiple of 4), scaled from [0, 1] to [0, 1000] so it can be stored as
int16 like a scanner's output, and degraded with medsr's `mri-thick-slice` preset to 1 x 1 x 4 mm
(Gaussian slice profile, FWHM = slice thickness, Rician noise), seed 0. Rerunning this
script regenerates docs/examples/mni152_t1_1x1x4mm.nii.gz bit for bit.

    python pipelines/make_example.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsr import io
from medsr.degrade import degrade_volume, load_preset
from medsr.training.data.sources import load_mni152

OUT = Path(__file__).resolve().parents[1] / "docs" / "examples" / "mni152_t1_1x1x4mm.nii.gz"


def main() -> None:
    hr = load_mni152(resolution=1)
    hr = hr.with_data(np.ascontiguousarray(hr.data[:, :, :188]) * 1000.0)
    d = load_preset("mri-thick-slice", scale=(1, 1, 4))
    d.set_random_state(0)
    lr = degrade_volume(hr, d)
    io.write(lr, OUT, overwrite=True, dtype="int16")
    print(f"wrote {OUT}: {lr.spatial_shape} @ {np.round(lr.spacing, 3).tolist()} mm")


if __name__ == "__main__":
    main()
