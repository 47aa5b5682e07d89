"""End to end on real data: QAT of the digits CNN, bit-wise simulation on the AIMC template, the CLI."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from dse.accuracy.simulate import simulate_accuracy
from dse.accuracy.train import train
from dse.cli import main
from dse.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "workloads" / "digits_cnn.onnx"
AIMC = ROOT / "hardware" / "aimc_template.yaml"
LOSSLESS = {"*": {"adc_bits": None}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("qat")
    result = train(DIGITS, AIMC, epochs=3, lr=5e-4, output=out, overrides=LOSSLESS)
    assert len(result.history) == 3 and (out / "last.pt").is_file()
    return out / "last.pt"


def test_qat_w8a8_keeps_accuracy_with_a_lossless_adc_and_loses_it_at_3_bits_or_2pct_noise(trained) -> None:
    lossless = simulate_accuracy(DIGITS, AIMC, checkpoint=trained, overrides=LOSSLESS)
    assert lossless.samples == 360 and lossless.float_accuracy >= 0.95
    assert lossless.accuracy >= 0.95
    adc3 = simulate_accuracy(DIGITS, AIMC, checkpoint=trained, overrides={"*": {"adc_bits": 3}})
    noisy = simulate_accuracy(DIGITS, AIMC, checkpoint=trained, overrides={"*": {"noise_sigma_pct": 2.0}},
                              repeats=3)
    assert adc3.accuracy < lossless.accuracy - 0.10
    assert noisy.accuracy < lossless.accuracy - 0.05
    assert noisy.repeats == 3 and noisy.accuracy_std > 0


def test_simulation_is_reproducible_and_batch_size_free() -> None:
    kwargs = dict(overrides={"*": {"noise_sigma_pct": 1.0}}, samples=120, repeats=2, seed=3)
    a = simulate_accuracy(DIGITS, AIMC, batch_size=256, **kwargs)
    b = simulate_accuracy(DIGITS, AIMC, batch_size=256, **kwargs)
    assert a == b
    clean = simulate_accuracy(DIGITS, AIMC, samples=120, batch_size=256)
    assert clean == simulate_accuracy(DIGITS, AIMC, samples=120, batch_size=13)
    assert clean.repeats == 1  # a deterministic macro is simulated once


def test_training_resumes_from_its_checkpoint(tmp_path) -> None:
    first = train(DIGITS, AIMC, epochs=1, output=tmp_path, overrides=LOSSLESS)
    resumed = train(DIGITS, AIMC, epochs=2, output=tmp_path, overrides=LOSSLESS)
    assert resumed.history[0] == first.history[0] and len(resumed.history) == 2
    with pytest.raises(InputError, match=r"last.pt: was trained with macro_noise = False, this run asks for True"):
        train(DIGITS, AIMC, epochs=3, output=tmp_path, overrides=LOSSLESS, macro_noise=True)
    with pytest.raises(InputError, match=r"was trained with overrides = .*give another --output"):
        train(DIGITS, AIMC, epochs=3, output=tmp_path)


def test_a_checkpoint_that_is_not_ours_is_refused(tmp_path) -> None:
    bad = tmp_path / "evil.pt"
    with bad.open("wb") as fh:
        pickle.dump({"state_dict": print}, fh)
    with pytest.raises(InputError, match="evil.pt: cannot read the checkpoint"):
        simulate_accuracy(DIGITS, AIMC, checkpoint=bad)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.ones(2)}, other)
    with pytest.raises(InputError, match="not a cim-dse checkpoint"):
        simulate_accuracy(DIGITS, AIMC, checkpoint=other)


def test_cli_simulate_prints_the_documented_json(capsys, tmp_path) -> None:
    code = main(["simulate", "--workload", str(DIGITS), "--hardware", str(AIMC), "--dataset", "digits",
                 "--samples", "100", "--json", "--output", str(tmp_path)])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"accuracy", "accuracy_std", "float_accuracy", "samples"}
    assert out["samples"] == 100 and 0.5 < out["accuracy"] <= 1.0
    saved = json.loads((tmp_path / "accuracy.json").read_text())
    assert saved["accuracy"] == out["accuracy"]
    assert saved["kernel"].split("+")[0] in ("bitsliced", "popcount", "gemm", "torch")


def test_cli_bad_override_is_one_line(capsys) -> None:
    assert main(["simulate", "--override", "conv2", "--json"]) == 2
    assert "--override = 'conv2': expected LAYER_PATTERN:FIELD=VALUE" in capsys.readouterr().err
