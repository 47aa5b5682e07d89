"""A short, printable summary of an accelerator (``cim-dse hardware FILE``)."""

from __future__ import annotations

from dse.hardware.schema import Accelerator


def summarize(acc: Accelerator) -> dict:
    """The figures a reader checks first: macro geometry, precisions, derived peak counts, memories."""
    m = acc.macro
    out = {
        "name": acc.name,
        "description": acc.description,
        "technology": {"node_nm": acc.technology.node_nm, "vdd_V": acc.technology.vdd_V},
        "macro": {
            "kind": m.kind,
            "rows": m.rows,
            "rows_per_conversion": m.rows_per_conversion,
            "columns": m.columns,
            "count": m.count,
            "weight_bits": m.weight_bits,
            "input_bits": m.input_bits,
            "input_bits_per_cycle": m.input_bits_per_cycle,
            "cycles_per_mac": m.cycles_per_mac,
            "adc_bits": m.adc_bits,
            "dac_bits": m.dac_bits,
            "cells_per_group": m.cells_per_group,
            "weights_stored": m.weights_stored,
            "macs_per_cycle": m.macs_per_cycle,
            "pipelined": m.circuit.pipelined,
        },
        "clock_ns": acc.clock_ns,
        "memories": [
            {
                "name": mem.name,
                "kind": mem.kind,
                "size_bits": mem.size_bits,
                "word_bits": mem.word_bits,
                "read_energy_pJ": mem.read_energy_pJ,
                "write_energy_pJ": mem.write_energy_pJ,
                "operands": list(mem.operands),
                "served_dimensions": list(mem.served_dimensions),
                "ports": {"read": mem.ports.read, "write": mem.ports.write, "read_write": mem.ports.read_write},
            }
            for mem in acc.memories
        ],
    }
    if acc.reported is not None:
        r = acc.reported
        out["reported"] = {
            k: v
            for k, v in {
                "source": r.source,
                "clock_ns": r.clock_ns,
                "area_mm2": r.area_mm2,
                "tops_per_w": r.tops_per_w,
                "tops": r.tops,
                "tops_per_mm2": r.tops_per_mm2,
                "input_toggle_rate": r.input_toggle_rate,
                "weight_sparsity": r.weight_sparsity,
            }.items()
            if v is not None
        }
    return out


def macro_line(acc: Accelerator) -> str:
    """One line for a table of accelerators."""
    m = acc.macro
    conv = f"ADC {m.adc_bits}b" if m.adc_bits else "adder trees"
    return (
        f"{m.kind} {m.rows}x{m.columns} x{m.count}, W{m.weight_bits}/I{m.input_bits} "
        f"({m.input_bits_per_cycle} b/cycle), {conv}, M={m.cells_per_group}, "
        f"{acc.technology.node_nm:g} nm {acc.technology.vdd_V:g} V"
    )

