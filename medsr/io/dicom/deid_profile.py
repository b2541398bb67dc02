"""The standard's table: PS3.15 Annex E, Table E.1-1, column "Basic Prof.", as data.

One entry per attribute (tag -> action: X remove, Z empty, D dummy, U remap the UID, or
a choice such as X/Z that :data:`medsr.io.dicom.deid_rules.CHOICE` resolves), read from
``deid_profile.tsv`` beside this module: a data file, kept apart from the logic so that
it can be compared line by line with the standard (its header says where it comes from).
"""

from __future__ import annotations

from importlib.resources import files


def _load() -> dict[int, str]:
    table: dict[int, str] = {}
    text = files(__package__).joinpath("deid_profile.tsv").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line and not line.startswith("#"):
            tag, action, _name = line.split("\t", 2)
            table[int(tag, 16)] = action
    return table


PROFILE: dict[int, str] = _load()
