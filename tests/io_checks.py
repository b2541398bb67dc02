"""Checks shared by the reader/writer tests of several formats."""

from __future__ import annotations

from pathlib import Path

import pytest

from medsr import io as mio
from medsr.errors import OutputError
from medsr.volume import Volume


def write_over_existing(vol: Volume, out: Path, match: str) -> None:
    """``mio.write`` onto an existing ``out``: refused (an OutputError matching ``match``)
    with the file left byte for byte, then replaced with ``overwrite=True``."""
    out.write_bytes(b"precious")
    with pytest.raises(OutputError, match=match):
        mio.write(vol, out)
    assert out.read_bytes() == b"precious"
    mio.write(vol, out, overwrite=True)
