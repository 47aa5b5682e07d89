"""NVM device variation and selective write-verify (SWIM): noise model, curvature, selection, Monte Carlo, CLI."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from dse.accuracy.convert import convert
from dse.accuracy.datasets import load_split
from dse.accuracy.layers import cim_layers, set_mode
from dse.accuracy.quant import weight_scale
from dse.accuracy.simulate import batches_of, calibrate, evaluate, sample_indices
from dse.accuracy.variation import (
    METHODS,
    monte_carlo_accuracy,
    noise_std_factor,
    nvm_layers,
    perturbed,
    sample_deltas,
    select,
    sensitivity,
    significance,
    uniform_masks,
    verified_count,
    weight_count,
)
from dse.cli import main
from dse.cost.programming import (
    program_energy_pJ,
    program_time_s,
    verified_weights,
    workload_weights,
    write_verify_cost,
)
from dse.hardware import DeviceVariation, load_accelerator
from dse.workload import load_onnx

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "workloads" / "digits_cnn.onnx"
NVM = ROOT / "hardware" / "nvm_template.yaml"
SWIM = DeviceVariation(dev_var=0.3, write_var=0.03)  # SWIM's defaults: no-verify accuracy drops to ~76%


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread is ~10x faster than a contended pool."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    """The digits CNN with every layer on the NVM array, calibrated, in exact integer mode; test batches; curvature."""
    torch.manual_seed(0)
    model = convert(DIGITS, NVM, digital=())
    train = load_split("digits", "train")
    calibrate(model, batches_of(train, 256, sample_indices(len(train), 512, 0)))
    set_mode(model, "inference")
    test = list(batches_of(load_split("digits", "test"), 512))
    scores = sensitivity(model, batches_of(train, 16, sample_indices(len(train), 768, 1)), seed=0)
    return model, test, scores


def _normalised(model, deltas) -> dict[str, torch.Tensor]:
    """Deviations in units of each layer's max|W| (the unit the noise is defined in)."""
    out = {}
    for layer in nvm_layers(model):
        step = weight_scale(layer.weight.detach(), layer.config.weight_bits, layer.per_channel)
        out[layer.name] = deltas[layer.name] * step / layer.weight.detach().abs().amax()
    return out


# ---------------------------------------------------------------------------------------------- noise model
def test_significance_and_std_factor():
    assert significance(8, 1).tolist() == [2.0 ** -i for i in range(1, 9)]
    assert significance(8, 2).tolist() == [4.0 ** -i for i in range(1, 5)]
    assert len(significance(8, 3)) == 3  # ceil(8/3) devices
    assert noise_std_factor(8, 1) == pytest.approx(math.sqrt((1 - 4.0 ** -8) / 3))  # ~0.577, SWIM's N=8, m=1
    assert noise_std_factor(8, 2) == pytest.approx(math.sqrt(sum(16.0 ** -i for i in range(1, 5))))


@pytest.mark.parametrize("bits_per_device", [1, 2])
def test_noise_std_matches_the_formula(digits, bits_per_device):
    model, _, _ = digits
    variation = replace(SWIM, bits_per_device=bits_per_device)
    factor = math.sqrt(sum(4.0 ** (-i * bits_per_device) for i in range(1, 8 // bits_per_device + 1)))
    # half the weights verified (a random half): each group has its own sigma
    masks = select(model, None, 0.5, "random", seed=3)
    deltas = _normalised(model, sample_deltas(model, variation, masks, torch.Generator().manual_seed(0)))
    noise = torch.cat([deltas[k].flatten() for k in deltas])
    verified = torch.cat([masks[k].flatten() for k in deltas])
    for sigma, group in ((variation.write_var, noise[verified]), (variation.dev_var, noise[~verified])):
        assert group.numel() > 9000
        assert group.std().item() == pytest.approx(sigma * factor, rel=0.03)
        assert abs(group.mean().item()) < 4 * sigma * factor / math.sqrt(group.numel())
    # per layer, relative to that layer's own max|W|
    unverified = _normalised(model, sample_deltas(model, variation, uniform_masks(model, False),
                                                  torch.Generator().manual_seed(1)))
    for name, d in unverified.items():
        assert d.std().item() == pytest.approx(variation.dev_var * factor, rel=0.25 if d.numel() < 1000 else 0.05), name


def test_deviation_in_code_units_and_cleared(digits):
    model, test, _ = digits
    clean = evaluate(model, test)
    deltas = sample_deltas(model, SWIM, uniform_masks(model, False), torch.Generator().manual_seed(0))
    with perturbed(model, deltas):
        assert all(layer.weight_delta is deltas[layer.name] for layer in nvm_layers(model))
        assert not any("weight_delta" in k for k in model.state_dict())  # never saved with the weights
        noisy = evaluate(model, test)
    assert all(layer.weight_delta is None for layer in cim_layers(model))
    assert evaluate(model, test) == clean and noisy < clean


def test_simulate_mode_gets_integer_codes():
    conv = convert(nn.Sequential(nn.Conv2d(2, 3, 3)), NVM, digital=())
    layer = cim_layers(conv)[0]
    codes, _ = layer._weight_codes()
    layer.weight_delta = torch.full_like(layer.weight, 0.4)
    layer.weight_delta[0, 0, 0, 0] = 1000.0
    layer.mode = "inference"
    real, _ = layer._weight_codes()
    assert torch.allclose(real.flatten()[1:], codes.flatten()[1:] + 0.4)
    layer.mode = "simulate"
    integer, _ = layer._weight_codes()
    assert torch.equal(integer.flatten()[1:], codes.flatten()[1:]) and integer.flatten()[0] == 127


# ---------------------------------------------------------------------------------------------- selection
@pytest.mark.parametrize("method", METHODS)
def test_selection_picks_exactly_the_rounded_count_globally(digits, method):
    model, _, scores = digits
    total = weight_count(model)
    assert total == 19088
    for fraction in (0.0, 0.00013, 0.013, 0.05, 0.5, 0.99997, 1.0):
        masks = select(model, scores, fraction, method, seed=1)
        expected = math.floor(fraction * total + 0.5)
        assert sum(int(m.sum()) for m in masks.values()) == expected == verified_count(total, fraction)
        assert verified_weights(total, fraction) == expected
        assert {k: m.shape for k, m in masks.items()} == {layer.name: layer.weight.shape for layer in nvm_layers(model)}


def test_selection_is_a_global_ranking(digits):
    model, _, scores = digits
    masks = select(model, scores, 0.05, "second")
    h = torch.cat([scores[k].flatten() for k in masks])
    chosen = torch.cat([masks[k].flatten() for k in masks])
    assert h[chosen].min() >= h[~chosen].max()
    assert sum(bool(m.any()) for m in masks.values()) >= 2  # one threshold over all layers, not per layer
    sm = select(model, scores, 0.05, "sm")
    assert torch.equal(torch.cat([sm[k].flatten() for k in sm]), chosen)  # |w| only breaks ties of |h|
    with pytest.raises(ValueError, match="needs curvature scores"):
        select(model, None, 0.1, "sm")
    with pytest.raises(ValueError, match="fraction = 1.5"):
        select(model, scores, 1.5, "random")


def test_fraction_one_is_all_verify_and_zero_is_none(digits):
    model, test, scores = digits
    for fraction, verified in ((1.0, True), (0.0, False)):
        for method in ("sm", "random"):
            masks = select(model, scores, fraction, method)
            assert all(bool((m == verified).all()) for m in masks.values())
            selected = monte_carlo_accuracy(model, test, masks, SWIM, instances=3, seed=5)
            baseline = monte_carlo_accuracy(model, test, uniform_masks(model, verified), SWIM, instances=3, seed=5)
            assert selected == baseline


def test_sensitivity_selection_beats_random(digits):
    """At 10% verified the curvature-ranked weights recover most of the loss; a random 10% recovers little."""
    model, test, scores = digits
    none = monte_carlo_accuracy(model, test, uniform_masks(model, False), SWIM, instances=6, seed=0)
    assert none.mean < 0.85  # the variation clearly hurts (97.5% without it)
    for seed in (0, 100, 200):
        random = monte_carlo_accuracy(model, test, select(model, None, 0.1, "random", seed=seed), SWIM, 6, seed)
        for method in ("sm", "second"):
            chosen = monte_carlo_accuracy(model, test, select(model, scores, 0.1, method), SWIM, 6, seed)
            assert chosen.mean > random.mean + 0.05, (seed, method, chosen.mean, random.mean)


# ---------------------------------------------------------------------------------------------- curvature
def test_estimators_match_the_exact_hessian_diagonal():
    """On a linear classifier the Hessian is the Gauss-Newton matrix: both estimators find its diagonal."""
    torch.manual_seed(0)
    model = convert(nn.Sequential(nn.Linear(6, 4)), NVM, digital=())
    x = torch.randn(48, 6)
    y = torch.randint(0, 4, (48,))
    calibrate(model, [(x, y)])
    set_mode(model, "inference")
    layer = nvm_layers(model)[0]
    unit = layer.weight.detach().abs().amax() / weight_scale(layer.weight.detach(), 8, False)

    def loss(delta: torch.Tensor) -> torch.Tensor:
        layer.weight_delta = delta
        try:
            return nn.functional.cross_entropy(model(x), y, reduction="sum") / len(y)
        finally:
            layer.weight_delta = None

    exact = torch.autograd.functional.hessian(loss, torch.zeros_like(layer.weight)).reshape(24, 24).diagonal()
    exact = exact.reshape(4, 6) * unit**2
    singles = [(x[i:i + 1], y[i:i + 1]) for i in range(len(y))]
    fisher = sensitivity(model, singles, draws=30, seed=0)[layer.name]
    hutchinson = sensitivity(model, [(x, y)], estimator="hutchinson", draws=400, seed=0)[layer.name]
    for estimate in (fisher, hutchinson):
        assert ((estimate - exact).norm() / exact.norm()).item() < 0.1
    assert layer.mode == "inference" and layer.weight_delta is None  # restored


# ---------------------------------------------------------------------------------------------- reproducibility
def test_seeded_reproducibility(digits):
    model, test, scores = digits
    masks = select(model, scores, 0.05, "sm")
    a = monte_carlo_accuracy(model, test, masks, SWIM, instances=3, seed=7)
    assert a == monte_carlo_accuracy(model, test, masks, SWIM, instances=3, seed=7)
    assert a.per_instance != monte_carlo_accuracy(model, test, masks, SWIM, instances=3, seed=8).per_instance
    # chip r of seed s is chip r-1 of seed s+1: instances are seeded one by one
    assert monte_carlo_accuracy(model, test, masks, SWIM, instances=2, seed=8).per_instance == a.per_instance[1:]
    assert a.std == pytest.approx(torch.tensor(a.per_instance, dtype=torch.float64).std().item())
    r1, r2 = (select(model, None, 0.05, "random", seed=s) for s in (1, 1))
    assert all(torch.equal(r1[k], r2[k]) for k in r1)
    r3 = select(model, None, 0.05, "random", seed=2)
    assert not all(torch.equal(r1[k], r3[k]) for k in r1)
    train = load_split("digits", "train")
    idx = sample_indices(len(train), 64, 0)
    s1, s2 = (sensitivity(model, batches_of(train, 16, idx), seed=3) for _ in range(2))
    assert all(torch.equal(s1[k], s2[k]) for k in s1)


# ---------------------------------------------------------------------------------------------- cost and CLI
def test_programming_cost_from_the_yaml(digits):
    model, _, _ = digits
    macro = load_accelerator(NVM).macro
    dv = macro.accuracy.device_variation
    assert (dv.dev_var, dv.write_var, dv.write_verify_energy_pJ, dv.write_verify_time_ns) == (0.3, 0.03, 80.0, 8000.0)
    weights = workload_weights(load_onnx(DIGITS))
    assert weights == weight_count(model) == 19088
    cost = write_verify_cost(macro, weights, 0.1)
    assert cost.verified == verified_count(weights, 0.1) == 1909
    assert cost.energy_pJ == program_energy_pJ(dv, 1909) == pytest.approx(1909 * 80.0)
    assert cost.time_s == program_time_s(dv, 1909) == pytest.approx(1909 * 8e-6)
    assert write_verify_cost(load_accelerator(ROOT / "hardware" / "aimc_template.yaml").macro, weights, 1).energy_pJ == 0


def test_cli_write_verify_writes_csv_html_json(tmp_path, capsys):
    out = tmp_path / "wv"
    code = main(["write-verify", "--instances", "2", "--fractions", "0,0.1,1", "--methods", "sm,random",
                 "--samples", "120", "--output", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    with open(out / "write_verify.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["method"], float(r["fraction"])) for r in rows] == [
        ("none", 0.0), ("all", 1.0), ("sm", 0.0), ("sm", 0.1), ("sm", 1.0), ("random", 0.0), ("random", 0.1),
        ("random", 1.0)]
    sm = rows[3]
    assert int(sm["verified"]) == 1909 and int(sm["weights"]) == 19088
    assert float(sm["program_energy_pJ"]) == pytest.approx(1909 * 80.0)
    assert float(sm["program_time_s"]) == pytest.approx(1909 * 8e-6)
    assert rows[2]["accuracy"] == rows[0]["accuracy"] and rows[4]["accuracy"] == rows[1]["accuracy"]
    assert float(rows[1]["accuracy"]) > float(rows[0]["accuracy"])
    page = (out / "write_verify.html").read_text()
    assert "plotly" in page and "no write-verify" in page and "all write-verified" in page
    assert summary["weights"] == 19088 and summary["settings"]["samples"] == 120
    assert json.loads((out / "write_verify.json").read_text())["points"] == summary["points"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--methods", "sm,bogus"], "methods = 'bogus': expected one of sm, second, magnitude, saliency, random"),
    (["--fractions", "0,1.5"], "fractions = 1.5: each fraction must be between 0 and 1"),
    (["--fractions", "0,x"], "--fractions = '0,x': expected a comma-separated list"),
    (["--dev-var", "-1"], "dev_var = -1.0: must be >= 0"),
])
def test_cli_write_verify_bad_input(tmp_path, capsys, argv, message):
    code = main(["write-verify", "--output", str(tmp_path), *argv])
    assert code == 2 and message in capsys.readouterr().err


def test_the_macro_yaml_drives_variation_in_simulation_and_cost() -> None:
    """verify_fraction in the hardware YAML: accuracy rises with it, programming cost is priced by it."""
    import dataclasses

    from dse.accuracy.simulate import accuracy_key, simulate_accuracy
    from dse.api import evaluate
    from dse.hardware import load_accelerator

    base = load_accelerator(ROOT / "hardware" / "nvm_template.yaml")

    def with_fraction(f: float):
        dv = dataclasses.replace(base.macro.accuracy.device_variation, verify_fraction=f)
        acc = dataclasses.replace(base.macro.accuracy, device_variation=dv)
        return dataclasses.replace(base, macro=dataclasses.replace(base.macro, accuracy=acc))

    none, some, every = (with_fraction(f) for f in (0.0, 0.1, 1.0))
    assert accuracy_key(none.macro) != accuracy_key(some.macro)
    kwargs = dict(repeats=3, samples=200, digital=())
    acc_none, acc_some, acc_all = (simulate_accuracy(DIGITS, a, **kwargs).accuracy for a in (none, some, every))
    assert acc_none < acc_some < acc_all
    costs = [evaluate(DIGITS, a, ROOT / "mapping" / "default.yaml").programming for a in (none, some, every)]
    assert [c.verified for c in costs] == [0, 1909, 19088]
    assert costs[2].energy_pJ == 19088 * base.macro.accuracy.device_variation.write_verify_energy_pJ
