"""Load and save accelerator YAML files."""

from __future__ import annotations

from pathlib import Path

import yaml

from dse.hardware.schema import Accelerator, Macro
from dse.yamlio import dump, read_yaml, validate


def load_accelerator(path: str | Path) -> Accelerator:
    """Read ``path`` (YAML, see docs/hardware.md) into an Accelerator; bad input -> InputError."""
    return validate(Accelerator, read_yaml(path), Path(path))


def macro_of(hardware: Macro | Accelerator | str | Path) -> Macro:
    """The macro of a macro, an accelerator or an accelerator YAML file (what the accuracy side needs)."""
    if isinstance(hardware, Macro):
        return hardware
    return hardware.macro if isinstance(hardware, Accelerator) else load_accelerator(hardware).macro


def accelerator_from_dict(data: dict, source: str = "<dict>") -> Accelerator:
    """Build an Accelerator from plain data (e.g. a design point), with the same checks as a file."""
    return validate(Accelerator, data, source)


def accelerator_to_dict(acc: Accelerator) -> dict:
    """Plain data that ``accelerator_from_dict`` turns back into an equal Accelerator."""
    return dump(Accelerator, acc)


def save_accelerator(acc: Accelerator, path: str | Path) -> None:
    """Write ``acc`` as YAML (unset optional fields left out)."""
    text = yaml.safe_dump(accelerator_to_dict(acc), sort_keys=False, default_flow_style=None)
    Path(path).write_text(text, encoding="utf-8")
