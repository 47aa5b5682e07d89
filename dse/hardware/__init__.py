"""Accelerator descriptions: the YAML schema, loading and summaries."""

from dse.hardware.loader import (
    accelerator_from_dict,
    accelerator_to_dict,
    load_accelerator,
    macro_of,
    save_accelerator,
)
from dse.hardware.schema import (
    ARRAY_DIMS,
    MEMORY_OPERANDS,
    Accelerator,
    AccuracyFigures,
    Activity,
    Circuit,
    DeviceVariation,
    Macro,
    Memory,
    Ports,
    Reported,
    Technology,
)
from dse.hardware.summary import macro_line, summarize

__all__ = [
    "ARRAY_DIMS",
    "MEMORY_OPERANDS",
    "AccuracyFigures",
    "Accelerator",
    "Activity",
    "Circuit",
    "DeviceVariation",
    "Macro",
    "Memory",
    "Ports",
    "Reported",
    "Technology",
    "accelerator_from_dict",
    "accelerator_to_dict",
    "load_accelerator",
    "macro_of",
    "macro_line",
    "save_accelerator",
    "summarize",
]
