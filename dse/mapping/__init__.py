"""Mapping constraints (the mapping YAML file); the mapper is ``dse.mapping.mapper``."""

from dse.mapping.spec import (
    ActivityOverride,
    MappingEntry,
    MappingSpec,
    PrecisionOverride,
    ResolvedMapping,
    check_mapping,
    load_mapping,
    mapping_from_data,
)

__all__ = [
    "ActivityOverride",
    "MappingEntry",
    "MappingSpec",
    "PrecisionOverride",
    "ResolvedMapping",
    "check_mapping",
    "load_mapping",
    "mapping_from_data",
]
