"""Pictures and volumes that Debian packages carry, for pipelines only (never at run time).

A package is taken from the system when it is installed, else fetched with
``apt-get download`` from the package registry (not a data host) and unpacked with
``dpkg -x`` under runs/data/debian (once). Used for OpenCV's sample photographs and
desktop-wallpaper photographs (frames, pipelines/frames_data.py) and MRIcron's templates
(fresh test volumes for pipelines/benchmark_selfsup.py).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

DEBIAN_CACHE = Path(__file__).resolve().parents[1] / "runs" / "data" / "debian"


def debian_package(package: str, probe: Path) -> Path:
    """The root under which Debian package ``package`` has its files: ``/`` when it is
    installed (``probe``, a path inside the package, exists there), else the package
    fetched with ``apt-get download`` from the package registry (not a data host) and
    unpacked with ``dpkg -x`` into runs/data/debian/PACKAGE (once)."""
    cache = DEBIAN_CACHE / package
    for root in (Path("/"), cache):
        if (root / probe).exists():
            return root
    cache.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["apt-get", "download", package], cwd=cache, check=True,
                       capture_output=True)
        deb = sorted(cache.glob(f"{package}_*.deb"))[-1]
        subprocess.run(["dpkg", "-x", str(deb), str(cache)], check=True)
        deb.unlink()
    except (OSError, subprocess.CalledProcessError, IndexError) as exc:
        raise SystemExit(f"Debian package {package} is needed for this data: install "
                         f"it, or let apt-get download it ({exc})") from None
    if not (cache / probe).exists():
        raise SystemExit(f"Debian package {package} has no {probe}")
    return cache
