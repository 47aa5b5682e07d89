"""Per-access energies, areas and leakage of memory levels (dse.cost.memory)."""

import math
from pathlib import Path

import pytest

from dse.cost.memory import (
    CACTI_28NM_POINTS,
    DRAM_PJ_PER_BIT,
    HOROWITZ_45NM_CACHE_READS,
    HOROWITZ_NODE_NM,
    HOROWITZ_VDD_V,
    REGISTER_READ_FRACTION,
    SRAM_LEAKAGE_NW_PER_BIT,
    MemoryCosts,
    access_energy_pJ,
    memory_costs,
    sram_area_mm2,
    sram_energy_pJ,
    word_accesses,
)
from dse.cost.technology import area_factor, energy_factor, gates_for
from dse.hardware import Memory, Technology, load_accelerator

ROOT = Path(__file__).resolve().parents[1]
REF = Technology()  # 28 nm, 0.9 V


def mem(kind="sram", size_bits=262144, word_bits=512, **kw):
    return Memory(name="m", kind=kind, size_bits=size_bits, word_bits=word_bits, operands=("I1",), **kw)


def within(model, reference, factor):
    return reference / factor <= model <= reference * factor


# -- YAML values win --------------------------------------------------------------------------


def test_yaml_values_pass_through_unchanged():
    m = mem(read_energy_pJ=1.5, write_energy_pJ=2.5, area_mm2=0.25, leakage_mW=0.75)
    c = memory_costs(m, Technology(node_nm=22, vdd_V=0.8), instances=7)
    assert (c.read_energy_pJ, c.write_energy_pJ, c.area_mm2, c.leakage_mW) == (1.5, 2.5, 0.25, 0.75)
    assert c.estimated == ()


def test_partial_yaml_names_the_estimated_fields():
    c = memory_costs(mem(read_energy_pJ=1.5), REF)
    assert c.read_energy_pJ == 1.5
    assert c.estimated == ("write_energy_pJ", "area_mm2", "leakage_mW")
    assert c.write_energy_pJ > 0 and c.area_mm2 > 0 and c.leakage_mW > 0


def test_template_sram_keeps_zigzag_figures():
    acc = load_accelerator(ROOT / "hardware" / "aimc_template.yaml")
    sram = acc.memory("sram")
    c = memory_costs(sram, acc.technology)
    assert c.read_energy_pJ == 416.16
    assert c.write_energy_pJ == 378.4
    assert c.area_mm2 == 0.0
    assert "read_energy_pJ" not in c.estimated and "write_energy_pJ" not in c.estimated
    dram = memory_costs(acc.memory("dram"), acc.technology)
    assert (dram.read_energy_pJ, dram.write_energy_pJ) == (700.0, 750.0)


# -- SRAM estimate ----------------------------------------------------------------------------


def test_sram_estimate_positive_and_monotonic():
    sizes = [2**k for k in range(10, 25, 2)]
    widths = [8, 16, 64, 256, 512]
    for write in (False, True):
        for w in widths:
            energies = [sram_energy_pJ(n, w, write) for n in sizes if n >= w]
            assert all(e > 0 for e in energies)
            assert energies == sorted(energies) and len(set(energies)) == len(energies)
        for n in sizes:
            energies = [sram_energy_pJ(n, w, write) for w in widths if w <= n]
            assert energies == sorted(energies) and len(set(energies)) == len(energies)
    areas = [sram_area_mm2(n, 64) for n in sizes]
    assert areas == sorted(areas)
    assert sram_area_mm2(2**20, 512) > sram_area_mm2(2**20, 64)


@pytest.mark.parametrize("point", CACTI_28NM_POINTS, ids=lambda p: f"{p[0]}B_{p[1]}b")
def test_sram_fit_within_factor_2_of_cacti(point):
    size_bytes, width, read_pJ, write_pJ, area_mm2, _leak = point
    n = size_bytes * 8
    assert within(sram_energy_pJ(n, width, write=False), read_pJ, 2.0)
    assert within(sram_energy_pJ(n, width, write=True), write_pJ, 2.0)
    assert within(sram_area_mm2(n, width), area_mm2, 2.0)


def test_sram_fit_quality_as_documented():
    # the module docstring quotes the worst ratios of the fit; keep them honest
    ratios = [sram_energy_pJ(b * 8, w) / r for b, w, r, _wr, _a, _l in CACTI_28NM_POINTS]
    assert min(ratios) > 0.60 and max(ratios) < 1.45
    ratios = [sram_energy_pJ(b * 8, w, True) / wr for b, w, _r, wr, _a, _l in CACTI_28NM_POINTS]
    assert min(ratios) > 0.75 and max(ratios) < 1.30
    ratios = [sram_area_mm2(b * 8, w) / a for b, w, _r, _wr, a, _l in CACTI_28NM_POINTS]
    assert min(ratios) > 0.75 and max(ratios) < 1.15


@pytest.mark.parametrize("point", HOROWITZ_45NM_CACHE_READS, ids=lambda p: f"{p[0]}B")
def test_sram_fit_within_factor_2_of_horowitz(point):
    size_bytes, width, read_pJ = point
    at_28nm = read_pJ / energy_factor(HOROWITZ_NODE_NM, HOROWITZ_VDD_V)
    assert within(sram_energy_pJ(size_bytes * 8, width), at_28nm, 2.0)


def test_sram_estimate_through_memory_costs_matches_fit():
    c = memory_costs(mem(size_bits=2**21, word_bits=128), REF)
    assert c.read_energy_pJ == pytest.approx(sram_energy_pJ(2**21, 128))
    assert c.write_energy_pJ == pytest.approx(sram_energy_pJ(2**21, 128, write=True))
    assert c.area_mm2 == pytest.approx(sram_area_mm2(2**21, 128))
    assert c.leakage_mW == pytest.approx(SRAM_LEAKAGE_NW_PER_BIT * 2**21 * 1e-6)
    assert c.estimated == ("read_energy_pJ", "write_energy_pJ", "area_mm2", "leakage_mW")


@pytest.mark.parametrize("node, vdd", [(22, 0.8), (40, 1.1), (28, 0.7), (65, 0.9)])
def test_sram_estimate_scales_with_node_and_vdd(node, vdd):
    m = mem(size_bits=131072, word_bits=64)
    ref = memory_costs(m, REF)
    other = memory_costs(m, Technology(node_nm=node, vdd_V=vdd))
    assert other.read_energy_pJ / ref.read_energy_pJ == pytest.approx(energy_factor(node, vdd))
    assert other.write_energy_pJ / ref.write_energy_pJ == pytest.approx(energy_factor(node, vdd))
    assert other.area_mm2 / ref.area_mm2 == pytest.approx(area_factor(node))
    assert other.leakage_mW / ref.leakage_mW == pytest.approx(vdd / 0.9)


def test_instances_multiply_area_and_leakage_not_energy():
    m = mem(size_bits=4096, word_bits=32)
    one, four = memory_costs(m, REF), memory_costs(m, REF, instances=4)
    assert four.read_energy_pJ == one.read_energy_pJ
    assert four.area_mm2 == pytest.approx(4 * one.area_mm2)
    assert four.leakage_mW == pytest.approx(4 * one.leakage_mW)
    with pytest.raises(ValueError):
        memory_costs(m, REF, instances=0)


# -- registers and DRAM -----------------------------------------------------------------------


def test_register_estimate_from_dff():
    g = gates_for(28, 0.9)
    c = memory_costs(mem(kind="register", size_bits=16, word_bits=16), REF)
    assert c.write_energy_pJ == pytest.approx(g.dff_fJ * 16 / 1000)  # C_dff VDD^2 per bit
    assert c.write_energy_pJ == pytest.approx(3 * 0.7 * 0.81 * 16 / 1000)
    assert c.read_energy_pJ == pytest.approx(REGISTER_READ_FRACTION * c.write_energy_pJ)
    assert c.read_energy_pJ < c.write_energy_pJ
    assert c.area_mm2 == pytest.approx(g.dff_area_um2 * 16 * 1e-6)
    assert c.leakage_mW > 0
    # same order as ZigZag's 0.021 pJ per 8-bit register access
    assert within(memory_costs(mem(kind="register", size_bits=8, word_bits=8), REF).write_energy_pJ, 0.021, 2.0)


def test_register_estimate_scales_with_node_and_vdd():
    m = mem(kind="register", size_bits=8, word_bits=8)
    ref, other = memory_costs(m, REF), memory_costs(m, Technology(node_nm=22, vdd_V=0.8))
    assert other.write_energy_pJ / ref.write_energy_pJ == pytest.approx(energy_factor(22, 0.8))
    assert other.area_mm2 / ref.area_mm2 == pytest.approx(area_factor(22))


def test_dram_per_bit():
    c = memory_costs(mem(kind="dram", size_bits=10**10, word_bits=64), Technology(node_nm=22, vdd_V=0.8))
    assert DRAM_PJ_PER_BIT == 3.7
    assert c.read_energy_pJ == pytest.approx(3.7 * 64)
    assert c.write_energy_pJ == pytest.approx(3.7 * 64)  # off chip: not scaled with the logic node
    assert (c.area_mm2, c.leakage_mW) == (0.0, 0.0)


# -- access counting --------------------------------------------------------------------------


def test_word_accesses_zigzag_count():
    assert word_accesses(100, 64, 512) == pytest.approx(2 * 64 / 512)
    assert word_accesses(128, 64, 512) == pytest.approx(2 * 64 / 512)
    assert word_accesses(129, 64, 512) == pytest.approx(3 * 64 / 512)
    assert word_accesses(1024, 64, 512) == pytest.approx(2.0)
    assert word_accesses(100, None, 512) == pytest.approx(1.0)  # no min word: full-width accesses
    assert word_accesses(0, 64, 512) == 0.0
    with pytest.raises(ValueError):
        word_accesses(-1, 64, 512)
    with pytest.raises(ValueError):
        word_accesses(10, 1024, 512)


def test_access_energy_hand_computed():
    costs = MemoryCosts(read_energy_pJ=416.16, write_energy_pJ=378.4, area_mm2=0.0, leakage_mW=0.0, estimated=())
    assert access_energy_pJ(costs, 100, 64, 512, write=False) == pytest.approx(2 * 64 / 512 * 416.16)
    assert access_energy_pJ(costs, 100, 64, 512, write=True) == pytest.approx(2 * 64 / 512 * 378.4)
    assert access_energy_pJ(costs, 8 * 512, 64, 512, write=False) == pytest.approx(8 * 416.16)
    dram = MemoryCosts(read_energy_pJ=700, write_energy_pJ=750, area_mm2=0, leakage_mW=0, estimated=())
    assert access_energy_pJ(dram, 200, None, 64, write=True) == pytest.approx(math.ceil(200 / 64) * 750)
