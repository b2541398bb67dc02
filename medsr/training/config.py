"""Training configuration: loading it. YAML files and ``--set`` overrides merged over the
schema's defaults (:mod:`medsr.training.schema`).

A config is a nested dict. Every key must exist in :data:`DEFAULTS` (a typo is a
:class:`~medsr.errors.UserError` naming the key and the allowed ones), values are
type-checked against the default, and the few open sections (:data:`OPEN_SECTIONS`,
e.g. model hyperparameters) accept any key. :func:`validate` then checks every value
(finite, in range, a known choice). YAML is read with PyYAML's safe loader only, from a
UTF-8 file of at most :data:`MAX_CONFIG_BYTES`, and a document whose aliases would expand
to more than :data:`MAX_YAML_NODES` nodes (a "billion laughs" bomb) is refused before it
is expanded.
"""

from __future__ import annotations

import copy
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from medsr.errors import UserError
from medsr.training.schema import (
    DEFAULTS,
    DEFAULTS_FLAT,
    OPEN_SECTIONS,
    VALIDATED_KEYS,
    short_repr,
    validate,
)


def defaults() -> dict[str, Any]:
    """A fresh deep copy of the defaults."""
    return copy.deepcopy(DEFAULTS)


def _type_ok(default: Any, value: Any) -> bool:
    if default is None:
        return True
    if value is None:  # null only where the default is null
        return False
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, list):
        # a per-axis list may also be given as one number
        return isinstance(value, (list, int, float)) and not isinstance(value, bool)
    if isinstance(default, dict):
        return isinstance(value, dict)
    return True


def _is_open(path: str) -> bool:
    return any(path == s or path.startswith(s + ".") for s in OPEN_SECTIONS)


def _deep_update(base: dict, override: dict) -> None:
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def _merge(base: dict, override: dict, prefix: str) -> None:
    for key, value in override.items():
        if not isinstance(key, str):
            raise UserError(f"config key {key!r} at '{prefix or '<top>'}' is not a string")
        path = f"{prefix}{key}"
        if key not in base:
            allowed = ", ".join(sorted(base))
            raise UserError(f"unknown config key '{path}'; allowed keys here: {allowed}")
        default = DEFAULTS_FLAT.get(path, base[key])
        if _is_open(path):
            if not (value is None or isinstance(value, dict)):
                raise UserError(f"config key '{path}' must be a mapping, got {short_repr(value)}")
            if value is None and isinstance(default, dict):
                value = {}
            if isinstance(value, dict) and isinstance(base[key], dict):
                _deep_update(base[key], value)
            else:
                base[key] = copy.deepcopy(value)
            continue
        if isinstance(base[key], dict) and isinstance(value, dict):
            _merge(base[key], value, path + ".")
            continue
        if isinstance(default, float) and isinstance(value, str):
            try:  # YAML 1.1 reads "1e-4" (no dot) as a string
                value = float(value)
            except ValueError:
                pass
        if path not in VALIDATED_KEYS and not _type_ok(default, value):
            raise UserError(f"config key '{path}' must be {type(default).__name__}, "
                            f"got {short_repr(value)}")
        if isinstance(default, float) and isinstance(value, int):
            value = float(value)
        base[key] = copy.deepcopy(value)


def merge(config: dict, override: dict) -> dict:
    """``config`` updated by ``override`` (checked against the schema), as a new dict."""
    out = copy.deepcopy(config)
    _merge(out, override, "")
    return out


#: A training config is a few kB; anything larger is refused unread.
MAX_CONFIG_BYTES = 1 << 20
#: Nodes a YAML document may hold once its aliases are expanded (refused beyond this).
MAX_YAML_NODES = 100_000


def _expanded_nodes(root: yaml.Node) -> int:
    """Nodes of ``root`` with every alias expanded, counted without expanding anything.

    Shared (aliased) nodes are counted once per use from a memo, so a "billion laughs"
    document is measured in microseconds; a count over :data:`MAX_YAML_NODES` or a
    recursive alias raises UserError.
    """
    memo: dict[int, int] = {}
    active: set[int] = set()

    def count(node: yaml.Node) -> int:
        key = id(node)
        if key in memo:
            return memo[key]
        if key in active:
            raise UserError("refers to itself through an alias (recursive anchor)")
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += count(child)
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += count(k) + count(v)
        active.discard(key)
        if total > MAX_YAML_NODES:
            raise UserError(f"expands to more than {MAX_YAML_NODES} values through aliases "
                            "(a YAML bomb?)")
        memo[key] = total
        return total

    return count(root)


def safe_yaml(text: str) -> Any:
    """``yaml.safe_load(text)``, refusing alias bombs and recursive aliases before expanding.

    Raises ``yaml.YAMLError`` for a syntax error and UserError (no file name) for a bomb.
    """
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _expanded_nodes(node)
            return loader.construct_document(node)
        except RecursionError as exc:
            raise UserError("is nested too deeply") from exc
    finally:
        loader.dispose()


def read_yaml(path: str | os.PathLike) -> dict:
    """A YAML mapping from ``path`` (safe loader only; never executes anything).

    UserError for a file that cannot be read, is larger than :data:`MAX_CONFIG_BYTES`, is
    not UTF-8 text or not YAML, expands beyond :data:`MAX_YAML_NODES`, or is no mapping.
    """
    p = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; refused below (not regular)
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                kind = "a directory" if p.is_dir() else "not a regular file"
                raise UserError(f"config {p} is {kind}; give a YAML file")
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except IsADirectoryError as exc:
        raise UserError(f"config {p} is a directory; give a YAML file") from exc
    except OSError as exc:
        raise UserError(f"cannot read config {p}: {exc.strerror or exc}") from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise UserError(f"config {p} is larger than {MAX_CONFIG_BYTES // 1024} KiB; "
                        "a training config is a small YAML file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"config {p} is not UTF-8 text (byte {exc.start} of the file); "
                        "give a YAML file") from exc
    try:
        data = safe_yaml(text)
    except yaml.YAMLError as exc:
        raise UserError(f"config {p} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    except UserError as exc:
        raise UserError(f"config {p} {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config {p} must be a mapping of keys to values, "
                        f"not a {type(data).__name__}")
    return data


def parse_set(item: str) -> dict:
    """``"a.b=value"`` -> ``{"a": {"b": value}}``, the value parsed as YAML."""
    if "=" not in item:
        raise UserError(f"--set expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise UserError(f"--set: bad key {key!r}")
    try:
        value = safe_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    except UserError as exc:
        raise UserError(f"--set {key}: the value {exc}") from exc
    out: dict = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def load_config(path: str | os.PathLike | None = None, sets: list[str] | None = None,
                base: dict | None = None) -> dict:
    """Defaults (or ``base``) <- YAML file <- ``--set`` items, checked and validated."""
    cfg = defaults() if base is None else copy.deepcopy(base)
    if path is not None:
        cfg = merge(cfg, read_yaml(path))
    for item in sets or []:
        cfg = merge(cfg, parse_set(item))
    validate(cfg)
    return cfg


