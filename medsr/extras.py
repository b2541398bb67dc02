"""The optional dependencies (pip extras) and the one line that names a missing one.

The core install (``pip install medsr``) is what ``medsr infer`` needs. The extras, as
declared in ``pyproject.toml``:

- ``train``: ``medsr train``, ``medsr eval --model``, figures, ``pipelines/``: nilearn (the
  MNI152 template), matplotlib (figures), TorchIO (artefacts in degradations),
  TensorBoard (optional logs);
- ``video``: video files (imageio + imageio-ffmpeg);
- ``test``: both, plus the test-only tools (the README's test command).

Checks use :func:`importlib.util.find_spec`: nothing is imported, so they cost nothing.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable

from medsr.errors import UserError

#: extra -> (import names checked, words for the message)
EXTRAS: dict[str, tuple[tuple[str, ...], str]] = {
    "train": (("nilearn", "matplotlib", "torchio"), "the training extras"),
    "figures": (("matplotlib",), "matplotlib (in the training extras)"),
    "video": (("imageio", "imageio_ffmpeg"), "the video extras"),
}
#: the pip extra that installs each entry of :data:`EXTRAS`
PIP_EXTRA = {"train": "train", "figures": "train", "video": "video"}


def missing(modules: Iterable[str]) -> list[str]:
    """The import names in ``modules`` that cannot be imported (none is imported here)."""
    out = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(name)
    return out


def install_hint(extra: str) -> str:
    """``pip install 'medsr[train]'``."""
    return f"pip install 'medsr[{PIP_EXTRA[extra]}]'"


def require(extra: str, what: str) -> None:
    """Raise a one-line :class:`UserError` when an import of ``extra`` is missing:
    ``<what> needs the training extras: pip install 'medsr[train]'``."""
    modules, words = EXTRAS[extra]
    if missing(modules):
        raise UserError(f"{what} needs {words}: {install_hint(extra)}")


def available(extra: str) -> bool:
    """Whether every import of ``extra`` is installed."""
    return not missing(EXTRAS[extra][0])


def pyplot():  # -> matplotlib.pyplot (an optional import)
    """matplotlib's pyplot on the Agg backend (figures are written to files, never shown),
    imported when a figure is drawn: the one place figures get matplotlib from."""
    require("figures", "drawing a figure")
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt
