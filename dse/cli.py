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


def peak_summary(acc, *, zigzag_compat: bool = False, measured: bool = False) -> dict:
    """The cost model's peak figures of an accelerator's macros, with their breakdowns.

    ``measured``: in the mode of the chip's reported figures (``reported.conditions``), to compare with them.
    """
    from dse.cost import peak_performance

    macro, tech = acc.measured() if measured else (acc.macro, acc.technology)
    peak = peak_performance(macro, tech, zigzag_compat=zigzag_compat, clock_ns=acc.clock_ns)
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
    "space": ("Design-space YAML schema", "A design-space file (`spaces/*.yaml`, run by `cim-dse explore`) names "
              "one or more base accelerators, a workload, the accelerator fields to vary and their values, "
              "constraints, 2 to 4 objectives and a search strategy. Paths inside it are relative to the file. "
              "The guide with examples, the result store and the plots is docs/explore.md. Unknown fields are "
              "refused."),
    "mapping": ("Mapping YAML schema", "A mapping file (`mapping/*.yaml`) is a list of entries in ZigZag's "
                "format. Each is keyed by `name`: a layer name, an ONNX op type (Conv, Gemm, MatMul...), one of "
                "our op types (conv, dwconv, gemm, matmul) or `default` (required). For each layer every field "
                "comes from the most specific entry that sets it: layer name, ONNX op type, op type, default."),
}


def schema_text(which: str) -> str:
    from dse.schema_docs import schema_markdown

    if which == "hardware":
        from dse.hardware import Accelerator as root
    elif which == "space":
        from dse.explore.space import DesignSpace as root
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
        pk = peak_summary(acc, measured=True)
        table.add_row(
            acc.name, m.kind, f"{m.rows}x{m.columns}x{m.count}", f"{m.weight_bits}/{m.input_bits}",
            str(m.input_bits_per_cycle), str(m.adc_bits or "-"), str(m.cells_per_group),
            f"{acc.technology.node_nm:g} nm/{acc.technology.vdd_V:g} V",
            f"{_fig(r and r.clock_ns)} / {pk['clock_ns']:.4g}", f"{_fig(r and r.area_mm2)} / {pk['area_mm2']:.3g}",
            f"{_fig(r and r.tops_per_w)} / {pk['tops_per_w']:.4g}", r.source if r else "template",
        )
    console.print(table)
    console.print("model = cim-dse's cost model (default mode), peak figures of the macros; "
                  "`cim-dse validate-chips` writes the full comparison; `./run.sh` runs the exploration.")
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

        if args.activity == "measured":
            bar.update(task, description=f"measuring activity on {args.dataset}")
        result = evaluate(args.workload, args.hardware, args.mapping, opt=args.opt,
                          zigzag_compat=args.zigzag_compat, progress=progress,
                          activity=None if args.activity == "macro" else args.activity, dataset=args.dataset,
                          data_path=args.data_path, activity_samples=args.activity_samples)
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
    table.add_row("total", "", f"{result.macs:,}", "", f"{result.utilization:.0%}", f"{result.energy_pJ:.4g}",
                  f"{result.latency_cycles:,.0f}", "")
    console = _console()
    console.print(table)
    console.print(f"energy {result.energy_pJ:.4g} pJ, latency {result.latency_cycles:,.0f} cycles x "
                  f"{result.clock_ns:.4g} ns = {result.latency_s * 1e3:.4g} ms, area {result.area_total_mm2:.4g} mm2")
    if result.activity != "macro":
        console.print(f"switching activity {result.activity} (mapping-file activity entries win; per layer in "
                      "layers.json)")
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
    p.add_argument("--activity", choices=("macro", "measured"), default="macro",
                   help="switching activity: the macro's defaults, or measured per layer on --dataset (needs the "
                   "model's weights); mapping-file activity entries win either way")
    p.add_argument("--dataset", default="digits", help="data set of --activity measured: digits (built in), "
                   "cifar10, cifar100 or imagenet")
    p.add_argument("--data-path", help="folder of the data set (CIFAR python layout; ImageNet class folders)")
    p.add_argument("--activity-samples", type=int, default=256, help="test images --activity measured runs "
                   "(a seeded subset; default 256)")
    p.set_defaults(func=cmd_evaluate)


# -- activity -------------------------------------------------------------------------------
def cmd_activity(args: argparse.Namespace) -> int:
    from dse.cost.activity import measure_activity
    from dse.hardware import load_accelerator

    acc = load_accelerator(args.hardware)
    workload = _load_workload(args.workload, args.mapping)
    with Console(stderr=True).status(f"measuring activity on {args.dataset}"):
        measured = measure_activity(args.workload, workload, acc, dataset=args.dataset, data_path=args.data_path,
                                    samples=args.samples, seed=args.seed)
    if args.json:
        _print_json([row.to_json() for row in measured.values()])
        return 0
    m = acc.macro
    title = (f"{workload.name} on {acc.name}, {args.dataset} (up to {args.samples} test images): W{m.weight_bits} "
             f"planes, I{m.input_bits} in slices of {m.input_bits_per_cycle} bit(s)")
    table = Table(title=title, title_justify="left")
    for col in ("layer", "stored", "W/I bits", "weight sparsity", "input toggle rate", "input density", "vectors"):
        table.add_column(col, justify="left" if col in ("layer", "stored") else "right")
    for row in measured.values():
        table.add_row(row.layer, row.stored, f"{row.weight_bits}/{row.input_bits}", f"{row.weight_sparsity:.4f}",
                      f"{row.input_toggle_rate:.4f}", f"{row.input_density:.4f}", f"{row.vectors:,}")
    table.add_section()
    a = m.activity
    table.add_row("macro default", "", "", f"{a.weight_sparsity:.4f}", f"{a.input_toggle_rate:.4f}", "", "")
    console = _console()
    console.print(table)
    console.print("weight sparsity = 0 bits / stored two's-complement bits; toggle rate = changed bits between "
                  "consecutive input slices on a row; density = 1 bits / input bits. Price with them: "
                  "cim-dse evaluate ... --activity measured")
    return 0


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


# -- accuracy: simulate, train ------------------------------------------------------------
def parse_overrides(items: Sequence[str] | None) -> dict[str, dict[str, object]]:
    """``PATTERN:FIELD=VALUE`` strings (values read as YAML scalars) -> per-layer CimConfig overrides."""
    import yaml

    out: dict[str, dict[str, object]] = {}
    for item in items or ():
        pattern, sep, assignment = item.rpartition(":")
        field, eq, value = assignment.partition("=")
        if not sep or not eq or not field:
            raise InputError(None, "--override", f"= {item!r}: expected LAYER_PATTERN:FIELD=VALUE",
                             "e.g. '/conv2/Conv:adc_bits=4' or '*:noise_sigma_pct=1'")
        out.setdefault(pattern, {})[field.strip()] = yaml.safe_load(value)
    return out


def _add_accuracy_arguments(p: argparse.ArgumentParser, hardware: str = "aimc_template.yaml",
                            digital: Sequence[str] = ("first", "last")) -> None:
    p.add_argument("--workload", default=str(REPO_ROOT / "workloads" / "digits_cnn.onnx"),
                   help="ONNX model with weights (default: the digits CNN)")
    p.add_argument("--hardware", default=str(HARDWARE_DIR / hardware), help=f"accelerator YAML (default: {hardware})")
    p.add_argument("--dataset", default="digits", help="digits (built in), cifar10, cifar100 or imagenet")
    p.add_argument("--data-path", help="folder of the data set (CIFAR python layout; ImageNet class folders)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--override", action="append", metavar="LAYER:FIELD=VALUE",
                   help="per-layer CiM setting, e.g. '/conv2/Conv:adc_bits=4' (repeatable; fnmatch patterns)")
    p.add_argument("--digital", nargs="*", default=list(digital),
                   help="layers computed exactly off the array: first, last and/or name patterns "
                   f"(default: {' '.join(digital) or 'none'})")
    p.add_argument("--per-channel", action="store_true", help="per-output-channel weight scales")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _bar(description: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=True)


def cmd_simulate(args: argparse.Namespace) -> int:
    from dse.accuracy.simulate import simulate_accuracy
    from dse.atomic import write_atomic

    with _bar("simulating") as bar:
        task = bar.add_task("simulate", total=None)
        result = simulate_accuracy(
            args.workload, args.hardware, dataset=args.dataset, data_path=args.data_path, samples=args.samples,
            repeats=args.repeats, seed=args.seed, overrides=parse_overrides(args.override),
            checkpoint=args.checkpoint, digital=args.digital, semantics=args.semantics,
            per_channel=args.per_channel, batch_size=args.batch_size, device=args.device,
            progress=lambda done, total: bar.update(task, completed=done, total=total), layer_errors=args.layer_errors)
    from dse.accuracy.core_fused import simulator_kernel

    full = {"workload": args.workload, "hardware": args.hardware, **result.to_dict(),
            "kernel": simulator_kernel() if args.device == "cpu" else "torch"}  # noise streams differ by kernel
    if args.output:
        write_atomic(Path(args.output) / "accuracy.json", json.dumps(full, indent=2) + "\n")
    if args.json:
        keys = ("accuracy", "accuracy_std", "float_accuracy", "samples") + (("layers",) if args.layer_errors else ())
        _print_json({k: full.get(k, []) for k in keys})
        return 0
    console = _console()
    spread = f" +- {result.accuracy_std:.2%} over {result.repeats} noise instances" if result.repeats > 1 else ""
    console.print(f"{Path(args.workload).name} on {Path(args.hardware).name}, {result.dataset} "
                  f"({result.samples} test images): CiM accuracy {result.accuracy:.2%}{spread}, "
                  f"float {result.float_accuracy:.2%}")
    if args.layer_errors:
        console.print(_layer_error_table(result.layers))
    if args.output:
        console.print(f"wrote {display_path(Path(args.output) / 'accuracy.json')}")
    return 0


def _layer_error_table(layers: Sequence[dict]) -> Table:
    """The per-layer errors of ``simulate --layer-errors`` (integer units: input code x weight code)."""
    table = Table(title="CiM layers against the exact integer result (on the simulated network's own inputs)",
                  title_justify="left")
    for col in ("layer", "outputs", "RMS output", "RMSE", "relative RMSE", "SQNR (dB)", "mean error"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for e in layers:
        rel = "-" if e["relative_rmse"] is None else f"{e['relative_rmse']:.2%}"
        sqnr = "exact" if e["sqnr_db"] is None and e["rmse"] == 0 else (
            "-" if e["sqnr_db"] is None else f"{e['sqnr_db']:.1f}")
        table.add_row(e["layer"], f"{e['outputs']:,}", f"{e['rms_output']:.4g}", f"{e['rmse']:.4g}", rel, sqnr,
                      f"{e['mean_error']:+.3g}")
    return table


def cmd_train(args: argparse.Namespace) -> int:
    from dse.accuracy.train import train
    from dse.atomic import write_atomic

    out = Path(args.output) if args.output else (
        Path("outputs") / f"train-{Path(args.hardware).stem}-{Path(args.workload).stem}")
    console = _console()
    with _bar("training") as bar:
        epochs = bar.add_task("epochs", total=args.epochs)
        batches = bar.add_task("batches", total=None)

        def on_epoch(epoch: int, total: int, loss: float, acc: float) -> None:
            bar.update(epochs, completed=epoch)
            bar.console.print(f"epoch {epoch}/{total}: loss {loss:.4f}, test accuracy (exact integer) {acc:.2%}")

        result = train(
            args.workload, args.hardware, dataset=args.dataset, data_path=args.data_path, epochs=args.epochs,
            lr=args.lr, batch_size=args.batch_size, seed=args.seed, trim_noise=args.trim_noise,
            macro_noise=args.macro_noise, pact=args.pact, per_channel=args.per_channel,
            overrides=parse_overrides(args.override), digital=args.digital, output=out, device=args.device,
            on_epoch=on_epoch, on_batch=lambda i, n: bar.update(batches, completed=i, total=n))
    summary = {"workload": args.workload, "hardware": args.hardware, "dataset": args.dataset,
               "checkpoint": str(result.checkpoint), "test_accuracy": result.test_accuracy,
               "history": list(result.history)}
    write_atomic(out / "results.json", json.dumps(summary, indent=2) + "\n")
    if args.json:
        _print_json(summary)
        return 0
    console.print(f"trained {len(result.history)} epochs: test accuracy {result.test_accuracy:.2%} (exact integer "
                  f"arithmetic); checkpoint {display_path(out / 'last.pt')}")
    console.print(f"simulate it: cim-dse simulate --workload {display_path(args.workload)} "
                  f"--hardware {display_path(args.hardware)} "
                  f"--checkpoint {display_path(out / 'last.pt')}")
    return 0


# -- write-verify (SWIM) -------------------------------------------------------------------
def _csv_list(text: str, cast, option: str) -> list:
    try:
        return [cast(item.strip()) for item in text.split(",") if item.strip()]
    except ValueError:
        raise InputError(None, option, f"= {text!r}: expected a comma-separated list") from None


def cmd_write_verify(args: argparse.Namespace) -> int:
    from dse.accuracy.write_verify import csv_text, page_html, write_verify_sweep
    from dse.atomic import write_atomic
    from dse.cost.programming import program_energy_pJ, program_time_s

    fractions = _csv_list(args.fractions, float, "--fractions")
    methods = _csv_list(args.methods, str, "--methods")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = Path(args.output) if args.output else (
        Path("outputs") / f"write-verify-{Path(args.hardware).stem}-{Path(args.workload).stem}")
    with _bar("write-verify") as bar:
        task = bar.add_task("chips", total=None)
        sweep = write_verify_sweep(
            args.workload, args.hardware, dataset=args.dataset, data_path=args.data_path, fractions=fractions,
            methods=methods, instances=args.instances, seed=args.seed, dev_var=args.dev_var,
            write_var=args.write_var, digital=args.digital, overrides=parse_overrides(args.override),
            samples=args.samples, estimator=args.estimator, simulate=args.simulate, per_channel=args.per_channel,
            device=args.device, progress=lambda done, total: bar.update(task, completed=done, total=total))
    var = sweep.variation
    rows = [{**p.to_dict(), "program_energy_pJ": program_energy_pJ(var, p.verified),
             "program_time_s": program_time_s(var, p.verified)} for p in sweep.points]
    name = f"{Path(args.workload).stem} on {Path(args.hardware).stem}"
    title = (f"Selective write-verify: {name}, dev_var {var.dev_var:g}, write_var {var.write_var:g}, "
             f"{var.bits_per_device} bit(s)/device, {args.instances} chips")
    notes = [f"{sweep.weights:,} weights in NVM; float accuracy {sweep.float_accuracy:.2%}, quantised without "
             f"variation {sweep.quantized_accuracy:.2%} ({sweep.settings['samples']} {args.dataset} test images).",
             f"Write-verify cost per weight: {var.write_verify_energy_pJ:g} pJ, {var.write_verify_time_ns:g} ns "
             f"(from {Path(args.hardware).name}); the programming cost is the verified count times these.",
             f"Error bars: std over {args.instances} chip instances (seeds {args.seed}.."
             f"{args.seed + args.instances - 1}), the same chips for every point."]
    write_atomic(out / "write_verify.csv", csv_text(rows))
    write_atomic(out / "write_verify.html", page_html(rows, title, notes))
    summary = {"workload": args.workload, "hardware": args.hardware, "weights": sweep.weights,
               "float_accuracy": sweep.float_accuracy, "quantized_accuracy": sweep.quantized_accuracy,
               "settings": sweep.settings, "points": rows,
               "files": [str(out / "write_verify.csv"), str(out / "write_verify.html"), str(out / "write_verify.json")]}
    write_atomic(out / "write_verify.json", json.dumps(summary, indent=2) + "\n")
    if args.json:
        _print_json(summary)
        return 0
    console = _console()
    table = Table(title=title)
    for col in ("method", "fraction", "verified", "accuracy", "energy (µJ)", "time (s)"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in rows:
        table.add_row(r["method"], f"{r['fraction']:g}", f"{r['verified']:,}",
                      f"{r['accuracy']:.2%} ± {r['accuracy_std']:.2%}", f"{r['program_energy_pJ'] * 1e-6:.4g}",
                      f"{r['program_time_s']:.4g}")
    console.print(table)
    console.print(notes[0])
    console.print(f"wrote {display_path(out / 'write_verify.csv')}, {display_path(out / 'write_verify.html')} and "
                  f"{display_path(out / 'write_verify.json')}")
    return 0


# -- PAC: MAC-level error study -----------------------------------------------------------
def _density_pairs(text: str) -> tuple[tuple[float, float], ...]:
    pairs = []
    for item in _csv_list(text, str, "--densities"):
        try:
            w, x = (float(v) for v in item.split("/"))
        except ValueError:
            w = x = -1.0
        if not (0.0 <= w <= 1.0 and 0.0 <= x <= 1.0):
            raise InputError(None, "--densities", f"= {item!r}: expected WEIGHT/INPUT bit densities in [0, 1]",
                             "e.g. 0.30/0.15,0.50/0.25")
        pairs.append((w, x))
    if not pairs:
        raise InputError(None, "--densities", "is empty", "e.g. 0.30/0.15,0.50/0.25")
    return tuple(pairs)


def cmd_mac_experiment(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from dse.accuracy.mac_experiment import MacSettings, csv_text, page_html, run_mac_experiment
    from dse.atomic import write_atomic

    densities = _density_pairs(args.densities)
    try:
        settings = MacSettings(rows=args.rows, densities=densities, trials=args.trials,
                               bits=args.bits, operand=args.operand, seed=args.seed, mac_trials=args.mac_trials)
    except ValueError as err:
        raise InputError(None, "mac-experiment", str(err)) from None
    out = Path(args.output)
    with _bar("mac-experiment") as bar:
        task = bar.add_task("chunks", total=None)
        results = run_mac_experiment(settings, lambda done, total: bar.update(task, completed=done, total=total))
    mac_trials = settings.mac_trials or settings.trials
    notes = [f"AND-popcount: a weight plane with floor(S(w) x {settings.rows}) ones and an input plane with "
             f"floor(S(x) x {settings.rows}) ones at random positions, {settings.trials:,} trials; PAC assumes the "
             "mean k_w k_x / rows.",
             f"MAC error: {settings.bits}-bit unsigned operands whose bits are independent with the given densities, "
             f"{mac_trials:,} trials; PAC computes the {settings.operand}x{settings.operand} MSB cycles exactly and "
             "the others as popcount products; drop LSB computes the same MSB cycles only. Relative RMSE = RMSE / "
             f"mean exact MAC. Seed {settings.seed}."]
    files = [out / "mac_experiment.csv", out / "mac_experiment.json", out / "mac_experiment.html"]
    summary = {"settings": {**asdict(settings), "densities": [list(p) for p in settings.densities],
                            "mac_trials": mac_trials},
               "pairs": [r.to_dict() for r in results], "files": [str(f) for f in files]}
    write_atomic(files[0], csv_text(results))
    write_atomic(files[1], json.dumps(summary, indent=2) + "\n")
    write_atomic(files[2], page_html(results, settings, notes))
    if args.json:
        _print_json({**summary, "pairs": [{k: v for k, v in r.to_dict().items() if k != "histogram"}
                                          for r in results]})
        return 0
    console = _console()
    table = Table(title=f"PAC MAC error: {settings.rows} rows, {settings.bits}b x {settings.bits}b, "
                  f"p = {settings.operand}")
    for col in ("S(w)/S(x)", "AND mean", "std", "min..max", "PAC rel. RMSE", "drop-LSB rel. RMSE", "ratio"):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(f"{r.density_w:g}/{r.density_x:g}", f"{r.and_mean:.2f} ({r.and_expected:.2f})",
                      f"{r.and_std:.2f}", f"{r.and_min}..{r.and_max}", f"{r.pac_rel_rmse:.3%}",
                      f"{r.drop_rel_rmse:.3%}", f"{r.rmse_ratio:.1f}x")
    console.print(table)
    console.print(f"wrote {', '.join(display_path(f) for f in files)}")
    return 0


# -- explore and plot ----------------------------------------------------------------------
def cmd_explore(args: argparse.Namespace) -> int:
    import signal

    from dse.api import run_exploration

    def stop(signum, frame):  # kill (SIGTERM) stops like Ctrl-C: the store stays consistent
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        result = run_exploration(args.space, output=args.output, workers=args.workers, scheduler=args.scheduler,
                                 budget=args.budget, seed=args.seed, retry_failed=args.retry_failed,
                                 progress=not args.json)
    except KeyboardInterrupt:
        print("cim-dse: interrupted; every finished point is stored: rerun the same command to resume",
              file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    totals: dict[str, int] = {}
    for row in result.rows:
        totals[row["status"]] = totals.get(row["status"], 0) + 1
    if args.json:
        _print_json({"run_dir": str(result.run_dir), "strategy": result.strategy, "objectives": list(result.objectives),
                     "points": len(result.rows), "totals": totals, "pareto": result.front, "stats": result.stats,
                     "notes": result.notes, "files": [str(p) for p in result.files]})
        return 0
    console = _console()
    console.print(explore_table(result))
    s = result.stats
    console.print(
        f"{len(result.rows)} points ({', '.join(f'{n} {k}' for k, n in totals.items())}), {len(result.front)} on the "
        f"front; {result.strategy}; this run: {s['computed']} computed, {s['reused']} from the store, "
        f"{s['accuracy_runs']} accuracy simulations, {s['wall_s']:.1f} s")
    for note in result.notes:
        console.print(f"note: {note}")
    console.print(f"wrote {', '.join(display_path(p) for p in result.files)}")
    return 0


def explore_table(result, limit: int = 25) -> Table:
    """The Pareto front, sorted by the first objective."""
    from dse.explore import OBJECTIVES

    objectives = [OBJECTIVES[o] for o in result.objectives]
    front = sorted(result.front, key=lambda r: r[objectives[0].column] * (1 if objectives[0].direction == "min"
                                                                          else -1))
    params = [c for c in _param_columns(result) if any(r.get(c) is not None for r in front)]
    table = Table(title=f"Pareto front ({len(front)} points) over "
                  + ", ".join(f"{o.name} ({o.direction})" for o in objectives), title_justify="left")
    for col in (*params, *(o.label for o in objectives)):
        table.add_column(col, justify="right")
    for row in front[:limit]:
        table.add_row(*(_cell(row.get(c)) for c in params), *(_cell(row.get(o.column)) for o in objectives))
    if len(front) > limit:
        table.add_row(*["..."] * (len(params) + len(objectives)))
    return table


def _param_columns(result) -> list[str]:
    from dse.explore.objectives import ACCURACY_METRICS, COST_METRICS
    from dse.explore.results import LEAD, TIMES

    skip = set(LEAD) | set(TIMES) | set(COST_METRICS) | set(ACCURACY_METRICS)
    return [c for c in result.columns if c not in skip]


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def cmd_plot(args: argparse.Namespace) -> int:
    from dse.api import plot_run

    objectives = [o.strip() for o in args.objectives.split(",")] if args.objectives else None
    paths = plot_run(args.run_dir, objectives, png=args.png)
    print(f"wrote {', '.join(display_path(p) for p in paths)}")
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
    p.add_argument("which", choices=("hardware", "mapping", "space"))
    p.add_argument("--output", help="write to this file instead of stdout")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("evaluate", help="map a workload onto an accelerator and report energy, latency and area")
    add_evaluate_arguments(p)

    p = sub.add_parser("activity", help="measure each layer's weight sparsity, input toggle rate and input density "
                       "on a data set")
    p.add_argument("workload", help="ONNX model with weights")
    p.add_argument("hardware", help="accelerator YAML (weight_bits, input_bits, input_bits_per_cycle)")
    p.add_argument("--mapping", help="mapping YAML whose precision overrides apply")
    p.add_argument("--dataset", default="digits", help="digits (built in), cifar10, cifar100 or imagenet")
    p.add_argument("--data-path", help="folder of the data set (CIFAR python layout; ImageNet class folders)")
    p.add_argument("--samples", type=int, default=256, help="test images the network runs (a seeded subset; "
                   "default 256)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON list of rows")
    p.set_defaults(func=cmd_activity)

    p = sub.add_parser("validate-chips", help="compare the cost model with the 7 chips' reported figures")
    p.add_argument("--json", action="store_true", help="print one JSON list of rows")
    p.add_argument("--output", default="outputs/validation", help="folder for chips.csv and chips.html")
    p.add_argument("--zigzag-compat", action="store_true", help="use ZigZag-IMC's original arithmetic")
    p.add_argument("--hardware-dir", default=str(HARDWARE_DIR))
    p.set_defaults(func=cmd_validate_chips)

    p = sub.add_parser("simulate", help="bit-wise CiM simulation: inference accuracy of a model on a macro")
    _add_accuracy_arguments(p)
    p.add_argument("--checkpoint", help="weights and calibrated clips from `cim-dse train`")
    p.add_argument("--samples", type=int, help="test images (a seeded subset; default all)")
    p.add_argument("--repeats", type=int, default=1, help="noise instances (chips) to average over")
    p.add_argument("--semantics", choices=("default", "asim"), default="default",
                   help="asim = ASiM's arithmetic exactly; default = the same physics with its faults fixed")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--output", help="folder for accuracy.json")
    p.add_argument("--layer-errors", action="store_true",
                   help="also measure each CiM layer's output error against the exact integer result (SQNR, "
                        "relative RMSE): which layer loses the accuracy")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("train", help="quantisation- and noise-aware training for a macro")
    _add_accuracy_arguments(p)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--trim-noise", type=float, default=0.0,
                   help="ASiM's noise-aware training: outputs times 1 + N(0, (x/100)^2)")
    p.add_argument("--macro-noise", action="store_true", help="train through the macro's own ADC and noise model")
    p.add_argument("--pact", action="store_true", help="learnable activation clipping (PACT)")
    p.add_argument("--output", help="folder for last.pt and results.json (default outputs/train-<hw>-<workload>/)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("write-verify", help="NVM device variation: accuracy vs fraction of weights write-verified "
                       "(SWIM) and its programming cost")
    _add_accuracy_arguments(p, hardware="nvm_template.yaml", digital=())
    p.add_argument("--fractions", default="0,0.01,0.02,0.05,0.1,0.2,0.5,1",
                   help="fractions of the weights to write-verify, comma-separated")
    p.add_argument("--methods", default="sm,magnitude,random",
                   help="selections, comma-separated: sm (SWIM), second, saliency, magnitude, random")
    p.add_argument("--instances", type=int, default=20, help="chip instances (noise draws) per point")
    p.add_argument("--dev-var", type=float, help="sigma / max|W| of an unverified device (default: the YAML's)")
    p.add_argument("--write-var", type=float, help="sigma / max|W| of a verified device (default: the YAML's)")
    p.add_argument("--samples", type=int, help="test images (a seeded subset; default all)")
    p.add_argument("--estimator", choices=("fisher", "hutchinson"), default="fisher",
                   help="curvature: sampled Fisher = Gauss-Newton diagonal (default), or Hutchinson Hessian diagonal")
    p.add_argument("--simulate", action="store_true", help="run the bit-wise macro (ADC, noise) instead of exact "
                   "integer arithmetic (much slower)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice; 1 is fastest for small "
                   "models on a busy machine)")
    p.add_argument("--output", help="folder for write_verify.csv/.html/.json (default outputs/write-verify-<hw>-<wl>/)")
    p.set_defaults(func=cmd_write_verify)

    p = sub.add_parser("mac-experiment", help="PAC's MAC-level error on one column: AND-popcount statistics and the "
                       "RMSE of PAC vs dropping the LSB cycles, with a plot")
    p.add_argument("--rows", type=int, default=1024, help="rows of the column (default 1024)")
    p.add_argument("--densities", default="0.30/0.15,0.50/0.25,0.70/0.30",
                   help="WEIGHT/INPUT bit densities, comma-separated (default: the anchor's three pairs)")
    p.add_argument("--trials", type=int, default=100_000,
                   help="AND-popcount trials per density pair (default 100000, as the anchor)")
    p.add_argument("--mac-trials", type=int, default=20_000,
                   help="trials of the multi-bit MAC error per density pair (default 20000: RMSE to about 0.5%%)")
    p.add_argument("--bits", type=int, default=8, help="bits of the weights and inputs of the MAC error (default 8)")
    p.add_argument("--operand", type=int, default=4, help="PAC operand p: the p x p MSB cycles exact (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default="outputs/mac-experiment",
                   help="folder for mac_experiment.csv/.json/.html (default outputs/mac-experiment/)")
    p.add_argument("--json", action="store_true", help="print one JSON object (without the histograms)")
    p.set_defaults(func=cmd_mac_experiment)

    p = sub.add_parser("explore", help="explore a design space: cost and accuracy of each point, Pareto front, plots")
    p.add_argument("space", help="design-space YAML (docs/space.md), e.g. spaces/demo.yaml")
    p.add_argument("--output", help="result folder (default outputs/<space name>/); rerunning resumes from it")
    p.add_argument("--workers", type=int, help="local worker processes (default: the CPU count; 0 = this process)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="run on this Dask scheduler's workers instead")
    p.add_argument("--budget", type=int, help="distinct points the nsga2 search evaluates (overrides strategy.budget)")
    p.add_argument("--seed", type=int, help="seed of the search (overrides strategy.seed)")
    p.add_argument("--retry-failed", action="store_true", help="evaluate again the points stored as failed")
    p.add_argument("--json", action="store_true", help="print one JSON object (the front, totals, files)")
    p.set_defaults(func=cmd_explore)

    p = sub.add_parser("plot", help="remake pareto.html and pareto.png of an exploration's result folder")
    p.add_argument("run_dir", help="folder written by `cim-dse explore` (outputs/<run>/)")
    p.add_argument("--objectives", help="comma-separated objectives for the front and plots (default: the run's)")
    p.add_argument("--png", action="store_true", help="also write pareto.png (every pair of objectives, static)")
    p.set_defaults(func=cmd_plot)

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
