"""Gate-level constants at the 28 nm / 0.9 V reference point, and how they scale.

The constants are ZigZag-IMC's fitted 28 nm values (reference zigzag-imc.md section 1.2 and
2.3: a NAND2's input capacitance, area and delay grid-searched against the DIMC chips). Other
nodes and supplies are reached by first-order scaling, each factor a pure function:

* capacitance ~ node (feature size), so switching energy C V^2 ~ node x VDD^2;
* area ~ node^2;
* gate delay ~ node x VDD / (VDD - Vth)^alpha: the alpha-power law of Sakurai and Newton
  (IEEE JSSC 25(2), 1990) with alpha = 1.3 and Vth = 0.35 V, typical of 28-22 nm bulk CMOS.

These are classical (constant-field) scaling rules. Stillmaker and Baas (Integration 58, 2017)
show they drift from measured technologies over many generations; between 22 and 28 nm the
error is small next to the model's other approximations. ``zigzag_compat`` ignores node and VDD
(ZigZag-IMC hard-codes 28 nm, 0.9 V).
"""

from __future__ import annotations

from dataclasses import dataclass

REF_NODE_NM = 28.0
REF_VDD_V = 0.9
ALPHA = 1.3  # velocity-saturation exponent of the alpha-power law
VTH_V = 0.35  # threshold voltage assumed by the delay scaling


@dataclass(frozen=True)
class GateConstants:
    """Per-gate capacitance (fF), area (um^2) and delay (ns) of the primitives the macro is built from."""

    vdd_V: float
    nand2_cap_fF: float
    nand2_area_um2: float
    nand2_delay_ns: float

    # Derived gates, as multiples of a NAND2 (ZigZag-IMC's ratios).
    @property
    def xor2_cap_fF(self) -> float:
        return 1.5 * self.nand2_cap_fF

    @property
    def dff_cap_fF(self) -> float:
        return 3.0 * self.nand2_cap_fF

    @property
    def cell_cap_fF(self) -> float:
        """Wordline or bitline capacitance one SRAM cell adds."""
        return 0.5 * self.nand2_cap_fF

    @property
    def xor2_area_um2(self) -> float:
        return 2.4 * self.nand2_area_um2

    @property
    def dff_area_um2(self) -> float:
        return 6.0 * self.nand2_area_um2

    @property
    def xor2_delay_ns(self) -> float:
        return 2.4 * self.nand2_delay_ns

    # Energies in fJ (C in fF times V^2).
    def energy_fJ(self, cap_fF: float) -> float:
        return cap_fF * self.vdd_V**2

    @property
    def full_adder_fJ(self) -> float:
        """1-bit full adder = 3 NAND2 + 2 XOR2, all switching."""
        return self.energy_fJ(3 * self.nand2_cap_fF + 2 * self.xor2_cap_fF)

    @property
    def half_active_adder_fJ(self) -> float:
        """A full adder with one input at 0 and no carry: only the XORs switch."""
        return self.energy_fJ(2 * self.xor2_cap_fF)

    @property
    def multiplier_fJ(self) -> float:
        """1-bit multiplier (a NOR, costed as a NAND2); the stationary weight input does not toggle."""
        return self.energy_fJ(0.5 * self.nand2_cap_fF)

    @property
    def dff_fJ(self) -> float:
        return self.energy_fJ(self.dff_cap_fF)

    @property
    def full_adder_um2(self) -> float:
        return 3 * self.nand2_area_um2 + 2 * self.xor2_area_um2

    @property
    def full_adder_sum_delay_ns(self) -> float:
        """Input to sum: two XOR2."""
        return 2 * self.xor2_delay_ns

    @property
    def full_adder_carry_delay_ns(self) -> float:
        """Input to carry-out: an XOR2 and two NAND2."""
        return self.xor2_delay_ns + 2 * self.nand2_delay_ns

    @property
    def carry_ripple_delay_ns(self) -> float:
        """Carry-in to carry-out: two NAND2."""
        return 2 * self.nand2_delay_ns


REFERENCE_GATES = GateConstants(vdd_V=REF_VDD_V, nand2_cap_fF=0.7, nand2_area_um2=0.614, nand2_delay_ns=0.0478)


def capacitance_factor(node_nm: float) -> float:
    return node_nm / REF_NODE_NM


def area_factor(node_nm: float) -> float:
    return (node_nm / REF_NODE_NM) ** 2


def energy_factor(node_nm: float, vdd_V: float) -> float:
    """Switching energy relative to 28 nm, 0.9 V (C V^2)."""
    return capacitance_factor(node_nm) * (vdd_V / REF_VDD_V) ** 2


def delay_factor(node_nm: float, vdd_V: float) -> float:
    """Gate delay relative to 28 nm, 0.9 V (alpha-power law in VDD, linear in node)."""
    if vdd_V <= VTH_V:
        raise ValueError(f"VDD = {vdd_V} V is at or below the assumed threshold voltage {VTH_V} V")

    def drive(v: float) -> float:
        return v / (v - VTH_V) ** ALPHA

    return (node_nm / REF_NODE_NM) * drive(vdd_V) / drive(REF_VDD_V)


def gates_for(node_nm: float, vdd_V: float) -> GateConstants:
    """The gate constants scaled to a node and supply."""
    ref = REFERENCE_GATES
    return GateConstants(
        vdd_V=vdd_V,
        nand2_cap_fF=ref.nand2_cap_fF * capacitance_factor(node_nm),
        nand2_area_um2=ref.nand2_area_um2 * area_factor(node_nm),
        nand2_delay_ns=ref.nand2_delay_ns * delay_factor(node_nm, vdd_V),
    )
