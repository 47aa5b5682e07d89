"""Parameter paths into an accelerator: ``macro.rows``, ``macro.accuracy.noise_sigma_pct``,
``technology.vdd_V``, ``memories.sram.size_bits`` (a memory level by its name), ``clock_ns``.

A path is checked against the schema once (a wrong one is an InputError listing the valid names)
and then read or written on the plain data of an accelerator (``accelerator_to_dict``), so a
design point is built and validated exactly like a YAML file.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from typing import Any

from dse.errors import InputError, did_you_mean
from dse.hardware import Accelerator

ACCELERATOR = "accelerator"  # the parameter naming the base accelerator
_NOT_VARIED = ("name", "description", "reported")  # labels and measured figures, not design choices


def _unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _is_scalar(tp: Any) -> bool:
    tp = _unwrap_optional(tp)
    if typing.get_origin(tp) is typing.Literal:
        return True
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return all(_is_scalar(a) for a in typing.get_args(tp))
    return tp in (int, float, str, bool, type(None))


def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def check_path(path: str, memory_names: dict[str, list[str]], source: str, where: str) -> None:
    """Refuse a path that names no single field of an accelerator (or a memory level no base has)."""
    parts = path.split(".")
    cls: Any = Accelerator
    walked: list[str] = []
    i = 0
    while i < len(parts):
        part = parts[i]
        fields = _fields(cls)
        if cls is Accelerator:
            fields = {k: v for k, v in fields.items() if k not in _NOT_VARIED}
        if part not in fields:
            owner = ".".join(walked) or "an accelerator"
            raise InputError(source, where, f"no field '{part}' in {owner}; valid: {', '.join(fields)}",
                             did_you_mean(part, fields))
        walked.append(part)
        if cls is Accelerator and part == "memories":
            names = sorted({n for ns in memory_names.values() for n in ns})
            if i + 1 >= len(parts) or parts[i + 1] not in names:
                got = parts[i + 1] if i + 1 < len(parts) else ""
                raise InputError(source, where, f"no memory level '{got}' in any base; levels: "
                                 f"{', '.join(names) or 'none'}", did_you_mean(got, names))
            walked.append(parts[i + 1])
            cls = typing.get_args(fields[part])[0]
            i += 2
            if i >= len(parts):
                raise InputError(source, where, "names a memory level, not a field; fields: "
                                 + ", ".join(_fields(cls)))
            continue
        tp = _unwrap_optional(fields[part])
        if dataclasses.is_dataclass(tp):
            if i + 1 >= len(parts):
                raise InputError(source, where, f"names a group of fields; name one of: {', '.join(_fields(tp))}")
            cls = tp
        elif not _is_scalar(tp):
            raise InputError(source, where, "is not a single value (lists and groups cannot be varied)")
        elif i + 1 < len(parts):
            raise InputError(source, where, f"'{part}' is a value, it has no field '{parts[i + 1]}'")
        i += 1


def _container(data: dict, parts: list[str], create: bool) -> dict | None:
    """The dict holding the last part of a path (memories are found by name); None when absent."""
    node: Any = data
    i = 0
    while i < len(parts) - 1:
        part = parts[i]
        if part == "memories" and node is data:
            node = next((m for m in data.get("memories", []) if m.get("name") == parts[i + 1]), None)
            if node is None:
                return None
            i += 2
            continue
        if part not in node or node[part] is None:
            if not create:
                return None
            node[part] = {}
        node = node[part]
        i += 1
    return node


def applies(path: str, data: dict) -> bool:
    """Whether an accelerator's data has the place a path names (its memory level exists)."""
    return path == ACCELERATOR or _container(copy.deepcopy(data), path.split("."), create=True) is not None


def get_path(data: dict, path: str) -> Any:
    """The value at ``path`` (None when unset)."""
    node = _container(data, path.split("."), create=False)
    return None if node is None else node.get(path.split(".")[-1])


def set_path(data: dict, path: str, value: Any) -> dict:
    """A copy of ``data`` with ``path`` set to ``value`` (None removes the field: its default applies)."""
    out = copy.deepcopy(data)
    node = _container(out, path.split("."), create=True)
    if node is None:
        raise KeyError(path)
    key = path.split(".")[-1]
    if value is None:
        node.pop(key, None)
    else:
        node[key] = value
    return out
