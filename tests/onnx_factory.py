"""Small ONNX models built with ``onnx.helper`` for the workload-loader tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17

Dims = Sequence[int | str | None]


def value(name: str, shape: Dims | None, elem_type: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    """A graph input/output declaration; ``shape=None`` declares no shape at all."""
    return helper.make_tensor_value_info(name, elem_type, None if shape is None else list(shape))


def init(name: str, shape: Sequence[int], dtype: type = np.float32, fill: float = 0.0) -> onnx.TensorProto:
    """An initializer of the given shape (zeros unless ``fill``)."""
    return numpy_helper.from_array(np.full(tuple(shape), fill, dtype=dtype), name)


def random_init(name: str, shape: Sequence[int], seed: int = 0) -> onnx.TensorProto:
    rng = np.random.default_rng(seed)
    return numpy_helper.from_array(rng.standard_normal(tuple(shape)).astype(np.float32), name)


def model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[onnx.ValueInfoProto],
    outputs: Sequence[onnx.ValueInfoProto],
    initializers: Sequence[onnx.TensorProto] = (),
    value_info: Sequence[onnx.ValueInfoProto] = (),
    opset: int = OPSET,
    name: str = "test",
) -> onnx.ModelProto:
    """A model from nodes; outputs may be declared without a shape (``value(name, None)``)."""
    graph = helper.make_graph(
        list(nodes), name, list(inputs), list(outputs), list(initializers), value_info=list(value_info)
    )
    # IR 10 (not the newest) so that the bundled onnxruntime can run the models too
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def conv_model(
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    *,
    bias: bool = True,
    weights: str = "zeros",
    node_name: str = "conv",
    **attrs,
) -> onnx.ModelProto:
    """x -> Conv(W[, b]) -> y, with ONNX attributes passed through (pads, strides, group...)."""
    make = random_init if weights == "random" else init
    inits = [make("W", w_shape)]
    inputs = ["x", "W"]
    if bias:
        inits.append(make("b", [w_shape[0]]))
        inputs.append("b")
    node = helper.make_node("Conv", inputs, ["y"], name=node_name, **attrs)
    return model([node], [value("x", x_shape)], [value("y", None)], inits)


def matmul_model(a_shape: Dims, b_shape: Sequence[int], *, b_constant: bool = True) -> onnx.ModelProto:
    """a @ B with B an initializer (or a second graph input)."""
    node = helper.make_node("MatMul", ["a", "B"], ["y"], name="mm")
    inputs = [value("a", a_shape)]
    inits = []
    if b_constant:
        inits.append(init("B", b_shape))
    else:
        inputs.append(value("B", b_shape))
    return model([node], inputs, [value("y", None)], inits)


def gemm_model(
    a_shape: Sequence[int], b_shape: Sequence[int], *, bias: bool = True, **attrs
) -> onnx.ModelProto:
    inits = [init("B", b_shape)]
    inputs = ["a", "B"]
    if bias:
        n = b_shape[0] if attrs.get("transB", 0) else b_shape[1]
        inits.append(init("C", [n]))
        inputs.append("C")
    node = helper.make_node("Gemm", inputs, ["y"], name="fc", **attrs)
    return model([node], [value("a", a_shape)], [value("y", None)], inits)


def attention_model(batch: int = 2, heads: int = 12, seq: int = 50, dim: int = 64) -> onnx.ModelProto:
    """softmax(q @ k^T) @ v with all three operands activations."""
    shape = [batch, heads, seq, dim]
    nodes = [
        helper.make_node("Transpose", ["k"], ["kt"], name="k_T", perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", ["q", "kt"], ["s"], name="qk"),
        helper.make_node("Softmax", ["s"], ["p"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["o"], name="av"),
    ]
    inputs = [value("q", shape), value("k", shape), value("v", shape)]
    return model(nodes, inputs, [value("o", None)])
