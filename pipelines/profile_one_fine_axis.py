"""The slice-profile estimate when the thick axis has a single fine axis beside it.

Development data (training subjects): pycortex's T1 and Colin27 (1 mm), their first axis
thickened x2 / x4 (box or Gaussian, point-sampled, as ``pipelines/benchmark_real.py``
acquires), and the last axis either kept (two fine axes) or coarsened x2 (one fine axis
left, as on the held-out CT and ITK T1 thickened along x). Prints the estimate's best
width of each family against the truth.

    python pipelines/profile_one_fine_axis.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SUBJECTS = ("pycortex_s1_t1", "colin27_t1")


def main() -> int:
    sys.path.insert(0, str(ROOT / "pipelines"))
    import benchmark_real as br

    from medsr import io
    from medsr.selfsup.axes import detect_through_plane
    from medsr.selfsup.profile_estimate import estimate_profile

    rows = ["| subject | k | profile | fine axes | true (mm) | box (mm) | Gaussian FWHM (mm) |",
            "|---|---|---|---|---|---|---|"]
    for name in SUBJECTS:
        v = io.read(ROOT / "runs/data/real/train" / f"{name}.nii.gz")
        ref = v.with_data(np.ascontiguousarray(np.asarray(v.data, np.float32)[:168, :240, :240]))
        for k in (2, 4):
            for profile in ("box", "gaussian"):
                for z in (1, 2):
                    lr = br.degrade(ref, (k, 1, z), profile)
                    est = estimate_profile(lr)
                    fine = detect_through_plane(lr).inplane_axes
                    rows.append(f"| {name} | {k} | {profile} | {fine} | "
                                f"{k * float(ref.spacing[0]):g} | {est.best['rect'][0]:.2f} | "
                                f"{est.best['gaussian'][0]:.2f} |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
