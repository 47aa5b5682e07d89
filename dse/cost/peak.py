"""Peak macro figures: MACs per cycle, TOP/s, TOP/s/W and TOP/s/mm^2, with their breakdowns.

Peak means every row and column mapped, weights stationary, at the macro's default activity.
One MAC counts as 2 operations; one full-precision MAC takes input_bits / input_bits_per_cycle
cycles. Memories above the cells are not part of these figures (as in the papers' macro numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

from dse.cost.macro import Clock, MacroModel
from dse.hardware.schema import Macro, Technology


@dataclass(frozen=True)
class PeakPerformance:
    """A macro's peak figures; breakdowns are over all ``count`` macros."""

    macs_per_cycle: float
    clock: Clock
    clock_ns: float  # the period used: the modelled one unless the accelerator fixes it
    energy_per_cycle_pJ: dict[str, float]
    area_mm2: dict[str, float]

    @property
    def energy_per_cycle_total_pJ(self) -> float:
        return sum(self.energy_per_cycle_pJ.values())

    @property
    def area_total_mm2(self) -> float:
        return sum(self.area_mm2.values())

    @property
    def tops(self) -> float:
        return 2 * self.macs_per_cycle / self.clock_ns / 1e3

    @property
    def tops_per_w(self) -> float:
        return 2 * self.macs_per_cycle / self.energy_per_cycle_total_pJ

    @property
    def tops_per_mm2(self) -> float:
        area = self.area_total_mm2
        return self.tops / area if area > 0 else float("inf")

    @property
    def energy_per_mac_fJ(self) -> float:
        return self.energy_per_cycle_total_pJ * 1e3 / self.macs_per_cycle


def peak_performance(macro: Macro, technology: Technology, *, zigzag_compat: bool = False,
                     clock_ns: float | None = None) -> PeakPerformance:
    """Peak figures of ``macro`` (all ``count`` copies) at ``technology``."""
    model = MacroModel(macro, technology, zigzag_compat)
    clock = model.clock()
    per_macro = model.cycle_energy_pJ(clock_ns=clock_ns or clock.period_ns)
    return PeakPerformance(
        macs_per_cycle=model.rows * macro.columns * macro.count / macro.cycles_per_mac,
        clock=clock,
        clock_ns=clock_ns or clock.period_ns,
        energy_per_cycle_pJ={k: v * macro.count for k, v in per_macro.items()},
        area_mm2=model.area_mm2(),
    )
