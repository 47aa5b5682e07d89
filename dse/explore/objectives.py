"""What a design point scores: metrics from the cost model and the simulator, objectives with their
directions, and the constraints checked on them.

TOP/s/W on the workload = 2 x MACs / energy (1 MAC = 2 operations): the network's, memories included,
not the macro's peak. EDP = energy (J) x latency (s), in J*s. Programming energy and time are the extra
cost of write-verifying the NVM weights (``macro.accuracy.device_variation.verify_fraction``), paid once
per chip rather than per inference, so they are objectives of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dse.cost.network import NetworkCost


@dataclass(frozen=True)
class Objective:
    name: str
    column: str  # the metric in points.csv
    direction: Literal["min", "max"]
    label: str  # axis title, with the unit


OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    Objective("energy", "energy_pJ", "min", "energy per inference (pJ)"),
    Objective("latency", "latency_s", "min", "latency per inference (s)"),
    Objective("area", "area_mm2", "min", "area (mm²)"),
    Objective("edp", "edp_Js", "min", "energy-delay product (J·s)"),
    Objective("accuracy", "accuracy", "max", "top-1 accuracy"),
    Objective("tops_per_w", "tops_per_w", "max", "TOP/s/W on the workload"),
    Objective("program_energy", "program_energy_pJ", "min", "NVM write-verify energy (pJ)"),
    Objective("program_time", "program_time_s", "min", "NVM write-verify time (s)"),
)}

COST_METRICS = ("energy_pJ", "macro_energy_pJ", "memory_energy_pJ", "latency_s", "latency_cycles", "clock_ns",
                "area_mm2", "edp_Js", "tops_per_w", "macs", "program_energy_pJ", "program_time_s")
ACCURACY_METRICS = ("accuracy", "accuracy_std", "float_accuracy", "accuracy_samples")

# constraint field -> (metric, kind); "max" = the metric must not exceed the limit
CONSTRAINTS: dict[str, tuple[str, Literal["min", "max"]]] = {
    "max_area_mm2": ("area_mm2", "max"),
    "max_latency_s": ("latency_s", "max"),
    "max_energy_pJ": ("energy_pJ", "max"),
    "max_edp_Js": ("edp_Js", "max"),
    "min_accuracy": ("accuracy", "min"),
    "min_tops_per_w": ("tops_per_w", "min"),
}


def cost_metrics(result: NetworkCost) -> dict[str, float]:
    """The cost side of a design point, from the network's cost."""
    energy = result.energy_pJ
    return {
        "energy_pJ": energy,
        "macro_energy_pJ": sum(sum(layer.macro_energy_pJ.values()) for layer in result.layers),
        "memory_energy_pJ": sum(sum(sum(ops.values()) for ops in layer.memory_energy_pJ.values())
                                for layer in result.layers),
        "latency_s": result.latency_s,
        "latency_cycles": result.latency_cycles,
        "clock_ns": result.clock_ns,
        "area_mm2": result.area_total_mm2,
        "edp_Js": energy * 1e-12 * result.latency_s,
        "tops_per_w": 2 * result.macs / energy if energy > 0 else float("inf"),
        "macs": result.macs,
        # programming an NVM macro's weights with write-verify (0 for SRAM: nothing to verify)
        "program_energy_pJ": result.programming.energy_pJ if result.programming else 0.0,
        "program_time_s": result.programming.time_s if result.programming else 0.0,
    }


def violations(metrics: dict, constraints: object, *, only: tuple[str, ...] | None = None) -> list[tuple[str, float]]:
    """(description, amount > 0) of every constraint ``metrics`` misses; metrics not present are skipped.

    ``constraints`` is a ``Constraints``; ``only`` restricts the check to some metrics (e.g. the cost side).
    """
    out = []
    for field, (metric, kind) in CONSTRAINTS.items():
        limit = getattr(constraints, field)
        value = metrics.get(metric)
        if limit is None or value is None or (only is not None and metric not in only):
            continue
        over = value - limit if kind == "max" else limit - value
        if over > 0:
            out.append((f"{metric} {value:.4g} {'>' if kind == 'max' else '<'} {limit:g}", over / abs(limit)))
    return out
