"""Energy, latency and area of a layer and a network: the mapper's action counts, priced.

Macro energy = per-cycle component energies at the mapped rows and columns x S x the macro
activations (ZigZag-IMC's S x A); the cells are charged per weight written and per cell-group
precharge; every memory level per full-width access (its YAML energies, else the estimates of
``dse.cost.memory``). Latency = compute cycles + stalls where a level's ports cannot keep up +
weight loading the macro cannot hide. Area = the macros + the memory levels. A macro with PAC
(``accuracy.pac_operand``) has its chosen mapping priced with fewer exact cycles and input reads plus the
popcount hardware (:mod:`dse.cost.pac`). The switching activity a layer is priced at is, field by field, the
mapping file's ``activity`` entry when it sets one, else a measured or given per-layer value
(:mod:`dse.cost.activity`), else the macro's default.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from dse.cost.activity import combine
from dse.cost.macro import ENERGY_COMPONENTS, MacroModel
from dse.cost.memory import memory_costs, word_accesses
from dse.cost.pac import input_read_fraction, overhead_pJ, pac_counts, pac_factors, pac_macro_energy
from dse.cost.programming import ProgrammingCost, workload_weights, write_verify_cost
from dse.hardware.schema import ARRAY_DIMS, Accelerator
from dse.mapping.loops import product
from dse.mapping.mapper import SearchSettings, search_cached
from dse.mapping.spatial import SpatialMapping
from dse.mapping.spec import ActivityOverride, MappingSpec
from dse.mapping.temporal import CELLS, ActionCounts, BatchCounts
from dse.workload.graph import Workload
from dse.workload.layer import Layer

Objective = Literal["energy", "latency", "edp"]
OBJECTIVES: tuple[str, ...] = ("energy", "latency", "edp")


@dataclass(frozen=True)
class LayerCost:
    """One layer's cost under its chosen mapping."""

    layer: str
    op: str
    macs: int
    macro_energy_pJ: dict[str, float]  # by macro component, plus cell writes and precharge
    memory_energy_pJ: dict[str, dict[str, float]]  # level -> operand -> pJ
    compute_cycles: float
    stall_cycles: float
    weight_load_cycles: float
    clock_ns: float
    counts: ActionCounts = field(repr=False)
    activity: dict[str, Any] | None = None  # the activity priced: input_toggle_rate, weight_sparsity, source

    @property
    def energy_pJ(self) -> float:
        return sum(self.macro_energy_pJ.values()) + sum(sum(v.values()) for v in self.memory_energy_pJ.values())

    @property
    def latency_cycles(self) -> float:
        return self.compute_cycles + self.stall_cycles + self.weight_load_cycles

    @property
    def latency_s(self) -> float:
        return self.latency_cycles * self.clock_ns * 1e-9

    @property
    def utilization(self) -> float:
        """Useful MACs per cycle over the array's peak (rows x columns x macros), averaged over the layer."""
        return self.counts.spatial_utilization

    def to_json(self) -> dict:
        c = self.counts
        return {
            "layer": self.layer,
            "op": self.op,
            "macs": self.macs,
            "energy_pJ": self.energy_pJ,
            "macro_energy_pJ": self.macro_energy_pJ,
            "memory_energy_pJ": self.memory_energy_pJ,
            "latency_cycles": self.latency_cycles,
            "compute_cycles": self.compute_cycles,
            "stall_cycles": self.stall_cycles,
            "weight_load_cycles": self.weight_load_cycles,
            "latency_s": self.latency_s,
            "spatial_utilization": self.utilization,
            "array_occupancy": c.array_occupancy,
            "activity": self.activity,
            "mapping": {
                "spatial": {a: [[d, s] for d, s in c.spatial.on(a)] for a in ARRAY_DIMS},
                "weight_diagonal": c.spatial.diagonal is not None,
                "temporal_innermost_first": [[d, s] for d, s in c.order],
                "allocation": {op: [[lvl, n] for lvl, n in alloc] for op, alloc in c.allocation.items()},
                "rows_mapped": c.rows_mapped,
                "columns_mapped": c.columns_mapped,
                "macros_used": c.macros_used,
            },
            "actions": {
                "macro_activations": c.activations,
                "cycles_per_mac": c.cycles_per_mac,
                "weights_written": c.weights_written,
                "precharges": c.precharges,
                "traffic_bits": [
                    {"level": t.level, "operand": t.operand, "read": t.read_bits, "write": t.write_bits}
                    for t in c.traffic
                ],
            },
        }


@dataclass(frozen=True)
class NetworkCost:
    """A network's cost: its layers, the clock and the area."""

    accelerator: str
    workload: str
    layers: tuple[LayerCost, ...]
    clock_ns: float
    area_mm2: dict[str, float]
    zigzag_compat: bool
    opt: str
    programming: ProgrammingCost | None = None  # NVM write-verify of the weights, when the macro has variation
    activity: str = "macro"  # where the per-layer activity came from: macro (defaults), measured (on DATA), given

    @property
    def energy_pJ(self) -> float:
        return sum(layer.energy_pJ for layer in self.layers)

    @property
    def latency_cycles(self) -> float:
        return sum(layer.latency_cycles for layer in self.layers)

    @property
    def latency_s(self) -> float:
        return self.latency_cycles * self.clock_ns * 1e-9

    @property
    def area_total_mm2(self) -> float:
        return sum(self.area_mm2.values())

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def utilization(self) -> float:
        """Useful MACs over the array's peak MACs in the compute cycles of all the layers."""
        peak = sum(layer.counts.temporal_iterations * layer.counts.peak_macs_per_iteration for layer in self.layers)
        return self.macs / peak if peak else 0.0

    def summary(self) -> dict:
        return {
            "accelerator": self.accelerator,
            "workload": self.workload,
            "opt": self.opt,
            "zigzag_compat": self.zigzag_compat,
            "energy_pJ": self.energy_pJ,
            "latency_cycles": self.latency_cycles,
            "clock_ns": self.clock_ns,
            "latency_s": self.latency_s,
            "area_mm2": self.area_total_mm2,
            "area_breakdown_mm2": self.area_mm2,
            "layers": len(self.layers),
            "macs": self.macs,
            "spatial_utilization": self.utilization,
            "activity": self.activity,
            "energy_breakdown_pJ": self.energy_breakdown(),
            **({} if self.programming is None else {
                "program_energy_pJ": self.programming.energy_pJ, "program_time_s": self.programming.time_s,
                "weights_verified": self.programming.verified}),
        }

    def energy_breakdown(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for layer in self.layers:
            for k, v in layer.macro_energy_pJ.items():
                out[f"macro.{k}"] = out.get(f"macro.{k}", 0.0) + v
            for level, ops in layer.memory_energy_pJ.items():
                out[f"memory.{level}"] = out.get(f"memory.{level}", 0.0) + sum(ops.values())
        return out


def _activity_used(mapped: ActivityOverride | None, given: ActivityOverride | None,
                   acc: Accelerator) -> dict[str, Any]:
    """The activity a layer is priced at and where each figure came from (mapping, measured, macro)."""
    used: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name in ("input_toggle_rate", "weight_sparsity"):
        for source, where in (("mapping", mapped), ("measured", given), ("macro", acc.macro.activity)):
            value = getattr(where, name, None)
            if value is not None:
                used[name], sources[name] = value, source
                break
    return {**used, "source": sources}


def _word_accesses(bits: Any, min_word_bits: int | None, word_bits: int) -> Any:
    """``word_accesses``, also on an array of bit counts."""
    if isinstance(bits, np.ndarray):
        min_word = word_bits if min_word_bits is None else min_word_bits
        return np.ceil(bits / min_word) * (min_word / word_bits)
    return word_accesses(bits, min_word_bits, word_bits) if bits else 0.0


class Pricer:
    """Prices action counts of one layer on one accelerator; the per-level and per-shape constants are
    computed once, so the mapper can score thousands of candidate mappings cheaply."""

    def __init__(self, layer: Layer, acc: Accelerator, spec: MappingSpec | None, zigzag_compat: bool,
                 activity: ActivityOverride | None = None):
        self.layer, self.acc, self.zigzag_compat = layer, acc, zigzag_compat
        self.model = MacroModel(acc.macro, acc.technology, zigzag_compat)
        self.clock_ns = acc.clock_ns or self.model.clock().period_ns
        mapped = spec.resolve(layer).activity if spec is not None else None
        self.activity = combine(mapped, activity)  # ``activity``: measured or given; the mapping file wins
        self.activity_used = None if zigzag_compat else _activity_used(mapped, activity, acc)
        self.cell_write_pJ = self.model.cell_write_energy_pJ()
        self.precharge_pJ = self.model.precharge_energy_pJ(1)
        self.memories = {m.name: (m, memory_costs(m, acc.technology)) for m in acc.memories}
        self._per_cycle: dict[tuple[int, int], dict[str, float]] = {}
        self.pac = pac_factors(acc.macro)

    def per_cycle(self, rows: int, columns: int) -> dict[str, float]:
        key = (rows, columns)
        if key not in self._per_cycle:
            a = self.activity
            self._per_cycle[key] = self.model.cycle_energy_pJ(
                rows_mapped=rows, columns_mapped=columns,
                input_toggle_rate=a.input_toggle_rate if a else None,
                weight_sparsity=a.weight_sparsity if a else None, clock_ns=self.clock_ns,
            )
        return self._per_cycle[key]

    def _memory_energy(self, counts: ActionCounts | BatchCounts):
        for t in counts.traffic:
            if t.level == CELLS:
                continue
            mem, costs = self.memories[t.level]
            reads = _word_accesses(t.read_bits, mem.min_word_bits, mem.word_bits)
            writes = _word_accesses(t.write_bits, mem.min_word_bits, mem.word_bits)
            yield t.level, t.operand, reads * costs.read_energy_pJ + writes * costs.write_energy_pJ

    def macro_energy(self, counts: ActionCounts | BatchCounts) -> dict[str, Any]:
        """Macro energy by component, plus cell writes, precharge and (default mode) the macros' static power."""
        per_cycle = self.per_cycle(counts.rows_mapped, counts.columns_mapped)
        macro_cycles = counts.activations * counts.cycles_per_mac
        macro = {k: per_cycle[k] * macro_cycles for k in ENERGY_COMPONENTS if k != "leakage"}
        macro["cell_writes"] = counts.weights_written * self.cell_write_pJ
        macro["local_bl_precharging"] = counts.precharges * self.precharge_pJ
        m = self.acc.macro
        if not self.zigzag_compat and m.leakage_mW:
            macro["leakage"] = m.leakage_mW * m.count * counts.latency_cycles * self.clock_ns
        return macro

    def memory_energy(self, counts: ActionCounts | BatchCounts) -> dict[str, dict[str, Any]]:
        """Memory energy by level and operand, plus (default mode) the static power the YAML states."""
        memories: dict[str, dict[str, Any]] = {}
        for level, operand, energy in self._memory_energy(counts):
            memories.setdefault(level, {}).setdefault(operand, 0.0)
            memories[level][operand] += energy
        if not self.zigzag_compat:
            latency_ns = counts.latency_cycles * self.clock_ns
            for mem in self.acc.memories:
                if mem.leakage_mW:  # only what the YAML states: the estimates are upper bounds
                    memories.setdefault(mem.name, {})["leakage"] = mem.leakage_mW * latency_ns
        return memories

    def energy_and_latency(self, counts: ActionCounts | BatchCounts) -> tuple[Any, Any]:
        """Total energy (pJ) and latency (cycles): the mapper's objective. On :class:`BatchCounts`, arrays over
        the orders, by the same arithmetic (so the same values as order by order)."""
        memory = sum(sum(ops.values()) for ops in self.memory_energy(counts).values())
        return sum(self.macro_energy(counts).values()) + memory, counts.latency_cycles

    def layer_cost(self, counts: ActionCounts) -> LayerCost:
        layer = self.layer
        if self.pac is not None:  # the mapping was chosen without PAC; price it with PAC's cycles and reads
            m, pac = self.acc.macro, self.pac
            counts = pac_counts(counts, pac, input_read_fraction(pac, m, layer))
            macro = pac_macro_energy(self.macro_energy(counts), pac, overhead_pJ(pac, m, layer, self.model.gates))
        else:
            macro = self.macro_energy(counts)
        return LayerCost(
            layer=layer.name, op=layer.op, macs=layer.macs, macro_energy_pJ=macro,
            memory_energy_pJ=self.memory_energy(counts), compute_cycles=counts.compute_cycles,
            stall_cycles=counts.stall_cycles, weight_load_cycles=counts.weight_load_cycles, clock_ns=self.clock_ns,
            counts=counts, activity=self.activity_used,
        )


def _objective(pricer: Pricer, opt: str):
    """The mapper's objective for ``opt`` and a lower bound on it per spatial mapping."""
    layer = pricer.layer
    cycles_per_mac = pricer.acc.macro.cycles_per_mac

    def rank(energy, latency) -> tuple:
        """The objective first, then the other figure to break ties (scalars or arrays alike)."""
        if opt == "energy":
            return (energy, latency)
        if opt == "latency":
            return (latency, energy)
        return (energy * latency, latency)

    def score(counts: ActionCounts) -> tuple[float, ...]:
        return rank(*pricer.energy_and_latency(counts))

    def bound(spatial: SpatialMapping, sizes: dict[str, int]) -> float:
        # latency >= the compute cycles; energy >= the macro's own energy (memories cost >= 0)
        latency = product(sizes.values()) * cycles_per_mac
        if opt == "latency":
            return latency
        per_cycle = pricer.per_cycle(spatial.used("D2"), spatial.used("D1"))
        d1_d2 = product(s for a in ("D1", "D2") for _, s in spatial.on(a))
        energy = sum(v for k, v in per_cycle.items() if k != "leakage") * layer.macs / d1_d2 * cycles_per_mac
        return energy if opt == "energy" else energy * latency

    def batch(counts: BatchCounts) -> tuple[np.ndarray, ...]:
        return rank(*pricer.energy_and_latency(counts))

    return score, bound, batch


def evaluate_layer(layer: Layer, acc: Accelerator, spec: MappingSpec, *, opt: str = "latency",
                   zigzag_compat: bool = False, settings: SearchSettings = SearchSettings(),  # noqa: B008
                   activity: ActivityOverride | None = None) -> LayerCost:
    """Map ``layer`` for ``opt`` and price the best mapping; ``activity``: a measured or given activity for the
    layer (the mapping file's ``activity`` entry still wins, field by field)."""
    if opt not in OBJECTIVES:
        raise ValueError(f"opt = {opt!r}: expected one of {', '.join(OBJECTIVES)}")
    resolved = spec.resolve(layer)
    pricer = Pricer(layer, acc, spec, zigzag_compat, activity)
    score, bound, batch = _objective(pricer, opt)
    if zigzag_compat and not settings.divisors_only:
        settings = replace(settings, divisors_only=True)
    counts = search_cached(layer, acc, resolved, score, (opt, zigzag_compat, repr(pricer.activity)), settings,
                           spec.source, bound, batch)
    return pricer.layer_cost(counts)


def memory_area_mm2(acc: Accelerator, zigzag_compat: bool) -> dict[str, float]:
    """Area of each memory level: the YAML's, else the estimate for all its instances."""
    out = {}
    for mem in acc.memories:
        if mem.area_mm2 is not None or zigzag_compat:
            out[mem.name] = mem.area_mm2 or 0.0
            continue
        caps = {"D1": acc.macro.columns, "D2": acc.macro.rows_per_conversion, "D3": acc.macro.count}
        instances = 1
        for dim in ARRAY_DIMS:
            if dim not in mem.served_dimensions:
                instances *= caps[dim]
        out[mem.name] = memory_costs(mem, acc.technology, instances).area_mm2
    return out


def evaluate_network(workload: Workload, acc: Accelerator, spec: MappingSpec, *, opt: str = "latency",
                     zigzag_compat: bool = False, settings: SearchSettings = SearchSettings(),  # noqa: B008
                     progress=None, activity: dict[str, ActivityOverride] | None = None) -> NetworkCost:
    """Every compute layer of ``workload`` mapped and priced; ``progress(i, n, name)`` is called per layer.

    ``activity``: per-layer measured or given activity by layer name (:mod:`dse.cost.activity`), below the mapping
    file's ``activity`` entries and above the macro's defaults."""
    activity = activity or {}
    model = MacroModel(acc.macro, acc.technology, zigzag_compat)
    layers = []
    todo = workload.layers
    for i, layer in enumerate(todo):
        if progress is not None:
            progress(i, len(todo), layer.name)
        layers.append(evaluate_layer(layer, acc, spec, opt=opt, zigzag_compat=zigzag_compat, settings=settings,
                                     activity=activity.get(layer.name)))
    area = {f"macro.{k}": v for k, v in model.area_mm2().items()}
    area.update({f"memory.{k}": v for k, v in memory_area_mm2(acc, zigzag_compat).items()})
    variation = acc.macro.accuracy.device_variation
    programming = None if variation is None else write_verify_cost(
        acc.macro, workload_weights(workload), variation.verify_fraction)
    return NetworkCost(
        accelerator=acc.name, workload=workload.name, layers=tuple(layers),
        clock_ns=acc.clock_ns or model.clock().period_ns, area_mm2=area, zigzag_compat=zigzag_compat, opt=opt,
        programming=programming,
    )
