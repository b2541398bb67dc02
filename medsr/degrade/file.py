"""``medsr degrade`` as one library call: read an HR file, apply a degradation with a
recorded seed, write the LR file and a JSON sidecar that replays it exactly."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from medsr import __version__, io
from medsr.degrade.compose import Degradation, degrade_volume
from medsr.io.common import atomic_path, check_output


def sidecar_path(output: str | os.PathLike) -> Path:
    """``lr.nii.gz`` -> ``lr.json`` (same stem, beside the output)."""
    out = Path(output)
    name = out.name
    for suffix in (".nii.gz", ".tar.gz"):
        if name.lower().endswith(suffix):
            return out.with_name(name[: -len(suffix)] + ".json")
    return out.with_name((Path(name).stem if Path(name).suffix else name) + ".json")


def degrade_file(input_path: str | os.PathLike, output: str | os.PathLike,
                 degradation: Degradation, *, seed: int | None = None,
                 overwrite: bool = False, dtype: str | None = None,
                 preset: str | None = None) -> dict[str, Any]:
    """LR = D(HR) from ``input_path`` to ``output`` (``seed``: the random draws; None:
    a fresh one, recorded), with the sidecar :func:`sidecar_path` holding everything
    needed to replay it. Both outputs are checked before any work (``overwrite``).
    Returns the sidecar's record (with ``"sidecar"``: where it was written)."""
    src = Path(input_path)
    out = check_output(output, overwrite, [src])
    side = check_output(sidecar_path(out), overwrite, [src])
    seed = secrets.randbelow(2**31) if seed is None else int(seed)
    degradation.set_random_state(seed)
    hr = io.read(src)
    lr = degrade_volume(hr, degradation)
    lr.meta.pop("degradation", None)
    written = io.write(lr, out, overwrite=overwrite, dtype=dtype, inputs=[src])
    record = {
        "medsr_version": __version__,
        "command": "medsr degrade",
        "input": str(src),
        "output": str(written),
        "preset": preset,
        "seed": seed,
        "degradation": degradation.to_dict(),
        "drawn": degradation.last_params,
        "hr_shape": list(hr.data.shape),
        "lr_shape": list(lr.data.shape),
        "hr_affine": hr.affine.tolist(),
        "lr_affine": lr.affine.tolist(),
    }
    with atomic_path(side) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    return {**record, "sidecar": str(side)}
