"""Print markdown tables (totals and per layer) from benchmarks/zigzag_reference_<variant>.json.

    python benchmarks/zigzag_tables.py                # both variants found next to this script
    python benchmarks/zigzag_tables.py path/to/x.json # specific files

Stdlib only; used to produce the tables in benchmarks/README.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
LOOP_DIMS = ("K", "C", "OX", "OY", "FX", "FY")


def load(paths: list[Path]) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in paths]


def short_name(name: str) -> str:
    """'/layer2/layer2.0/downsample/downsample.0/Conv' -> 'layer2.0.downsample'."""
    parts = [p for p in name.strip("/").split("/") if p]
    if parts and parts[-1] in ("Conv", "Gemm", "MatMul"):
        parts = parts[:-1]
    if len(parts) >= 2 and parts[1].startswith(parts[0] + "."):
        parts = parts[1:]
    parts = [p for p in parts if not (p.startswith("downsample.") and p[len("downsample.") :].isdigit())]
    return ".".join(parts) or name


def fmt_loops(sizes: dict[str, int]) -> str:
    return " ".join(f"{d}{sizes[d]}" for d in LOOP_DIMS if sizes.get(d, 1) != 1) or "-"


def fmt_sm(sm: dict[str, dict[str, int]]) -> str:
    return " / ".join(f"{oa}:" + "·".join(f"{d}{int(v)}" for d, v in dims.items()) for oa, dims in sm.items())


def dram_energy(layer: dict[str, Any]) -> float:
    return sum(per_mem.get("dram", 0.0) for per_mem in layer.get("mem_energy_breakdown", {}).values())


def totals_table(runs: list[dict[str, Any]]) -> str:
    rows = [
        "| variant | energy (pJ) | latency (cycles) | clock (ns) | latency (ms) | area (mm²) | matches expected "
        "| wall (s) | CPU user (s) | load avg 1-min start → end |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        t, run = r["totals"], r["run"]
        rows.append(
            f"| {r['variant'].upper()} | {t['energy_pJ']:.10g} | {t['latency_cycles']:,.0f} | {t['clock_ns']:.5f} "
            f"| {t['latency_ns'] / 1e6:.3f} | {t['area_mm2']:.5f} | {'yes' if r['check']['all_match'] else 'NO'} "
            f"| {run['wall_s']:.1f} | {run['cpu_user_s']:.1f} "
            f"| {run['loadavg_start'][0]:.2f} → {run['loadavg_end'][0]:.2f} |"
        )
    return "\n".join(rows)


def energy_split_table(runs: list[dict[str, Any]]) -> str:
    mems: list[str] = []
    for r in runs:
        for layer in r["layers"]:
            for per_mem in layer.get("mem_energy_breakdown", {}).values():
                for m in per_mem:
                    if m not in mems:
                        mems.append(m)
    rows = [
        "| variant | MAC/array (pJ) | " + " | ".join(f"{m} (pJ)" for m in mems) + " |",
        "|---|---|" + "---|" * len(mems),
    ]
    for r in runs:
        mac = sum(layer.get("mac_energy", 0.0) for layer in r["layers"])
        per = dict.fromkeys(mems, 0.0)
        for layer in r["layers"]:
            for per_mem in layer.get("mem_energy_breakdown", {}).values():
                for m, e in per_mem.items():
                    per[m] += e
        rows.append(f"| {r['variant'].upper()} | {mac:.4g} | " + " | ".join(f"{per[m]:.4g}" for m in mems) + " |")
    return "\n".join(rows)


def layer_table(r: dict[str, Any]) -> str:
    rows = [
        f"**{r['variant'].upper()}** (cycles of {r['totals']['clock_ns']:.5f} ns)",
        "",
        "| id | layer | loops | spatial mapping | energy (pJ) | MAC (pJ) | DRAM (pJ) | cycles (total2) "
        "| ideal temporal | stall | onload | offload | spatial util | util1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for layer in r["layers"]:
        rows.append(
            f"| {layer['id']} | {short_name(layer['name'])} | {fmt_loops(layer['loop_sizes'])} "
            f"| {fmt_sm(layer['spatial_mapping'])} | {layer['energy_total']:.4g} | {layer['mac_energy']:.4g} "
            f"| {dram_energy(layer):.4g} | {layer['latency_total2']:,.0f} | {layer['ideal_temporal_cycle']:,.0f} "
            f"| {layer['stall_slack_comb']:,.0f} | {layer['data_onloading_cycle']:,.0f} "
            f"| {layer['data_offloading_cycle']:,.0f} | {layer['mac_spatial_utilization']:.3f} "
            f"| {layer['mac_utilization1']:.3f} |"
        )
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or sorted(BENCH_DIR.glob("zigzag_reference_*.json"))
    if not paths:
        print("no zigzag_reference_*.json found", file=sys.stderr)
        return 1
    runs = load(paths)
    print(totals_table(runs))
    print()
    print(energy_split_table(runs))
    for r in runs:
        print()
        print(layer_table(r))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
