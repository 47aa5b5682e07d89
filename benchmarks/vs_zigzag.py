"""cim-dse next to ZigZag-IMC on ZigZag's own inputs: totals, per-layer ratios and wall times.

    .venv/bin/python benchmarks/vs_zigzag.py [--runs 3]

ZigZag's side comes from ``benchmarks/zigzag_reference_<aimc|dimc>.json``, written by
``benchmarks/zigzag_reference.py`` (zigzag-dse 3.9.1 in its own venv; 5-8 minutes per run, so it
is recorded rather than rerun here). cim-dse runs in ``zigzag_compat`` mode on the same ResNet-18
ONNX, the same 128x128 templates (translated to our schema in hardware/*_template.yaml) and
ZigZag's default IMC mapping file, with opt=latency. Wall times: the first (cold) run and the
median of ``--runs`` warm runs with the layer cache cleared, on one core; the machine's load
average is printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKLOAD = ROOT / "tests" / "data" / "zigzag_resnet18.onnx"
MAPPING = ROOT / "tests" / "data" / "zigzag_default_imc.yaml"


def run_ours(kind: str, runs: int) -> tuple[object, float, float]:
    from dse.api import evaluate
    from dse.mapping import mapper

    hardware = ROOT / "hardware" / f"{kind}_template.yaml"
    times = []
    result = None
    for _ in range(runs + 1):
        mapper._CACHE.clear()
        start = time.perf_counter()
        result = evaluate(WORKLOAD, hardware, MAPPING, opt="latency", zigzag_compat=True)
        times.append(time.perf_counter() - start)
    return result, times[0], statistics.median(times[1:]) if runs else times[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="warm runs for the median wall time")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print("\n| | tool | energy (pJ) | latency (cycles) | clock (ns) | area (mm²) | wall time (s) |")
    print("|---|---|---|---|---|---|---|")
    details = []
    for kind in ("aimc", "dimc"):
        ref_path = ROOT / "benchmarks" / f"zigzag_reference_{kind}.json"
        ref = json.loads(ref_path.read_text())
        ours, cold, warm = run_ours(kind, args.runs)
        zz = ref["totals"]
        zz_wall = ref["run"].get("wall_s")
        print(f"| {kind.upper()} | ZigZag 3.9.1 | {zz['energy_pJ']:.4g} | {zz['latency_cycles']:,.0f} | "
              f"{zz['clock_ns']:.4g} | {zz['area_mm2']:.4g} | {zz_wall:.0f} |")
        print(f"| | cim-dse compat | {ours.energy_pJ:.4g} | {ours.latency_cycles:,.0f} | {ours.clock_ns:.4g} | "
              f"{ours.area_total_mm2:.4g} | {cold:.2f} cold, {warm:.2f} warm |")
        print(f"| | ratio | {ours.energy_pJ / zz['energy_pJ']:.3f} | {ours.latency_cycles / zz['latency_cycles']:.3f} "
              f"| {ours.clock_ns / zz['clock_ns']:.4f} | {ours.area_total_mm2 / zz['area_mm2']:.4f} | "
              f"{zz_wall / cold:.0f}x faster cold |")
        details.append((kind, ref, ours))
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    for kind, ref, ours in details:
        by_name = {layer.layer: layer for layer in ours.layers}
        print(f"\n### {kind.upper()} per layer (cim-dse / ZigZag)\n")
        print("| layer | ZigZag spatial | cim-dse spatial | energy ratio | latency ratio |")
        print("|---|---|---|---|---|")
        for layer in ref["layers"]:
            mine = by_name[layer["name"]]
            energy = mine.energy_pJ / layer["energy_total"]
            latency = mine.latency_cycles / layer["latency_total2"]
            print(f"| {layer['name']} | {layer['spatial_mapping_str']} | {mine.counts.spatial.describe()} | "
                  f"{energy:.2f} | {latency:.2f} |")


if __name__ == "__main__":
    main()
