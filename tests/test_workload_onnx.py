"""ONNX loader: loop extraction per op family, graph edges, precisions and the bad-input catalogue."""

from __future__ import annotations

import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnx_factory as fx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from dse.errors import InputError
from dse.workload import COMPUTE_OPS, LOOP_DIMS, Layer, Loops, OtherOp, Precision, Workload, load_onnx

ZIGZAG_RESNET18 = Path(__file__).parent / "data" / "zigzag_resnet18.onnx"


def only_layer(workload: Workload) -> Layer:
    (layer,) = workload.layers
    return layer


def loops_of(model: onnx.ModelProto, **kw) -> Loops:
    return only_layer(load_onnx(model, **kw)).loops


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def torch_conv(model: onnx.ModelProto, layer: Layer, x: np.ndarray) -> np.ndarray:
    """The conv the parsed layer describes, in torch with explicit (top, left, bottom, right) padding."""
    weights = {t.name: onnx.numpy_helper.to_array(t).copy() for t in model.graph.initializer}
    top, left, bottom, right = layer.padding
    padded = F.pad(torch.from_numpy(x), (left, right, top, bottom))
    bias = torch.from_numpy(weights["b"]) if layer.has_bias else None
    out = F.conv2d(
        padded, torch.from_numpy(weights["W"]), bias, stride=layer.stride, dilation=layer.dilation,
        groups=layer.loops.G,
    )  # fmt: skip
    return out.numpy()


# -- ZigZag's ResNet-18 ---------------------------------------------------------------------------


def test_zigzag_resnet18_layers_macs_and_residuals():
    workload = load_onnx(ZIGZAG_RESNET18)
    assert workload.name == "zigzag_resnet18"
    assert workload.source.endswith("zigzag_resnet18.onnx")
    layers = workload.layers
    assert len(layers) == 21
    assert [la.onnx_op for la in layers].count("Conv") == 20
    assert [la.onnx_op for la in layers].count("Gemm") == 1
    other = [n for n in workload if isinstance(n, OtherOp)]
    assert len(other) == 28  # 17 Relu, 8 Add, MaxPool, GlobalAveragePool, Flatten
    assert len(workload) == 49

    def conv(out_hw, k_out, c_in, kernel):
        return out_hw * out_hw * k_out * c_in * kernel * kernel

    expected = [conv(112, 64, 3, 7)]  # conv1, stride 2, 224 -> 112
    expected += [conv(56, 64, 64, 3)] * 4  # layer1: two basic blocks
    for out_hw, k_out in ((28, 128), (14, 256), (7, 512)):  # layer2..4: first block downsamples
        c_in = k_out // 2
        expected += [conv(out_hw, k_out, c_in, 3), conv(out_hw, k_out, k_out, 3)]
        expected += [conv(out_hw, k_out, c_in, 1)]  # 1x1 stride-2 downsample
        expected += [conv(out_hw, k_out, k_out, 3)] * 2
    expected.append(512 * 1000)  # fc
    assert [la.macs for la in layers] == expected
    assert sum(expected) == 1_814_073_344
    assert workload.total_macs == 1_814_073_344

    first = layers[0]
    assert first.loops == Loops(B=1, K=64, C=3, OY=112, OX=112, FY=7, FX=7, G=1)
    assert (first.stride, first.padding) == ((2, 2), (3, 3, 3, 3))
    assert first.has_bias and first.weight_constant
    fc = layers[-1]
    assert (fc.op, fc.loops) == ("gemm", Loops(B=1, K=1000, C=512))

    adds = [n for n in workload if n.onnx_op == "Add"]
    assert len(adds) == 8
    for add in adds:
        assert len(workload.producers(add.name)) == 2
    json = workload.to_json()
    assert json["other_ops"] == 28 and len(json["layers"]) == 21


# -- Conv ------------------------------------------------------------------------------------------


def test_grouped_conv():
    layer = only_layer(load_onnx(fx.conv_model([1, 8, 10, 12], [12, 2, 3, 3], group=4, pads=[1, 1, 1, 1])))
    assert layer.op == "conv"
    assert layer.loops == Loops(B=1, G=4, K=3, C=2, OY=10, OX=12, FY=3, FX=3)
    assert layer.weight_count == 12 * 2 * 3 * 3


def test_depthwise_conv_with_multiplier():
    layer = only_layer(load_onnx(fx.conv_model([2, 8, 9, 9], [16, 1, 3, 3], group=8, strides=[2, 2])))
    assert layer.op == "dwconv"
    assert layer.loops == Loops(B=2, G=8, K=2, C=1, OY=4, OX=4, FY=3, FX=3)


def test_single_channel_conv_is_not_depthwise():
    assert only_layer(load_onnx(fx.conv_model([1, 1, 8, 8], [4, 1, 3, 3]))).op == "conv"


def test_non_square_everything_keeps_y_and_x_straight():
    """H != W, kH != kW, sH != sW, dH != dW, asymmetric pads: nothing swapped."""
    attrs = {"strides": [2, 3], "dilations": [2, 1], "pads": [1, 2, 0, 3]}
    model = fx.conv_model([2, 3, 20, 31], [5, 3, 3, 5], weights="random", **attrs)
    layer = only_layer(load_onnx(model))
    # OY = floor((20 + 1 + 0 - 2*2 - 1) / 2) + 1 = 9; OX = floor((31 + 2 + 3 - 4 - 1) / 3) + 1 = 11
    assert layer.loops == Loops(B=2, K=5, C=3, OY=9, OX=11, FY=3, FX=5, G=1)
    assert layer.stride == (2, 3)
    assert layer.dilation == (2, 1)
    assert layer.padding == (1, 2, 0, 3)
    x = np.random.default_rng(1).standard_normal((2, 3, 20, 31)).astype(np.float32)
    np.testing.assert_allclose(torch_conv(model, layer, x), run_ort(model, {"x": x}), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("auto_pad", "padding"),
    [("SAME_UPPER", (1, 0, 2, 1)), ("SAME_LOWER", (2, 1, 1, 0)), ("VALID", (0, 0, 0, 0))],
)
def test_auto_pad(auto_pad, padding):
    model = fx.conv_model([1, 3, 11, 14], [4, 3, 4, 3], weights="random", strides=[2, 3], auto_pad=auto_pad)
    layer = only_layer(load_onnx(model))
    # SAME: out = ceil(in / stride): 6 x 5; total pad Y = 5*2 + 4 - 11 = 3, X = 4*3 + 3 - 14 = 1
    expected_out = (6, 5) if auto_pad != "VALID" else (4, 4)
    assert expected_out == (layer.loops.OY, layer.loops.OX)
    assert layer.padding == padding
    x = np.random.default_rng(2).standard_normal((1, 3, 11, 14)).astype(np.float32)
    np.testing.assert_allclose(torch_conv(model, layer, x), run_ort(model, {"x": x}), rtol=1e-4, atol=1e-4)


def test_conv_bias_flag():
    assert only_layer(load_onnx(fx.conv_model([1, 3, 8, 8], [4, 3, 3, 3], bias=True))).has_bias
    layer = only_layer(load_onnx(fx.conv_model([1, 3, 8, 8], [4, 3, 3, 3], bias=False)))
    assert not layer.has_bias
    assert (layer.input, layer.weight, layer.output) == ("x", "W", "y")


def test_conv_1d_runs_along_x():
    model = fx.conv_model([1, 4, 50], [8, 4, 5], strides=[2], pads=[1, 2], dilations=[3])
    layer = only_layer(load_onnx(model))
    # OX = floor((50 + 1 + 2 - 3*4 - 1) / 2) + 1 = 21
    assert layer.loops == Loops(B=1, K=8, C=4, OY=1, OX=21, FY=1, FX=5, G=1)
    assert (layer.stride, layer.dilation, layer.padding) == ((1, 2), (1, 3), (0, 1, 0, 2))


def test_conv_3d_is_rejected_naming_the_node():
    model = fx.conv_model([1, 2, 4, 8, 8], [3, 2, 3, 3, 3], node_name="c3d")
    with pytest.raises(InputError, match=r"<model>: node 'c3d' \(Conv\): 3-D convolution"):
        load_onnx(model)


def test_conv_output_value_info_disagreeing_with_attributes():
    model = fx.conv_model([1, 3, 8, 8], [4, 3, 3, 3])
    model.graph.output[0].CopyFrom(fx.value("y", [1, 4, 7, 6]))
    with pytest.raises(InputError, match=r"node 'conv' \(Conv\): output 'y' has shape \[1, 4, 7, 6\]"):
        load_onnx(model)


def test_conv_bad_group():
    with pytest.raises(InputError, match=r"node 'conv' \(Conv\): group = 3"):
        load_onnx(fx.conv_model([1, 4, 8, 8], [6, 2, 3, 3], group=3))


# -- Gemm ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a_shape", "b_shape", "attrs"),
    [
        ([4, 16], [16, 10], {}),
        ([16, 4], [16, 10], {"transA": 1}),
        ([4, 16], [10, 16], {"transB": 1}),
        ([16, 4], [10, 16], {"transA": 1, "transB": 1, "alpha": 0.5, "beta": 2.0}),
    ],
)
@pytest.mark.parametrize("bias", [True, False])
def test_gemm_transposes_and_bias(a_shape, b_shape, attrs, bias):
    layer = only_layer(load_onnx(fx.gemm_model(a_shape, b_shape, bias=bias, **attrs)))
    assert layer.op == "gemm"
    assert layer.loops == Loops(B=4, C=16, K=10)
    assert layer.has_bias is bias
    assert (layer.input, layer.weight, layer.weight_constant) == ("a", "B", True)


# -- MatMul ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a_shape", "b_shape", "loops"),
    [
        ([5, 16], [16, 8], Loops(B=5, OX=1, C=16, K=8)),
        ([2, 7, 16], [16, 8], Loops(B=2, OX=7, C=16, K=8)),
        ([2, 3, 7, 16], [16, 8], Loops(B=6, OX=7, C=16, K=8)),
        ([2, 3, 7, 16], [3, 16, 8], Loops(B=2, G=3, OX=7, C=16, K=8)),  # batched constant weights
        ([2, 3, 7, 16], [1, 3, 16, 8], Loops(B=2, G=3, OX=7, C=16, K=8)),
        ([2, 3, 7, 16], [2, 1, 16, 8], Loops(B=3, G=2, OX=7, C=16, K=8)),
        ([4, 7, 16], [4, 16, 8], Loops(B=1, G=4, OX=7, C=16, K=8)),
        ([5, 16], [3, 16, 8], Loops(B=5, G=3, OX=1, C=16, K=8)),  # 2-D A broadcast over B's batch
        ([16], [16, 8], Loops(B=1, C=16, K=8)),
        ([5, 16], [16], Loops(B=5, C=16, K=1)),
    ],
)
def test_matmul_shapes(a_shape, b_shape, loops):
    layer = only_layer(load_onnx(fx.matmul_model(a_shape, b_shape)))
    assert (layer.op, layer.onnx_op) == ("matmul", "MatMul")
    assert layer.loops == loops
    assert layer.weight_constant
    assert (layer.input, layer.weight, layer.output) == ("a", "B", "y")


def test_matmul_against_onnxruntime_output_size():
    """B * G * OX * K equals the number of output elements for every shape pair above."""
    pairs = [([2, 3, 7, 16], [3, 16, 8]), ([2, 3, 7, 16], [2, 1, 16, 8]), ([5, 16], [3, 16, 8])]
    for a_shape, b_shape in pairs:
        model = fx.matmul_model(a_shape, b_shape)
        lp = loops_of(model)
        out = run_ort(model, {"a": np.zeros(a_shape, np.float32)})
        assert out.size == lp.B * lp.G * lp.OX * lp.K
        assert lp.macs == out.size * lp.C


def test_attention_matmuls_are_activation_products():
    workload = load_onnx(fx.attention_model(batch=2, heads=12, seq=50, dim=64))
    qk, av = workload.layers
    assert qk.loops == Loops(B=1, G=24, OX=50, C=64, K=50)
    assert av.loops == Loops(B=1, G=24, OX=50, C=50, K=64)
    assert not qk.weight_constant and not av.weight_constant
    assert (qk.input, qk.weight, av.input, av.weight) == ("q", "kt", "p", "v")
    assert workload.producers("qk") == ["k_T"]
    assert workload.producers("av") == ["softmax"]
    assert workload.graph.edges["k_T", "qk"]["tensor"] == "kt"
    assert workload.total_weights == 0


def test_weight_through_transpose_or_dequantize_of_initializer_is_constant():
    nodes = [
        helper.make_node("Transpose", ["Wt"], ["W"], name="wT", perm=[1, 0]),
        helper.make_node("MatMul", ["a", "W"], ["h"], name="mm1"),
        helper.make_node("DequantizeLinear", ["Wq", "scale", "zp"], ["W2"], name="dq"),
        helper.make_node("Reshape", ["W2", "shape"], ["W2r"], name="rs"),
        helper.make_node("MatMul", ["h", "W2r"], ["y"], name="mm2"),
        helper.make_node("MatMul", ["y", "act"], ["z"], name="mm3"),
    ]
    inits = [
        fx.init("Wt", [8, 16]),
        fx.init("Wq", [4, 8], np.int8),
        fx.init("scale", [], np.float32, 0.1),
        fx.init("zp", [], np.int8),
        onnx.numpy_helper.from_array(np.array([8, 4], np.int64), "shape"),
    ]
    model = fx.model(nodes, [fx.value("a", [3, 16]), fx.value("act", [4, 2])], [fx.value("z", None)], inits)
    workload = load_onnx(model)
    mm1, mm2, mm3 = workload.layers
    assert mm1.weight_constant and mm2.weight_constant and not mm3.weight_constant
    assert mm1.loops == Loops(B=3, C=16, K=8)
    assert mm2.loops == Loops(B=3, C=8, K=4)
    assert workload.producers("mm2") == ["mm1", "rs"]


@pytest.mark.parametrize(
    ("b_shape", "loops"),
    [([16, 5], Loops(B=5, C=16, K=8)), ([2, 16, 5], Loops(B=2, OX=5, C=16, K=8))],
)
def test_constant_first_matmul_stores_the_constant(b_shape, loops):
    """W @ x: the macro holds W, so the product is read as (x^T W^T)^T with W the stored operand."""
    node = helper.make_node("MatMul", ["W", "x"], ["y"], name="wx")
    model = fx.model([node], [fx.value("x", b_shape)], [fx.value("y", None)], [fx.init("W", [8, 16])])
    layer = only_layer(load_onnx(model))
    assert layer.loops == loops
    assert (layer.weight, layer.input, layer.weight_constant) == ("W", "x", True)
    out = run_ort(model, {"x": np.zeros(b_shape, np.float32)})
    assert layer.macs == out.size * 16


def test_qdq_model_takes_precisions_from_the_dequantized_integers():
    nodes = [
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["x"], name="dq_x"),
        helper.make_node("DequantizeLinear", ["Wq", "ws", "wz"], ["Wd"], name="dq_w"),
        helper.make_node("Transpose", ["Wd"], ["W"], name="wT", perm=[1, 0]),
        helper.make_node("MatMul", ["x", "W"], ["y"], name="mm"),
    ]
    inits = [
        fx.init("xs", [], fill=0.1), fx.init("xz", [], np.uint8),
        fx.init("Wq", [8, 16], np.int8), fx.init("ws", [], fill=0.1), fx.init("wz", [], np.int8),
    ]  # fmt: skip
    model = fx.model(nodes, [fx.value("xq", [3, 16], TensorProto.UINT8)], [fx.value("y", None)], inits)
    layer = only_layer(load_onnx(model, default_precision=Precision(4, 4, 16)))
    assert layer.weight_constant
    assert layer.precision == Precision(W=8, I=8, O=16)


# -- quantised ops and precisions ------------------------------------------------------------------


def _qlinear_conv_model() -> onnx.ModelProto:
    inputs = ["x", "xs", "xz", "W", "ws", "wz", "ys", "yz", "b"]
    node = helper.make_node("QLinearConv", inputs, ["y"], name="qconv", pads=[1, 1, 1, 1])
    inits = [
        fx.init("xs", [], fill=0.1), fx.init("xz", [], np.uint8), fx.init("W", [4, 3, 3, 3], np.int8),
        fx.init("ws", [], fill=0.1), fx.init("wz", [], np.int8), fx.init("ys", [], fill=0.1),
        fx.init("yz", [], np.uint8), fx.init("b", [4], np.int32),
    ]  # fmt: skip
    x, y = fx.value("x", [1, 3, 8, 8], TensorProto.UINT8), fx.value("y", None, TensorProto.UINT8)
    return fx.model([node], [x], [y], inits)


def test_qlinear_conv_precision_from_types():
    layer = only_layer(load_onnx(_qlinear_conv_model(), default_precision=Precision(4, 4, 4)))
    assert (layer.op, layer.onnx_op, layer.has_bias) == ("conv", "QLinearConv", True)
    assert layer.loops == Loops(B=1, K=4, C=3, OY=8, OX=8, FY=3, FX=3)
    assert layer.precision == Precision(W=8, I=8, O=8)
    assert (layer.input, layer.weight) == ("x", "W")


def test_qlinear_matmul_precision_including_4_bit():
    inputs = ["a", "as", "az", "b", "bs", "bz", "ys", "yz"]
    node = helper.make_node("QLinearMatMul", inputs, ["y"], name="qmm")
    inits = [
        fx.init("as", [], fill=0.1), fx.init("az", [], np.uint8),
        helper.make_tensor("b", TensorProto.INT4, [16, 8], [0] * 128), fx.init("bs", [], fill=0.1),
        helper.make_tensor("bz", TensorProto.INT4, [], [0]), fx.init("ys", [], fill=0.1),
        fx.init("yz", [], np.int8),
    ]  # fmt: skip
    a = fx.value("a", [4, 16], TensorProto.UINT8)
    model = fx.model([node], [a], [fx.value("y", None, TensorProto.INT8)], inits, opset=21)
    layer = only_layer(load_onnx(model))
    assert layer.loops == Loops(B=4, C=16, K=8)
    assert layer.precision == Precision(W=4, I=8, O=8)
    assert layer.weight == "b" and layer.weight_constant


def test_matmul_integer_and_conv_integer_have_32_bit_outputs():
    nodes = [
        helper.make_node("ConvInteger", ["x", "W", "xz"], ["c"], name="cint", strides=[2, 1]),
        helper.make_node("Cast", ["c"], ["cf"], name="cast", to=TensorProto.UINT8),
        helper.make_node("Flatten", ["cf"], ["f"], name="flat"),
        helper.make_node("MatMulInteger", ["f", "M"], ["y"], name="mmint"),
    ]
    inits = [fx.init("W", [4, 3, 3, 3], np.int8), fx.init("xz", [], np.uint8)]
    inits.append(fx.init("M", [4 * 3 * 6, 5], np.int8))
    model = fx.model(nodes, [fx.value("x", [1, 3, 8, 8], TensorProto.UINT8)], [fx.value("y", None)], inits)
    cint, mmint = load_onnx(model, default_precision=Precision(2, 2, 2)).layers
    assert cint.loops == Loops(B=1, K=4, C=3, OY=3, OX=6, FY=3, FX=3)
    assert (cint.precision, cint.has_bias) == (Precision(W=8, I=8, O=32), False)
    assert mmint.loops == Loops(B=1, C=72, K=5)
    assert mmint.precision == Precision(W=8, I=8, O=32)


def test_float_ops_use_default_precision():
    model = fx.conv_model([1, 3, 8, 8], [4, 3, 3, 3])
    layer = only_layer(load_onnx(model, default_precision=Precision(4, 6, 12)))
    assert layer.precision == Precision(W=4, I=6, O=12)


def test_zigzag_style_precision_attributes():
    model = fx.conv_model([1, 3, 8, 8], [4, 3, 3, 3], weight_size=4, act_size=6, output_size=16)
    assert only_layer(load_onnx(model)).precision == Precision(W=4, I=6, O=16)
    model = fx.conv_model([1, 3, 8, 8], [4, 3, 3, 3], weight_size=2)
    assert only_layer(load_onnx(model)).precision == Precision(W=2, I=8, O=8)
    with pytest.raises(InputError, match=r"node 'conv' \(Conv\): attribute weight_size = 0"):
        load_onnx(fx.conv_model([1, 3, 8, 8], [4, 3, 3, 3], weight_size=0))


# -- graph construction ----------------------------------------------------------------------------


def test_no_value_info_chain_is_shape_inferred_by_the_loader():
    nodes = [
        helper.make_node("Conv", ["x", "W1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "W2"], ["c2"], group=8),
        helper.make_node("Add", ["c2", "c2"], ["s"]),
        helper.make_node("Shape", ["s"], ["shp"]),
        helper.make_node("Gather", ["shp", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "zero1"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["s", "target"], ["flat"]),
        helper.make_node("Gemm", ["flat", "Wfc"], ["y"], transB=1),
    ]
    inits = [
        fx.init("W1", [8, 3, 3, 3]), fx.init("W2", [8, 1, 3, 3]),
        onnx.numpy_helper.from_array(np.array(0, np.int64), "zero"),
        onnx.numpy_helper.from_array(np.array([0], np.int64), "zero1"),
        onnx.numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
        fx.init("Wfc", [10, 8 * 5 * 5]),
    ]  # fmt: skip
    model = fx.model(nodes, [fx.value("x", [1, 3, 14, 14])], [fx.value("y", None)], inits)
    assert not model.graph.value_info
    workload = load_onnx(model)
    c1, c2, fc = workload.layers
    assert c1.loops == Loops(B=1, K=8, C=3, OY=7, OX=7, FY=3, FX=3)
    assert c2.op == "dwconv" and c2.loops == Loops(B=1, G=8, K=1, C=1, OY=5, OX=5, FY=3, FX=3)
    assert fc.loops == Loops(B=1, C=200, K=10)
    assert [n.name for n in workload] == [f"{op}_{i}" for i, op in enumerate(n.op_type for n in nodes)]
    assert workload.producers("Add_3") == ["Conv_2"]  # x + x: one edge
    assert workload.producers("Reshape_8") == ["Add_3", "Concat_7"]
    assert all(isinstance(workload[n], OtherOp) for n in ("Relu_1", "Shape_4", "Reshape_8"))


def test_duplicate_and_missing_node_names_are_made_unique():
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="op"),
        helper.make_node("Relu", ["a"], ["b"], name="op"),
        helper.make_node("Relu", ["b"], ["c"], name="op_1"),
        helper.make_node("Relu", ["c"], ["d"]),
        helper.make_node("MatMul", ["d", "W"], ["y"], name="op"),
    ]
    model = fx.model(nodes, [fx.value("x", [2, 4])], [fx.value("y", None)], [fx.init("W", [4, 3])])
    workload = load_onnx(model)
    names = [n.name for n in workload]
    assert names == ["op", "op_2", "op_1", "Relu_3", "op_3"]
    assert workload.layers[0].name == "op_3"
    assert workload.producers("op_3") == ["Relu_3"]


def test_model_proto_source_and_name():
    model = fx.conv_model([1, 3, 8, 8], [4, 3, 3, 3])
    before = model.SerializeToString()
    workload = load_onnx(model, name="tiny")
    assert (workload.name, workload.source) == ("tiny", "<model>")
    assert load_onnx(model).name == "test"
    assert model.SerializeToString() == before  # the caller's model is not modified


def test_public_surface():
    assert COMPUTE_OPS == ("conv", "dwconv", "gemm", "matmul")
    assert LOOP_DIMS == ("B", "K", "C", "OY", "OX", "FY", "FX", "G")


# -- weights stripped / present, dynamic batch -----------------------------------------------------


def _save_external(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save_model(
        model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
        location=path.name + ".bin", size_threshold=0,
    )  # fmt: skip
    return path.with_name(path.name + ".bin")


def _conv_reshape_gemm() -> onnx.ModelProto:
    nodes = [
        helper.make_node("Conv", ["x", "W", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["c", "shape"], ["f"], name="reshape"),
        helper.make_node("Gemm", ["f", "Wfc"], ["y"], name="fc", transB=1),
    ]
    inits = [
        fx.init("W", [4, 3, 3, 3]), fx.init("b", [4]), fx.init("Wfc", [10, 4 * 6 * 6]),
        onnx.numpy_helper.from_array(np.array([1, -1], np.int64), "shape"),
    ]  # fmt: skip
    return fx.model(nodes, [fx.value("x", [1, 3, 6, 6])], [fx.value("y", None)], inits)


def test_external_weights_present_or_stripped(tmp_path):
    path = tmp_path / "net.onnx"
    weights = _save_external(_conv_reshape_gemm(), path)
    assert weights.exists()
    present = load_onnx(path)
    expected = [Loops(K=4, C=3, OY=6, OX=6, FY=3, FX=3), Loops(C=144, K=10)]
    assert [la.loops for la in present.layers] == expected
    assert present.name == "net"

    # Stripped after shape inference (as ZigZag ships its ResNet-18): loads without the .bin.
    inferred = onnx.shape_inference.infer_shapes(_conv_reshape_gemm())
    stripped = tmp_path / "stripped.onnx"
    _save_external(inferred, stripped).unlink()
    assert [la.loops for la in load_onnx(stripped).layers] == [la.loops for la in present.layers]


def test_stripped_weights_without_value_info_name_the_shape_problem(tmp_path):
    path = tmp_path / "net.onnx"
    _save_external(_conv_reshape_gemm(), path).unlink()
    expected = r"node 'fc' \(Gemm\): input 'f' has (no|a dynamic) shape.*missing external data file"
    with pytest.raises(InputError, match=expected):
        load_onnx(path)


def test_dynamic_batch_is_treated_as_one_with_one_warning():
    model = fx.conv_model(["N", 3, 8, 8], [4, 3, 3, 3])
    model.graph.output[0].CopyFrom(fx.value("y", ["N", 4, 6, 6]))
    with pytest.warns(UserWarning, match=r"dynamic batch dimension of input 'x' \('N'\)") as record:
        layer = only_layer(load_onnx(model))
    assert len(record) == 1
    assert layer.loops.B == 1
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"


def test_static_model_gives_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_onnx(fx.conv_model([1, 3, 8, 8], [4, 3, 3, 3]))


def test_dynamic_sequence_length_is_an_error():
    with (
        pytest.warns(UserWarning),
        pytest.raises(InputError, match=r"node 'mm' \(MatMul\): input 'a' has a dynamic shape \[1, S, 16\]"),
    ):
        load_onnx(fx.matmul_model(["N", "S", 16], [16, 8]))


# -- bad input catalogue ---------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"nope\.onnx: file not found"):
        load_onnx(tmp_path / "nope.onnx")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.onnx: empty file"):
        load_onnx(path)


def test_truncated_file(tmp_path):
    data = ZIGZAG_RESNET18.read_bytes()
    path = tmp_path / "half.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"half\.onnx: not a readable ONNX model \(protobuf parse failed"):
        load_onnx(path)


@pytest.mark.parametrize("text", ["hello, this is not onnx\n", "name: resnet\nlayers: [1, 2]\n", "8\x01"])
def test_text_file(tmp_path, text):
    path = tmp_path / "notes.onnx"
    path.write_text(text)
    with pytest.raises(InputError, match=r"notes\.onnx: not (a readable|an) ONNX model"):
        load_onnx(path)


def test_directory(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        load_onnx(tmp_path)


@pytest.mark.parametrize("op", ["ConvTranspose", "Einsum", "LSTM", "MatMulNBits"])
def test_unsupported_compute_op_names_op_and_node(op):
    node = helper.make_node(op, ["x", "W"], ["y"], name="up1")
    x = fx.value("x", [1, 4, 8, 8])
    model = fx.model([node], [x], [fx.value("y", None)], [fx.init("W", [4, 2, 3, 3])])
    expected = (
        f"<model>: node 'up1' ({op}): unsupported compute op; supported: Conv, ConvInteger, QLinearConv, "
        "Gemm, MatMul, MatMulInteger, QLinearMatMul"
    )
    with pytest.raises(InputError) as info:
        load_onnx(model)
    assert str(info.value) == expected


def test_compute_input_without_shape_names_node_and_input(tmp_path):
    nodes = [
        helper.make_node("MyProjection", ["x"], ["k"], name="proj", domain="custom.ops"),
        helper.make_node("MatMul", ["q", "k"], ["s"], name="attn/MatMul_3"),
    ]
    model = fx.model(nodes, [fx.value("x", [1, 64, 50]), fx.value("q", [1, 50, 64])], [fx.value("s", None)])
    model.opset_import.append(helper.make_opsetid("custom.ops", 1))
    path = tmp_path / "net.onnx"
    onnx.save(model, str(path))
    with pytest.raises(InputError) as info:
        load_onnx(path)
    assert str(info.value).endswith(
        "net.onnx: node 'attn/MatMul_3' (MatMul): input 'k' has no shape after shape inference; "
        "export with static shapes"
    )


def test_shape_inference_crash_falls_back_to_declared_shapes(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("[ShapeInferenceError] something odd\nmore detail")

    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", broken)
    model = fx.conv_model([1, 3, 8, 8], [4, 3, 3, 3])
    assert only_layer(load_onnx(model)).loops.OY == 6  # output size computed, not inferred
    chain = fx.model(
        [helper.make_node("Relu", ["a"], ["r"], name="relu"),
         helper.make_node("MatMul", ["r", "B"], ["y"], name="mm")],
        [fx.value("a", [2, 4])], [fx.value("y", None)], [fx.init("B", [4, 3])],
    )  # fmt: skip
    expected = r"input 'r' has no shape.*shape inference failed: \[ShapeInferenceError\] something odd\)$"
    with pytest.raises(InputError, match=expected):
        load_onnx(chain)


def test_zigzag_file_copy_is_loadable_from_another_directory(tmp_path):
    copy = tmp_path / "resnet.onnx"
    shutil.copy(ZIGZAG_RESNET18, copy)
    assert load_onnx(copy).total_macs == 1_814_073_344


# -- property: conv loop arithmetic matches torch --------------------------------------------------


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.tuples(st.integers(1, 20), st.integers(1, 20)),
    kernel=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    strides=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilations=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    pads=st.tuples(*[st.integers(0, 3)] * 4),
    groups=st.integers(1, 3),
    c_per_group=st.integers(1, 3),
    k_per_group=st.integers(1, 3),
    batch=st.integers(1, 2),
)
def test_conv_loops_match_torch(
    size, kernel, strides, dilations, pads, groups, c_per_group, k_per_group, batch
):  # fmt: skip
    (h, w), (kh, kw), (top, left, bottom, right) = size, kernel, pads
    assume(h + top + bottom >= dilations[0] * (kh - 1) + 1)
    assume(w + left + right >= dilations[1] * (kw - 1) + 1)
    c_in, c_out = groups * c_per_group, groups * k_per_group
    model = fx.conv_model(
        [batch, c_in, h, w], [c_out, c_per_group, kh, kw], bias=False, group=groups, strides=list(strides),
        dilations=list(dilations), pads=[top, left, bottom, right],
    )  # fmt: skip
    layer = only_layer(load_onnx(model))
    x = F.pad(torch.zeros(batch, c_in, h, w), (left, right, top, bottom))
    weight = torch.zeros(c_out, c_per_group, kh, kw)
    out = F.conv2d(x, weight, stride=strides, dilation=dilations, groups=groups)
    n, k, oy, ox = out.shape
    lp = layer.loops
    assert (n, k, oy, ox, kh, kw, c_per_group) == (lp.B, lp.G * lp.K, lp.OY, lp.OX, lp.FY, lp.FX, lp.C)
    assert layer.macs == math.prod(out.shape) * c_per_group * kh * kw
    assert layer.op == ("dwconv" if groups > 1 and c_per_group == 1 else "conv")
