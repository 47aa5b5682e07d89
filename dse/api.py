"""The Python API, ZigZag-style: pass paths or objects, get energy, latency, clock, area and per-layer results.

    from dse.api import get_hardware_performance
    energy_pJ, latency_cycles, clock_ns, area_mm2, result = get_hardware_performance(
        "workloads/resnet18_imagenet.onnx", "hardware/aimc_template.yaml", "mapping/default.yaml", opt="latency")

The first four values are those of ZigZag-IMC's ``get_hardware_performance_zigzag(...,
in_memory_compute=True)``; the fifth is a :class:`dse.cost.network.NetworkCost` with every layer's
energy breakdown, latency split and chosen mapping.

Switching activity: by default every layer is priced at the macro's ``activity`` (hardware YAML) unless the
mapping file has an ``activity`` entry for it. ``evaluate(..., activity="measured")`` measures each layer's input
toggle rate and weight sparsity on a data set (:func:`dse.cost.activity.measure_activity`; the workload must be
the ONNX model with its weights) and prices the layers at those; ``activity={layer: {...}}`` gives them
directly. A mapping-file ``activity`` entry that applies to a layer still wins, field by field.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import onnx

from dse.atomic import write_atomic
from dse.cost.activity import DEFAULT_SAMPLES, activity_overrides, measure_activity
from dse.cost.network import OBJECTIVES, NetworkCost, evaluate_network
from dse.errors import InputError
from dse.hardware import Accelerator, load_accelerator
from dse.mapping import MappingSpec, check_mapping, load_mapping
from dse.workload import Workload, load_onnx

__all__ = ["evaluate", "explore", "get_hardware_performance", "measure_activity", "plot_run", "run_exploration",
           "write_results"]


def _workload(workload: str | Path | Workload | onnx.ModelProto) -> Workload:
    return workload if isinstance(workload, Workload) else load_onnx(workload)


def _accelerator(accelerator: str | Path | Accelerator) -> Accelerator:
    return accelerator if isinstance(accelerator, Accelerator) else load_accelerator(accelerator)


def _mapping(mapping: str | Path | MappingSpec) -> MappingSpec:
    return mapping if isinstance(mapping, MappingSpec) else load_mapping(mapping)


def evaluate(workload, accelerator, mapping, *, opt: str = "latency", zigzag_compat: bool = False,
             progress=None, activity: str | dict | None = None, dataset: str = "digits",
             data_path: str | Path | None = None, activity_samples: int = DEFAULT_SAMPLES) -> NetworkCost:
    """Map and price every compute layer; inputs are paths or the loaded objects.

    ``activity``: None (the macro's defaults), ``"measured"`` (measured on ``activity_samples`` images of
    ``dataset``, read from ``data_path`` unless built in) or ``{layer: {"input_toggle_rate": .., "weight_sparsity":
    ..}}`` (or :class:`~dse.cost.activity.LayerActivity` values). The mapping file's ``activity`` entries win.
    """
    if opt not in OBJECTIVES:
        raise InputError(None, "opt", f"= {opt!r}: expected one of {', '.join(OBJECTIVES)}")
    wl, acc, spec = _workload(workload), _accelerator(accelerator), _mapping(mapping)
    check_mapping(spec, wl, acc)
    wl = wl.with_precisions(spec.precision_of)
    _check_precisions(wl, acc, spec)
    per_layer, label = None, "macro"
    if isinstance(activity, str):
        if activity != "measured":
            raise InputError(None, "activity", f"= {activity!r}: expected 'measured', a per-layer dict or None")
        if not isinstance(workload, str | Path | onnx.ModelProto):
            raise InputError(None, "activity", "= 'measured' needs the ONNX model with its weights",
                             "pass the workload as a path (or a ModelProto), not a loaded Workload")
        measured = measure_activity(workload, wl, acc, dataset=dataset, data_path=data_path,
                                    samples=activity_samples)
        per_layer, label = activity_overrides(measured, wl), f"measured on {dataset} ({activity_samples} samples)"
    elif activity is not None:
        per_layer, label = activity_overrides(activity, wl), "given"
    result = evaluate_network(wl, acc, spec, opt=opt, zigzag_compat=zigzag_compat, progress=progress,
                              activity=per_layer)
    return result if per_layer is None else replace(result, activity=label)


def _check_precisions(wl: Workload, acc: Accelerator, spec: MappingSpec) -> None:
    """A layer whose operands are wider than the macro computes cannot run on it: say which and why."""
    macro = acc.macro
    for layer in wl.layers:
        p = layer.precision
        for operand, bits, limit, field in (("W", p.W, macro.weight_bits, "weight_bits"),
                                             ("I", p.I, macro.input_bits, "input_bits")):
            if bits > limit:
                raise InputError(
                    wl.source or wl.name, f"layer '{layer.name}'",
                    f"{operand} precision {bits} bits exceeds the macro's {field} = {limit} ({acc.name})",
                    f"lower it with a `precision:` entry in {spec.source}, or use a macro with more bits",
                )


def get_hardware_performance(workload, accelerator, mapping, *, opt: str = "latency",
                             dump_folder: str | Path | None = None, zigzag_compat: bool = False,
                             activity: str | dict | None = None, dataset: str = "digits",
                             data_path: str | Path | None = None, activity_samples: int = DEFAULT_SAMPLES):
    """``(energy_pJ, latency_cycles, clock_ns, area_mm2, NetworkCost)``, optionally written to ``dump_folder``;
    ``activity`` and the data-set options as :func:`evaluate`."""
    result = evaluate(workload, accelerator, mapping, opt=opt, zigzag_compat=zigzag_compat, activity=activity,
                      dataset=dataset, data_path=data_path, activity_samples=activity_samples)
    if dump_folder is not None:
        write_results(result, dump_folder)
    return result.energy_pJ, result.latency_cycles, result.clock_ns, result.area_total_mm2, result


def write_results(result: NetworkCost, folder: str | Path) -> list[Path]:
    """summary.json, layers.json (breakdowns and mappings) and layers.csv, each written atomically."""
    import csv
    import io

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    layers = [layer.to_json() for layer in result.layers]
    buf = io.StringIO()
    fields = ["layer", "op", "macs", "energy_pJ", "latency_cycles", "compute_cycles", "stall_cycles",
              "weight_load_cycles", "latency_s", "spatial_utilization", "spatial_mapping", "temporal_order"]
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    for layer, cost in zip(layers, result.layers, strict=True):
        row = {k: layer[k] for k in fields if k in layer}
        row["spatial_mapping"] = cost.counts.spatial.describe()
        row["temporal_order"] = " ".join(f"{d}{s}" for d, s in cost.counts.order)
        writer.writerow(row)
    paths = [out / "summary.json", out / "layers.json", out / "layers.csv"]
    write_atomic(paths[0], json.dumps(result.summary(), indent=2) + "\n")
    write_atomic(paths[1], json.dumps(layers, indent=1) + "\n")
    write_atomic(paths[2], buf.getvalue())
    return paths


# -- design-space exploration ----------------------------------------------------------------
def run_exploration(space, *, output: str | Path | None = None, workers: int | None = None,
                    scheduler: str | None = None, budget: int | None = None, seed: int | None = None,
                    accuracy_fn=None, retry_failed: bool = False, progress: bool = False, plots: bool = True):
    """Explore a design space (a YAML path, plain data or a loaded ``Space``) with this module's cost model.

    Returns a :class:`dse.explore.Exploration` (rows, front, references, stats, the run folder). Results go
    to ``output`` (default outputs/<space name>/); a rerun resumes from there. ``workers``: local processes
    (default the CPU count, 0 = this process); ``scheduler``: a Dask scheduler address (tcp://HOST:PORT)
    instead. ``accuracy_fn``: an accuracy evaluator (default: the bit-wise simulator).
    """
    from dse.explore import load_space, space_from_data
    from dse.explore import run_exploration as run

    if isinstance(space, dict):
        space = space_from_data(space, "<space>")
    elif isinstance(space, str | Path):
        space = load_space(space)
    return run(space, cost_fn=evaluate, accuracy_fn=accuracy_fn, output=output, workers=workers,
               scheduler=scheduler, budget=budget, seed=seed, retry_failed=retry_failed, progress=progress,
               plots=plots)


def explore(space, **kwargs):
    """``run_exploration(...)`` as a pandas DataFrame: one row per design point (parameters, objectives,
    status, on_front, error); ``frame.attrs["run_dir"]`` is the result store."""
    return run_exploration(space, **kwargs).to_frame()


def plot_run(run_dir: str | Path, objectives=None, *, png: bool = False) -> list[Path]:
    """Remake pareto.html (and with ``png``, pareto.png) of a run folder, optionally over other objectives."""
    from dse.explore import replot

    return replot(run_dir, objectives, with_png=png)
