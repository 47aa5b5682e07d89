"""The mapping file: per-layer constraints and hints for the mapper, and precision overrides.

A mapping file is a YAML list of entries in ZigZag's format (its ``default_imc.yaml`` loads
as is). Each entry is keyed by ``name``: a layer name, an op type (ours: conv, dwconv, gemm,
matmul; or an ONNX op type such as Conv) or ``default``, which is required. For a layer,
each field is taken from the most specific entry that sets it: layer name, then ONNX op
type, then our op type, then default.
"""

from __future__ import annotations

from dataclasses import dataclass as plain_dataclass
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

import onnx.defs
from pydantic import BeforeValidator, ConfigDict, Field
from pydantic.dataclasses import dataclass

from dse.errors import InputError, did_you_mean, display_path
from dse.workload.layer import COMPUTE_OPS, Layer, Precision
from dse.yamlio import read_yaml, validate

LoopDim = Literal["B", "K", "C", "OY", "OX", "FY", "FX", "G"]
ArrayDim = Literal["D1", "D2", "D3"]
LayerOperand = Literal["W", "I", "O"]
MemoryOperand = Literal["I1", "I2", "O"]

DEFAULT_LINKS: dict[str, str] = {"W": "I2", "I": "I1", "O": "O"}

_STRICT = ConfigDict(extra="forbid")


def _unroll_pair(value: Any) -> Any:
    """Accept ``"K, 32"`` (ZigZag), ``[K, 32]`` or ``{K: 32}`` for one spatial unrolling."""
    if isinstance(value, str) and "," in value:
        dim, _, size = value.partition(",")
        size = size.strip()
        return (dim.strip(), int(size) if size.lstrip("-").isdigit() else size)
    if isinstance(value, dict) and len(value) == 1:
        return next(iter(value.items()))
    return value


def _ordering_pair(value: Any) -> Any:
    if isinstance(value, str) and "," in value:
        dim, _, size = value.partition(",")
        size = size.strip().strip("'\"")
        return (dim.strip(), int(size) if size.isdigit() else size)
    return value


Unroll = Annotated[tuple[LoopDim, Annotated[int, Field(gt=0)]], BeforeValidator(_unroll_pair)]
TemporalLoop = Annotated[
    tuple[LoopDim, Annotated[int, Field(gt=0)] | Literal["*"]], BeforeValidator(_ordering_pair)
]


@dataclass(frozen=True, config=_STRICT)
class PrecisionOverride:
    """Operand precisions in bits that replace the workload's for the matching layers."""

    W: int | None = Field(None, ge=1, le=32, description="weight (stored operand) bits")
    I: int | None = Field(None, ge=1, le=32, description="input activation bits")  # noqa: E741
    O: int | None = Field(None, ge=1, le=64, description="final output bits")  # noqa: E741

    def apply(self, base: Precision) -> Precision:
        return Precision(
            W=self.W if self.W is not None else base.W,
            I=self.I if self.I is not None else base.I,
            O=self.O if self.O is not None else base.O,
        )


@dataclass(frozen=True, config=_STRICT)
class ActivityOverride:
    """Switching activity that replaces the macro's default, and measured activity, for the matching layers.

    Field by field: an unset field keeps the measured value (``--activity measured``) or the macro's default.
    """

    input_toggle_rate: float | None = Field(
        None, ge=0, le=1, description="fraction of input bits that toggle from one cycle to the next")
    weight_sparsity: float | None = Field(None, ge=0, le=1, description="fraction of stored weight bits that are 0")


@dataclass(frozen=True, config=_STRICT)
class MappingEntry:
    """One entry of a mapping file; unset fields fall back to less specific entries."""

    name: str = Field(min_length=1, description="layer name, op type, or 'default'")
    memory_operand_links: dict[LayerOperand, MemoryOperand] | None = Field(
        None, description="layer operand -> memory operand (default W: I2, I: I1, O: O)"
    )
    spatial_mapping: dict[ArrayDim, tuple[Unroll, ...]] | None = Field(
        None, description="fixed unrollings per array dim, e.g. D1: ['K, 32'], D2: ['C, 16', 'FX, 3']"
    )
    spatial_mapping_hint: dict[ArrayDim, tuple[LoopDim, ...]] | None = Field(
        None, description="loop dims the mapper may unroll on each array dim not fixed above"
    )
    temporal_ordering: tuple[TemporalLoop, ...] | None = Field(
        None, description="loop order, innermost first: [[OX, 112], [OY, '*']]; '*' = the remainder"
    )
    weight_diagonal: bool | None = Field(
        None, description="also unroll OX/OY over the columns beside FX/FY on the rows, the columns sharing input "
        "rows along the diagonal (each column stores its own shifted copy of the weights); default false, as ZigZag-IMC"
    )
    precision: PrecisionOverride | None = Field(None, description="operand precision overrides, bits")
    activity: ActivityOverride | None = Field(None, description="switching activity overrides")


@plain_dataclass(frozen=True)
class ResolvedMapping:
    """The constraints that apply to one layer after the entry fallback."""

    memory_operand_links: dict[str, str]
    spatial_mapping: dict[str, tuple[tuple[str, int], ...]]
    spatial_mapping_hint: dict[str, tuple[str, ...]] | None
    temporal_ordering: tuple[tuple[str, int | str], ...] | None
    precision: PrecisionOverride | None
    activity: ActivityOverride | None
    sources: dict[str, str] = field(default_factory=dict)  # field -> entry name it came from
    weight_diagonal: bool = False


_FIELDS = ("memory_operand_links", "spatial_mapping", "spatial_mapping_hint", "temporal_ordering",
           "weight_diagonal", "precision", "activity")


@plain_dataclass(frozen=True)
class MappingSpec:
    """A parsed mapping file."""

    entries: tuple[MappingEntry, ...]
    source: str = "<mapping>"

    def entry(self, name: str) -> MappingEntry | None:
        return next((e for e in self.entries if e.name == name), None)

    def resolve(self, layer: Layer) -> ResolvedMapping:
        """The constraints for ``layer``: each field from its most specific entry."""
        chain = [e for e in (self.entry(layer.name), self.entry(layer.onnx_op), self.entry(layer.op),
                             self.entry("default")) if e is not None]
        chosen: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for name in _FIELDS:
            for e in chain:
                value = getattr(e, name)
                if value is not None:
                    chosen[name], sources[name] = value, e.name
                    break
        links = dict(DEFAULT_LINKS)
        links.update(chosen.get("memory_operand_links") or {})
        return ResolvedMapping(
            memory_operand_links=links,
            spatial_mapping=dict(chosen.get("spatial_mapping") or {}),
            spatial_mapping_hint=chosen.get("spatial_mapping_hint"),
            temporal_ordering=chosen.get("temporal_ordering"),
            precision=chosen.get("precision"),
            activity=chosen.get("activity"),
            sources=sources,
            weight_diagonal=bool(chosen.get("weight_diagonal", False)),
        )

    def precision_of(self, layer: Layer) -> Precision:
        """The layer's precision after this file's overrides."""
        override = self.resolve(layer).precision
        return override.apply(layer.precision) if override else layer.precision


def load_mapping(path: str | Path) -> MappingSpec:
    """Read a mapping YAML file (a list of entries with a required ``default``)."""
    return mapping_from_data(read_yaml(path), Path(path))


def mapping_from_data(data: Any, source: str | Path = "<mapping>") -> MappingSpec:
    shown = display_path(source) if isinstance(source, Path) else str(source)
    if not isinstance(data, list):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise InputError(shown, None, f"expected a list of mapping entries, found {kind}",
                         "each entry starts with '- name: default' or a layer / op type name")
    entries = []
    for i, raw in enumerate(data):
        label = f"[{i}:{raw['name']}]" if isinstance(raw, dict) and isinstance(raw.get("name"), str) else f"[{i}]"
        entries.append(validate(MappingEntry, raw, shown, prefix=label))
    names = [e.name for e in entries]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise InputError(shown, f"[{i}:{name}].name", f"= '{name}': an earlier entry has the same name")
    if "default" not in names:
        raise InputError(shown, None, "no 'default' entry", "add one, e.g. '- name: default' with "
                         "spatial_mapping_hint: {D1: [K], D2: [C, FX, FY]}")
    return MappingSpec(entries=tuple(entries), source=shown)


def _is_op_type(name: str) -> bool:
    return name in COMPUTE_OPS or onnx.defs.has(name)


def check_mapping(spec: MappingSpec, workload: Any, accelerator: Any | None = None) -> None:
    """Refuse entries naming layers that do not exist, or unrollings larger than the array.

    ``workload`` is a ``dse.workload.Workload``; ``accelerator`` a ``dse.hardware.Accelerator``.
    """
    node_names = [n.name for n in workload]
    for i, entry in enumerate(spec.entries):
        where = f"[{i}:{entry.name}]"
        if entry.name != "default" and entry.name not in workload and not _is_op_type(entry.name):
            layer_names = [layer.name for layer in workload.layers]
            raise InputError(
                spec.source, f"{where}.name",
                f"= '{entry.name}': no layer, op type or 'default' of this name in {workload.source or workload.name}",
                did_you_mean(entry.name, layer_names) or did_you_mean(entry.name, node_names),
            )
        if accelerator is not None and entry.spatial_mapping:
            macro = accelerator.macro
            limits = {"D1": ("columns", macro.columns), "D2": ("rows", macro.rows_per_conversion),
                      "D3": ("macros", macro.count)}
            for dim, unrolls in entry.spatial_mapping.items():
                total = 1
                for _, size in unrolls:
                    total *= size
                what, limit = limits[dim]
                if total > limit:
                    shown = ", ".join(f"{d} {s}" for d, s in unrolls)
                    raise InputError(
                        spec.source, f"{where}.spatial_mapping.{dim}",
                        f"= {shown}: unrolls {total} but the macro has {limit} {what}",
                    )


