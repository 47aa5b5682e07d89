"""Every shipped chip x the small shipped workloads (and small synthetic ones for the other op types), end to end.

The large workloads (resnet18_imagenet, mobilenetv2, vit_b32) take 0.2-1 s per chip; they are run by hand
(see benchmarks/README.md), not here.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx_factory as fx
import pytest

from dse.api import evaluate
from dse.cli import main
from dse.errors import InputError
from dse.workload import load_onnx

ROOT = Path(__file__).resolve().parents[1]
CHIPS = sorted(p.stem for p in (ROOT / "hardware").glob("*.yaml"))
DEFAULT = ROOT / "mapping" / "default.yaml"
NEEDS_OWN_MAPPING = {"aimc1": ROOT / "mapping" / "aimc1.yaml"}  # ternary weights, 7-bit inputs


def synthetic() -> dict:
    """A strided depthwise conv and an attention block (activation x activation MatMuls)."""
    dw = fx.conv_model([1, 16, 14, 14], [16, 1, 3, 3], group=16, strides=[2, 2], pads=[1, 1, 1, 1])
    return {"depthwise": load_onnx(dw, name="depthwise"),
            "attention": load_onnx(fx.attention_model(batch=1, heads=2, seq=16, dim=32), name="attention")}


SYNTHETIC = synthetic()


def check(result, layers: int) -> None:
    assert len(result.layers) == layers
    assert result.energy_pJ == pytest.approx(sum(layer.energy_pJ for layer in result.layers))
    for layer in result.layers:
        assert layer.energy_pJ > 0 and layer.latency_cycles >= layer.compute_cycles > 0
        assert 0 < layer.utilization <= 1
    assert result.clock_ns > 0 and result.area_total_mm2 > 0


def test_every_chip_is_in_the_matrix():
    assert len(CHIPS) == 10 and {"aimc1", "dimc4", "aimc_template", "dimc_template", "nvm_template"} <= set(CHIPS)


@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize(("workload", "layers"), [("digits_cnn", 4), ("resnet18_cifar10", 21)])
def test_shipped_workload_on_every_chip(chip, workload, layers):
    path = ROOT / "workloads" / f"{workload}.onnx"
    mapping = NEEDS_OWN_MAPPING.get(chip, DEFAULT)
    for opt in ("latency", "energy", "edp") if workload == "digits_cnn" else ("edp",):
        check(evaluate(path, ROOT / "hardware" / f"{chip}.yaml", mapping, opt=opt), layers)


@pytest.mark.parametrize("chip", CHIPS)
@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_synthetic_workload_on_every_chip(chip, name):
    wl = SYNTHETIC[name]
    check(evaluate(wl, ROOT / "hardware" / f"{chip}.yaml", NEEDS_OWN_MAPPING.get(chip, DEFAULT)), len(wl.layers))


@pytest.mark.parametrize("chip", sorted(NEEDS_OWN_MAPPING))
def test_precision_mismatch_needs_the_chips_mapping(chip):
    """AIMC1 computes 2-bit weights and 7-bit inputs: 8-bit layers are refused, with the fix in the message."""
    with pytest.raises(InputError, match=r"W precision 8 bits exceeds the macro's weight_bits = 2 .*precision:"):
        evaluate(ROOT / "workloads" / "digits_cnn.onnx", ROOT / "hardware" / f"{chip}.yaml", DEFAULT)


@pytest.mark.parametrize("chip", CHIPS)
def test_evaluate_command_on_every_chip(chip, tmp_path, capsys):
    mapping = NEEDS_OWN_MAPPING.get(chip, DEFAULT)
    code = main(["evaluate", str(ROOT / "workloads" / "digits_cnn.onnx"), str(ROOT / "hardware" / f"{chip}.yaml"),
                 str(mapping), "--opt", "edp", "--output", str(tmp_path), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    assert summary["layers"] == 4 and summary["energy_pJ"] > 0 and summary["latency_cycles"] > 0
    assert (tmp_path / "summary.json").exists()
