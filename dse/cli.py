"""The ``cim-dse`` command line: inspect workloads, hardware and mapping files.

Every command turns bad input into one line on stderr (file, field, value, expectation) and
exit status 2; ``--json`` prints one JSON object on stdout for scripts.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dse.errors import InputError, display_path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WORKLOAD = REPO_ROOT / "workloads" / "resnet18_cifar10.onnx"
HARDWARE_DIR = REPO_ROOT / "hardware"
CHIPS = ("aimc1", "aimc2", "aimc3", "dimc1", "dimc2", "dimc3", "dimc4")
DOCS_DIR = REPO_ROOT / "docs"


def _console() -> Console:
    """A console as wide as the terminal, or wide enough for whole layer names when piped."""
    probe = Console()
    return Console(highlight=False, width=probe.width if probe.is_terminal else 200)


def _print_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, indent=2) + "\n")


# -- workload ------------------------------------------------------------------------------
def _load_workload(path: str, mapping: str | None):
    from dse.mapping import check_mapping, load_mapping
    from dse.workload import load_onnx

    workload = load_onnx(path)
    if mapping:
        spec = load_mapping(mapping)
        check_mapping(spec, workload)
        workload = workload.with_precisions(spec.precision_of)
    return workload


def workload_table(workload) -> Table:
    from dse.workload import LOOP_DIMS

    table = Table(title=f"{workload.name}: {len(workload.layers)} compute layers, "
                  f"{len(workload) - len(workload.layers)} other ops", title_justify="left")
    for col in ("layer", "op", *LOOP_DIMS, "MACs", "weights", "W/I/O bits"):
        table.add_column(col, justify="left" if col in ("layer", "op") else "right", no_wrap=col != "layer")
    for row in workload.table_rows():
        table.add_row(*row)
    table.add_section()
    table.add_row("total", "", *[""] * len(LOOP_DIMS), f"{workload.total_macs:,}",
                  f"{workload.total_weights:,}", "")
    return table


def cmd_workload(args: argparse.Namespace) -> int:
    workload = _load_workload(args.file, args.mapping)
    if args.json:
        _print_json(workload.to_json())
        return 0
    console = _console()
    console.print(workload_table(workload))
    note = "" if all(layer.weight_constant for layer in workload.layers) else (
        "  (* = activation x activation: the stored operand is written at run time)")
    console.print(f"total: {si(workload.total_macs, 'MAC')}, {si(workload.total_weights, ' weights')}{note}")
    return 0


def si(value: float, unit: str) -> str:
    """``0.556 GMAC`` style: three decimals with the largest SI prefix that keeps the value >= 1."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3f} {prefix}{unit}"
    return f"{value:g} {unit.strip()}"


# -- hardware ------------------------------------------------------------------------------
def cmd_hardware(args: argparse.Namespace) -> int:
    from dse.hardware import load_accelerator, summarize

    acc = load_accelerator(args.file)
    summary = summarize(acc)
    summary["model"] = peak_summary(acc, zigzag_compat=args.zigzag_compat)
    if args.json:
        _print_json(summary)
        return 0
    console = _console()
    m = summary["macro"]
    console.print(f"[bold]{acc.name}[/bold]: {acc.description}")
    console.print(f"technology: {acc.technology.node_nm:g} nm, {acc.technology.vdd_V:g} V;  clock: "
                  f"{f'{acc.clock_ns:g} ns' if acc.clock_ns else 'from the model'}")
    conv = f"{m['adc_bits']}-bit ADC" if m["adc_bits"] else "digital adder trees"
    active = "" if m["rows_per_conversion"] == m["rows"] else f" ({m['rows_per_conversion']} rows active)"
    dac = f", {m['dac_bits']}-bit DAC" if m["dac_bits"] else ""
    console.print(
        f"macro: {m['kind']}, {m['rows']} rows x {m['columns']} columns x {m['count']} macro(s)"
        f"{active}, "
        f"W{m['weight_bits']} / I{m['input_bits']} with {m['input_bits_per_cycle']} input bit(s) per cycle "
        f"({m['cycles_per_mac']} cycles per MAC), {conv}{dac}, {m['cells_per_group']} weight(s) per cell group"
    )
    console.print(f"       {m['weights_stored']:,} weights stored, {m['macs_per_cycle']:g} MACs per cycle at peak"
                  f"{', pipelined' if m['pipelined'] else ''}")
    if summary["memories"]:
        table = Table(title="memory levels (lowest first)", title_justify="left")
        numeric = ("size (bits)", "word (bits)", "read pJ", "write pJ")
        for col in ("level", "kind", *numeric, "operands", "served", "ports"):
            table.add_column(col, justify="right" if col in numeric else "left")
        for mem in summary["memories"]:
            ports = ", ".join(f"{n} {k.replace('_', '/')}" for k, n in mem["ports"].items() if n)
            table.add_row(mem["name"], mem["kind"], f"{mem['size_bits']:,}", str(mem["word_bits"]),
                          _num(mem["read_energy_pJ"]), _num(mem["write_energy_pJ"]), " ".join(mem["operands"]),
                          " ".join(mem["served_dimensions"]) or "-", ports)
        console.print(table)
    else:
        console.print("memory levels: none (macro only)")
    pk = summary["model"]
    console.print(
        f"model ({'zigzag_compat' if args.zigzag_compat else 'default mode'}), peak: clock {pk['clock_ns']:.4g} ns, "
        f"area {pk['area_mm2']:.4g} mm2, {pk['tops']:.4g} TOP/s, {pk['tops_per_w']:.4g} TOP/s/W, "
        f"{pk['tops_per_mm2']:.4g} TOP/s/mm2, {pk['energy_per_mac_fJ']:.4g} fJ/MAC"
    )
    breakdowns = (("energy per MAC (fJ)", "energy_per_mac_fJ_by_component"),
                  ("area (mm2)", "area_mm2_by_component"), ("clock path (ns)", "clock_path_ns"))
    for title, key in breakdowns:
        parts = ", ".join(f"{k} {v:.3g}" for k, v in pk[key].items() if v)
        console.print(f"       {title}: {parts}")
    if "reported" in summary:
        r = summary["reported"]
        figures = ", ".join(f"{k} {v:g}" for k, v in r.items() if k != "source")
        console.print(f"reported ({r['source']}): {figures}")
    return 0


def peak_summary(acc, *, zigzag_compat: bool = False) -> dict:
    """The cost model's peak figures of an accelerator's macros, with their breakdowns."""
    from dse.cost import peak_performance

    peak = peak_performance(acc.macro, acc.technology, zigzag_compat=zigzag_compat, clock_ns=acc.clock_ns)
    return {
        "zigzag_compat": zigzag_compat,
        "clock_ns": peak.clock_ns,
        "area_mm2": peak.area_total_mm2,
        "macs_per_cycle": peak.macs_per_cycle,
        "tops": peak.tops,
        "tops_per_w": peak.tops_per_w,
        "tops_per_mm2": peak.tops_per_mm2,
        "energy_per_mac_fJ": peak.energy_per_mac_fJ,
        "energy_per_mac_fJ_by_component": {
            k: v * 1e3 / peak.macs_per_cycle for k, v in peak.energy_per_cycle_pJ.items()
        },
        "area_mm2_by_component": peak.area_mm2,
        "clock_path_ns": peak.clock.path_ns,
        "pipelined": peak.clock.pipelined,
    }


def _num(value: float | None) -> str:
    return "model" if value is None else f"{value:g}"


# -- mapping -------------------------------------------------------------------------------
def cmd_mapping(args: argparse.Namespace) -> int:
    from dse.hardware import load_accelerator
    from dse.mapping import check_mapping, load_mapping
    from dse.workload import load_onnx

    spec = load_mapping(args.file)
    workload = load_onnx(args.workload)
    acc = load_accelerator(args.hardware) if args.hardware else None
    check_mapping(spec, workload, acc)
    rows = []
    for layer in workload.layers:
        r = spec.resolve(layer)
        rows.append({
            "layer": layer.name,
            "op": layer.op,
            "entries": r.sources,
            "spatial_mapping": {d: [list(u) for u in us] for d, us in r.spatial_mapping.items()},
            "spatial_mapping_hint": {d: list(v) for d, v in (r.spatial_mapping_hint or {}).items()},
            "temporal_ordering": [list(t) for t in r.temporal_ordering] if r.temporal_ordering else None,
            "precision": spec.precision_of(layer).as_dict(),
            "memory_operand_links": r.memory_operand_links,
        })
    if args.json:
        _print_json({"mapping": spec.source, "workload": workload.source, "layers": rows})
        return 0
    table = Table(title=f"{spec.source} on {workload.source}", title_justify="left")
    for col in ("layer", "op", "entry", "fixed unrolling", "hints", "W/I/O bits"):
        table.add_column(col)
    for row in rows:
        fixed = "; ".join(f"{d}: " + " ".join(f"{a}{b}" for a, b in us) for d, us in row["spatial_mapping"].items())
        hints = "; ".join(f"{d}: {','.join(v)}" for d, v in row["spatial_mapping_hint"].items())
        p = row["precision"]
        table.add_row(row["layer"], row["op"], ", ".join(sorted(set(row["entries"].values()))) or "default",
                      fixed or "-", hints or "-", f"{p['W']}/{p['I']}/{p['O']}")
    _console().print(table)
    return 0


# -- schema --------------------------------------------------------------------------------
SCHEMA_INTROS = {
    "hardware": ("Hardware YAML schema", "An accelerator file (`hardware/*.yaml`) describes one IMC macro type "
                 "(`count` copies), the memory levels above its cells (lowest first) and the technology. "
                 "Array dims: D1 = columns (outputs), D2 = rows (summed per column), D3 = macros. Memory "
                 "operands: I1 = activations in, I2 = weights, O = outputs. Unknown fields are refused."),
    "mapping": ("Mapping YAML schema", "A mapping file (`mapping/*.yaml`) is a list of entries in ZigZag's "
                "format. Each is keyed by `name`: a layer name, an ONNX op type (Conv, Gemm, MatMul...), one of "
                "our op types (conv, dwconv, gemm, matmul) or `default` (required). For each layer every field "
                "comes from the most specific entry that sets it: layer name, ONNX op type, op type, default."),
}


def schema_text(which: str) -> str:
    from dse.schema_docs import schema_markdown

    if which == "hardware":
        from dse.hardware import Accelerator as root
    else:
        from dse.mapping import MappingEntry as root
    title, intro = SCHEMA_INTROS[which]
    return schema_markdown(root, title, intro)


def cmd_schema(args: argparse.Namespace) -> int:
    text = schema_text(args.which)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


# -- overview (the main job until the exploration lands) -----------------------------------
def cmd_overview(args: argparse.Namespace) -> int:
    from dse.hardware import load_accelerator

    console = _console()
    workload = _load_workload(args.workload, args.mapping)
    console.print(workload_table(workload))
    console.print(f"{workload.name}: {si(workload.total_macs, 'MAC')} in {len(workload.layers)} compute layers\n")
    table = Table(title="shipped accelerators (hardware/)", title_justify="left")
    for col in ("chip", "kind", "rows x cols x macros", "W/I bits", "in b/cycle", "ADC", "M", "node/VDD",
                "clock ns\nreported/model", "area mm2\nreported/model", "TOP/s/W\nreported/model", "reported in"):
        table.add_column(col, justify="left" if col in ("chip", "kind", "reported in") else "right")
    files = sorted(Path(args.hardware_dir).glob("*.yaml"))
    if not files:
        raise InputError(display_path(args.hardware_dir), None, "no *.yaml accelerator files in this folder")
    for path in files:
        acc = load_accelerator(path)
        m, r = acc.macro, acc.reported
        pk = peak_summary(acc)
        table.add_row(
            acc.name, m.kind, f"{m.rows}x{m.columns}x{m.count}", f"{m.weight_bits}/{m.input_bits}",
            str(m.input_bits_per_cycle), str(m.adc_bits or "-"), str(m.cells_per_group),
            f"{acc.technology.node_nm:g} nm/{acc.technology.vdd_V:g} V",
            f"{_fig(r and r.clock_ns)} / {pk['clock_ns']:.4g}", f"{_fig(r and r.area_mm2)} / {pk['area_mm2']:.3g}",
            f"{_fig(r and r.tops_per_w)} / {pk['tops_per_w']:.4g}", r.source if r else "template",
        )
    console.print(table)
    console.print("model = cim-dse's cost model (default mode), peak figures of the macros; "
                  "`cim-dse validate-chips` writes the full comparison. The exploration comes next (README, Status).")
    return 0


def _fig(value: float | None) -> str:
    return "-" if not value else f"{value:g}"


# -- evaluate (main_onnx.py) ---------------------------------------------------------------
def cmd_evaluate(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from dse.api import evaluate, write_results

    err = Console(stderr=True)
    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("mapping layers", total=None)

        def progress(i: int, n: int, name: str) -> None:
            bar.update(task, total=n, completed=i, description=f"mapping {name}")

        result = evaluate(args.workload, args.hardware, args.mapping, opt=args.opt,
                          zigzag_compat=args.zigzag_compat, progress=progress)
    default = Path("outputs") / f"{Path(args.hardware).stem}-{Path(args.workload).stem}"
    out = Path(args.output) if args.output else default
    paths = write_results(result, out)
    if args.json:
        _print_json(result.summary())
        return 0
    table = Table(title=f"{result.workload} on {result.accelerator} (opt={result.opt}"
                  f"{', zigzag_compat' if result.zigzag_compat else ''})", title_justify="left")
    for col in ("layer", "op", "MACs", "spatial mapping", "util", "energy pJ", "cycles", "of which stalls"):
        table.add_column(col, justify="left" if col in ("layer", "op", "spatial mapping") else "right")
    for layer in result.layers:
        table.add_row(layer.layer, layer.op, f"{layer.macs:,}", layer.counts.spatial.describe(),
                      f"{layer.utilization:.0%}", f"{layer.energy_pJ:.4g}", f"{layer.latency_cycles:,.0f}",
                      f"{layer.stall_cycles + layer.weight_load_cycles:,.0f}")
    table.add_section()
    table.add_row("total", "", f"{result.macs:,}", "", "", f"{result.energy_pJ:.4g}",
                  f"{result.latency_cycles:,.0f}", "")
    console = _console()
    console.print(table)
    console.print(f"energy {result.energy_pJ:.4g} pJ, latency {result.latency_cycles:,.0f} cycles x "
                  f"{result.clock_ns:.4g} ns = {result.latency_s * 1e3:.4g} ms, area {result.area_total_mm2:.4g} mm2")
    console.print(f"wrote {', '.join(display_path(p) for p in paths)}")
    return 0


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("workload", help="ONNX model")
    p.add_argument("hardware", help="accelerator YAML")
    p.add_argument("mapping", help="mapping YAML")
    p.add_argument("--opt", choices=("energy", "latency", "edp"), default="latency", help="what the mapper minimises")
    p.add_argument("--output", help="results folder (default outputs/<hardware>-<workload>/)")
    p.add_argument("--zigzag-compat", action="store_true", help="ZigZag-IMC's original macro arithmetic")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=cmd_evaluate)


# -- validate-chips ------------------------------------------------------------------------
def cmd_validate_chips(args: argparse.Namespace) -> int:
    from dse.atomic import write_atomic
    from dse.cost.validation import chip_rows, report_html, rows_to_csv
    from dse.hardware import load_accelerator

    chips = [load_accelerator(Path(args.hardware_dir) / f"{name}.yaml") for name in CHIPS]
    rows = [row for acc in chips for row in chip_rows(acc, zigzag_compat=args.zigzag_compat)]
    out = Path(args.output)
    write_atomic(out / "chips.csv", rows_to_csv(rows))
    write_atomic(out / "chips.html", report_html(chips, rows, zigzag_compat=args.zigzag_compat))
    if args.json:
        _print_json([{"chip": r.chip, "metric": r.metric, "reported": r.reported, "modelled": r.modelled,
                      "ratio": r.ratio} for r in rows])
        return 0
    table = Table(title=f"cost model vs. reported ({'zigzag_compat' if args.zigzag_compat else 'default mode'})",
                  title_justify="left")
    for col in ("chip", "metric", "reported", "modelled", "ratio"):
        table.add_column(col, justify="left" if col in ("chip", "metric") else "right")
    for r in rows:
        style = "green" if 0.8 <= r.ratio <= 1.2 else "red"
        table.add_row(r.chip, r.metric, f"{r.reported:.4g}", f"{r.modelled:.4g}", f"[{style}]{r.ratio:.2f}[/]")
    console = _console()
    console.print(table)
    console.print(f"wrote {display_path(out / 'chips.csv')} and {display_path(out / 'chips.html')}")
    return 0


# -- entry point ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cim-dse", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("workload", help="print the layer table of an ONNX model")
    p.add_argument("file", help="ONNX model (weights may be stripped)")
    p.add_argument("--mapping", help="mapping YAML whose precision overrides apply")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_workload)

    p = sub.add_parser("hardware", help="print a summary of an accelerator YAML file and its modelled peak figures")
    p.add_argument("file")
    p.add_argument("--zigzag-compat", action="store_true", help="model with ZigZag-IMC's original arithmetic")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_hardware)

    p = sub.add_parser("mapping", help="check a mapping YAML file against a workload and show what each layer gets")
    p.add_argument("file")
    p.add_argument("--workload", required=True, help="ONNX model")
    p.add_argument("--hardware", help="accelerator YAML (checks unrollings against the array)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_mapping)

    p = sub.add_parser("schema", help="print the documented YAML schema (markdown)")
    p.add_argument("which", choices=("hardware", "mapping"))
    p.add_argument("--output", help="write to this file instead of stdout")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("evaluate", help="map a workload onto an accelerator and report energy, latency and area")
    add_evaluate_arguments(p)

    p = sub.add_parser("validate-chips", help="compare the cost model with the 7 chips' reported figures")
    p.add_argument("--json", action="store_true", help="print one JSON list of rows")
    p.add_argument("--output", default="outputs/validation", help="folder for chips.csv and chips.html")
    p.add_argument("--zigzag-compat", action="store_true", help="use ZigZag-IMC's original arithmetic")
    p.add_argument("--hardware-dir", default=str(HARDWARE_DIR))
    p.set_defaults(func=cmd_validate_chips)

    p = sub.add_parser("overview", help="print the default workload and the shipped accelerators")
    p.add_argument("--workload", default=str(DEFAULT_WORKLOAD))
    p.add_argument("--mapping", help="mapping YAML whose precision overrides apply")
    p.add_argument("--hardware-dir", default=str(HARDWARE_DIR))
    p.set_defaults(func=cmd_overview)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as err:
        print(f"cim-dse: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. piped into `head`
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
