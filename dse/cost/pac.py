"""PAC in the cost model: fewer exact bit-serial cycles and input reads, plus the popcount hardware.

PACiM (reference ``cim-simulators.md`` section 2.3; the simulator is :mod:`dse.accuracy.pac`) computes only
the p x p most significant (weight bit, input bit) cycles of a W x X MAC on the array and replaces the rest
by popcount products. With ``macro.accuracy.pac_operand`` set, a layer's mapped action counts are priced
with these changes (the mapping itself is searched as without PAC, which scales compute uniformly):

- exact cycles ``E`` per MAC: p^2 (static) or a measured mean (dynamic, :attr:`PacFactors.exact_cycles`);
- compute cycles (latency) run only the input cycles holding the p MSB input bits: ``ceil(p/e)`` of
  ``X/e`` (e = input bits per cycle); the stalls and weight loading of the mapping stay;
- energy of the per-bit-cycle components (multipliers, adder trees, ADCs, analog bitline) scales by
  ``E / (W X)``: only the exact cycles' weight columns switch; the per-input-cycle components (DACs,
  place-value trees, accumulators) by the input-cycle fraction; leakage follows the new latency;
- reads of inputs from the lowest input level into the macro: p of X bits per input, plus the X
  popcounts of ``b = ceil(log2(N + 1))`` bits per window of N inputs (N = C FY FX, the receptive field):
  ``p/X + b/N`` of the bits; PACiM's "no LSB activation transfer";
- ``pac`` overhead (an estimate from full-adder counts, not a calibrated figure): per input window the
  sparsity encoder's X popcount trees over N one-bit inputs (``X * full_adders(N, 1)``), shared by the
  output channels; per output element W multiply-accumulates of a b-bit weight popcount by a (b + X)-bit
  input-side sum (``b (b + X) + 2b + X`` full adders each). Weight popcounts are computed offline and
  stored with the weights; their reads are neglected.

With p equal to both bit widths nothing is approximated: no popcounts, no overhead, the cost unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from dse.cost.macro import FJ_PER_PJ, adder_tree_full_adders
from dse.cost.technology import GateConstants
from dse.hardware.schema import Macro
from dse.mapping.temporal import ActionCounts
from dse.workload.layer import Layer

BIT_CYCLE_COMPONENTS = ("mults", "adders_regular", "adcs", "analog_bl_addition")
INPUT_CYCLE_COMPONENTS = ("dacs", "adders_pv", "accumulators")


@dataclass(frozen=True)
class PacFactors:
    """How PAC scales one macro's cycles, energies and input reads (module docstring)."""

    operand: int
    exact_cycles: float  # exact 1b x 1b cycles per MAC
    bit_fraction: float  # exact_cycles / (W X)
    cycle_fraction: float  # input cycles run / input cycles
    approximated: bool  # any cycle left to the popcount product (else PAC is the exact macro)


def pac_factors(macro: Macro, exact_cycles: float | None = None) -> PacFactors | None:
    """The PAC factors of a macro (None without ``accuracy.pac_operand``); ``exact_cycles`` defaults to p^2."""
    p = macro.accuracy.pac_operand
    if p is None:
        return None
    w, x, e = macro.weight_bits, macro.input_bits, macro.input_bits_per_cycle
    exact = float(p * p if exact_cycles is None else exact_cycles)
    if not 0 < exact <= p * p:
        raise ValueError(f"pac_factors: exact_cycles = {exact_cycles}: must be in (0, p^2 = {p * p}]")
    return PacFactors(operand=p, exact_cycles=exact, bit_fraction=exact / (w * x),
                      cycle_fraction=math.ceil(p / e) / math.ceil(x / e), approximated=exact < w * x)


def fan_in(layer: Layer) -> int:
    """The receptive field N of one output: C FY FX (per group)."""
    loops = layer.loops
    return loops.C * loops.FY * loops.FX


def input_read_fraction(factors: PacFactors, macro: Macro, layer: Layer) -> float:
    """Input bits read into the macro with PAC, over X: the p MSBs plus the window popcounts."""
    if not factors.approximated:
        return 1.0
    n = fan_in(layer)
    return min(1.0, factors.operand / macro.input_bits + math.ceil(math.log2(n + 1)) / n)


def overhead_pJ(factors: PacFactors, macro: Macro, layer: Layer, gates: GateConstants) -> float:
    """Energy of the sparsity encoder (per window) and the PAC multiply-accumulates (per output) of a layer, pJ."""
    if not factors.approximated:
        return 0.0
    loops, n, x = layer.loops, fan_in(layer), macro.input_bits
    b = math.ceil(math.log2(n + 1))
    windows = loops.B * loops.OY * loops.OX * loops.G
    encoder = windows * x * adder_tree_full_adders(n, 1)
    combine = windows * loops.K * macro.weight_bits * (b * (b + x) + 2 * b + x)
    return (encoder + combine) * gates.full_adder_fJ / FJ_PER_PJ


def pac_counts(counts: ActionCounts, factors: PacFactors, read_fraction: float) -> ActionCounts:
    """The mapped actions with PAC: fewer compute cycles, ``read_fraction`` of the input bits read into the macro."""
    compute = counts.compute_cycles * factors.cycle_fraction
    busiest = max(counts.transfer_cycles.values(), default=0.0)
    latency = max(compute + counts.weight_load_cycles, busiest)
    lowest_input = counts.allocation["I"][0][0] if counts.allocation.get("I") else None
    traffic = tuple(replace(t, read_bits=t.read_bits * read_fraction)
                    if t.operand == "I" and t.level == lowest_input else t for t in counts.traffic)
    return replace(counts, compute_cycles=compute, stall_cycles=latency - compute - counts.weight_load_cycles,
                   traffic=traffic)


def pac_macro_energy(energy: dict[str, float], factors: PacFactors, overhead_pJ: float) -> dict[str, float]:
    """Macro energy by component with PAC: exact cycles only, plus the ``pac`` overhead (pJ)."""
    out = dict(energy)
    for k in BIT_CYCLE_COMPONENTS:
        if k in out:
            out[k] *= factors.bit_fraction
    for k in INPUT_CYCLE_COMPONENTS:
        if k in out:
            out[k] *= factors.cycle_fraction
    out["pac"] = overhead_pJ
    return out

