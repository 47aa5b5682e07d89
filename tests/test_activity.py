"""Switching activity measured from data (``dse.cost.activity``): bit counts on hand-made codes, the digits CNN,
evaluate with measured activity, the mapping file's precedence, the ``cim-dse activity`` command and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from onnx import helper
from onnx_factory import model, random_init, value

from dse.accuracy.quant import quantize_weight
from dse.api import evaluate
from dse.cli import main
from dse.cost.activity import (
    LayerActivity,
    activity_overrides,
    bit_planes,
    combine,
    input_bit_counts,
    measure_activity,
    unfold,
    weight_bit_counts,
)
from dse.errors import InputError
from dse.mapping.spec import ActivityOverride
from dse.workload import load_onnx

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "workloads" / "digits_cnn.onnx"
AIMC = ROOT / "hardware" / "aimc_template.yaml"
DIMC = ROOT / "hardware" / "dimc_template.yaml"
MAPPING = ROOT / "mapping" / "default.yaml"
SAMPLES = 64


# -- bit counting on hand-made codes ---------------------------------------------------------------------------
def test_all_zero_weights_are_fully_sparse():
    codes, _ = quantize_weight(torch.zeros(4, 3, 3, 3), 8)
    zeros, total = weight_bit_counts(codes.long().numpy(), 8)
    assert (zeros, total) == (4 * 27 * 8, 4 * 27 * 8)


def test_plus_minus_one_weights_in_twos_complement():
    # +1 = 00000001 (7 zeros), -1 = 11111111 (0 zeros): 7 of 16 bits are 0
    assert weight_bit_counts(np.array([1, -1]), 8) == (7, 16)
    # through the simulator's quantiser: +-0.5 at 2 bits -> codes +-1, sign-extended into 8 planes
    codes, _ = quantize_weight(torch.tensor([0.5, -0.5]), 2)
    assert codes.tolist() == [1.0, -1.0]
    assert weight_bit_counts(codes.long().numpy(), 8) == (7, 16)
    # at 8 bits the same weights are +-127: 01111111 (1 zero) and 10000001 (6 zeros)
    codes, _ = quantize_weight(torch.tensor([0.5, -0.5]), 8)
    assert codes.tolist() == [127.0, -127.0]
    assert weight_bit_counts(codes.long().numpy(), 8) == (7, 16)


def test_bit_planes_lsb_first_and_sign_extended():
    assert bit_planes(np.array([6]), 4).tolist() == [[0, 1, 1, 0]]
    assert bit_planes(np.array([-1]), 4).tolist() == [[1, 1, 1, 1]]
    assert bit_planes(np.array([-2]), 4).tolist() == [[0, 1, 1, 1]]


def test_alternating_codes_toggle_rate_by_hand():
    # one row, 2-bit codes 01, 10, 01 applied bit-serially LSB first: 1 0 | 0 1 | 1 0 -> 3 changes in 5 pairs
    counts, last = input_bit_counts(np.array([[1], [2], [1]]), bits=2, bits_per_cycle=1)
    assert (counts.toggles, counts.compared) == (3, 5)
    assert counts.toggle_rate == pytest.approx(0.6)
    assert (counts.ones, counts.bits, counts.vectors) == (3, 6, 3)
    assert counts.density == pytest.approx(0.5)
    assert last.tolist() == [[0]]  # the MSB of the last code


def test_toggle_rate_depends_on_the_slicing():
    codes = np.full((3, 2), 0b0101)  # two rows, the same code three times
    serial, _ = input_bit_counts(codes, bits=4, bits_per_cycle=1)
    assert serial.toggle_rate == 1.0  # 1 0 1 0 1 0 ... every bit differs from the one before
    paired, _ = input_bit_counts(codes, bits=4, bits_per_cycle=2)
    assert paired.toggles == 0 and paired.compared == (3 * 2 - 1) * 2 * 2  # 01 01 01 ...: nothing changes
    parallel, _ = input_bit_counts(np.array([[0b0101], [0b1010]]), bits=4, bits_per_cycle=4)
    assert (parallel.toggles, parallel.compared) == (4, 4)  # one whole-code change across the vector boundary


def test_chunked_stream_counts_as_whole():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, size=(50, 7))
    whole, _ = input_bit_counts(codes, 8, 2)
    first, last = input_bit_counts(codes[:20], 8, 2)
    second, _ = input_bit_counts(codes[20:], 8, 2, previous=last)
    assert first + second == whole


def test_unfold_matches_torch():
    rng = np.random.default_rng(1)
    for kernel, stride, dilation, padding, hw in [((3, 3), (1, 1), (1, 1), (1, 1), (8, 8)),
                                                  ((3, 2), (2, 1), (1, 2), (0, 1), (9, 7))]:
        x = rng.integers(0, 256, size=(2, 3, *hw))
        ref = F.unfold(torch.tensor(x, dtype=torch.float64), kernel, dilation, padding, stride)
        ref = ref.transpose(1, 2).reshape(-1, ref.shape[1]).long().numpy()
        assert np.array_equal(unfold(x, kernel, stride, dilation, padding), ref)


def test_mapping_file_wins_field_by_field():
    measured = LayerActivity("l", weight_sparsity=0.3, input_toggle_rate=0.2, input_density=0.25, weight_bits=8,
                             input_bits=8, vectors=1)
    both = combine(ActivityOverride(input_toggle_rate=0.9), measured)
    assert (both.input_toggle_rate, both.weight_sparsity) == (0.9, 0.3)
    assert combine(None, None) is None
    assert combine(ActivityOverride(weight_sparsity=0.1), None).weight_sparsity == 0.1


# -- the digits CNN ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_activity() -> dict[str, LayerActivity]:
    return measure_activity(DIGITS, None, AIMC, samples=SAMPLES)


def test_digits_cnn_measured_values(digits_activity):
    rows = digits_activity
    assert list(rows) == ["/conv1/Conv", "/conv2/Conv", "/conv3/Conv", "/fc/Gemm"]
    for row in rows.values():
        for figure in (row.weight_sparsity, row.input_toggle_rate, row.input_density):
            assert 0 < figure < 1
        assert row.stored == "weights" and (row.weight_bits, row.input_bits) == (8, 8)
    assert rows["/conv1/Conv"].vectors == SAMPLES * 64  # one vector per output pixel of every image
    assert rows["/fc/Gemm"].vectors == SAMPLES
    toggles = [row.input_toggle_rate for row in rows.values()]
    sparsities = [row.weight_sparsity for row in rows.values()]
    assert len(set(toggles)) == 4 and len(set(sparsities)) == 4
    # ReLU outputs quantised to 8 bits are mostly small codes: few 1 bits, few toggles
    assert all(row.input_density < 0.5 and row.input_toggle_rate < 0.5 for row in rows.values())


def test_bit_serial_macro_streams_other_slices(digits_activity):
    serial = measure_activity(DIGITS, None, DIMC, samples=SAMPLES)  # 1 input bit per cycle instead of 2
    for name, row in serial.items():
        assert row.weight_sparsity == digits_activity[name].weight_sparsity
        assert row.input_density == digits_activity[name].input_density
        assert row.input_toggle_rate != digits_activity[name].input_toggle_rate


def test_measured_evaluate_differs_and_mapping_entry_wins(digits_activity, tmp_path):
    default = evaluate(DIGITS, AIMC, MAPPING)
    given = evaluate(DIGITS, AIMC, MAPPING, activity=digits_activity)
    assert given.energy_pJ != pytest.approx(default.energy_pJ, rel=1e-6)
    assert given.activity == "given" and default.activity == "macro"
    conv2 = given.layers[1].to_json()["activity"]
    assert conv2["input_toggle_rate"] == digits_activity["/conv2/Conv"].input_toggle_rate
    assert conv2["source"] == {"input_toggle_rate": "measured", "weight_sparsity": "measured"}

    # an explicit mapping entry for /conv2/Conv at the macro's defaults: that layer prices as without measuring
    mapping = tmp_path / "m.yaml"
    mapping.write_text(MAPPING.read_text() + "- name: /conv2/Conv\n  activity: {input_toggle_rate: 0.5, "
                       "weight_sparsity: 0.5}\n")
    pinned = evaluate(DIGITS, AIMC, mapping, activity="measured", activity_samples=SAMPLES)
    assert pinned.activity.startswith("measured on digits")
    by_name = {layer.layer: layer for layer in pinned.layers}
    base = {layer.layer: layer for layer in default.layers}
    assert by_name["/conv2/Conv"].activity["source"] == {"input_toggle_rate": "mapping", "weight_sparsity": "mapping"}
    assert by_name["/conv2/Conv"].macro_energy_pJ == pytest.approx(base["/conv2/Conv"].macro_energy_pJ)
    assert by_name["/conv3/Conv"].macro_energy_pJ != pytest.approx(base["/conv3/Conv"].macro_energy_pJ)
    assert by_name["/conv3/Conv"].activity["weight_sparsity"] == digits_activity["/conv3/Conv"].weight_sparsity


def test_given_activity_is_checked():
    wl = load_onnx(DIGITS)
    with pytest.raises(InputError, match=r"\[/conv1/Con\]: no compute layer .*did you mean '/conv1/Conv'"):
        activity_overrides({"/conv1/Con": {"weight_sparsity": 0.2}}, wl)
    with pytest.raises(InputError, match=r"weight_sparsity = 1.2: must be <= 1"):
        activity_overrides({"/conv1/Conv": {"weight_sparsity": 1.2}}, wl)
    with pytest.raises(InputError, match="expected 'measured'"):
        evaluate(DIGITS, AIMC, MAPPING, activity="measure")


# -- attention: the stored operand is an activation --------------------------------------------------------------
def _attention_on_digits():
    """x (1, 1, 8, 8) -> rows as 8 tokens of 8 -> q, k projections -> q @ k^T (two activations) -> logits."""
    nodes = [
        helper.make_node("Reshape", ["x", "tokens_shape"], ["t"], name="tokens"),
        helper.make_node("MatMul", ["t", "Wq"], ["q"], name="q_proj"),
        helper.make_node("MatMul", ["t", "Wk"], ["k"], name="k_proj"),
        helper.make_node("Transpose", ["k"], ["kt"], name="k_T", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s"], name="scores"),
        helper.make_node("Reshape", ["s", "flat_shape"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "Wo"], ["y"], name="head"),
    ]
    inits = [random_init("Wq", [8, 8], 1), random_init("Wk", [8, 8], 2), random_init("Wo", [64, 10], 3),
             helper.make_tensor("tokens_shape", 7, [3], [1, 8, 8]), helper.make_tensor("flat_shape", 7, [2], [1, 64])]
    return model(nodes, [value("x", [1, 1, 8, 8])], [value("y", None)], inits)


def test_attention_stored_operand_measured_from_activations():
    proto = _attention_on_digits()
    rows = measure_activity(proto, None, AIMC, samples=16, calibration_samples=64)
    scores = rows["scores"]
    assert scores.stored == "activations"
    assert 0 < scores.weight_sparsity < 1 and 0 < scores.input_toggle_rate < 1
    assert rows["q_proj"].stored == "weights"
    assert scores.vectors == 16 * 8  # 8 query tokens per image


# -- command line and errors -------------------------------------------------------------------------------------
def test_cli_activity_json(capsys):
    code = main(["activity", str(DIGITS), str(AIMC), "--samples", "16", "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    rows = json.loads(out)
    assert [r["layer"] for r in rows] == ["/conv1/Conv", "/conv2/Conv", "/conv3/Conv", "/fc/Gemm"]
    for row in rows:
        assert set(row) == {"layer", "weight_sparsity", "input_toggle_rate", "input_density"}
        assert all(0 < row[k] < 1 for k in ("weight_sparsity", "input_toggle_rate", "input_density"))


def test_model_without_weights_is_refused(capsys):
    code = main(["activity", str(ROOT / "workloads" / "resnet18_cifar10.onnx"), str(AIMC), "--dataset", "cifar10"])
    _, err = capsys.readouterr()
    assert code == 2
    assert "resnet18_cifar10.onnx: initializer 'conv1.weight'" in err and "weights.bin" in err
    assert "Traceback" not in err


def test_missing_data_set_is_refused(capsys):
    code = main(["evaluate", str(DIGITS), str(AIMC), str(MAPPING), "--activity", "measured", "--dataset", "cifar10"])
    _, err = capsys.readouterr()
    assert code == 2
    assert "data_path: the cifar10 data set needs a local path" in err
