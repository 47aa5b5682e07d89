"""Cost model: macro area, clock and energy (ZigZag-IMC's gate-level model), peak figures, memories, NVM programming."""

from dse.cost.macro import AREA_COMPONENTS, DELAY_COMPONENTS, ENERGY_COMPONENTS, Clock, MacroModel
from dse.cost.memory import MemoryCosts, access_energy_pJ, memory_costs, word_accesses
from dse.cost.peak import PeakPerformance, peak_performance
from dse.cost.programming import (
    ProgrammingCost,
    program_energy_pJ,
    program_time_s,
    verified_weights,
    workload_weights,
    write_verify_cost,
)

__all__ = [
    "AREA_COMPONENTS",
    "DELAY_COMPONENTS",
    "ENERGY_COMPONENTS",
    "Clock",
    "MacroModel",
    "MemoryCosts",
    "PeakPerformance",
    "ProgrammingCost",
    "access_energy_pJ",
    "memory_costs",
    "peak_performance",
    "program_energy_pJ",
    "program_time_s",
    "verified_weights",
    "word_accesses",
    "workload_weights",
    "write_verify_cost",
]
