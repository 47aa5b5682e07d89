"""Programming cost of write-verify: the price side of SWIM's accuracy-versus-programming trade.

Writing weights into NVM once costs the same for every write-verify policy; what a policy changes is
the extra energy and time of the program-and-verify iterations of the weights it verifies. The macro's
``accuracy.device_variation`` block gives both per weight (``write_verify_energy_pJ``,
``write_verify_time_ns``), so the cost of a policy is the verified count times those figures: verifying
a fraction p of the weights costs p times verifying all of them (SWIM's ~1/p speed-up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dse.hardware import DeviceVariation, Macro
from dse.workload import Workload


@dataclass(frozen=True)
class ProgrammingCost:
    """Extra energy and time to write-verify ``verified`` of a model's ``weights``."""

    weights: int
    verified: int
    energy_pJ: float
    time_s: float

    @property
    def fraction(self) -> float:
        return self.verified / self.weights if self.weights else 0.0


def verified_weights(weights: int, fraction: float) -> int:
    """Weights a fraction verifies, rounded half up (the same rule as the selection's)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction = {fraction}: must be between 0 and 1")
    return min(weights, math.floor(fraction * weights + 0.5))


def program_energy_pJ(variation: DeviceVariation, verified: int) -> float:
    """Extra energy of write-verifying ``verified`` weights, pJ."""
    return verified * variation.write_verify_energy_pJ


def program_time_s(variation: DeviceVariation, verified: int) -> float:
    """Extra time of write-verifying ``verified`` weights one after another, s."""
    return verified * variation.write_verify_time_ns * 1e-9


def workload_weights(workload: Workload) -> int:
    """Constant weights of a workload: what is programmed into the array (attention operands are not)."""
    return sum(layer.weight_count for layer in workload.layers if layer.weight_constant)


def write_verify_cost(macro: Macro, weights: int, fraction: float) -> ProgrammingCost:
    """Programming cost of verifying a fraction of ``weights`` on this macro (zero without device variation)."""
    variation = macro.accuracy.device_variation or DeviceVariation(write_verify_energy_pJ=0.0,
                                                                    write_verify_time_ns=0.0)
    verified = verified_weights(weights, fraction)
    return ProgrammingCost(weights=weights, verified=verified, energy_pJ=program_energy_pJ(variation, verified),
                           time_s=program_time_s(variation, verified))
