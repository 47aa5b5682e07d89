"""Every shipped workload parses into the layers its architecture implies.

The expected layers are derived here from each network's published structure (channels,
strides, kernel sizes), independently of the torch definitions and of the exporter.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dse.workload import load_onnx

WORKLOADS = Path(__file__).resolve().parents[1] / "workloads"


def conv_macs(c_in: int, c_out: int, k: int, out: int, groups: int = 1) -> int:
    return c_out * (c_in // groups) * k * k * out * out


def resnet18(image: int, classes: int, imagenet_stem: bool) -> list[tuple[str, int]]:
    if imagenet_stem:
        size = image // 2  # 7x7 stride-2 conv
        layers = [("conv", conv_macs(3, 64, 7, size))]
        size //= 2  # 3x3 stride-2 max pool
    else:
        size = image
        layers = [("conv", conv_macs(3, 64, 3, size))]
    c_in = 64
    for c, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        size //= stride
        layers.append(("conv", conv_macs(c_in, c, 3, size)))
        layers.append(("conv", conv_macs(c, c, 3, size)))
        if stride != 1 or c_in != c:
            layers.append(("conv", conv_macs(c_in, c, 1, size)))
        layers += [("conv", conv_macs(c, c, 3, size))] * 2
        c_in = c
    return layers + [("gemm", 512 * classes)]


def mobilenetv2() -> list[tuple[str, int]]:
    size = 112
    layers = [("conv", conv_macs(3, 32, 3, size))]
    c_in = 32
    for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                       (6, 160, 3, 2), (6, 320, 1, 1)):
        for i in range(n):
            hidden = c_in * t
            if t != 1:
                layers.append(("conv", conv_macs(c_in, hidden, 1, size)))
            size //= s if i == 0 else 1
            layers.append(("dwconv", conv_macs(hidden, hidden, 3, size, groups=hidden)))
            layers.append(("conv", conv_macs(hidden, c, 1, size)))
            c_in = c
    return layers + [("conv", conv_macs(320, 1280, 1, size)), ("gemm", 1280 * 1000)]


def vit_b32() -> list[tuple[str, int]]:
    tokens, dim, heads, mlp = 50, 768, 12, 3072
    layers = [("conv", conv_macs(3, dim, 32, 7))]
    for _ in range(12):
        layers += [("matmul", tokens * dim * dim)] * 3  # q, k, v
        layers += [("matmul", heads * tokens * tokens * (dim // heads))] * 2  # Q K^T, A V
        layers += [("matmul", tokens * dim * dim), ("matmul", tokens * dim * mlp), ("matmul", tokens * mlp * dim)]
    return layers + [("gemm", dim * 1000)]


def digits_cnn() -> list[tuple[str, int]]:
    return [("conv", conv_macs(1, 16, 3, 8)), ("conv", conv_macs(16, 32, 3, 8)), ("conv", conv_macs(32, 32, 3, 4)),
            ("gemm", 32 * 4 * 4 * 10)]


EXPECTED = {
    "resnet18_cifar10": resnet18(32, 10, imagenet_stem=False),
    "resnet18_imagenet": resnet18(224, 1000, imagenet_stem=True),
    "mobilenetv2": mobilenetv2(),
    "vit_b32": vit_b32(),
    "digits_cnn": digits_cnn(),
}


def test_every_shipped_workload_is_covered():
    assert {p.stem for p in WORKLOADS.glob("*.onnx")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_layers_and_macs(name):
    workload = load_onnx(WORKLOADS / f"{name}.onnx")
    got = sorted((layer.op, layer.macs) for layer in workload.layers)
    assert got == sorted(EXPECTED[name])
    assert workload.total_macs == sum(m for _, m in EXPECTED[name])


def test_headline_totals():
    """The figures the README quotes: 0.56 GMAC (CIFAR-10) and 1.81 GMAC (ImageNet) for ResNet-18."""
    assert round(load_onnx(WORKLOADS / "resnet18_cifar10.onnx").total_macs / 1e9, 2) == 0.56
    assert load_onnx(WORKLOADS / "resnet18_imagenet.onnx").total_macs == 1_814_073_344


def test_vit_attention_and_depthwise_structure():
    vit = load_onnx(WORKLOADS / "vit_b32.onnx")
    attention = [layer for layer in vit.layers if not layer.weight_constant]
    assert len(attention) == 24
    assert {layer.loops.G for layer in attention} == {12}
    mnv2 = load_onnx(WORKLOADS / "mobilenetv2.onnx")
    dw = [layer for layer in mnv2.layers if layer.op == "dwconv"]
    assert len(dw) == 17
    assert all(layer.loops.C == 1 and layer.loops.K == 1 and layer.loops.G > 1 for layer in dw)
