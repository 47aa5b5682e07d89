"""Record ZigZag-IMC's own per-layer results on its example inputs (ResNet-18 on the AIMC / DIMC templates).

Runs ``zigzag.api.get_hardware_performance_zigzag(..., opt="latency", in_memory_compute=True)`` from
zigzag-dse 3.9.1 on the peer copies of ZigZag's example inputs, times it, and writes
``benchmarks/zigzag_reference_<variant>.json`` with the network totals (checked against the expected
values), the machine load, and per layer: loop sizes, the chosen spatial and temporal mapping, energy with
its breakdowns, memory word accesses, the latency terms and utilisations, plus the spatial-mapping
candidates ZigZag evaluated for that layer.

ZigZag is NOT a dependency of this project. Run this with a throwaway venv, e.g.::

    python3 -m venv /tmp/zzvenv && /tmp/zzvenv/bin/pip install zigzag-dse==3.9.1 six
    /tmp/zzvenv/bin/python benchmarks/zigzag_reference.py aimc

The module imports nothing from zigzag at import time, so linting/importing it needs only the stdlib.
"""

from __future__ import annotations

import argparse
import enum
import hashlib
import json
import logging
import math
import os
import platform
import resource
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_PEER_DIR = Path("/work/shared/peers/zigzag-dse-3.9.1")
VARIANTS = ("aimc", "dimc")
ZIGZAG_VERSION_EXPECTED = "3.9.1"

# Network totals ZigZag 3.9.1 gives on these inputs (its own tests expect the same numbers).
# ``tol`` is half a unit of the last digit quoted, i.e. "equal to the quoted precision".
EXPECTED: dict[str, dict[str, dict[str, float]]] = {
    "aimc": {
        "energy_pJ": {"value": 4.695729577e9, "tol": 0.5},
        "latency_cycles": {"value": 5050846, "tol": 0.0},
        "clock_ns": {"value": 14.07244, "tol": 5e-6},
        "area_mm2": {"value": 2.28781, "tol": 5e-6},
    },
    "dimc": {
        "energy_pJ": {"value": 4.726170713e9, "tol": 0.5},
        "latency_cycles": {"value": 5681000, "tol": 0.0},
        "clock_ns": {"value": 3.75708, "tol": 5e-6},
        "area_mm2": {"value": 0.80181, "tol": 5e-6},
    },
}

# Scalar per-layer CME attributes copied as they are.
LAYER_SCALARS = (
    "energy_total",
    "mac_energy",
    "mem_energy",
    "latency_total0",
    "latency_total1",
    "latency_total2",
    "ideal_cycle",
    "ideal_temporal_cycle",
    "stall_slack_comb",
    "data_onloading_cycle",
    "data_offloading_cycle",
    "systolic_drain_cycle",
    "mac_spatial_utilization",
    "mac_utilization0",
    "mac_utilization1",
    "mac_utilization2",
    "cycles_per_op",
    "tclk",
    "area_total",
    "imc_area",
    "mem_area",
    "loading_offloading_cycles_borrowed_from_computation",
    "loading_offloading_bandwidth_borrowed_from_computation",
)

# Dict-valued CME attributes copied through the generic converter (keys are operands or port names).
LAYER_DICTS = (
    "mac_energy_breakdown",
    "tclk_breakdown",
    "imc_area_breakdown",
    "mem_area_breakdown",
    "data_loading_cc_per_op",
    "data_offloading_cc_per_op",
    "data_loading_cc_pair_combined_per_op",
    "data_loading_individual_part",
    "data_loading_half_shared_part",
    "data_loading_shared_part",
    "data_offloading_cc_pair_combined",
)

# Per operand, per memory level (list) CME attributes: re-keyed by memory name.
LAYER_PER_LEVEL = (
    "memory_word_access",
    "mem_energy_breakdown",
    "mem_energy_breakdown_further",
    "mem_utili_shared",
    "mem_utili_individual",
    "effective_mem_utili_shared",
    "effective_mem_utili_individual",
    "allowed_mem_update_cycle",
    "real_data_trans_cycle",
)

# Per memory level of the whole hierarchy (list indexed like ``mem_level_list``), keyed by port name.
LAYER_PER_MEMORY = ("mem_updating_window_union_collect", "stall_slack_comb_collect")

# Scalar/dict attributes of the (shared) IMC array object.
IMC_ARRAY_ATTRS = (
    "dimension_sizes",
    "is_aimc",
    "bit_serial_precision",
    "adc_resolution",
    "activation_precision",
    "weight_precision",
    "total_unit_count",
    "wordline_dim_size",
    "bitline_dim_size",
    "nb_of_banks",
    "cells_size",
    "cells_area",
    "cells_w_cost",
    "energy",
    "energy_breakdown",
    "area",
    "area_breakdown",
    "delay",
    "delay_breakdown",
    "tclk",
    "tclk_breakdown",
    "tops_peak",
    "topsw_peak",
    "topsmm2_peak",
    "tech_param",
)


# --------------------------------------------------------------------------------------------------------------
# plain-JSON conversion


def plain(obj: Any, _depth: int = 0) -> Any:
    """Convert ZigZag / numpy objects into plain JSON types (dict keys become str)."""
    if _depth > 40:
        return str(obj)
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, enum.Enum):
        return plain(obj.value, _depth + 1)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if type(obj).__module__.startswith("numpy"):
        if hasattr(obj, "tolist"):
            return plain(obj.tolist(), _depth + 1)
        if hasattr(obj, "item"):
            return plain(obj.item(), _depth + 1)
    if isinstance(obj, dict):
        return {key_str(k): plain(v, _depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v, _depth + 1) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((plain(v, _depth + 1) for v in obj), key=str)
    data = getattr(obj, "data", None)
    if isinstance(data, dict):
        return plain(data, _depth + 1)
    get_data = getattr(obj, "get_data", None)
    if callable(get_data):
        try:
            return plain(get_data(), _depth + 1)
        except Exception:  # noqa: BLE001 - best effort, fall back to str
            pass
    return str(obj)


def key_str(key: Any) -> str:
    if isinstance(key, enum.Enum):
        return str(key.value)
    name = getattr(key, "name", None)
    if isinstance(name, str):
        return name
    return str(key)


def loops(level_loops: Any) -> list[list[Any]]:
    """[(LayerDim, size), ...] -> [["K", 4], ...]."""
    return [[key_str(dim), plain(size)] for dim, size in level_loops]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, allow_nan=False)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------------------------------------------
# search instrumentation (pure pass-through: records what ZigZag evaluates, changes nothing)


class SearchRecorder:
    def __init__(self) -> None:
        self.n_cost_model_calls = 0
        self.candidates: dict[str, list[dict[str, Any]]] = {}


def install_instrumentation(recorder: SearchRecorder) -> None:
    """Wrap the spatial-mapping generator and the cost-model stage that ``zigzag.api`` wires together."""
    import zigzag.api as zz_api

    base_smg = zz_api.SpatialMappingGeneratorStage
    base_cm = zz_api.CostModelStage

    class RecordingCostModelStage(base_cm):  # type: ignore[misc, valid-type]
        def run(self):  # noqa: D102
            recorder.n_cost_model_calls += 1
            yield from super().run()

    class RecordingSpatialMappingGeneratorStage(base_smg):  # type: ignore[misc, valid-type]
        def run(self):  # noqa: D102
            layer_name = str(self.layer.name)
            t0 = time.perf_counter()
            n0 = recorder.n_cost_model_calls
            for cme, extra in super().run():
                generated = extra[0] if isinstance(extra, tuple) and extra else None
                t1 = time.perf_counter()
                recorder.candidates.setdefault(layer_name, []).append(
                    {
                        "spatial_mapping": plain(generated),
                        "spatial_mapping_str": str(generated),
                        "energy_total": plain(cme.energy_total),
                        "latency_total2": plain(cme.latency_total2),
                        "mac_spatial_utilization": plain(getattr(cme, "mac_spatial_utilization", None)),
                        "temporal_mappings_evaluated": recorder.n_cost_model_calls - n0,
                        "search_s": round(t1 - t0, 3),
                    }
                )
                t0, n0 = t1, recorder.n_cost_model_calls
                yield cme, extra

    zz_api.SpatialMappingGeneratorStage = RecordingSpatialMappingGeneratorStage
    zz_api.CostModelStage = RecordingCostModelStage


class LoadSampler(threading.Thread):
    """Samples os.getloadavg() every ``period`` seconds while the run is going."""

    def __init__(self, period: float = 15.0) -> None:
        super().__init__(daemon=True)
        self.period = period
        self.samples: list[float] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.period):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


# --------------------------------------------------------------------------------------------------------------
# extraction


def parse_loop_ordering(path: Path) -> dict[str, str]:
    """Split ZigZag's loop_ordering.txt into one text block per layer name."""
    if not path.exists():
        return {}
    blocks: dict[str, str] = {}
    current: list[str] | None = None
    name = ""
    for line in path.read_text().splitlines():
        if line.startswith("Loop ordering for "):
            if current is not None:
                blocks[name] = "\n".join(current).rstrip()
            name = line[len("Loop ordering for ") :].split(";")[0].strip()
            current = [line]
        elif current is not None:
            current.append(line)
    if current is not None:
        blocks[name] = "\n".join(current).rstrip()
    return blocks


def mem_names_per_layer_op(cme: Any) -> dict[str, list[str]]:
    """Memory names (innermost first) per layer operand, from this layer's (pruned) accelerator."""
    out: dict[str, list[str]] = {}
    links = cme.memory_operand_links
    for layer_op in cme.layer.layer_operands:
        mem_op = links.layer_to_mem_op(layer_op)
        levels = cme.accelerator.mem_hierarchy_dict[mem_op]
        out[key_str(layer_op)] = [lvl.name for lvl in levels]
    return out


def per_level(values: Any, names: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """{op: [v_lvl0, v_lvl1, ...]} -> {op: {mem_name: v}} (falls back to 'L<i>' beyond the known names)."""
    out: dict[str, dict[str, Any]] = {}
    for op, vals in dict(values).items():
        op_s = key_str(op)
        lvl_names = names.get(op_s, [])
        out[op_s] = {(lvl_names[i] if i < len(lvl_names) else f"L{i}"): plain(v) for i, v in enumerate(list(vals))}
    return out


def extract_layer(cme: Any, loop_text: dict[str, str], candidates: list[dict[str, Any]], skipped: list[str]) -> dict:
    layer = cme.layer
    rec: dict[str, Any] = {}

    def grab(key: str, fn: Any) -> None:
        try:
            rec[key] = fn()
        except Exception as exc:  # noqa: BLE001 - record and continue
            skipped.append(f"{getattr(layer, 'name', '?')}: {key}: {type(exc).__name__}: {exc}")

    grab("id", lambda: plain(layer.id))
    grab("name", lambda: str(layer.name))
    grab("type", lambda: str(layer.type))
    grab("equation", lambda: str(layer.equation))
    grab("loop_sizes", lambda: plain(layer.layer_dim_sizes))
    grab("pr_loop_sizes", lambda: plain(layer.pr_layer_dim_sizes))
    grab("padding", lambda: plain(layer.padding))
    grab("operand_precision", lambda: plain(layer.operand_precision))
    grab("total_mac_count", lambda: plain(layer.total_mac_count))
    grab("operand_size_elem", lambda: plain(layer.operand_size_elem))
    grab("operand_size_bit", lambda: plain(layer.operand_size_bit))
    grab("memory_operand_links", lambda: plain(layer.memory_operand_links))

    names = mem_names_per_layer_op(cme)
    rec["memory_levels"] = names  # innermost first, after ZigZag's inter-layer "remove unused memory" pruning
    grab("memory_hierarchy", lambda: [lvl.name for lvl in cme.mem_level_list])

    # spatial mapping: per OA dimension (as chosen) and per operand/level (ZigZag's internal form)
    grab("spatial_mapping", lambda: plain(layer.spatial_mapping))
    grab("spatial_mapping_str", lambda: str(layer.spatial_mapping))
    grab(
        "spatial_mapping_int",
        lambda: {
            key_str(op): [loops(lv) for lv in lvls] for op, lvls in cme.spatial_mapping_int.mapping_dict_origin.items()
        },
    )
    grab(
        "spatial_unit_counts",
        lambda: {
            attr: plain(getattr(cme.spatial_mapping_int, attr))
            for attr in ("unit_count", "unit_unique", "unit_duplicate", "mem_bw_boost", "data_serve_scope")
        },
    )

    # temporal mapping: loops (innermost first) per operand per memory level
    def temporal() -> dict[str, Any]:
        tm = cme.temporal_mapping
        per_op: dict[str, list[dict[str, Any]]] = {}
        for op, lvls in tm.mapping_dic_origin.items():
            op_s = key_str(op)
            lvl_names = names.get(op_s, [])
            per_op[op_s] = [
                {"memory": lvl_names[i] if i < len(lvl_names) else f"L{i}", "loops": loops(lv)}
                for i, lv in enumerate(lvls)
            ]
        any_op = next(iter(tm.mapping_dic_origin))
        order = [lp for lv in tm.mapping_dic_origin[any_op] for lp in loops(lv)]
        return {
            "per_operand": per_op,
            "loop_order_inner_to_outer": order,
            "total_cycle": plain(tm.total_cycle),
            "cycle_cabl_level": plain(tm.cycle_cabl_level),
            "top_r_loop_size": plain(tm.top_r_loop_size),
            "top_ir_loop_size": plain(tm.top_ir_loop_size),
            "mac_level_data_stationary_cycle": plain(tm.mac_level_data_stationary_cycle),
        }

    grab("temporal_mapping", temporal)
    if str(layer.name) in loop_text:
        rec["loop_ordering_text"] = loop_text[str(layer.name)]
    else:
        skipped.append(f"{layer.name}: loop_ordering_text: not found in loop_ordering.txt")

    for attr in LAYER_SCALARS:
        grab(attr, lambda a=attr: plain(getattr(cme, a)))
    for attr in LAYER_DICTS:
        grab(attr, lambda a=attr: plain(getattr(cme, a)))
    for attr in LAYER_PER_LEVEL:
        grab(attr, lambda a=attr: per_level(getattr(cme, a), names))
    grab("double_buffer_true", lambda: plain(cme.double_buffer_true))
    for attr in LAYER_PER_MEMORY:
        grab(
            attr,
            lambda a=attr: {lvl.name: plain(v) for lvl, v in zip(cme.mem_level_list, getattr(cme, a), strict=True)},
        )

    def data_movement() -> dict[str, Any]:
        udm = cme.mapping_int.unit_mem_data_movement
        out: dict[str, Any] = {}
        for op, lvls in udm.items():
            op_s = key_str(op)
            lvl_names = names.get(op_s, [])
            out[op_s] = {
                (lvl_names[i] if i < len(lvl_names) else f"L{i}"): plain(getattr(p, "attributes", p))
                for i, p in enumerate(lvls)
            }
        return out

    grab("data_movement", data_movement)

    rec["spatial_mapping_candidates"] = candidates
    return rec


def imc_array_info(cme: Any, skipped: list[str]) -> dict[str, Any]:
    arr = cme.accelerator.operational_array
    out: dict[str, Any] = {"class": type(arr).__name__}
    for attr in IMC_ARRAY_ATTRS:
        if hasattr(arr, attr):
            out[attr] = plain(getattr(arr, attr))
        else:
            skipped.append(f"imc_array: {attr}: missing")
    return out


def check_totals(variant: str, totals: dict[str, Any]) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    for key, exp in EXPECTED[variant].items():
        actual = totals.get(key)
        ok = actual is not None and abs(float(actual) - exp["value"]) <= exp["tol"]
        checks[key] = {
            "expected": exp["value"],
            "actual": actual,
            "tolerance": exp["tol"],
            "abs_diff": None if actual is None else abs(float(actual) - exp["value"]),
            "match": bool(ok),
        }
    checks["all_match"] = all(v["match"] for v in checks.values())
    return checks


# --------------------------------------------------------------------------------------------------------------
# main


def run(
    variant: str,
    peer_dir: Path,
    out_path: Path,
    dump_dir: Path | None,
    instrument: bool,
    log_level: str,
    workload: Path | None = None,
) -> dict:
    import zigzag  # noqa: F401 - fail early with a clear error when run outside the zigzag venv
    import zigzag.api as zz_api

    try:
        from importlib.metadata import version

        zz_version = version("zigzag-dse")
    except Exception:  # noqa: BLE001
        zz_version = getattr(zigzag, "__version__", "unknown")

    inputs = {
        "workload": workload or peer_dir / "resnet18.onnx",
        "accelerator": peer_dir / f"{variant}.yaml",
        "mapping": peer_dir / "default_imc.yaml",
    }
    for p in inputs.values():
        if not p.exists():
            raise FileNotFoundError(p)

    # keep ZigZag's INFO chatter out unless asked for (its basicConfig is a no-op once root has a handler)
    logging.basicConfig(
        level=getattr(logging, log_level.upper()), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )

    recorder = SearchRecorder()
    if instrument:
        install_instrumentation(recorder)

    own_tmp = dump_dir is None
    dump = Path(tempfile.mkdtemp(prefix=f"zigzag_{variant}_")) if own_tmp else dump_dir
    dump.mkdir(parents=True, exist_ok=True)

    kwargs = {
        "opt": "latency",
        "in_memory_compute": True,
        "dump_folder": str(dump),
        "loma_show_progress_bar": False,
    }
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load_start = os.getloadavg()
    sampler = LoadSampler()
    sampler.start()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    energy, latency, tclk, area, cmes = zz_api.get_hardware_performance_zigzag(
        str(inputs["workload"]), str(inputs["accelerator"]), str(inputs["mapping"]), **kwargs
    )
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    sampler.stop()
    load_end = os.getloadavg()

    skipped: list[str] = []
    cumulative, per_layer = cmes[0]
    loop_text = parse_loop_ordering(dump / "loop_ordering.txt")

    layers = []
    for cme, _extra in per_layer:
        name = str(cme.layer.name)
        cands = recorder.candidates.get(name, [])
        for c in cands:
            c["chosen"] = (
                c["energy_total"] == plain(cme.energy_total)
                and c["latency_total2"] == plain(cme.latency_total2)
                and c["spatial_mapping_str"] == str(cme.layer.spatial_mapping)
            )
        layers.append(extract_layer(cme, loop_text, cands, skipped))

    totals: dict[str, Any] = {
        "energy_pJ": plain(energy),
        "latency_cycles": plain(latency),
        "clock_ns": plain(tclk),
        "area_mm2": plain(area),
        "latency_ns": plain(latency * tclk),
        "n_layers": len(layers),
    }
    for attr in (
        "mac_energy",
        "mem_energy",
        "latency_total0",
        "latency_total1",
        "ideal_cycle",
        "ideal_temporal_cycle",
        "data_onloading_cycle",
        "data_offloading_cycle",
        "mac_spatial_utilization",
        "mac_utilization0",
        "mac_utilization1",
        "mac_utilization2",
        "layer_ids",
    ):
        if hasattr(cumulative, attr):
            totals[f"cumulative_{attr}"] = plain(getattr(cumulative, attr))
        else:
            skipped.append(f"cumulative: {attr}: missing")
    totals["sum_layer_energy_pJ"] = sum(layer.get("energy_total", 0.0) for layer in layers)
    totals["sum_layer_latency_total2"] = sum(layer.get("latency_total2", 0.0) for layer in layers)
    totals["sum_layer_mac_count"] = sum(layer.get("total_mac_count", 0) for layer in layers)
    totals["tclk_all_layers_equal"] = len({layer.get("tclk") for layer in layers}) == 1

    checks = check_totals(variant, totals)
    result = {
        "schema": "cim-dse/zigzag_reference/v1",
        "variant": variant,
        "zigzag": {
            "package": "zigzag-dse",
            "version": zz_version,
            "version_expected": ZIGZAG_VERSION_EXPECTED,
            "python": platform.python_version(),
        },
        "call": {
            "function": "zigzag.api.get_hardware_performance_zigzag",
            "args": [p.name for p in inputs.values()],
            "kwargs": {k: v for k, v in kwargs.items() if k != "dump_folder"},
            "defaults_used": {
                "temporal_mapping_search_engine": "loma",
                "temporal_mapping_type": "uneven",
                "lpf_limit": 6,
                "nb_spatial_mappings_generated": 3,
            },
            "instrumented": instrument,
        },
        "inputs": {k: {"file": p.name, "path": str(p), "sha256": sha256(p)} for k, p in inputs.items()},
        "run": {
            "started_utc": started,
            "wall_s": round(wall, 3),
            "cpu_user_s": round(ru1.ru_utime - ru0.ru_utime, 3),
            "cpu_sys_s": round(ru1.ru_stime - ru0.ru_stime, 3),
            "peak_rss_mb": round(ru1.ru_maxrss / 1024, 1),
            "loadavg_start": list(load_start),
            "loadavg_end": list(load_end),
            "loadavg_1min_samples": sampler.samples,
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
            "platform": platform.platform(),
            "cost_model_evaluations": recorder.n_cost_model_calls if instrument else None,
        },
        "totals": totals,
        "expected": {k: v["value"] for k, v in EXPECTED[variant].items()},
        "check": checks,
        "imc_array": imc_array_info(per_layer[0][0], skipped) if per_layer else {},
        "layers": layers,
        "skipped": skipped,
        "notes": [
            "per-operand lists (memory_levels, temporal_mapping.per_operand, memory_word_access, ...) are innermost "
            "memory first; memory names come from the layer's accelerator after ZigZag's inter-layer data-locality "
            "pruning (ExploitInterLayerDataLocalityStage)",
            "directions: rd_out_to_low / wr_in_by_low / rd_out_to_high / wr_in_by_high as in ZigZag's 4-way data "
            "movement; memory_word_access counts are in words of the memory's min bandwidth per ZigZag's "
            "_calc_memory_access",
            "latency_total2 = ideal_temporal_cycle + stall_slack_comb + data_onloading_cycle + data_offloading_cycle "
            "+ systolic_drain_cycle; all latencies in cycles of tclk (ns)",
            "spatial_mapping_candidates: best (latency, energy tie-break) result per spatial mapping ZigZag "
            "generated, in generation order; chosen marks the one kept",
            "imc_array is ZigZag's shared ImcArray object read after the run (per-layer mutable fields reflect the "
            "last evaluated mapping)",
        ],
    }
    write_json_atomic(out_path, result)
    if own_tmp:
        import shutil

        shutil.rmtree(dump, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variant", choices=VARIANTS)
    ap.add_argument("--peer-dir", type=Path, default=DEFAULT_PEER_DIR, help="folder with the ZigZag example inputs")
    ap.add_argument("--out", type=Path, default=None, help="output JSON (default benchmarks/zigzag_reference_<v>.json)")
    ap.add_argument(
        "--dump-dir", type=Path, default=None, help="keep ZigZag's dump folder here (default: temp, deleted)"
    )
    ap.add_argument("--no-instrument", action="store_true", help="do not record per-spatial-mapping candidates")
    ap.add_argument("--log-level", default="WARNING")
    ap.add_argument("--workload", type=Path, default=None, help="other ONNX workload (testing; totals will not match)")
    args = ap.parse_args(argv)

    out = args.out or BENCH_DIR / f"zigzag_reference_{args.variant}.json"
    res = run(args.variant, args.peer_dir, out, args.dump_dir, not args.no_instrument, args.log_level, args.workload)
    t = res["totals"]
    print(
        f"{args.variant}: energy {t['energy_pJ']:.10g} pJ, latency {t['latency_cycles']} cycles, "
        f"tclk {t['clock_ns']} ns, area {t['area_mm2']:.6g} mm2, wall {res['run']['wall_s']} s, "
        f"all_match={res['check']['all_match']}, skipped={len(res['skipped'])} -> {out}"
    )
    return 0 if res["check"]["all_match"] else 1


if __name__ == "__main__":
    sys.exit(main())
