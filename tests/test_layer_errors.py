"""Per-layer output error against the exact integer result (dse.accuracy.layer_errors, simulate --layer-errors)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from dse.accuracy.core import CimConfig
from dse.accuracy.layer_errors import ErrorStats, layer_errors, summarise, tracking_errors
from dse.accuracy.layers import CimLinear, cim_layers, set_generator, set_mode
from dse.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _linear(adc_bits: int | None, noise: float = 0.0) -> CimLinear:
    torch.manual_seed(0)
    config = CimConfig(weight_bits=8, input_bits=8, rows=64, adc_bits=adc_bits, noise_sigma_pct=noise)
    layer = CimLinear(nn.Linear(200, 16), config, name="fc")
    layer.act.calibrating = True
    layer.mode = "inference"
    with torch.no_grad():
        layer(torch.rand(32, 200))
    layer.act.calibrating = False
    return layer


def _sums(layer: CimLinear, x: torch.Tensor) -> tuple[float, float, float]:
    """Sum of ref^2, of err^2 and of err, computed here from the two modes' integer results."""
    step = float(layer.act.step()) * layer._weight_codes()[1].reshape(-1)
    with torch.no_grad():
        set_mode(layer, "inference")
        ref = (layer(x) - layer.bias) / step
        set_mode(layer, "simulate")
        sim = (layer(x) - layer.bias) / step
    diff = (sim - ref).double()
    return float((ref.double() ** 2).sum()), float((diff ** 2).sum()), float(diff.sum())


def test_tracked_error_is_the_simulated_minus_the_exact_result() -> None:
    layer = _linear(adc_bits=5)
    x = torch.rand(40, 200)
    want_signal, want_error, want_bias = _sums(layer, x)
    with tracking_errors(layer) as stats:
        with torch.no_grad():
            layer(x)
        assert layer.error_stats is stats["fc"]
    assert layer.error_stats is None  # detached after the block
    s = stats["fc"]
    assert s.outputs == 40 * 16
    assert s.signal == pytest.approx(want_signal, rel=1e-4)
    assert s.error == pytest.approx(want_error, rel=1e-3) and s.error > 0
    assert s.bias == pytest.approx(want_bias, rel=1e-3, abs=1e-3 * math.sqrt(want_error))
    e = summarise("fc", s)
    assert e.sqnr_db == pytest.approx(10 * math.log10(want_signal / want_error), abs=1e-3)
    assert e.relative_rmse == pytest.approx(math.sqrt(want_error / want_signal), rel=1e-3)


def test_a_lossless_layer_is_exact_and_more_adc_bits_give_a_higher_sqnr() -> None:
    x = torch.rand(64, 200)
    sqnr = {}
    for bits in (None, 4, 6, 8):
        layer = _linear(adc_bits=bits)
        set_mode(layer, "simulate")
        with tracking_errors(layer) as stats, torch.no_grad():
            layer(x)
        (e,) = layer_errors(stats)
        sqnr[bits] = e.sqnr_db
        if bits is None:
            assert e.rmse == 0 and e.sqnr_db is None and e.relative_rmse == 0
    assert sqnr[4] < sqnr[6] < sqnr[8]


def test_noise_lowers_the_sqnr_and_only_simulate_mode_is_measured() -> None:
    x = torch.rand(64, 200)
    quiet, noisy = _linear(adc_bits=8), _linear(adc_bits=8, noise=2.0)
    out = {}
    for name, layer in (("quiet", quiet), ("noisy", noisy)):
        set_generator(layer, torch.Generator().manual_seed(1))
        with tracking_errors(layer) as stats, torch.no_grad():
            set_mode(layer, "inference")
            layer(x)  # not counted: the exact mode has no macro error to measure
            set_mode(layer, "simulate")
            layer(x)
        assert stats["fc"].outputs == 64 * 16
        out[name] = summarise("fc", stats["fc"]).sqnr_db
    assert out["noisy"] < out["quiet"] - 3


def test_error_summary_of_nothing_and_of_zero_signal() -> None:
    assert layer_errors({"a": ErrorStats()}) == []
    s = ErrorStats()
    s.add(torch.ones(4), torch.zeros(4))
    e = summarise("z", s)
    assert e.sqnr_db is None and e.relative_rmse is None and e.rmse == 1.0 and e.mean_error == 1.0


def test_simulate_cli_reports_each_layers_error(capsys) -> None:
    assert main(["simulate", "--samples", "40", "--override", "*:adc_bits=4", "--layer-errors", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"accuracy", "accuracy_std", "float_accuracy", "samples", "layers"}
    by_name = {e["layer"]: e for e in out["layers"]}
    assert list(by_name) == ["/conv1/Conv", "/conv2/Conv", "/conv3/Conv", "/fc/Gemm"]
    assert by_name["/conv1/Conv"]["sqnr_db"] is None and by_name["/conv1/Conv"]["rmse"] == 0  # digital stem
    assert by_name["/conv2/Conv"]["sqnr_db"] < 20 and by_name["/conv2/Conv"]["outputs"] == 40 * 32 * 8 * 8
    assert main(["simulate", "--samples", "40", "--json"]) == 0
    assert "layers" not in json.loads(capsys.readouterr().out)


def test_tracking_names_every_cim_layer() -> None:
    from dse.accuracy.convert import convert

    model = convert(ROOT / "workloads" / "digits_cnn.onnx", ROOT / "hardware" / "aimc_template.yaml")
    with tracking_errors(model) as stats:
        assert list(stats) == [layer.name for layer in cim_layers(model)]
        assert all(layer.error_stats is stats[layer.name] for layer in cim_layers(model))
    assert all(layer.error_stats is None for layer in cim_layers(model))
