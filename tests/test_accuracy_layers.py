"""CiM layers, conversion and quantisation: exactness against plain integer arithmetic, overrides, calibration."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dse.accuracy import core_bitsliced, core_fused
from dse.accuracy import layers as layers_module
from dse.accuracy.convert import config_from_macro, convert
from dse.accuracy.core import CimConfig
from dse.accuracy.layers import CimConv2d, CimLinear, CimMatMul, cim_layers, set_generator, set_mode
from dse.accuracy.quant import ActivationQuantizer, fake_quantize_weight, quantize_weight
from dse.accuracy.simulate import calibrate
from dse.errors import InputError
from dse.hardware import load_accelerator

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "workloads" / "digits_cnn.onnx"
AIMC = ROOT / "hardware" / "aimc_template.yaml"


def _calibrated(layer, *inputs):
    layer.mode = "inference"
    quantizers = [m for m in layer.modules() if isinstance(m, ActivationQuantizer)]
    for q in quantizers:
        q.calibrating = True
    with torch.no_grad():
        layer(*inputs)
    for q in quantizers:
        q.calibrating = False
    return layer


def test_weight_codes_are_symmetric_and_per_channel() -> None:
    w = torch.randn(4, 3, 3, 3) * torch.tensor([1.0, 10.0, 0.1, 3.0]).reshape(4, 1, 1, 1)
    codes, step = quantize_weight(w, 8, per_channel=True)
    assert codes.abs().max() == 127 and codes.min() >= -127
    assert torch.equal(codes.abs().reshape(4, -1).amax(1), torch.full((4,), 127.0))
    assert torch.allclose(fake_quantize_weight(w, 8, True), w, atol=float(step.max()) / 2 + 1e-6)
    _, step_t = quantize_weight(w, 8, per_channel=False)
    assert step_t.numel() == 1


def test_activation_codes_and_pact_gradient() -> None:
    q = ActivationQuantizer(4, pact=True)
    q.calibrating = True
    q(torch.tensor([0.0, 1.0, 3.0]))
    q.calibrating = False
    assert not q.signed and float(q.alpha.detach()) == 3.0
    x = torch.tensor([-1.0, 0.4, 1.5, 5.0], requires_grad=True)
    codes = q.codes(x)
    assert codes.tolist() == [0.0, 2.0, 8.0, 15.0]
    q(x).sum().backward()
    assert float(q.alpha.grad) == pytest.approx(1.0)  # only the clipped element reaches alpha
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0]  # straight through inside the range


def test_signedness_is_detected_at_calibration() -> None:
    q = ActivationQuantizer(8)
    q.calibrating = True
    q(torch.tensor([-2.0, 1.0]))
    assert q.signed and q.levels == 127


def test_uncalibrated_quantiser_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="before calibration"):
        ActivationQuantizer(8).codes(torch.ones(2))


@pytest.mark.parametrize("kwargs", [
    dict(in_channels=20, out_channels=6, kernel_size=3, padding=1),
    dict(in_channels=20, out_channels=6, kernel_size=3, stride=2, padding=0, dilation=2),
    dict(in_channels=8, out_channels=8, kernel_size=3, padding=1, groups=8),  # depthwise
    dict(in_channels=8, out_channels=4, kernel_size=(1, 3), padding="same", groups=2, bias=False),
    dict(in_channels=40, out_channels=5, kernel_size=1),
])
def test_conv_simulation_without_loss_equals_integer_conv(kwargs) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(**kwargs)
    layer = _calibrated(CimConv2d(conv, CimConfig(rows=32, adc_bits=None)), torch.rand(3, kwargs["in_channels"], 7, 6))
    x = torch.rand(3, kwargs["in_channels"], 7, 6)
    layer.mode = "inference"
    exact = layer(x)
    layer.mode = "simulate"
    assert torch.allclose(layer(x), exact, atol=1e-5)
    layer.mode = "float"
    assert torch.allclose(layer(x), conv(x), atol=1e-6)
    # the quantised result is close to float
    assert (exact - conv(x)).abs().max() < 0.05 * conv(x).abs().max()


def test_conv_rows_are_grouped_by_whole_kernels() -> None:
    """32 rows hold 3 whole 3x3 kernels (27 rows): with a lossy ADC the result must equal a matmul of
    explicitly arranged groups of 3 channels, not of consecutive 32-row slices."""
    torch.manual_seed(1)
    conv = nn.Conv2d(7, 4, 3, padding=1, bias=False)
    config = CimConfig(rows=32, adc_bits=3)
    layer = _calibrated(CimConv2d(conv, config), torch.rand(2, 7, 5, 5))
    layer.mode = "simulate"
    x = torch.rand(2, 7, 5, 5)
    got = layer(x)
    from dse.accuracy.core import cim_matmul
    from dse.accuracy.quant import quantize_weight as qw

    with torch.no_grad():
        x_codes = layer.act.codes(x)
        w_codes, w_step = qw(layer.weight, 8, False)
    cols = F.unfold(x_codes, 3, padding=1).transpose(1, 2).reshape(-1, 63)  # (b*L, 7*9)
    w = w_codes.reshape(4, 63).t()
    parts = [cim_matmul(cols[:, s:e], w[s:e], config) for s, e in ((0, 27), (27, 54), (54, 63))]
    want = sum(parts).reshape(2, 25, 4).permute(0, 2, 1).reshape(2, 4, 5, 5) * layer.act.step() * w_step
    assert torch.allclose(got, want, atol=1e-5)


BYTE_PATH_KERNELS = ["torch", "popcount", *(["bitsliced"] if core_bitsliced.library() is not None else [])]


@pytest.mark.parametrize("kernel", BYTE_PATH_KERNELS)
@pytest.mark.parametrize("kwargs, rows, signed", [
    (dict(in_channels=7, out_channels=4, kernel_size=3, padding=1), 32, False),  # groups of 3 kernels, padded
    (dict(in_channels=7, out_channels=4, kernel_size=3, padding=1), 32, True),  # signed (int8) codes
    (dict(in_channels=20, out_channels=6, kernel_size=3, stride=2, dilation=2), 27, False),  # 3 kernels fill 27
    (dict(in_channels=3, out_channels=5, kernel_size=3, padding=2), 32, False),  # one group
    (dict(in_channels=12, out_channels=6, kernel_size=(1, 3), padding="same", groups=3), 4, True),
    (dict(in_channels=8, out_channels=8, kernel_size=3, padding=1, groups=8), 16, False),  # depthwise
])
def test_byte_code_conv_path_equals_the_unfold_path(kernel, kwargs, rows, signed, monkeypatch) -> None:
    """The channels-last byte layout reorders rows only within a conversion: same outputs bit for bit, with a
    lossy ADC, hybrid cycles and seeded noise, on every kernel."""
    monkeypatch.setenv(core_fused.ENV, kernel)
    torch.manual_seed(2)
    conv = nn.Conv2d(**kwargs)
    c_in = kwargs["in_channels"]
    config = CimConfig(rows=rows, adc_bits=4, input_bits_per_cycle=2, hybrid_levels=2, noise_sigma_pct=1.0)
    calib = torch.randn(4, c_in, 9, 8) if signed else torch.rand(4, c_in, 9, 8)
    layer = _calibrated(CimConv2d(conv, config), calib)
    layer.mode = "simulate"
    assert layer.act.signed == signed
    x = (torch.randn if signed else torch.rand)(4, c_in, 9, 8)
    taken = []
    byte_path = CimConv2d._simulate_bytes
    monkeypatch.setattr(CimConv2d, "_simulate_bytes", lambda *a: taken.append(1) or byte_path(*a))

    def simulate(seed: int) -> torch.Tensor:
        layer.generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            return layer(x)

    bytes_out = simulate(9)
    assert taken == [1]
    with monkeypatch.context() as m:
        m.setattr(layers_module, "_byte_codes_fit", lambda *a: False)  # the unfold path
        assert torch.equal(bytes_out, simulate(9))
    assert taken == [1]
    assert not torch.equal(bytes_out, simulate(10))  # the noise is real


def test_conv_takes_the_unfold_path_for_wide_codes_and_big_kernels(monkeypatch) -> None:
    """Inputs above 8 bits, or a kernel larger than a conversion (rows split inside kernels, where the row order
    matters), keep the unfold path; so do non-integer or out-of-range codes (cim_matmul reports them)."""
    calls = []
    monkeypatch.setattr(CimConv2d, "_simulate_bytes", lambda *a, **k: calls.append(a) or None)
    torch.manual_seed(3)
    for config, kernel in ((CimConfig(rows=32, input_bits=10, adc_bits=5), 3), (CimConfig(rows=8, adc_bits=5), 3)):
        layer = _calibrated(CimConv2d(nn.Conv2d(3, 2, kernel, padding=1), config), torch.rand(2, 3, 5, 5))
        layer.mode = "simulate"
        with torch.no_grad():
            assert layer(torch.rand(2, 3, 5, 5)).shape == (2, 2, 5, 5)
    assert calls == []
    layer.act.codes = lambda x: torch.full_like(x, 0.5)
    with pytest.raises(ValueError, match="integer codes"), torch.no_grad():
        layer(torch.rand(2, 3, 5, 5))


def test_linear_and_matmul_lossless_simulation_is_exact() -> None:
    torch.manual_seed(2)
    lin = _calibrated(CimLinear(nn.Linear(50, 7), CimConfig(rows=16)), torch.randn(4, 3, 50))
    x = torch.randn(4, 3, 50)
    lin.mode = "inference"
    exact = lin(x)
    lin.mode = "simulate"
    assert lin.act.signed
    assert torch.allclose(lin(x), exact, atol=1e-5)

    mm = _calibrated(CimMatMul(CimConfig(rows=16)), torch.randn(2, 5, 20), torch.randn(2, 20, 6))
    a, b = torch.randn(2, 5, 20), torch.randn(2, 20, 6)
    mm.mode = "inference"
    exact = mm(a, b)
    mm.mode = "simulate"
    assert torch.allclose(mm(a, b), exact, atol=1e-5)
    assert (exact - a @ b).abs().max() < 0.05 * (a @ b).abs().max()


def test_convert_digits_onnx_keeps_stem_and_classifier_digital() -> None:
    model = convert(DIGITS, AIMC)
    layers = cim_layers(model)
    assert [type(m).__name__ for m in layers] == ["CimConv2d", "CimConv2d", "CimConv2d", "CimLinear"]
    assert [m.name for m in layers] == ["/conv1/Conv", "/conv2/Conv", "/conv3/Conv", "/fc/Gemm"]
    assert [m.digital for m in layers] == [True, False, False, True]
    macro = load_accelerator(AIMC).macro
    assert layers[1].config.adc_bits == macro.adc_bits and layers[1].config.rows == macro.rows
    assert layers[0].config.adc_bits is None
    everything = convert(DIGITS, AIMC, digital=())
    assert not any(m.digital for m in cim_layers(everything))


def test_overrides_by_pattern_and_bad_overrides() -> None:
    model = convert(DIGITS, AIMC, {"/conv3/*": {"adc_bits": 3, "noise_sigma_pct": 1.0}, "/fc/Gemm": {"digital": False}})
    layers = {m.name: m for m in cim_layers(model)}
    assert layers["/conv3/Conv"].config.adc_bits == 3 and layers["/conv3/Conv"].config.noise_sigma_pct == 1.0
    assert layers["/conv2/Conv"].config.adc_bits == load_accelerator(AIMC).macro.adc_bits
    assert not layers["/fc/Gemm"].digital and layers["/fc/Gemm"].config.adc_bits is not None
    with pytest.raises(InputError, match=r"overrides\./conv3/Conv\.adc_bitz: unknown CiM setting \(did you mean 'adc_bits'"):
        convert(DIGITS, AIMC, {"/conv3/Conv": {"adc_bitz": 3}})
    with pytest.raises(InputError, match=r"overrides\./conv9/Conv: matches no compute layer \(did you mean '/conv3/Conv'"):
        convert(DIGITS, AIMC, {"/conv9/Conv": {"adc_bits": 3}})


def test_config_from_digital_macro_is_lossless() -> None:
    macro = load_accelerator(ROOT / "hardware" / "dimc_template.yaml").macro
    config = config_from_macro(macro)
    assert config.adc_bits is None and config.lossless


def test_calibration_then_simulation_does_not_depend_on_batch_size() -> None:
    from dse.accuracy.datasets import load_split

    model = convert(DIGITS, AIMC, {"*": {"adc_bits": 4}}, digital=())
    train = load_split("digits", "train")
    calibrate(model, [(train.tensors[0][:256], None)])
    set_mode(model, "simulate")
    x = load_split("digits", "test").tensors[0][:40]
    with torch.no_grad():
        whole = model(x)
        pieces = torch.cat([model(x[i:i + 7]) for i in range(0, 40, 7)])
    assert torch.allclose(whole, pieces, atol=1e-5)


def test_noisy_simulation_is_seeded() -> None:
    model = convert(DIGITS, AIMC, {"*": {"noise_sigma_pct": 2.0}})
    x = torch.rand(8, 1, 8, 8)
    calibrate(model, [(x, None)])
    outs = []
    for seed in (0, 0, 1):
        set_generator(model, torch.Generator().manual_seed(seed))
        with torch.no_grad():
            outs.append(model(x))
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])
