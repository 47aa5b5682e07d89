"""ADC and DAC cost versus resolution (ZigZag-IMC's fits, reference zigzag-imc.md section 1.3).

ADC area and the k1..k4 constants were fitted on three 28 nm AIMC papers; energy is a linear
plus 4^R term in capacitance (k5, k6); the DAC is a capacitive driver (k0 = 50 fF per bit,
taken by ZigZag-IMC from a TinyML paper). The converters are analog blocks whose area is set by
capacitors and matching more than by lithography: their area scales linearly with the node (as
the anchor's 22 nm validation does, x 22/28) rather than with its square; their delay is not
scaled; their energy scales with VDD^2.
"""

from __future__ import annotations

ADC_AREA_K1 = -0.0369  # log10 of area per code falls by this much per bit
ADC_AREA_K2 = 1.206  # log10 of area per code (um^2) at R = 0
ADC_DELAY_K3_NS = 0.00653  # conversion time per bit and per bitline row
ADC_DELAY_K4_NS = 0.640  # conversion time per bit, fixed part
ADC_ENERGY_K5_FF = 100.0  # linear-in-R capacitance
ADC_ENERGY_K6_FF = 0.001  # 4^R capacitance (matters above ~10 bits)
DAC_ENERGY_K0_FF = 50.0  # per input bit converted


def adc_area_mm2(bits: int, node_nm: float = 28.0) -> float:
    """Area of one ADC of ``bits`` resolution (0 for a 1-bit sense amplifier), linear in the node."""
    if bits <= 1:
        return 0.0
    return 10 ** (ADC_AREA_K1 * bits + ADC_AREA_K2) * 2**bits * 1e-6 * node_nm / 28.0


def adc_delay_ns(bits: int, rows: int) -> float:
    """Conversion time: R steps, each settling a bitline of ``rows`` cells."""
    return bits * (ADC_DELAY_K3_NS * rows + ADC_DELAY_K4_NS)


def adc_energy_fJ(bits: int, vdd_V: float) -> float:
    """Energy of one conversion."""
    return (ADC_ENERGY_K5_FF * bits + ADC_ENERGY_K6_FF * 4**bits) * vdd_V**2


def dac_energy_fJ(bits: int, vdd_V: float) -> float:
    """Energy of driving one row with a ``bits``-bit input (0 without a DAC, i.e. bits <= 1)."""
    return DAC_ENERGY_K0_FF * bits * vdd_V**2 if bits > 1 else 0.0
