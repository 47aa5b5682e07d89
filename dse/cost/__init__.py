"""Cost model: macro area, clock and energy (ZigZag-IMC's gate-level model), peak figures, memories."""

from dse.cost.macro import AREA_COMPONENTS, DELAY_COMPONENTS, ENERGY_COMPONENTS, Clock, MacroModel
from dse.cost.memory import MemoryCosts, access_energy_pJ, memory_costs, word_accesses
from dse.cost.peak import PeakPerformance, peak_performance

__all__ = [
    "AREA_COMPONENTS",
    "DELAY_COMPONENTS",
    "ENERGY_COMPONENTS",
    "Clock",
    "MacroModel",
    "MemoryCosts",
    "PeakPerformance",
    "access_energy_pJ",
    "memory_costs",
    "peak_performance",
    "word_accesses",
]
