"""workloads/export.py loaded as a module (it is a script, not part of the dse package), once per test session."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

EXPORT_PY = Path(__file__).resolve().parents[1] / "workloads" / "export.py"


def load_export_script() -> ModuleType:
    name = "workloads_export"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, EXPORT_PY)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look the module up while the class is made
        spec.loader.exec_module(module)
    return sys.modules[name]
