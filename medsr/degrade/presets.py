"""Named degradations shipped as package data (medsr/presets/<name>.yaml, kind: degradation).

configs/degradations/ holds identical copies for users to read and edit; the package
copy is the one loaded, so presets work from a wheel install.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from medsr.degrade.compose import Degradation
from medsr.errors import UserError


def _preset_files() -> dict[str, Any]:
    root = resources.files("medsr") / "presets"
    found = {}
    if root.is_dir():
        for f in root.iterdir():
            if f.name.endswith(".yaml"):
                found[f.name[: -len(".yaml")]] = f
    return found


def preset_dict(name: str) -> dict[str, Any]:
    """The raw preset mapping (with its ``description``)."""
    files = _preset_files()
    data = yaml.safe_load(files[name].read_text()) if name in files else None
    if not isinstance(data, dict) or data.get("kind") != "degradation":
        raise UserError(f"unknown degradation preset {name!r}; known: "
                        f"{', '.join(available_presets())}")
    return data


def available_presets() -> list[str]:
    """Names of the shipped degradation presets."""
    names = []
    for name, f in sorted(_preset_files().items()):
        try:
            data = yaml.safe_load(f.read_text())
        except yaml.YAMLError:
            continue
        if isinstance(data, dict) and data.get("kind") == "degradation":
            names.append(name)
    return names


def load_preset(name: str, **overrides: Any) -> Degradation:
    """The preset ``name`` with ``overrides`` (e.g. scale=(1, 1, 4)) applied."""
    params = preset_dict(name)
    params.update(overrides)
    return Degradation.from_dict(params)
