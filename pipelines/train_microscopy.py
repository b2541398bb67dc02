"""Train the shipped microscopy model ``microscopy-z4``: 2D through-plane x4, offline.

The isotropic-reconstruction idea (CARE, Weigert et al. 2018): lateral planes of a
stack look like what the axial planes would look like at lateral resolution, so a
lateral image degraded with the axial point-spread function and the coarse z sampling
(medsr's ``microscopy-axial`` preset: Gaussian PSF of k voxels along the coarse axis,
decimation, Poisson-Gaussian noise) teaches the network to restore z. Data: the
training rows (0..439) of scikit-image's ``cell`` (widefield, 8-bit), as is and
transposed, so both lateral directions stand in for z; rows 440..659 are held out for
pipelines/benchmark_quality_frames.py. Config: configs/microscopy_z4.yaml.

    python pipelines/train_microscopy.py [--steps N] [--run-dir DIR] [--no-install]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import frames_data  # noqa: E402
from train_frames import install, parse_args, run_training  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "microscopy_z4.yaml"


def write_data(folder: Path) -> list[Path]:
    """The cell training rows (as is and transposed) as one-slice float32 TIFFs."""
    folder.mkdir(parents=True, exist_ok=True)
    cell = frames_data.cell_train().astype(np.float32)
    out = []
    for name, arr in (("cell", cell), ("cell_t", np.ascontiguousarray(cell.T))):
        p = folder / f"{name}.tif"
        tifffile.imwrite(p, arr[None], imagej=True, metadata={"axes": "ZYX"})
        out.append(p)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, "microscopy_z4", "microscopy", argv)
    write_data(Path(args.data))
    cfg, summary, minutes = run_training(Path(args.config) if args.config else CONFIG, args,
                                         "normalised")
    if not args.no_install:
        card = f"""# microscopy-z4

2D through-plane x4 super-resolution of the coarse z axis of microscopy stacks
(isotropic reconstruction): scale (1, 4), applied on the XZ and YZ planes and fused.

- architecture: {cfg['model']['name']} {cfg['model']['hparams']}, scale (1, 4)
- data: scikit-image `cell` rows 0..439 (and its transpose); held out: rows 440..659
- degradation: `microscopy-axial` (Gaussian axial PSF FWHM 4 voxels, decimation,
  Poisson-Gaussian noise), lateral direction standing in for z
- normalisation: percentiles {cfg['data']['normalise']} (the microscopy convention)
- training: {summary['steps']} steps, batch {cfg['sampling']['batch_size']}, patch
  {cfg['sampling']['patch_size']}, {minutes:.1f} min on 1 CPU thread, seed {cfg['seed']};
  best validation PSNR {summary['best_psnr']:.2f} dB at step {summary['best_step']}
- reproduce: `python pipelines/train_microscopy.py`; benchmark:
  `python pipelines/benchmark_quality_frames.py`
- limits: one widefield image of cells for a few minutes of CPU training; retrain on
  your own lateral planes (or use the self-supervised mode) for other samples.
"""
        print("installed", install(Path(summary["best"]), "microscopy_z4", card))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
