"""PAC (PACiM): exactness at full operand, a cycle-by-cycle reference, dynamic cycle counts, unbiasedness,
the MAC experiment against the anchor, asymmetric UINT quantisation, digital macros, layers and the cost tie-in."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dse.accuracy.convert import convert
from dse.accuracy.core import CimConfig, cim_matmul
from dse.accuracy.layers import CimConv2d, CimLinear, cim_layers, pac_exact_cycles, set_mode
from dse.accuracy.mac_experiment import (
    MacSettings,
    bernoulli_words,
    ones_count,
    random_subsets,
    run_mac_experiment,
)
from dse.accuracy.pac import PacConfig, pac_matmul, plane_values, popcounts
from dse.accuracy.quant import ActivationQuantizer, quantize_weight_asymmetric
from dse.accuracy.simulate import calibrate, simulate_accuracy
from dse.api import evaluate
from dse.cli import main
from dse.cost.pac import pac_factors
from dse.errors import InputError
from dse.hardware import accelerator_from_dict, load_accelerator
from dse.hardware.loader import accelerator_to_dict

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "workloads" / "digits_cnn.onnx"
DIMC = ROOT / "hardware" / "dimc_template.yaml"
AIMC = ROOT / "hardware" / "aimc_template.yaml"
LOSSLESS = CimConfig(adc_bits=None)


def _codes(shape, bits: int, signed: bool, generator: torch.Generator, symmetric: bool = True) -> torch.Tensor:
    lo, hi = (-(2 ** (bits - 1)) + symmetric, 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    return torch.randint(lo, hi + 1, shape, generator=generator).float()


def _reference(x, w, pac: PacConfig, w_bits: int, x_bits: int, signed_w: bool, signed_x: bool, fan_in=None):
    """PAC cycle by cycle, row by row: the definition, with Python loops (small sizes only)."""
    n = fan_in or x.shape[-1]
    a, b = plane_values(w_bits, signed_w), plane_values(x_bits, signed_x)
    xp = [((x.long() >> j) & 1).double() for j in range(x_bits)]
    wp = [((w.long() >> i) & 1).double() for i in range(w_bits)]
    out = torch.zeros(x.shape[0], w.shape[1], dtype=torch.float64)
    cycles = torch.zeros(x.shape[0])
    p = pac.operand
    for m in range(x.shape[0]):
        dropped = 0
        if pac.dynamic:
            s = sum(abs(b[j]) * float(xp[j][m].sum()) for j in range(x_bits)) * pac.reference_window / n
            dropped = min(sum(s <= t for t in pac.thresholds), pac.max_dropped)
        for i in range(w_bits):
            for j in range(x_bits):
                ii, jj = i - (w_bits - p), j - (x_bits - p)
                if ii >= 0 and jj >= 0 and ii + jj >= dropped:
                    out[m] += a[i] * b[j] * (xp[j][m] @ wp[i])
                    cycles[m] += 1
                else:
                    out[m] += a[i] * b[j] * xp[j][m].sum() * wp[i].sum(0) / n
    return out, cycles


# -- pac_matmul ------------------------------------------------------------------------------------
@pytest.mark.parametrize("signed_w,signed_x", [(True, False), (False, False), (True, True), (False, True)])
def test_pac_with_operand_equal_to_the_bit_widths_is_exact(signed_w, signed_x) -> None:
    g = torch.Generator().manual_seed(1)
    x = _codes((2, 33, 70), 6, signed_x, g)
    w = _codes((2, 70, 5), 6, signed_w, g)
    config = CimConfig(weight_bits=6, input_bits=6, signed_inputs=signed_x, adc_bits=None)
    for dynamic in (False, True):
        result = pac_matmul(x, w, PacConfig(6, dynamic=dynamic, thresholds=(-3, -2, -1)), config,
                            signed_weights=signed_w)
        assert torch.equal(result.out, (x.double() @ w.double()).float())
        assert torch.equal(result.exact_cycles, torch.full((2, 33), 36.0))  # speculation above th2: none moved


@pytest.mark.parametrize("w_bits,x_bits,signed_w,signed_x,p,dynamic", [
    (8, 8, True, False, 4, False), (8, 8, True, False, 4, True), (6, 5, False, True, 3, True),
    (4, 4, True, True, 2, True), (8, 8, False, False, 1, False)])
def test_pac_matches_the_cycle_by_cycle_definition(w_bits, x_bits, signed_w, signed_x, p, dynamic) -> None:
    g = torch.Generator().manual_seed(2)
    x = _codes((40, 50), x_bits, signed_x, g)
    x = x * (torch.rand(40, 1, generator=g) < 0.6) // (1 + torch.randint(0, 30, (40, 1), generator=g))  # spread S
    if signed_x:
        x = x.clamp(-(2 ** (x_bits - 1)) + 1)
    w = _codes((50, 9), w_bits, signed_w, g)
    pac = PacConfig(p, dynamic=dynamic, thresholds=(300.0, 1500.0, 4000.0))
    config = CimConfig(weight_bits=w_bits, input_bits=x_bits, signed_inputs=signed_x, adc_bits=None)
    result = pac_matmul(x, w, pac, config, signed_weights=signed_w, fan_in=64)
    expected, cycles = _reference(x, w, pac, w_bits, x_bits, signed_w, signed_x, fan_in=64)
    assert torch.allclose(result.out.double(), expected, rtol=1e-6, atol=1e-3)
    assert torch.equal(result.exact_cycles, cycles)
    if dynamic and p == 4:
        assert {10.0, 16.0} <= set(cycles.tolist()) <= {10.0, 13.0, 15.0, 16.0}


def test_dynamic_configuration_counts_exact_cycles_by_threshold() -> None:
    assert [PacConfig(4).exact_cycles(d) for d in range(4)] == [16, 15, 13, 10]
    assert PacConfig(2, dynamic=True).max_dropped == 2 and PacConfig(1).max_dropped == 0
    # a 64x3x3 window (576 rows): the speculation is the window's code sum; thresholds 7000/10000/13000
    sums = [20000, 13001, 13000, 10000, 9000, 7001, 7000, 100, 0]
    x = torch.zeros(len(sums), 576)
    for row, total in enumerate(sums):
        full, rest = divmod(total, 255)
        x[row, :full], x[row, full] = 255, rest
    w = torch.randint(-127, 128, (576, 3)).float()
    cycles = pac_matmul(x, w, PacConfig(4, dynamic=True), LOSSLESS).exact_cycles
    assert cycles.tolist() == [16, 16, 15, 13, 13, 13, 10, 10, 10]
    # a 64-row window is rescaled by 576 / 64 = 9: sum 1500 -> S = 13500 -> all 16 cycles
    x64 = torch.zeros(2, 64)
    x64[0, :6], x64[1, :2] = 250, 250  # sums 1500 (S 13500) and 500 (S 4500)
    w64 = torch.randint(-127, 128, (64, 2)).float()
    assert pac_matmul(x64, w64, PacConfig(4, dynamic=True), LOSSLESS).exact_cycles.tolist() == [16, 10]


def test_pac_estimate_is_unbiased_for_independent_random_planes() -> None:
    """Independent Bernoulli input bits: the PAC error has mean ~0; dropping the LSB cycles is biased low."""
    g = torch.Generator().manual_seed(3)
    m, k = 20000, 64
    density = torch.tensor([0.5, 0.3, 0.2, 0.6, 0.4, 0.25, 0.35, 0.45])  # a density per input bit plane
    bits = (torch.rand(m, k, 8, generator=g) < density).long()
    x = (bits << torch.arange(8)).sum(-1).float()
    w = _codes((k, 4), 8, True, g)
    exact = x.double() @ w.double()
    err = pac_matmul(x, w, PacConfig(4), LOSSLESS).out.double() - exact
    z = err.mean(0) / (err.std(0) / m**0.5)
    assert bool((z.abs() < 4.5).all()), z  # unbiased: within 4.5 standard errors
    msb = (torch.div(x, 16, rounding_mode="floor") * 16).double() @ (torch.div(w, 16, rounding_mode="floor") * 16).double()
    drop = msb - exact
    assert bool((drop.mean(0).abs() > 10 * err.mean(0).abs()).all())


def test_pac_batches_broadcast_and_validation() -> None:
    g = torch.Generator().manual_seed(4)
    x, w = _codes((3, 20, 30), 8, False, g), _codes((3, 30, 7), 8, True, g)
    pac = PacConfig(4, dynamic=True, thresholds=(100, 1000, 5000))
    both = pac_matmul(x, w, pac, LOSSLESS)
    one = pac_matmul(x[1], w[1], pac, LOSSLESS)
    assert torch.allclose(both.out[1], one.out) and torch.equal(both.exact_cycles[1], one.exact_cycles)
    shared = pac_matmul(x, w[0], pac, LOSSLESS)  # one weight matrix for every batch
    assert torch.allclose(shared.out[2], pac_matmul(x[2], w[0], pac, LOSSLESS).out)
    assert torch.equal(popcounts(torch.tensor([[-1.0, 3.0, 0.0]]), 4), torch.tensor([[2.0, 2.0, 1.0, 1.0]]).double())
    with pytest.raises(ValueError, match="operand p = 9"):
        pac_matmul(x[0], w[0], PacConfig(9), LOSSLESS)
    with pytest.raises(ValueError, match="outside"):
        pac_matmul(x[0] + 300, w[0], PacConfig(4), LOSSLESS)
    with pytest.raises(ValueError, match="dynamic PAC needs exact cycles"):
        pac_matmul(x[0], w[0], pac, CimConfig(adc_bits=5))
    with pytest.raises(ValueError, match="thresholds"):
        PacConfig(4, thresholds=(3, 2, 1))
    assert PacConfig.from_dict(pac.to_dict()) == pac


def test_static_pac_on_an_analog_macro_runs_the_msb_cycles_through_it() -> None:
    g = torch.Generator().manual_seed(5)
    x, w = _codes((16, 48), 8, False, g), _codes((48, 6), 8, True, g)
    analog = CimConfig(adc_bits=5, rows=16)
    assert torch.equal(pac_matmul(x, w, PacConfig(8), analog).out, cim_matmul(x, w, analog))
    noisy = CimConfig(adc_bits=5, rows=16, noise_sigma_lsb=0.5)
    runs = [pac_matmul(x, w, PacConfig(4), noisy, generator=torch.Generator().manual_seed(7)).out for _ in range(2)]
    assert torch.equal(*runs)
    exact = pac_matmul(x, w, PacConfig(4), LOSSLESS).out
    assert 0 < (runs[0] - exact).abs().max() < 0.2 * exact.abs().max()
    with pytest.raises(ValueError, match="two's-complement weight planes"):
        pac_matmul(x, w + 127, PacConfig(4), analog, signed_weights=False)


# -- the MAC experiment ----------------------------------------------------------------------------
def test_mac_experiment_reproduces_the_anchor_and_popcount_means() -> None:
    settings = MacSettings(trials=20000, mac_trials=3000, seed=0)
    results = run_mac_experiment(settings)
    anchor = [(45.87, 5.23), (127.98, 6.90), (214.66, 6.71)]  # mean, std over 100,000 trials (notebook)
    assert [(r.ones_w, r.ones_x) for r in results] == [(307, 153), (512, 256), (716, 307)]
    for r, (mean, std) in zip(results, anchor, strict=True):
        assert r.and_mean == pytest.approx(mean, rel=0.01)
        assert r.and_std == pytest.approx(std, rel=0.05)
        assert sum(r.histogram.values()) == settings.trials
        assert abs(r.pac_bias) < 3 * r.pac_rmse / settings.mac_trials**0.5  # PAC is unbiased
        assert r.drop_bias < 0 and r.pac_rel_rmse < 0.01 < 0.1 < r.drop_rel_rmse  # drop-LSB loses ~11%
        assert r.rmse_ratio > 10


def test_random_planes_have_the_asked_ones() -> None:
    rng = np.random.default_rng(0)
    for k in (0, 3, 40, 99, 100):
        s = random_subsets(rng, 500, 100, k)
        assert (s.sum(1) == k).all()
    s = random_subsets(rng, 20000, 10, 3)
    assert np.allclose(s.mean(0), 0.3, atol=0.02)  # every position equally likely
    words = bernoulli_words(rng, (4000, 16), 0.15, 10)
    ones = np.bitwise_count(words).sum() / words.size / 64
    assert ones == pytest.approx(153 / 1024, abs=0.002)
    assert ones_count(0.15, 1024) == 153 and ones_count(0.7, 1024) == 716


def test_mac_experiment_command_writes_its_files(tmp_path, capsys) -> None:
    out = tmp_path / "mac"
    assert main(["mac-experiment", "--trials", "2000", "--mac-trials", "500", "--rows", "256", "--densities",
                 "0.5/0.25,0.3/0.15", "--output", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [p["ones_w"] for p in summary["pairs"]] == [128, 76]
    assert summary["settings"]["mac_trials"] == 500
    assert (out / "mac_experiment.csv").read_text().count("\n") == 3
    assert "plotly" in (out / "mac_experiment.html").read_text()[:100000].lower()
    assert json.loads((out / "mac_experiment.json").read_text())["pairs"][0]["histogram"]
    assert main(["mac-experiment", "--densities", "0.3/x", "--output", str(out)]) == 2


# -- asymmetric UINT quantisation --------------------------------------------------------------------
def test_asymmetric_weight_codes_have_an_exact_zero() -> None:
    w = torch.randn(4, 3, 3, 3) * torch.tensor([1.0, 5.0, 0.2, 2.0]).reshape(4, 1, 1, 1) + 0.3
    w[0, 0, 0, 0] = 0.0
    for per_channel in (False, True):
        codes, step, zero = quantize_weight_asymmetric(w, 8, per_channel)
        assert codes.min() >= 0 and codes.max() <= 255 and torch.equal(codes, codes.round())
        assert torch.equal(zero, zero.round())
        assert float(((codes - zero) * step)[0, 0, 0, 0]) == 0.0  # real zero is a code
        assert bool((((codes - zero) * step - w).abs() <= step / 2 + 1e-6).all())


def test_asymmetric_activation_quantiser_calibrates_a_range() -> None:
    q = ActivationQuantizer(4, asymmetric=True)
    q.calibrating = True
    q(torch.tensor([-1.0, 0.5, 2.0]))
    q.calibrating = False
    assert not q.signed and float(q.lower) == -1.0 and float(q.alpha) == 2.0
    assert float(q.step()) == pytest.approx(3.0 / 15) and float(q.zero_point()) == 5.0
    assert q.codes(torch.tensor([-5.0, 0.0, 9.0])).tolist() == [0.0, 5.0, 15.0]
    assert float(q(torch.tensor([0.0]))) == 0.0
    q.signed_flag.fill_(-1)  # what calibrate() does: a fresh range
    q.calibrating = True
    q(torch.tensor([0.0, 1.0]))
    assert float(q.lower) == 0.0 and "lower" in q.state_dict()
    assert "lower" not in ActivationQuantizer(4).state_dict()


@pytest.mark.parametrize("per_channel", [False, True])
def test_asymmetric_lossless_simulation_equals_the_fake_quantised_float_result(per_channel) -> None:
    torch.manual_seed(6)
    conv = nn.Conv2d(6, 4, 3, padding=1, groups=2)
    for layer, x in ((CimConv2d(conv, CimConfig(adc_bits=None, rows=16), per_channel=per_channel, asymmetric=True),
                      torch.randn(2, 6, 5, 5) + 0.4),
                     (CimLinear(nn.Linear(20, 7), LOSSLESS, per_channel=per_channel, asymmetric=True),
                      torch.randn(3, 20) - 0.2)):
        layer.mode = "inference"
        layer.act.calibrating = True
        with torch.no_grad():
            layer(x)
        layer.act.calibrating = False
        assert float(layer.act.zero_point()) > 0
        codes, step, zero = quantize_weight_asymmetric(layer.weight, 8, per_channel)
        w_fq = (codes - zero) * step
        x_fq = layer.act(x)
        if isinstance(layer, CimConv2d):
            expected = F.conv2d(x_fq, w_fq, layer.bias, padding=1, groups=2)
        else:
            expected = F.linear(x_fq, w_fq, layer.bias)
        with torch.no_grad():
            inference = layer(x)
            layer.mode = "simulate"
            simulated = layer(x)
            layer.pac = PacConfig(8)  # UINT planes through PAC with every cycle exact
            pac = layer(x)
        for got in (inference, simulated, pac):
            assert torch.allclose(got, expected, rtol=1e-4, atol=1e-5)


# -- layers, convert, digital macros ------------------------------------------------------------------
def test_digital_macro_layers_record_their_kind_and_pac(monkeypatch) -> None:
    model = convert(DIGITS, DIMC, {"*": {"pac_operand": 4, "pac_dynamic": True}})
    layers = cim_layers(model)
    assert {layer.macro_kind for layer in layers} == {"digital"}
    assert all(layer.config.adc_bits is None for layer in layers)
    assert [layer.pac is not None for layer in layers] == [not layer.digital for layer in layers]
    assert any(layer.pac is not None and layer.pac.dynamic for layer in layers)
    assert {layer.macro_kind for layer in cim_layers(convert(DIGITS, AIMC))} == {"analog"}
    with pytest.raises(InputError, match="dynamic PAC needs exact cycles"):
        convert(DIGITS, AIMC, {"*": {"pac_operand": 4, "pac_dynamic": True}})
    with pytest.raises(InputError, match="asymmetric"):
        convert(DIGITS, AIMC, asymmetric=True)
    with pytest.raises(InputError, match="must be <= min"):
        convert(DIGITS, DIMC, {"*": {"pac_operand": 9}})
    with pytest.raises(InputError, match="did you mean 'pac_operand'"):
        convert(DIGITS, DIMC, {"*": {"pac_operant": 4}})


def test_pac_in_a_conv_layer_does_not_depend_on_the_row_grouping() -> None:
    """The receptive field N = C k^2 divides the popcount product, not the zero-padded row groups."""
    torch.manual_seed(7)
    conv = nn.Conv2d(5, 4, 3, padding=1)
    x = torch.relu(torch.randn(2, 5, 6, 6))
    outs = []
    for rows in (16, 256):  # 16 rows: one 3x3 kernel per group, padded to 16 rows
        layer = CimConv2d(conv, CimConfig(adc_bits=None, rows=rows))
        layer.pac = PacConfig(4)
        calibrate(layer, [(x, None)])
        layer.mode = "simulate"
        with torch.no_grad():
            outs.append(layer(x))
        assert layer.pac_outputs == 2 * 36 and layer.pac_exact_cycles == 16 * 2 * 36
    assert torch.allclose(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    layer.pac = PacConfig(8)
    with torch.no_grad():
        full = layer(x)
        layer.pac = None
        assert torch.allclose(full, layer(x), rtol=1e-6, atol=1e-6)  # p = bit widths: exact


def test_simulate_accuracy_on_the_digital_template_with_and_without_pac() -> None:
    exact = simulate_accuracy(DIGITS, DIMC, samples=120, seed=0)
    assert exact.settings["macro"]["adc_bits"] is None
    assert exact.accuracy == pytest.approx(exact.float_accuracy, abs=0.02)
    pac = simulate_accuracy(DIGITS, DIMC, samples=120, seed=0, overrides={"*": {"pac_operand": 4,
                                                                                  "asymmetric": True}})
    assert pac.accuracy > 0.8
    model = convert(DIGITS, DIMC, {"*": {"pac_operand": 4, "pac_dynamic": True}})
    from dse.accuracy.datasets import load_split

    data = load_split("digits", "test", None, seed=0)
    batch = torch.stack([data[i][0] for i in range(64)])
    calibrate(model, [(batch, None)])
    set_mode(model, "simulate")
    with torch.no_grad():
        model(batch)
    means = pac_exact_cycles(model)
    assert means and all(10 <= v <= 16 for v in means.values())


# -- cost --------------------------------------------------------------------------------------------
def _with_pac(acc, p):
    data = accelerator_to_dict(acc)
    data["macro"].setdefault("accuracy", {})["pac_operand"] = p
    return accelerator_from_dict(data)


def test_pac_cost_falls_with_the_operand_and_is_unchanged_without_it() -> None:
    acc = load_accelerator(DIMC)
    mapping = ROOT / "mapping" / "default.yaml"
    base = evaluate(DIGITS, acc, mapping)
    full = evaluate(DIGITS, _with_pac(acc, 8), mapping)  # nothing approximated: the same cost
    assert full.energy_pJ == base.energy_pJ and full.latency_cycles == base.latency_cycles
    costs = [evaluate(DIGITS, _with_pac(acc, p), mapping) for p in (6, 4, 2)]
    energies = [base.energy_pJ] + [c.energy_pJ for c in costs]
    latencies = [base.latency_cycles] + [c.latency_cycles for c in costs]
    assert energies == sorted(energies, reverse=True) and len(set(energies)) == 4
    assert latencies == sorted(latencies, reverse=True) and latencies[-1] < latencies[0]
    four = costs[1].layers[1]
    assert four.macro_energy_pJ["pac"] > 0
    assert four.macro_energy_pJ["mults"] == pytest.approx(base.layers[1].macro_energy_pJ["mults"] / 4)
    factors = pac_factors(_with_pac(acc, 4).macro)
    assert (factors.bit_fraction, factors.cycle_fraction) == (0.25, 0.5)
    assert pac_factors(acc.macro) is None
    assert pac_factors(_with_pac(acc, 4).macro, exact_cycles=12).bit_fraction == 12 / 64
