"""The mapper and the network cost: search optimality, conservation laws of the action counts, APIs."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from dse.api import evaluate, get_hardware_performance
from dse.cost.network import Pricer, _objective, evaluate_layer
from dse.errors import InputError
from dse.hardware import accelerator_from_dict, load_accelerator
from dse.mapping import load_mapping, mapping_from_data
from dse.mapping.mapper import SearchSettings, _orders, loop_factors, order_table, search
from dse.mapping.spatial import (
    DEFAULT_HINTS,
    SpatialMapping,
    best_candidates,
    candidates,
    make_mapping,
    span,
    temporal_sizes,
)
from dse.mapping.temporal import ActionCounter
from dse.workload import Layer, Loops, Precision, load_onnx

ROOT = Path(__file__).resolve().parents[1]
CHIPS = ("aimc1", "aimc2", "aimc3", "dimc1", "dimc2", "dimc3", "dimc4", "aimc_template", "dimc_template")


def small_accelerator(sram_bits: int = 4096, count: int = 2):
    return accelerator_from_dict({
        "name": "small",
        "macro": {"kind": "digital", "rows": 16, "columns": 8, "count": count, "input_bits_per_cycle": 1,
                  "cell_write_energy_pJ": 0.1},
        "memories": [
            {"name": "rf_in", "kind": "register", "size_bits": 8, "word_bits": 8, "operands": ["I1"],
             "ports": {"read": 1, "write": 1}, "served_dimensions": ["D1"], "read_energy_pJ": 0.02,
             "write_energy_pJ": 0.02, "area_mm2": 0},
            {"name": "rf_out", "kind": "register", "size_bits": 16, "word_bits": 16, "operands": ["O"],
             "ports": {"read": 1, "write": 1}, "served_dimensions": ["D2"], "read_energy_pJ": 0.02,
             "write_energy_pJ": 0.02, "area_mm2": 0},
            {"name": "sram", "size_bits": sram_bits, "word_bits": 64, "operands": ["I1", "O"],
             "ports": {"read": 1, "write": 1}, "read_energy_pJ": 5.0, "write_energy_pJ": 6.0, "area_mm2": 0},
            {"name": "dram", "kind": "dram", "size_bits": 10**9, "word_bits": 64, "operands": ["I1", "I2", "O"],
             "read_energy_pJ": 50.0, "write_energy_pJ": 60.0, "area_mm2": 0},
        ],
    })


def conv(k=8, c=4, oy=6, ox=5, fy=3, fx=3, b=1, g=1, name="conv"):
    return Layer(name=name, op="conv", onnx_op="Conv", loops=Loops(B=b, K=k, C=c, OY=oy, OX=ox, FY=fy, FX=fx, G=g),
                 precision=Precision(8, 8, 8))


DEFAULT = mapping_from_data([{"name": "default"}])


def all_counts(layer, acc, resolved, weight_diagonal=False):
    """Every mapping in the search's space: all spatial candidates x all loop-factor orders."""
    spaces = [candidates(layer, acc.macro, resolved.spatial_mapping, None)]
    if weight_diagonal:
        spaces.append(candidates(layer, acc.macro, resolved.spatial_mapping, None, weight_diagonal=True))
    for spatial in {m.describe(): m for space in spaces for m in space}.values():
        counter = ActionCounter(layer, acc, spatial, resolved.memory_operand_links)
        for order in _orders(temporal_sizes(layer, spatial), None, SearchSettings()):
            yield counter.count(order)


@pytest.mark.parametrize("layer", [conv(k=16, c=4, oy=4, ox=2, fy=3, fx=1), conv(k=12, c=3, oy=2, ox=3, fy=2, fx=2),
                                   conv(k=6, c=20, oy=3, ox=2, fy=1, fx=1)], ids=["3x1", "2x2", "deep"])
def test_search_finds_the_optimum_of_its_space(layer):
    acc = small_accelerator(count=1)
    resolved = DEFAULT.resolve(layer)
    pricer = Pricer(layer, acc, DEFAULT, zigzag_compat=False)
    scored = [pricer.energy_and_latency(c) for c in all_counts(layer, acc, resolved)]
    assert len(scored) > 20  # a real space, not a trivial one
    everything = SearchSettings(keep_spatial=10**6)
    for opt, key in (("energy", lambda e, lat: e), ("latency", lambda e, lat: lat), ("edp", lambda e, lat: e * lat)):
        exhaustive = min(key(e, lat) for e, lat in scored)
        score, bound, batch = _objective(pricer, opt)  # the network's objective: (primary, tie-break)
        found = search(layer, acc, resolved, score, everything)  # order by order
        assert score(found)[0] == pytest.approx(exhaustive), opt
        # all orders of a spatial mapping at once, spatial mappings pruned by the bound: the same mapping
        fast = search(layer, acc, resolved, score, everything, bound=bound, batch=batch)
        assert (fast.spatial, fast.order, score(fast)) == (found.spatial, found.order, score(found)), opt


def test_weight_diagonal_search_finds_the_optimum_of_its_space():
    layer = conv(k=4, c=2, oy=3, ox=4, fy=2, fx=2)
    acc = small_accelerator(count=1)
    spec = mapping_from_data([{"name": "default", "weight_diagonal": True}])
    resolved = spec.resolve(layer)
    pricer = Pricer(layer, acc, spec, zigzag_compat=False)
    scored = [pricer.energy_and_latency(c) for c in all_counts(layer, acc, resolved, weight_diagonal=True)]
    everything = SearchSettings(keep_spatial=10**6)
    for opt, key in (("energy", lambda e, lat: e), ("latency", lambda e, lat: lat)):
        score, bound, batch = _objective(pricer, opt)
        found = search(layer, acc, resolved, score, everything, bound=bound, batch=batch)
        assert score(found)[0] == pytest.approx(min(key(e, lat) for e, lat in scored)), opt
    assert found.spatial.diagonal is not None  # the diagonal wins this small-C layer


LAYERS = {
    "conv3x3": conv(k=48, c=24, oy=14, ox=14),
    "strided1x1": Layer(name="s", op="conv", onnx_op="Conv", loops=Loops(K=64, C=32, OY=7, OX=7), stride=(2, 2)),
    "dilated": Layer(name="d", op="conv", onnx_op="Conv", loops=Loops(K=16, C=8, OY=10, OX=12, FY=3, FX=3),
                     dilation=(2, 2)),
    "depthwise": Layer(name="dw", op="dwconv", onnx_op="Conv", loops=Loops(K=1, C=1, OY=14, OX=14, FY=3, FX=3, G=32),
                       stride=(2, 2)),
    "fc": Layer(name="fc", op="gemm", onnx_op="Gemm", loops=Loops(K=100, C=96)),
}


@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_batch_counts_equal_one_by_one_counts(chip, name):
    """``count_many`` and the priced batch give exactly (not approximately) the values of ``count``, order by order."""
    acc = load_accelerator(ROOT / "hardware" / f"{chip}.yaml")
    layer = replace(LAYERS[name], precision=Precision(acc.macro.weight_bits, acc.macro.input_bits, 8))
    spec = load_mapping(ROOT / "mapping" / "default.yaml")
    resolved = spec.resolve(layer)
    for compat in (False, True):
        pricer = Pricer(layer, acc, spec, zigzag_compat=compat)
        hints = {**DEFAULT_HINTS, **(resolved.spatial_mapping_hint or {})}
        for spatial in best_candidates(layer, acc.macro, candidates(layer, acc.macro, None, hints), 3):
            counter = ActionCounter(layer, acc, spatial, resolved.memory_operand_links)
            items, perms = order_table(temporal_sizes(layer, spatial), SearchSettings())
            batch = counter.count_many(items, perms)
            energy, latency = pricer.energy_and_latency(batch)
            for row in range(0, len(perms), max(1, len(perms) // 40)):
                counts = counter.count(tuple(items[i] for i in perms[row]))
                assert pricer.energy_and_latency(counts) == (energy[row], latency[row])
                assert [(t.level, t.operand, t.read_bits, t.write_bits) for t in counts.traffic] == [
                    (t.level, t.operand, t.read_bits[row], t.write_bits[row]) for t in batch.traffic]
                assert (counts.weights_written, counts.precharges) == (batch.weights_written[row],
                                                                       batch.precharges[row])


@pytest.mark.parametrize("chip", ["aimc_template", "dimc_template", "dimc4", "aimc3"])
@pytest.mark.parametrize("name", ["conv3x3", "dilated", "depthwise"])
def test_batch_counts_equal_one_by_one_counts_on_the_diagonal(chip, name):
    acc = load_accelerator(ROOT / "hardware" / f"{chip}.yaml")
    layer = replace(LAYERS[name], precision=Precision(acc.macro.weight_bits, acc.macro.input_bits, 8))
    spec = load_mapping(ROOT / "mapping" / "weight_diagonal.yaml")
    resolved = spec.resolve(layer)
    pricer = Pricer(layer, acc, spec, zigzag_compat=False)
    hints = {**DEFAULT_HINTS, **(resolved.spatial_mapping_hint or {})}
    maps = [m for m in candidates(layer, acc.macro, None, hints, weight_diagonal=True) if m.diagonal is not None]
    assert maps
    for spatial in best_candidates(layer, acc.macro, maps, 2):
        counter = ActionCounter(layer, acc, spatial, resolved.memory_operand_links)
        items, perms = order_table(temporal_sizes(layer, spatial), SearchSettings())
        energy, latency = pricer.energy_and_latency(counter.count_many(items, perms))
        for row in range(0, len(perms), max(1, len(perms) // 20)):
            counts = counter.count(tuple(items[i] for i in perms[row]))
            assert pricer.energy_and_latency(counts) == (energy[row], latency[row])


def test_action_counts_conserve_work_and_data():
    layer = conv(k=8, c=4, oy=6, ox=6)
    acc = small_accelerator(sram_bits=10**7)  # everything fits on chip: each datum crosses DRAM once
    cost = evaluate_layer(layer, acc, DEFAULT, opt="energy")
    c = cost.counts
    d1_d2 = 1
    for a in ("D1", "D2"):
        for _, s in c.spatial.on(a):
            d1_d2 *= s
    assert c.activations * d1_d2 == layer.macs
    assert c.compute_cycles >= layer.macs / (8 * 16 * 2) * 8
    assert c.weights_written >= layer.weight_count
    dram = {t.operand: t for t in c.traffic if t.level == "dram"}
    assert dram["W"].read_bits == layer.weight_count * 8
    iy, ix = layer.input_size
    assert dram["I"].read_bits == 4 * iy * ix * 8
    assert dram["O"].write_bits == 8 * 6 * 6 * 8 and dram["O"].read_bits == 0
    assert 0 < c.spatial_utilization <= 1


def test_spatial_candidates_fit_the_array():
    acc = small_accelerator()
    for layer in (conv(), conv(k=3, c=1, g=8, name="dw")):
        for m in candidates(layer, acc.macro):
            assert m.used("D1") <= 8 and m.used("D2") <= 16 and m.used("D3") <= 2


def test_depthwise_groups_on_columns_replicate_rows():
    """Inputs are broadcast along a row: groups on the columns need their own rows (block diagonal)."""
    acc = small_accelerator()
    dw = Layer(name="dw", op="dwconv", onnx_op="Conv", loops=Loops(K=1, C=1, OY=4, OX=4, FY=3, FX=3, G=8))
    maps = candidates(dw, acc.macro, None, {"D1": ("G",), "D2": ("FX", "FY")})
    best = best_candidates(dw, acc.macro, maps, 1)[0]
    g_cols = dict(best.on("D1")).get("G", 1)
    taps = 1
    for _, s in best.on("D2"):
        taps *= s
    assert best.used("D2") == g_cols * taps <= 16


def unrolled(mapping, array_dim: str, dim: str) -> int:
    return mapping.unroll(array_dim, dim)


def test_diagonal_rows_follow_the_span_formula():
    """OX on the columns beside FX on the rows share input rows: C x (OX + FX - 1) x (OY + FY - 1) at stride 1."""
    unrolling = (("D1", (("K", 4), ("OX", 4), ("OY", 2))), ("D2", (("C", 3), ("FX", 3), ("FY", 3))), ("D3", ()))
    assert SpatialMapping(unrolling).used("D2") == 3 * 3 * 3 * 4 * 2  # block-diagonal: every column its own rows
    assert SpatialMapping(unrolling, (1, 1, 1, 1)).used("D2") == 3 * (4 + 3 - 1) * (2 + 3 - 1)  # ZigZag's formula
    assert SpatialMapping(unrolling, (2, 2, 1, 1)).used("D2") == 3 * (2 * 3 + 3) * (2 * 1 + 3)  # stride 2
    assert span(4, 3, 1, 2) == 8 and span(2, 3, 4, 1) == 6 and span(5, 1, 3, 1) == 5 and span(1, 7, 2, 1) == 7
    assert SpatialMapping(unrolling, (1, 1, 1, 1)).weight_rows == 27  # the rows of one column that hold weights
    # no OX/OY beside FX/FY: nothing to share, the plain (block-diagonal) mapping
    assert make_mapping((("D1", (("K", 4), ("OX", 2))), ("D2", (("C", 3),))), (1, 1, 1, 1)).diagonal is None
    assert make_mapping(unrolling, None).diagonal is None and make_mapping(unrolling, (1, 1, 1, 1)).diagonal


@pytest.mark.parametrize("layer", [conv(k=8, c=2, oy=6, ox=6), conv(k=4, c=1, oy=5, ox=7, fy=3, fx=2),
                                   Layer(name="dw", op="dwconv", onnx_op="Conv", stride=(2, 2),
                                         loops=Loops(K=1, C=1, OY=7, OX=7, FY=3, FX=3, G=4))],
                         ids=["conv", "odd", "dw-s2"])
def test_diagonal_candidates_fit_and_use_the_formula(layer):
    acc = small_accelerator()
    hints = {"D1": ("G",), "D2": ("FX", "FY"), "D3": ("G",)} if layer.op == "dwconv" else None
    maps = candidates(layer, acc.macro, None, hints, weight_diagonal=True)
    diagonal = [m for m in maps if m.diagonal is not None]
    assert diagonal, "the option adds weight-diagonal mappings"
    sy, sx = layer.stride
    for m in maps:
        assert m.used("D1") <= 8 and m.used("D2") <= 16 and m.used("D3") <= 2
    for m in diagonal:
        rows = unrolled(m, "D2", "C") * unrolled(m, "D1", "G")
        rows *= (unrolled(m, "D1", "OX") - 1) * sx + unrolled(m, "D2", "FX")
        rows *= (unrolled(m, "D1", "OY") - 1) * sy + unrolled(m, "D2", "FY")
        assert m.used("D2") == rows
    plain = {m.describe() for m in candidates(layer, acc.macro, None, hints)}
    assert plain <= {m.describe() for m in maps}  # the option only adds mappings


def counts_with(layer, acc, spatial_mapping, diagonal):
    spec = mapping_from_data([{"name": "default", "spatial_mapping": spatial_mapping, "weight_diagonal": diagonal}])
    return evaluate_layer(layer, acc, spec, opt="energy").counts


def test_diagonal_counts_conserve_macs_and_copy_weights():
    """Diagonal and block-diagonal do the same MACs with the same weight copies; the diagonal needs fewer rows and
    fewer inputs per cycle."""
    layer = conv(k=4, c=2, oy=6, ox=6)
    acc = small_accelerator(sram_bits=10**7)  # everything fits on chip: each datum crosses DRAM once
    fixed = {"D1": ["K, 4", "OX, 2"], "D2": ["C, 2", "FX, 3"], "D3": []}
    diag, block = counts_with(layer, acc, fixed, True), counts_with(layer, acc, fixed, False)
    assert diag.spatial.diagonal is not None and block.spatial.diagonal is None
    assert (diag.rows_mapped, block.rows_mapped) == (2 * (2 + 3 - 1), 2 * 3 * 2)
    iy, ix = layer.input_size
    for c in (diag, block):
        assert c.activations * 4 * 2 * 2 * 3 == layer.macs and c.columns_mapped == 8
        assert c.temporal_iterations * 48 == layer.macs and c.spatial_utilization == pytest.approx(48 / (8 * 16 * 2))
        assert c.array_occupancy == c.rows_mapped * 8 / (8 * 16 * 2)
        traffic = {(t.level, t.operand): t for t in c.traffic}
        # the cells hold a copy of the weight tile per OX column: twice what is read from above
        assert traffic["cells", "W"].write_bits == 2 * traffic["dram", "W"].read_bits
        assert traffic["dram", "W"].read_bits == layer.weight_count * 8
        assert traffic["dram", "I"].read_bits == 2 * iy * ix * 8
        # one input per used row per cycle out of the row registers
        assert traffic["rf_in", "I"].read_bits == c.temporal_iterations * c.rows_mapped * 8
    assert diag.weights_written == block.weights_written
    assert diag.spatial_utilization == block.spatial_utilization and diag.array_occupancy < block.array_occupancy


@pytest.fixture(scope="module")
def small_c_layers():
    """ResNet-18's first conv (C = 3, 7x7, stride 2) and MobileNetV2's first depthwise conv."""
    first = load_onnx(ROOT / "tests" / "data" / "zigzag_resnet18.onnx").layers[0]
    dw = next(layer for layer in load_onnx(ROOT / "workloads" / "mobilenetv2.onnx").layers if layer.op == "dwconv")
    assert first.loops.C == 3 and dw.loops.C == 1
    return {"resnet18.conv1": first, "mobilenetv2.dw1": dw}


@pytest.mark.parametrize("chip", ["aimc_template", "dimc_template"])
@pytest.mark.parametrize("name", ["resnet18.conv1", "mobilenetv2.dw1"])
def test_weight_diagonal_helps_small_c_layers(small_c_layers, chip, name):
    layer = small_c_layers[name]
    acc = load_accelerator(ROOT / "hardware" / f"{chip}.yaml")
    off = evaluate_layer(layer, acc, load_mapping(ROOT / "mapping" / "default.yaml"))
    on = evaluate_layer(layer, acc, load_mapping(ROOT / "mapping" / "weight_diagonal.yaml"))
    assert on.counts.spatial.diagonal is not None and off.counts.spatial.diagonal is None
    assert on.macs == off.macs and on.counts.activations < off.counts.activations
    assert on.utilization > 1.9 * off.utilization and on.compute_cycles < off.compute_cycles
    assert on.latency_cycles <= off.latency_cycles  # opt=latency; the search keeps the mappings without the option
    assert on.to_json()["mapping"]["weight_diagonal"] and on.to_json()["array_occupancy"] > on.utilization


def test_weight_diagonal_false_is_the_default():
    wl = load_onnx(ROOT / "workloads" / "digits_cnn.onnx")
    acc = load_accelerator(ROOT / "hardware" / "aimc_template.yaml")
    explicit = mapping_from_data([{"name": "default", "weight_diagonal": False}])
    for layer in wl.layers:
        a, b = evaluate_layer(layer, acc, DEFAULT), evaluate_layer(layer, acc, explicit)
        assert (a.energy_pJ, a.latency_cycles, a.counts.spatial) == (b.energy_pJ, b.latency_cycles, b.counts.spatial)


def input_buffer_accelerator(word_bits: int):
    """Two 16 x 8 digital macros fed by one input buffer shared by every row, column and macro."""
    return accelerator_from_dict({
        "name": "ibuf",
        "macro": {"kind": "digital", "rows": 16, "columns": 8, "count": 2, "input_bits_per_cycle": 1,
                  "cell_write_energy_pJ": 0.1},
        "memories": [
            {"name": "ibuf", "kind": "register", "size_bits": 4096, "word_bits": word_bits, "operands": ["I1"],
             "ports": {"read": 1, "write": 1}, "read_energy_pJ": 0.02, "write_energy_pJ": 0.02, "area_mm2": 0},
            {"name": "rf_out", "kind": "register", "size_bits": 16, "word_bits": 16, "operands": ["O"],
             "ports": {"read": 1, "write": 1}, "served_dimensions": ["D2"], "read_energy_pJ": 0.02,
             "write_energy_pJ": 0.02, "area_mm2": 0},
            {"name": "dram", "kind": "dram", "size_bits": 10**9, "word_bits": 512, "operands": ["I1", "I2", "O"],
             "read_energy_pJ": 50.0, "write_energy_pJ": 60.0, "area_mm2": 0},
        ],
    })


def test_narrow_input_port_stalls_and_steers_the_unrolling():
    """The rows read their inputs from the buffer every cycle: through a 32-bit port, K on the second macro
    (the same inputs) beats OX there (other inputs), which would stall the array."""
    layer = conv(k=16, c=16, oy=4, ox=4, fy=1, fx=1)
    narrow, wide = input_buffer_accelerator(32), input_buffer_accelerator(512)
    for acc, stalls in ((narrow, True), (wide, False)):
        forced = {}
        for dim in ("K", "OX"):
            spec = mapping_from_data([{"name": "default", "spatial_mapping": {"D1": ["K, 8"], "D2": ["C, 16"],
                                                                              "D3": [f"{dim}, 2"]}}])
            forced[dim] = evaluate_layer(layer, acc, spec).counts
        assert forced["K"].compute_cycles == forced["OX"].compute_cycles == 16 * 8
        feed = forced["OX"].transfer_cycles["ibuf"]
        assert feed >= 16 * 32 * 8 / acc.memories[0].word_bits  # 32 inputs per iteration
        assert (forced["OX"].stall_cycles > 0) is stalls
        assert forced["OX"].latency_cycles == max(forced["OX"].compute_cycles + forced["OX"].weight_load_cycles,
                                                  max(forced["OX"].transfer_cycles.values()))
        best = evaluate_layer(layer, acc, DEFAULT).counts
        if stalls:
            assert forced["K"].latency_cycles < forced["OX"].latency_cycles
            assert best.spatial.unroll("D3", "K") == 2 and best.stall_cycles == 0
        else:
            assert best.latency_cycles == forced["K"].latency_cycles == forced["OX"].latency_cycles


def test_loop_factors_respect_the_limit():
    factors = loop_factors({"OX": 56, "OY": 56, "C": 2, "K": 1}, 6)
    assert len(factors) == 6
    prod = {}
    for d, f in factors:
        prod[d] = prod.get(d, 1) * f
    assert prod == {"OX": 56, "OY": 56, "C": 2}


def test_fixed_temporal_ordering_is_used():
    layer = conv()
    spec = mapping_from_data([{"name": "default", "temporal_ordering": [["OX", "*"], ["OY", "*"]]}])
    cost = evaluate_layer(layer, small_accelerator(), spec)
    assert [d for d, _ in cost.counts.order[:2]] == ["OX", "OY"]


def test_unmappable_fixed_unrolling_names_the_layer():
    spec = mapping_from_data([{"name": "default", "spatial_mapping": {"D1": ["K, 8"], "D2": ["C, 4", "FX, 3", "FY, 3"]}}],
                             "m.yaml")
    with pytest.raises(InputError, match=r"layer 'conv': no spatial mapping fits"):
        evaluate_layer(conv(), small_accelerator(), spec)


def test_precision_mismatch_is_explained(tmp_path):
    mapping = tmp_path / "m.yaml"
    mapping.write_text("- name: default\n  precision: {W: 16}\n")
    with pytest.raises(InputError, match=r"W precision 16 bits exceeds the macro's weight_bits = 8 .*precision:"):
        evaluate(ROOT / "workloads" / "digits_cnn.onnx", ROOT / "hardware" / "dimc1.yaml", mapping)


def test_network_totals_and_identical_layers():
    result = evaluate(ROOT / "tests" / "data" / "zigzag_resnet18.onnx", ROOT / "hardware" / "dimc_template.yaml",
                      ROOT / "mapping" / "default.yaml")
    assert result.energy_pJ == pytest.approx(sum(layer.energy_pJ for layer in result.layers))
    assert result.latency_cycles == sum(layer.latency_cycles for layer in result.layers)
    assert result.macs == 1_814_073_344
    # the network's utilization: useful MACs over the array's peak in the layers' compute cycles
    peak = sum(layer.counts.temporal_iterations * 128 * 128 for layer in result.layers)
    assert result.summary()["spatial_utilization"] == result.utilization == pytest.approx(result.macs / peak)
    assert min(layer.utilization for layer in result.layers) < result.utilization < 1
    by_name = {layer.layer: layer for layer in result.layers}
    a, b = by_name["/layer1/layer1.0/conv1/Conv"], by_name["/layer1/layer1.1/conv2/Conv"]  # same shape
    assert a.energy_pJ == b.energy_pJ and a.latency_cycles == b.latency_cycles


def test_zigzag_style_api_and_dump(tmp_path):
    energy, cycles, clock, area, result = get_hardware_performance(
        ROOT / "workloads" / "digits_cnn.onnx", ROOT / "hardware" / "aimc_template.yaml",
        ROOT / "mapping" / "default.yaml", opt="energy", dump_folder=tmp_path, zigzag_compat=True)
    assert (energy, cycles) == (result.energy_pJ, result.latency_cycles)
    assert clock == pytest.approx(14.07, abs=0.01) and area == pytest.approx(2.288, abs=0.001)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {"energy_pJ", "latency_cycles", "clock_ns", "latency_s", "area_mm2", "layers"} <= set(summary)
    assert summary["layers"] == 4
    layers = json.loads((tmp_path / "layers.json").read_text())
    assert layers[0]["mapping"]["spatial"]["D1"] and layers[0]["macro_energy_pJ"]
    assert (tmp_path / "layers.csv").read_text().count("\n") == 5


def test_main_onnx_script(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "main_onnx.py"), "workloads/digits_cnn.onnx", "hardware/dimc4.yaml",
         "mapping/default.yaml", "--opt", "energy", "--output", str(tmp_path), "--json"],
        cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["layers"] == 4
    assert (tmp_path / "summary.json").exists()


def test_main_onnx_bad_input_writes_nothing(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "main_onnx.py"), "workloads/digits_cnn.onnx", "hardware/nothere.yaml",
         "mapping/default.yaml", "--output", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "hardware/nothere.yaml: file not found" in proc.stderr
    assert not out.exists()


def test_default_mapping_file_on_mobilenet_depthwise():
    wl = load_onnx(ROOT / "workloads" / "mobilenetv2.onnx")
    dw = next(layer for layer in wl.layers if layer.op == "dwconv")
    cost = evaluate_layer(dw, load_accelerator(ROOT / "hardware" / "dimc_template.yaml"),
                          load_mapping(ROOT / "mapping" / "default.yaml"))
    assert cost.counts.spatial.used("D2") <= 128 and cost.utilization > 0
