"""cim-dse next to ZigZag-IMC on ZigZag's own inputs: totals, per-layer ratios and wall times.

    taskset -c 0 .venv/bin/python benchmarks/vs_zigzag.py [--cold 5] [--runs 3]
        [--zigzag /tmp/zzvenv/bin/python [--workload workloads/digits_cnn.onnx]]

ZigZag's side comes from ``benchmarks/zigzag_reference_<aimc|dimc>.json``, written by
``benchmarks/zigzag_reference.py`` (zigzag-dse 3.9.1 in its own venv; 7-10 minutes per run on one
core, so it is recorded rather than rerun), or, with ``--zigzag PYTHON``, rerun in this run with that
interpreter (one variant after the other, uninstrumented), on ``--workload`` if given. cim-dse runs
in ``zigzag_compat`` mode on the same ONNX (ResNet-18 unless ``--workload``), the same 128x128
templates (translated to our schema in hardware/*_template.yaml) and ZigZag's default IMC mapping
file, with opt=latency.

Wall times, on whatever cores the process may use (pin it with ``taskset -c 0``): ``--cold`` fresh
processes, each timing one ``evaluate`` (ONNX and YAML loading, mapping, pricing) and its whole life
(interpreter start and imports included), medians reported; and the median of ``--runs`` further
``evaluate`` calls in this process with every mapper cache cleared. numpy is limited to one thread.
The load average is printed before and after: other work on the machine slows every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
WORKLOAD = ROOT / "tests" / "data" / "zigzag_resnet18.onnx"
MAPPING = ROOT / "tests" / "data" / "zigzag_default_imc.yaml"


def evaluate_once(kind: str, workload: Path):
    """One cim-dse run with every mapper cache cleared: (result, seconds)."""
    from dse.api import evaluate
    from dse.mapping import mapper

    mapper.clear_caches()
    start = time.perf_counter()
    result = evaluate(workload, ROOT / "hardware" / f"{kind}_template.yaml", MAPPING, opt="latency",
                      zigzag_compat=True)
    return result, time.perf_counter() - start


def cold_runs(kind: str, workload: Path, runs: int) -> tuple[list[float], list[float]]:
    """``evaluate`` and whole-process seconds of ``runs`` fresh processes (same CPU affinity as this one)."""
    evaluate_s, process_s = [], []
    for _ in range(runs):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, __file__, "--one", kind, "--workload", str(workload)],
                             capture_output=True, text=True, check=True)
        process_s.append(time.perf_counter() - start)
        evaluate_s.append(json.loads(out.stdout)["evaluate_s"])
    return evaluate_s, process_s


def rerun_zigzag(python: str, kind: str, workload: Path) -> dict:
    """ZigZag's reference run, now, with ``python`` (a venv with zigzag-dse 3.9.1): its JSON. Its exit status
    is 1 when the totals differ from those its tests expect for ResNet-18, as they do for another workload."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"zigzag_{kind}.json"
        cmd = [python, str(ROOT / "benchmarks" / "zigzag_reference.py"), kind, "--no-instrument", "--out", str(out)]
        if workload != WORKLOAD:
            cmd += ["--workload", str(workload)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if not out.exists():
            raise SystemExit(f"ZigZag failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", type=int, default=5, help="fresh processes for the cold wall times")
    parser.add_argument("--runs", type=int, default=3, help="in-process runs, caches cleared, for the warm wall time")
    parser.add_argument("--zigzag", metavar="PYTHON", help="rerun ZigZag with this interpreter instead of the JSONs")
    parser.add_argument("--workload", type=Path, default=WORKLOAD, help="ONNX model (with --zigzag; default ResNet-18)")
    parser.add_argument("--one", choices=("aimc", "dimc"), help=argparse.SUPPRESS)  # a cold child process
    args = parser.parse_args()
    workload = args.workload.resolve()
    if args.one:
        _, seconds = evaluate_once(args.one, workload)
        print(json.dumps({"evaluate_s": seconds}))
        return
    if workload != WORKLOAD and not args.zigzag:
        parser.error("--workload needs --zigzag: the recorded references are ResNet-18's")
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    print(f"{workload.relative_to(ROOT) if workload.is_relative_to(ROOT) else workload}; "
          f"load average before: {os.getloadavg()[0]:.2f}; cores {affinity} of {os.cpu_count()}")
    print("\n| | tool | energy (pJ) | latency (cycles) | clock (ns) | area (mm²) | wall time (s) |")
    print("|---|---|---|---|---|---|---|")
    details = []
    for kind in ("aimc", "dimc"):
        if args.zigzag:
            ref = rerun_zigzag(args.zigzag, kind, workload)
            source = "ZigZag 3.9.1 (this run)"
        else:
            ref = json.loads((ROOT / "benchmarks" / f"zigzag_reference_{kind}.json").read_text())
            source = "ZigZag 3.9.1 (recorded)"
        cold_eval, cold_proc = cold_runs(kind, workload, args.cold)
        warm = [evaluate_once(kind, workload) for _ in range(max(1, args.runs))]
        ours = warm[-1][0]
        zz = ref["totals"]
        zz_wall = ref["run"]["wall_s"]
        eval_med, proc_med = statistics.median(cold_eval), statistics.median(cold_proc)
        warm_med = statistics.median(s for _, s in warm)
        print(f"| {kind.upper()} | {source} | {zz['energy_pJ']:.4g} | {zz['latency_cycles']:,.0f} | "
              f"{zz['clock_ns']:.4g} | {zz['area_mm2']:.4g} | {zz_wall:.0f} |")
        print(f"| | cim-dse compat | {ours.energy_pJ:.4g} | {ours.latency_cycles:,.0f} | {ours.clock_ns:.4g} | "
              f"{ours.area_total_mm2:.4g} | cold: {eval_med:.3f} evaluate, {proc_med:.2f} process; "
              f"warm: {warm_med:.3f} |")
        print(f"| | ratio | {ours.energy_pJ / zz['energy_pJ']:.3f} | {ours.latency_cycles / zz['latency_cycles']:.3f} "
              f"| {ours.clock_ns / zz['clock_ns']:.4f} | {ours.area_total_mm2 / zz['area_mm2']:.4f} | "
              f"{zz_wall / eval_med:,.0f}x faster (evaluate), {zz_wall / proc_med:,.0f}x (process) |")
        details.append((kind, ref, ours, cold_eval, cold_proc))
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    print("\ncold runs (s), fresh processes: evaluate / whole process")
    for kind, _, _, cold_eval, cold_proc in details:
        print(f"  {kind}: " + ", ".join(f"{e:.3f}/{p:.2f}" for e, p in zip(cold_eval, cold_proc, strict=True)))
    for kind, ref, ours, _, _ in details:
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
