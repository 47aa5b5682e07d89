"""Per-access energy, area and leakage of one memory level (register, SRAM or DRAM).

A memory level costs ``read_energy_pJ`` / ``write_energy_pJ`` per full-width access (``word_bits``),
as in ZigZag (reference zigzag-imc.md 1.6, "Memory energy"), plus the area and static power of all
its instances. Values given in the accelerator YAML (``read_energy_pJ``, ``write_energy_pJ``,
``area_mm2``, ``leakage_mW``) are used unchanged; the missing ones are estimated here, and
``MemoryCosts.estimated`` names them. ``access_energy_pJ`` turns a number of bits moved into
full-width accesses the way ZigZag counts them.

Registers
---------
Built from the gate constants of ``dse.cost.technology`` (ZigZag-IMC's fitted 28 nm NAND2), the way
the old ZigZag-IMC fork costed its input/output registers (zigzag-imc.md 1.6 and 1.8:
``C_dff * VDD^2 * bits``, area ``6 * A_nand2 * bits``):

* write = ``dff_fJ`` per bit x ``word_bits`` (every flip-flop of the word is clocked and may toggle);
* read = ``REGISTER_READ_FRACTION`` x write. A read switches no node inside the flip-flop; it only
  drives the Q net into the next stage's multiplexer, taken as one NAND2 input (0.7 fF) against the
  three NAND2-equivalents (2.1 fF) of a DFF, hence 1/3;
* area = ``dff_area_um2`` x ``size_bits``, with no extra placement overhead: the NAND2 area
  (0.614 um^2) was grid-searched against measured macro areas, so it already carries layout overhead.

For the template's 8-bit input register this gives 0.0136 pJ per write (ZigZag's template: 0.021 pJ).

SRAM
----
A fit to CACTI 7 results at 28 nm. The data are the 28 nm rows of the CACTI output log that ZigZag
ships with its bundled CACTI 7 (file ``zigzag/cacti/cacti_master/cache_old.cfg.out`` in
https://github.com/KULeuven-MICAS/zigzag; one bank, direct-mapped ``ram``; ZigZag's CACTI
configuration ``cacti_config_creator.py`` in the same folder uses ITRS-HP cells and periphery at
360 K). They are listed in ``CACTI_28NM_POINTS``: capacity from 64 B to 2 MB, port width from 8 to
2048 bits. The fitted forms, N = ``size_bits``, w = ``word_bits``, at 28 nm / 0.9 V:

    E_read  = w * 1.51e-4 * sqrt(N) + 1.04e-3 * N**0.63    pJ per access
    E_write = w * 2.17e-4 * sqrt(N) + 3.40e-3 * N**0.52    pJ per access
    area    = 0.332 * N + 0.210 * w * sqrt(N) + 73.1      um^2

The first energy term is the per-bit cost of the accessed columns (bitline and data-wire lengths
grow as sqrt(N) for a square array); the second is the decoder, wordline and address distribution,
whose exponent is fitted (CACTI activates more sub-arrays as the array grows). The area terms are
the cells (0.332 um^2 per bit including array overheads and ECC), the column periphery (sense
amplifiers and write drivers, one per output bit, pitch-matched to a column of sqrt(N) cells) and
fixed control. The constants minimise the squared log ratio model / CACTI over the 34 points; the
errors of the rounded constants above are:

    quantity   worst over   worst under   rms of ln(model/CACTI)
    read         +39 %        -36 %         0.16
    write        +28 %        -21 %         0.11
    area         +14 %        -24 %         0.10

Cross-check against a second source, M. Horowitz, "Computing's energy problem (and what we can do
about it)", ISSCC 2014, pp. 10-14 (45 nm, 0.9 V; cache reads of 64 bits: 8 KB 10 pJ, 32 KB 20 pJ,
1 MB 100 pJ; figures as quoted e.g. in https://gist.github.com/V0XNIHILI/2b6fa61edd4c06d9ffce5551065124c1),
scaled to 28 nm with ``energy_factor(45, 0.9)``: the fit gives 0.58x, 0.61x and 0.83x of those (a
cache read also pays for tags and way selection). For area, ZigZag-IMC's AIMC1 validation script
quotes a CACTI array of 131,072 B at 22 nm of 0.245 mm^2 (zigzag-imc.md 2.1); the fit, scaled with
``area_factor(22)`` and assuming a 128-bit port, gives 0.232 mm^2.

The data's supply is taken as 0.9 V (CACTI 7's ITRS-HP supply at 32 nm; 28 nm is interpolated
towards 22 nm's 0.8 V, so the data may sit near 0.86 V, a 10 % error in V^2, small next to the fit
error). Other nodes and supplies are reached with ``energy_factor`` (energies) and ``area_factor``
(area). Ports are not modelled: an extra port adds bitlines and area that this fit does not see.

Note on ZigZag's template buffer (``hardware/aimc_template.yaml``): its 416.16 / 378.4 pJ per
512-bit word for 262,144 bits are not a 32 KB figure. They are close to CACTI 28 nm for a 2 MB
array with a 512-bit port (398 / 443 pJ in ``CACTI_28NM_POINTS``), and ZigZag's ``tpu_like.yaml``
uses the same two numbers for its 2 MB SRAM. The fit gives 42 / 59 pJ for the template's 32 KB
geometry; a YAML value, when present, always wins.

Leakage
-------
``SRAM_LEAKAGE_NW_PER_BIT``: CACTI's standby leakage over capacity in the same rows, 73-82 nW per
bit for arrays of 16 KB and more (smaller arrays leak up to 2x more per bit through their
periphery). This is pessimistic: ITRS-HP transistors at 360 K, the leakiest devices CACTI offers;
expect far less from a low-power SRAM compiler at room temperature, and ZigZag has no leakage at
all; give ``leakage_mW`` in the YAML (0 for ZigZag parity) where this matters. Registers use the
same figure per transistor: a static master-slave flip-flop has about 24 transistors against the 6
of an SRAM cell (``REGISTER_LEAKAGE_NW_PER_BIT`` = 4x). Both are taken at 28 nm and scaled linearly
with VDD only (subthreshold current and its node dependence are not modelled).

DRAM
----
``DRAM_PJ_PER_BIT`` = 3.7 pJ/bit for reads and writes: the old ZigZag-IMC fork's figure
(zigzag-imc.md 1.6 and 1.8), which agrees with the 3.97 pJ/bit of HBM2 in M. O'Connor et al.,
"Fine-Grained DRAM: Energy-Efficient DRAM for Extreme Bandwidth Systems", MICRO 2017
(https://research.nvidia.com/publication/2017-10_Fine-Grained-DRAM%3A-Energy-Efficient). Other
interfaces cost more: GDDR5 about 14 pJ/bit (same paper), DDR3 20-40 pJ/bit (Horowitz
2014: 1.3-2.6 nJ per 64 bits), ZigZag's template 700 / 750 pJ per 64-bit word (10.9 / 11.7 pJ/bit).
DRAM is off chip: no area, no leakage counted, and no scaling with the logic node or supply.

Like the YAML fields (docs/hardware.md), the area and leakage returned are those of all instances of
the level: the estimate for one instance times ``instances``, which the caller derives from
``served_dimensions`` and the array; energies are per access of one instance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dse.cost.technology import REF_VDD_V, area_factor, energy_factor, gates_for
from dse.hardware.schema import Memory, Technology

# -- registers ------------------------------------------------------------------------------
REGISTER_READ_FRACTION = 1.0 / 3.0  # read / write energy: Q-net load of 1 NAND2 input vs 3 NAND2-eq. of a DFF
REGISTER_AREA_OVERHEAD = 1.0  # layout overhead on the DFF area; the fitted NAND2 area already includes it

# -- SRAM fit at 28 nm, 0.9 V (CACTI 7, see the module docstring) -------------------------------
SRAM_READ_PJ_PER_BIT = 1.51e-4  # pJ per accessed bit per sqrt(bit of capacity)
SRAM_READ_FIXED_PJ = 1.04e-3  # pJ, times size_bits ** SRAM_READ_FIXED_EXP
SRAM_READ_FIXED_EXP = 0.63
SRAM_WRITE_PJ_PER_BIT = 2.17e-4  # pJ per accessed bit per sqrt(bit of capacity)
SRAM_WRITE_FIXED_PJ = 3.40e-3  # pJ, times size_bits ** SRAM_WRITE_FIXED_EXP
SRAM_WRITE_FIXED_EXP = 0.52
SRAM_AREA_UM2_PER_BIT = 0.332  # um^2 per stored bit (cells, array overhead, ECC)
SRAM_AREA_UM2_PER_IO_BIT = 0.210  # um^2 per port bit per sqrt(bit of capacity) (column periphery)
SRAM_AREA_FIXED_UM2 = 73.1  # um^2 (control)

# -- leakage at 28 nm, 0.9 V ----------------------------------------------------------------------
SRAM_LEAKAGE_NW_PER_BIT = 80.0  # nW per bit, CACTI 7 ITRS-HP at 360 K (arrays >= 16 KB: 73-82)
REGISTER_LEAKAGE_NW_PER_BIT = 4.0 * SRAM_LEAKAGE_NW_PER_BIT  # ~24 transistors per DFF vs 6 per SRAM cell

# -- DRAM --------------------------------------------------------------------------------------
DRAM_PJ_PER_BIT = 3.7  # pJ per bit read or written (ZigZag-IMC old fork; HBM2 3.97 in O'Connor et al. 2017)

# CACTI 7 at 28 nm (ZigZag's zigzag/cacti/cacti_master/cache_old.cfg.out, 28 nm rows):
# (capacity bytes, port bits, read pJ, write pJ, area mm^2, standby leakage mW)
CACTI_28NM_POINTS: tuple[tuple[int, int, float, float, float, float], ...] = (
    (64, 8, 0.07558, 0.1368, 0.0003459, 0.08472),
    (64, 16, 0.1345, 0.1863, 0.0002891, 0.07021),
    (128, 8, 0.1219, 0.1624, 0.0004987, 0.1255),
    (128, 16, 0.1447, 0.2538, 0.0005173, 0.1286),
    (128, 20, 0.1917, 0.3068, 0.0005156, 0.1265),
    (128, 28, 0.2392, 0.3481, 0.0005821, 0.1226),
    (128, 32, 0.2642, 0.3652, 0.0005941, 0.1177),
    (256, 8, 0.2051, 0.2176, 0.0008793, 0.2158),
    (256, 16, 0.2310, 0.3121, 0.0008953, 0.2140),
    (256, 20, 0.2893, 0.3720, 0.0009312, 0.2113),
    (256, 28, 0.2623, 0.4858, 0.0009522, 0.2216),
    (256, 32, 0.2875, 0.5032, 0.0009574, 0.2148),
    (256, 36, 0.3412, 0.5691, 0.0009974, 0.2161),
    (256, 64, 0.5874, 0.7894, 0.001380, 0.2066),
    (512, 8, 0.2955, 0.3260, 0.001638, 0.4078),
    (512, 16, 0.3214, 0.4909, 0.001655, 0.4060),
    (512, 20, 0.3406, 0.5151, 0.001617, 0.3997),
    (512, 28, 0.4334, 0.5997, 0.001728, 0.3884),
    (512, 32, 0.3780, 0.8228, 0.001720, 0.4067),
    (512, 36, 0.3909, 0.8528, 0.001690, 0.4038),
    (512, 64, 0.6370, 1.068, 0.002006, 0.3792),
    (512, 128, 1.554, 1.958, 0.004147, 0.4572),
    (16384, 32, 5.471, 3.174, 0.04295, 10.68),
    (65536, 8, 6.925, 3.768, 0.1753, 42.69),
    (524288, 8, 17.93, 14.74, 1.376, 340.5),
    (2097152, 8, 37.40, 30.80, 5.302, 1266.0),
    (2097152, 16, 41.75, 35.37, 5.323, 1264.0),
    (2097152, 32, 51.79, 45.99, 5.485, 1265.0),
    (2097152, 64, 76.25, 67.20, 5.381, 1262.0),
    (2097152, 128, 120.0, 115.4, 5.818, 1264.0),
    (2097152, 256, 208.8, 217.8, 5.933, 1262.0),
    (2097152, 512, 398.4, 443.4, 7.180, 1268.0),
    (2097152, 1024, 782.8, 963.8, 7.840, 1222.0),
    (2097152, 2048, 1393.0, 2332.0, 8.433, 1221.0),
)

# Horowitz, ISSCC 2014, 45 nm / 0.9 V: (cache bytes, bits per read, read pJ); a cross-check only.
HOROWITZ_45NM_CACHE_READS: tuple[tuple[int, int, float], ...] = (
    (8 * 1024, 64, 10.0),
    (32 * 1024, 64, 20.0),
    (1024 * 1024, 64, 100.0),
)
HOROWITZ_NODE_NM = 45.0
HOROWITZ_VDD_V = 0.9

_YAML_FIELDS = ("read_energy_pJ", "write_energy_pJ", "area_mm2", "leakage_mW")


@dataclass(frozen=True)
class MemoryCosts:
    """Costs of one memory level: energies per full-width access; area and leakage of all instances.

    ``estimated`` names the fields that came from this module's estimate rather than the YAML.
    """

    read_energy_pJ: float
    write_energy_pJ: float
    area_mm2: float
    leakage_mW: float
    estimated: tuple[str, ...]


def sram_energy_pJ(size_bits: float, word_bits: float, write: bool = False) -> float:
    """Energy of one full-width SRAM access at 28 nm / 0.9 V from the CACTI fit (module docstring)."""
    root = math.sqrt(size_bits)
    if write:
        return word_bits * SRAM_WRITE_PJ_PER_BIT * root + SRAM_WRITE_FIXED_PJ * size_bits**SRAM_WRITE_FIXED_EXP
    return word_bits * SRAM_READ_PJ_PER_BIT * root + SRAM_READ_FIXED_PJ * size_bits**SRAM_READ_FIXED_EXP


def sram_area_mm2(size_bits: float, word_bits: float) -> float:
    """Area of one SRAM array at 28 nm from the CACTI fit: cells + column periphery + control."""
    um2 = (
        SRAM_AREA_UM2_PER_BIT * size_bits
        + SRAM_AREA_UM2_PER_IO_BIT * word_bits * math.sqrt(size_bits)
        + SRAM_AREA_FIXED_UM2
    )
    return um2 * 1e-6


def register_energy_pJ(word_bits: float, node_nm: float, vdd_V: float, write: bool) -> float:
    """Energy of one full-width register access: DFF switching energy per bit; a read costs a fraction."""
    write_pJ = gates_for(node_nm, vdd_V).dff_fJ * word_bits * 1e-3
    return write_pJ if write else REGISTER_READ_FRACTION * write_pJ


def register_area_mm2(size_bits: float, node_nm: float) -> float:
    """Area of a flip-flop register of ``size_bits`` bits (DFF area per bit)."""
    return gates_for(node_nm, REF_VDD_V).dff_area_um2 * size_bits * REGISTER_AREA_OVERHEAD * 1e-6


def leakage_mW(kind: str, size_bits: float, vdd_V: float) -> float:
    """Standby leakage of one instance: a per-bit figure at 28 nm, linear in VDD; 0 for DRAM (off chip)."""
    per_bit_nW = {"sram": SRAM_LEAKAGE_NW_PER_BIT, "register": REGISTER_LEAKAGE_NW_PER_BIT}.get(kind, 0.0)
    return per_bit_nW * size_bits * (vdd_V / REF_VDD_V) * 1e-6


def estimate_memory(mem: Memory, technology: Technology, instances: int = 1) -> MemoryCosts:
    """The model's costs of ``mem`` ignoring any YAML values (``estimated`` names every YAML field)."""
    if instances < 1:
        raise ValueError(f"instances = {instances}: a memory level has at least one instance")
    node, vdd = technology.node_nm, technology.vdd_V
    if mem.kind == "register":
        read = register_energy_pJ(mem.word_bits, node, vdd, write=False)
        write = register_energy_pJ(mem.word_bits, node, vdd, write=True)
        area = register_area_mm2(mem.size_bits, node)
    elif mem.kind == "sram":
        scale = energy_factor(node, vdd)
        read = sram_energy_pJ(mem.size_bits, mem.word_bits, write=False) * scale
        write = sram_energy_pJ(mem.size_bits, mem.word_bits, write=True) * scale
        area = sram_area_mm2(mem.size_bits, mem.word_bits) * area_factor(node)
    elif mem.kind == "dram":
        read = write = DRAM_PJ_PER_BIT * mem.word_bits
        area = 0.0
    else:  # the schema admits only the three kinds
        raise ValueError(f"unknown memory kind '{mem.kind}'")
    leak = leakage_mW(mem.kind, mem.size_bits, vdd)
    return MemoryCosts(read, write, area * instances, leak * instances, _YAML_FIELDS)


def memory_costs(mem: Memory, technology: Technology, instances: int = 1) -> MemoryCosts:
    """Costs of ``mem``: the YAML's values where given, the estimate (for ``instances`` copies) for the rest."""
    model = estimate_memory(mem, technology, instances)
    values = {}
    estimated = []
    for name in _YAML_FIELDS:
        given = getattr(mem, name)
        if given is None:
            values[name] = getattr(model, name)
            estimated.append(name)
        else:
            values[name] = float(given)
    return MemoryCosts(**values, estimated=tuple(estimated))


def word_accesses(bits: float, min_word_bits: int | None, word_bits: int) -> float:
    """Full-width accesses needed to move ``bits``, counted as ZigZag does.

    ceil(bits / min_word) transfers of the smallest access, each costing min_word / word of a
    full-width access (zigzag-imc.md 1.6, "Word count").
    """
    if bits < 0:
        raise ValueError(f"bits = {bits}: cannot move a negative number of bits")
    min_word = word_bits if min_word_bits is None else min_word_bits
    if word_bits <= 0 or min_word <= 0 or min_word > word_bits:
        raise ValueError(f"need 0 < min_word_bits ({min_word}) <= word_bits ({word_bits})")
    return math.ceil(bits / min_word) * (min_word / word_bits)


def access_energy_pJ(
    mem_costs: MemoryCosts, bits: float, min_word_bits: int | None, word_bits: int, write: bool
) -> float:
    """Energy of reading (or writing) ``bits`` bits through a level with costs ``mem_costs``."""
    per_access = mem_costs.write_energy_pJ if write else mem_costs.read_energy_pJ
    return word_accesses(bits, min_word_bits, word_bits) * per_access
