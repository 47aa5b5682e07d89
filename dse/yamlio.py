"""Read YAML safely and turn pydantic validation failures into one-line ``InputError``s.

Shared by the hardware, mapping (and later design-space) loaders so every file reports
problems the same way: ``<file>: <field.path> = <value>: <what was expected> (<hint>)``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from dse.errors import FieldProblem, InputError, did_you_mean, display_path


def read_yaml(path: str | Path) -> Any:
    """``yaml.safe_load`` of a file, with missing files and syntax errors as InputError."""
    shown = display_path(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(shown, None, "file not found") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise InputError(shown, None, f"cannot read the file ({exc.__class__.__name__})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(shown, where, f"not valid YAML: {problem}") from None


def _unwrap(tp: Any) -> Any:
    """The dataclass (or container) inside Optional[...] / tuple[X, ...] / list[X]."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _unwrap(args[0]) if len(args) == 1 else tp
    if origin in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return _unwrap(args[0]) if args else tp
    return tp


def _field_names_at(root: type, loc: tuple) -> list[str]:
    """The field names of the dataclass reached by following ``loc`` (ints index lists)."""
    tp: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        if not dataclasses.is_dataclass(tp):
            return []
        hints = typing.get_type_hints(tp)
        if part not in hints:
            return []
        tp = _unwrap(hints[part])
    return [f.name for f in dataclasses.fields(tp)] if dataclasses.is_dataclass(tp) else []


def _path(loc: tuple, data: Any) -> str:
    """``memories[2].size_bits`` style path; list items of named entries show the name."""
    text = ""
    node = data
    for part in loc:
        if part == "[key]":  # pydantic marks a bad dict key this way; the key is already in the path
            continue
        if isinstance(part, int):
            label = str(part)
            if isinstance(node, list) and part < len(node):
                node = node[part]
                if isinstance(node, dict) and isinstance(node.get("name"), str):
                    label = f"{part}:{node['name']}"
            else:
                node = None
            text += f"[{label}]"
        else:
            text += f".{part}" if text else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return text


def _describe(err: dict, root: type, data: Any) -> tuple[str, str, str | None]:
    """(where, problem, hint) for one pydantic error."""
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    cause = ctx.get("error")
    if isinstance(cause, FieldProblem):
        where = _path(loc, data)
        return (f"{where}.{cause.field}" if where else cause.field), cause.message, None
    where = _path(loc, data)
    shown = repr(value) if isinstance(value, str) else value
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        return where, "unknown field", did_you_mean(str(loc[-1]), _field_names_at(root, loc[:-1]))
    if kind in ("missing", "missing_argument"):
        return where, "missing required field", None
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        symbol = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values())) if ctx else "?"
        return where, f"= {shown}: must be {symbol} {bound}", None
    if kind == "literal_error":
        return where, f"= {shown}: expected {ctx.get('expected', 'one of the allowed values')}", None
    if kind in ("dataclass_type", "dict_type", "model_type"):
        return where, f"= {shown}: expected a mapping of fields", None
    if kind in ("tuple_type", "list_type"):
        return where, f"= {shown}: expected a list", None
    if kind.startswith("int_"):
        return where, f"= {shown}: expected an integer", None
    if kind.startswith("float_"):
        return where, f"= {shown}: expected a number", None
    if kind.startswith("bool_"):
        return where, f"= {shown}: expected true or false", None
    if kind.startswith("string_"):
        return where, f"= {shown}: {err['msg'].lower()}", None
    msg = err["msg"].removeprefix("Value error, ")
    return where, f"= {shown}: {msg}", None


def validate(schema: type, data: Any, source: str | Path, prefix: str = "") -> Any:
    """Build ``schema`` from plain data, or raise InputError naming the first bad field.

    ``prefix`` is the path of ``data`` inside its file (e.g. ``[2:conv]`` for a list entry).
    """
    shown = display_path(source) if isinstance(source, Path) else str(source)
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        where = prefix or None
        raise InputError(shown, where, f"expected a mapping of fields{'' if prefix else ' at the top level'}, "
                         f"found {kind}")
    try:
        return TypeAdapter(schema).validate_python(data)
    except ValidationError as exc:
        # An unknown field usually explains the "missing" one next to it: report it first.
        errors = sorted(exc.errors(), key=lambda e: e["type"] not in ("extra_forbidden", "unexpected_keyword_argument"))
        where, problem, hint = _describe(errors[0], schema, data)
        where = f"{prefix}.{where}" if prefix and where else (prefix or where)
        if len(errors) > 1:
            problem += f" [and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''}]"
        raise InputError(shown, where or None, problem, hint) from None


def dump(schema: type, obj: Any) -> dict:
    """Plain data (YAML-ready) of a schema object, leaving out unset optional fields."""
    return TypeAdapter(schema).dump_python(obj, mode="json", exclude_none=True)
