"""Cost model: macro area, clock and energy (ZigZag-IMC's gate-level model), peak figures."""

from dse.cost.macro import AREA_COMPONENTS, DELAY_COMPONENTS, ENERGY_COMPONENTS, Clock, MacroModel
from dse.cost.peak import PeakPerformance, peak_performance

__all__ = [
    "AREA_COMPONENTS",
    "DELAY_COMPONENTS",
    "ENERGY_COMPONENTS",
    "Clock",
    "MacroModel",
    "PeakPerformance",
    "peak_performance",
]
