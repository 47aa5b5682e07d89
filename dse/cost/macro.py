"""Area, clock period and per-cycle energy of an IMC macro, component by component.

The model is ZigZag-IMC's gate-level model (reference zigzag-imc.md section 1): multipliers,
ADCs and DACs (analog), adder trees (digital), place-value trees that combine bit-planes,
accumulators that shift-add the input slices, analog bitline charging and cell-group precharge.

Two modes:

* ``zigzag_compat=True`` keeps ZigZag-IMC's arithmetic exactly: 28 nm / 0.9 V constants whatever
  the technology says, DIMC multiplier energy over the whole macro, AIMC bitline energy over the
  whole bitline, no switching activity;
* the default mode scales the gates to the node and VDD, follows the mapped rows where the circuit
  allows it (multipliers, AIMC bitline), honours the circuit details of the YAML (DAC bits, active
  rows, accumulator width, pipelining) and scales the data-dependent components by the switching
  activity the way ZigZag-IMC's chip validation did (section 1.7).

Place-value trees: their output is P_in + n bits wide in both modes. The n inputs are shifted by
0..n-1 places, so the sum reaches (2^P_in - 1)(2^n - 1); a log2(n) + P_in wide result (suggested
as a fix) would overflow. ZigZag-IMC's accumulator width Ba + R + Bw assumes the same P_in + n.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dse.cost.converters import adc_area_mm2, adc_delay_ns, adc_energy_fJ, dac_energy_fJ
from dse.cost.memory import sram_area_mm2
from dse.cost.technology import REF_NODE_NM, REF_VDD_V, REFERENCE_GATES, GateConstants, area_factor, gates_for
from dse.hardware.schema import Macro, Technology

AREA_COMPONENTS = ("cells", "adcs", "dacs", "mults", "adders_regular", "adders_pv", "accumulators")
ENERGY_COMPONENTS = ("local_bl_precharging", "dacs", "adcs", "mults", "analog_bl_addition", "adders_regular",
                     "adders_pv", "accumulators", "leakage")
DELAY_COMPONENTS = ("dacs", "mults", "adcs", "adders_regular", "adders_pv", "accumulators")

UM2_PER_MM2 = 1e6
FJ_PER_PJ = 1e3


@dataclass(frozen=True)
class Clock:
    """The modelled clock period and the delay of each component on the path."""

    period_ns: float
    path_ns: dict[str, float]
    pipelined: bool


# -- adder trees -----------------------------------------------------------------------------------
def adder_tree_full_adders(inputs: int, width: int) -> int:
    """Full adders in a binary tree of ripple-carry adders summing ``inputs`` numbers of ``width`` bits.

    Level l adds pairs of (width + l - 1)-bit numbers; for a power of two N this is
    N (width + 1) - (width + log2 N + 1), ZigZag-IMC's count.
    """
    total, live, w = 0, inputs, width
    while live > 1:
        total += (live // 2) * w
        live = (live + 1) // 2
        w += 1
    return total


def adder_tree_energy_fJ(inputs: int, width: int, live_inputs: int, gates: GateConstants) -> float:
    """Energy of one pass through the tree when only ``live_inputs`` of its inputs carry data.

    Adders fed by two live operands switch fully; an adder with one live operand (the edge of
    the mapped rows) switches only its XORs; adders with no live operand do not switch.
    """
    energy, slots, live, w = 0.0, inputs, min(live_inputs, inputs), width
    while slots > 1:
        pairs, odd = divmod(live, 2)
        energy += pairs * w * gates.full_adder_fJ
        if odd and live < slots:  # the last live operand meets an idle one
            energy += w * gates.half_active_adder_fJ
        slots, live, w = (slots + 1) // 2, (live + 1) // 2, w + 1
    return energy


def adder_tree_delay_ns(inputs: int, width: int, gates: GateConstants) -> float:
    """Sum paths through the levels, then the carry chain of the last adder."""
    depth = math.ceil(math.log2(inputs)) if inputs > 1 else 0
    if depth == 0:
        return 0.0
    out_width = width + depth
    return ((depth - 1) * gates.full_adder_sum_delay_ns + gates.full_adder_carry_delay_ns
            + (out_width - 2) * gates.carry_ripple_delay_ns)


def place_value_adders(n: int, in_bits: int) -> float:
    """Full adders of a shift-add tree combining ``n`` bit-planes of ``in_bits`` bits (ZigZag-IMC's count)."""
    return in_bits * (n - 1) + n * (math.log2(n) - 0.5) if n > 1 else 0.0


def place_value_delay_ns(n: int, gates: GateConstants, in_bits: int | None = None) -> float:
    """Sum paths through log2(n) levels, then the carry chain of the last adder.

    ZigZag-IMC ripples the carry through n - 1 bits (``in_bits`` None); the last adder of a
    shift-add tree carries through its whole P_in + n bit output, as the column trees do, which
    the default mode uses.
    """
    if n <= 1:
        return 0.0
    ripple = n - 1 if in_bits is None else in_bits + n - 2
    return ((math.log2(n) - 1) * gates.full_adder_sum_delay_ns + gates.full_adder_carry_delay_ns
            + ripple * gates.carry_ripple_delay_ns)


# -- the model -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MacroModel:
    """One macro type at one technology point; every method is a pure function of these fields."""

    macro: Macro
    technology: Technology
    zigzag_compat: bool = False

    # -- parameters the two modes read differently --------------------------------------------------
    @property
    def gates(self) -> GateConstants:
        if self.zigzag_compat:
            return REFERENCE_GATES
        return gates_for(self.technology.node_nm, self.technology.vdd_V)

    @property
    def vdd_V(self) -> float:
        return REF_VDD_V if self.zigzag_compat else self.technology.vdd_V

    @property
    def analog(self) -> bool:
        return self.macro.kind == "analog"

    @property
    def rows(self) -> int:
        """Rows summed per conversion / adder tree (bitline length seen by the ADC)."""
        return self.macro.rows if self.zigzag_compat else self.macro.rows_per_conversion

    @property
    def dac_bits(self) -> int:
        return self.macro.input_bits_per_cycle if self.zigzag_compat else self.macro.dac_bits

    @property
    def dac_steps(self) -> int:
        """DAC conversions per row per cycle: a cycle's input slice wider than the DAC is applied in steps
        (e.g. AIMC2's 4-bit half-inputs as two 2-bit voltage levels); ZigZag-IMC sizes the DAC to the slice."""
        if self.zigzag_compat or not self.dac_bits:
            return 1
        return math.ceil(self.macro.input_bits_per_cycle / self.dac_bits)

    @property
    def adc_bits(self) -> int:
        return self.macro.adc_bits or 0

    @property
    def adc_area_bits(self) -> int:
        """Resolution the ADC is built for (differs from adc_bits for early-stopping ADCs)."""
        return self.adc_bits if self.zigzag_compat else (self.macro.circuit.adc_physical_bits or self.adc_bits)

    @property
    def adc_adder_bits(self) -> int:
        """Width of the adder after each ADC (0: none; ZigZag-IMC has none)."""
        return 0 if self.zigzag_compat else (self.macro.circuit.adc_adder_bits or 0)

    @property
    def adc_load_rows(self) -> int:
        return self.rows if self.zigzag_compat else (self.macro.circuit.adc_input_rows or self.rows)

    @property
    def tree_layout(self) -> tuple[int, int, int]:
        """(trees per column, tree input width, place-value inputs) of a digital column.

        per_input_bit (ZigZag-IMC): Bcyc trees of 1b x Bw products, joined by place value over Bcyc;
        per_weight_bit: Bw trees of Bcyc x 1b products, joined over Bw; booth: one tree of Bw+1 bits.
        """
        m = self.macro
        bcyc, bw = m.input_bits_per_cycle, m.weight_bits
        organisation = "per_input_bit" if self.zigzag_compat else m.circuit.adder_trees
        given = None if self.zigzag_compat else m.circuit.adder_input_bits
        if organisation == "per_weight_bit":
            return bw, given or bcyc, bw
        if organisation == "booth":
            return 1, given or bw + 1, 1
        return bcyc, given or bw, bcyc

    @property
    def tree_out_bits(self) -> int:
        """Output width of a DIMC column adder tree: input width + log2(rows)."""
        return self.tree_layout[1] + max(0, math.ceil(math.log2(self.rows)))

    @property
    def place_value_inputs(self) -> tuple[int, int]:
        """(n, P_in) of the place-value tree: AIMC combines Bw ADC outputs, DIMC its trees' outputs."""
        if self.analog:
            return self.macro.weight_bits, self.adc_bits
        return self.tree_layout[2], self.tree_out_bits

    @property
    def place_value_out_bits(self) -> int:
        n, p_in = self.place_value_inputs
        return p_in + n if n > 1 else p_in

    @property
    def has_accumulator(self) -> bool:
        return self.macro.input_bits_per_cycle < self.macro.input_bits

    @property
    def accumulator_bits(self) -> int:
        m = self.macro
        if not self.zigzag_compat and m.circuit.accumulator_bits:
            return m.circuit.accumulator_bits
        partial = self.adc_bits if self.analog else max(0, math.ceil(math.log2(self.rows)))
        return m.input_bits + partial + m.weight_bits

    # -- area ------------------------------------------------------------------------------------
    def area_mm2(self) -> dict[str, float]:
        """Area of all ``count`` macros by component (memories above the cells are not included)."""
        m, g = self.macro, self.gates
        nb, cols, rows = m.count, m.columns, m.rows
        area = dict.fromkeys(AREA_COMPONENTS, 0.0)
        area["cells"] = self.cell_array_mm2() * nb
        mult_gates = m.weight_bits * cols * rows * (1 if self.analog else m.input_bits_per_cycle)
        if self.zigzag_compat or m.cell_transistors is None:  # else the multiplier is inside the compute cell
            area["mults"] = g.nand2_area_um2 * mult_gates * nb / UM2_PER_MM2
        if self.analog:
            node = REF_NODE_NM if self.zigzag_compat else self.technology.node_nm
            area["adcs"] = adc_area_mm2(self.adc_area_bits, node) * m.weight_bits * cols * nb
            area["adcs"] += g.full_adder_um2 * self.adc_adder_bits * m.weight_bits * cols * nb / UM2_PER_MM2
        else:
            trees, width, _ = self.tree_layout
            area["adders_regular"] = (g.full_adder_um2 * adder_tree_full_adders(self.rows, width) * trees * cols * nb
                                      / UM2_PER_MM2)
        area["adders_pv"] = g.full_adder_um2 * place_value_adders(*self.place_value_inputs) * cols * nb / UM2_PER_MM2
        if self.has_accumulator:
            area["accumulators"] = ((g.full_adder_um2 + g.dff_area_um2) * self.accumulator_bits * cols * nb
                                    / UM2_PER_MM2)
        return area

    def cell_array_mm2(self) -> float:
        """Area of one macro's cells: the YAML's cell-group area, else transistors x NAND2/4, else an SRAM array.

        ZigZag-IMC counts only a given cell-group area (0 in its templates). The default mode falls
        back to the compute cell's transistor count (a NAND2 is 4 transistors), and otherwise to the
        CACTI-fitted SRAM estimate of an array of rows x columns x weight bits x cells per group; the
        columns behind a column multiplexer count too.
        """
        m = self.macro
        # the columns behind a column multiplexer hold weights too (ZigZag-IMC counts only the active ones)
        groups = m.rows * m.columns * (1 if self.zigzag_compat else m.circuit.column_mux)
        if m.cell_group_area_um2 is not None or self.zigzag_compat:
            return (m.cell_group_area_um2 or 0.0) * groups / UM2_PER_MM2
        if m.cell_transistors is not None:
            return m.cell_transistors * self.gates.nand2_area_um2 / 4 * groups * m.cells_per_group / UM2_PER_MM2
        bits = groups * m.weight_bits * m.cells_per_group
        return sram_area_mm2(bits, groups // m.rows * m.weight_bits) * area_factor(self.technology.node_nm)

    # -- clock -----------------------------------------------------------------------------------
    def clock(self) -> Clock:
        """Critical path DAC -> multiplier -> ADC or adder tree -> place-value tree -> accumulator.

        Unpipelined, the period is the sum; pipelined (and not in compat mode), the slowest stage.
        """
        m, g = self.macro, self.gates
        path = dict.fromkeys(DELAY_COMPONENTS, 0.0)
        booth = not self.zigzag_compat and not self.analog and m.circuit.adder_trees == "booth"
        # a Booth digit needs its encoder (an XOR) and a selector (two NAND2) before the tree
        path["mults"] = g.full_adder_carry_delay_ns if booth else g.nand2_delay_ns
        if self.analog:
            path["adcs"] = adc_delay_ns(self.adc_bits, self.adc_load_rows)
            if self.adc_adder_bits:  # a ripple adder after the converter, in the same stage
                path["adcs"] += g.full_adder_carry_delay_ns + (self.adc_adder_bits - 1) * g.carry_ripple_delay_ns
        else:
            path["adders_regular"] = adder_tree_delay_ns(self.rows, self.tree_layout[1], g)
        n, p_in = self.place_value_inputs
        path["adders_pv"] = place_value_delay_ns(n, g, None if self.zigzag_compat else p_in)
        if self.has_accumulator:
            extra = self.accumulator_bits - self.place_value_out_bits - 1
            path["accumulators"] = g.full_adder_carry_delay_ns + max(0, extra) * g.carry_ripple_delay_ns
        pipelined = m.circuit.pipelined and not self.zigzag_compat
        if pipelined:
            # the front end (DAC, multiplier, ADC or tree) is one stage, the digital back end another
            front = path["dacs"] + path["mults"] + path["adcs"] + path["adders_regular"]
            period = max(front, path["adders_pv"], path["accumulators"])
        else:
            period = sum(path.values())
        return Clock(period_ns=period, path_ns=path, pipelined=pipelined)

    # -- energy ----------------------------------------------------------------------------------
    def cycle_energy_pJ(
        self,
        rows_mapped: int | None = None,
        columns_mapped: int | None = None,
        input_toggle_rate: float | None = None,
        weight_sparsity: float | None = None,
        clock_ns: float | None = None,
    ) -> dict[str, float]:
        """Energy of one macro in one cycle (one input slice) by component, pJ.

        ``rows_mapped`` and ``columns_mapped`` default to the full array (peak operation); the
        activity defaults to the macro's; leakage is charged over ``clock_ns`` (default: the modelled
        period). Cell-group precharge is not a per-cycle cost: see
        :meth:`precharge_energy_pJ`.
        """
        m, g = self.macro, self.gates
        r = min(rows_mapped or self.rows, self.rows)
        c = min(columns_mapped or m.columns, m.columns)
        toggle = m.activity.input_toggle_rate if input_toggle_rate is None else input_toggle_rate
        density = 1.0 - (m.activity.weight_sparsity if weight_sparsity is None else weight_sparsity)
        if self.zigzag_compat:
            toggle = density = 1.0
        e = dict.fromkeys(ENERGY_COMPONENTS, 0.0)
        bw = m.weight_bits
        if self.analog:
            e["dacs"] = dac_energy_fJ(self.dac_bits, self.vdd_V) * self.dac_steps * r
            adder_fJ = g.full_adder_fJ * self.adc_adder_bits
            e["adcs"] = (adc_energy_fJ(self.adc_bits, self.vdd_V) + adder_fJ) * bw * c * density
            e["mults"] = g.multiplier_fJ * bw * m.columns * r * toggle * density
            bitline_rows = self.rows if self.zigzag_compat else r
            e["analog_bl_addition"] = g.energy_fJ(g.cell_cap_fF) * bw * c * bitline_rows * density
        else:
            bcyc = m.input_bits_per_cycle
            mult_rows = self.rows if self.zigzag_compat else r
            e["mults"] = g.multiplier_fJ * bcyc * bw * m.columns * mult_rows * toggle * density
            trees, width, _ = self.tree_layout
            e["adders_regular"] = adder_tree_energy_fJ(self.rows, width, r, g) * trees * c * toggle * density
        e["adders_pv"] = g.full_adder_fJ * place_value_adders(*self.place_value_inputs) * c
        if self.has_accumulator:
            e["accumulators"] = (g.full_adder_fJ + g.dff_fJ) * self.accumulator_bits * c
        if not self.zigzag_compat:
            e["leakage"] = m.leakage_mW * (clock_ns or self.clock().period_ns) * FJ_PER_PJ  # mW x ns = pJ
        return {k: v / FJ_PER_PJ for k, v in e.items()}

    def cell_write_energy_pJ(self) -> float:
        """Energy to write one weight into the cells: the YAML's, else its bits driving a full bitline."""
        m = self.macro
        if m.cell_write_energy_pJ is not None:
            return m.cell_write_energy_pJ
        g = self.gates
        return g.energy_fJ(g.cell_cap_fF * m.rows * m.cells_per_group) * m.weight_bits / FJ_PER_PJ

    def precharge_energy_pJ(self, cell_groups: float) -> float:
        """Energy of precharging the local bitlines of ``cell_groups`` cell groups once (M > 1 only)."""
        m, g = self.macro, self.gates
        if m.cells_per_group <= 1:
            return 0.0
        per_group = g.energy_fJ(g.cell_cap_fF + g.cell_cap_fF * m.cells_per_group) * m.weight_bits
        return per_group * cell_groups / FJ_PER_PJ

