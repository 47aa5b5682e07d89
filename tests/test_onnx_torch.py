"""ONNX models run in torch (``dse.accuracy.onnx_torch``): the same numbers as onnxruntime, compute layers as
nn.Conv2d / nn.Linear / ActivationMatMul children named after the workload loader's layers, a free batch
dimension, gradients, and clear errors.

Tolerance: the largest |torch - onnxruntime| over an output, divided by ``max(1, max |onnxruntime|)``
for the synthetic graphs and by ``max |onnxruntime|`` (purely relative) for the model zoo, must be
at most 1e-4.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnx_factory as fx
import onnxruntime as ort
import pytest
import torch
from export_script import load_export_script
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from dse.accuracy.onnx_torch import OnnxModule, load_torch_model
from dse.errors import InputError
from dse.models.vit import ActivationMatMul
from dse.workload import load_onnx

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ROOT / "workloads"
ZIGZAG_RESNET18 = Path(__file__).parent / "data" / "zigzag_resnet18.onnx"
TOL = 1e-4
COMPUTE = (nn.Conv2d, nn.Linear, ActivationMatMul)


# -- helpers -----------------------------------------------------------------------------------------------------


def _rand(name: str, shape: Sequence[int], seed: int, scale: float = 1.0) -> onnx.TensorProto:
    rng = np.random.default_rng(seed)
    return numpy_helper.from_array((rng.standard_normal(tuple(shape)) * scale).astype(np.float32), name)


def _const(name: str, values: Sequence | np.ndarray, dtype: type = np.int64) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def _inputs(*shapes: Sequence[int], seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(tuple(shape)).astype(np.float32) for shape in shapes]


def _ort(model: onnx.ModelProto | Path, inputs: Sequence[np.ndarray], chunk: int | None) -> list[np.ndarray]:
    """onnxruntime's outputs; ``chunk``: feed that many samples at a time (static batch) and concatenate."""
    data = str(model) if isinstance(model, Path) else model.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    if chunk is None:
        return session.run(None, dict(zip(names, inputs, strict=True)))
    parts = [
        session.run(None, {n: x[i : i + chunk] for n, x in zip(names, inputs, strict=True)})
        for i in range(0, len(inputs[0]), chunk)
    ]
    return [np.concatenate(p) for p in zip(*parts, strict=True)]


def _torch(module: OnnxModule, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        out = module(*(torch.from_numpy(x) for x in inputs))
    return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


def _error(expected: np.ndarray, got: np.ndarray, relative: bool) -> float:
    assert got.shape == expected.shape and got.dtype == expected.dtype, (got.shape, expected.shape)
    if expected.dtype == np.bool_ or np.issubdtype(expected.dtype, np.integer):
        assert np.array_equal(got, expected)
        return 0.0
    scale = float(np.abs(expected).max(initial=0.0))
    scale = scale if relative else max(1.0, scale)
    return float(np.abs(got.astype(np.float64) - expected).max(initial=0.0)) / (scale or 1.0)


def _check(model: onnx.ModelProto | Path, inputs: Sequence[np.ndarray], chunk: int | None = None,
           relative: bool = False) -> tuple[OnnxModule, float]:  # fmt: skip
    """Load ``model`` into torch, compare every output with onnxruntime and return the module and worst error."""
    expected = _ort(model, inputs, chunk)
    module = load_torch_model(model)
    got = _torch(module, inputs)
    assert len(got) == len(expected)
    worst = max(_error(e, g, relative) for e, g in zip(expected, got, strict=True))
    assert worst <= TOL
    return module, worst


def _assert_layers_match_workload(module: OnnxModule, model: onnx.ModelProto | Path) -> None:
    """Children = the workload's compute layers, in order, under identifier names mapping back to them."""
    children = list(module.named_children())
    assert all(isinstance(child, COMPUTE) for _, child in children)
    with warnings.catch_warnings():  # the loader's "dynamic batch treated as 1"
        warnings.simplefilter("ignore", UserWarning)
        layers = load_onnx(model).layers
    assert [module.node_of[name] for name, _ in children] == [layer.name for layer in layers]
    assert [name for name, _ in module.named_modules()][1:] == [name for name, _ in children]
    assert all(name.isidentifier() for name, _ in children)


def _single(op: str, inputs: Sequence[str], x_shape: Sequence, initializers: Sequence[onnx.TensorProto] = (),
            opset: int = fx.OPSET, outputs: int = 1, **attrs) -> onnx.ModelProto:  # fmt: skip
    """x -> one ``op`` node -> y (or y0, y1, ...)."""
    names = ["y"] if outputs == 1 else [f"y{i}" for i in range(outputs)]
    node = helper.make_node(op, list(inputs), names, name=f"the_{op.lower()}", **attrs)
    return fx.model([node], [fx.value("x", x_shape)], [fx.value(n, None) for n in names], initializers, opset=opset)


# -- the model zoo -----------------------------------------------------------------------------------------------


def test_digits_cnn_as_shipped_matches_onnxruntime_at_batch_1_and_7() -> None:
    path = WORKLOADS / "digits_cnn.onnx"
    _, worst1 = _check(path, _inputs((1, 1, 8, 8)), relative=True)
    module, worst7 = _check(path, _inputs((7, 1, 8, 8)), chunk=1, relative=True)
    _assert_layers_match_workload(module, path)
    assert [type(c) for c in module.children()] == [nn.Conv2d] * 3 + [nn.Linear]
    assert max(worst1, worst7) < 1e-6


@pytest.mark.parametrize("name", ["resnet18_cifar10", "resnet18_imagenet", "mobilenetv2", "vit_b32"])
def test_zoo_model_with_random_weights_matches_onnxruntime(name: str, tmp_path: Path) -> None:
    """Exported by workloads/export.py with its (seeded random) weights kept; batch 2 against 2 x batch 1."""
    result = load_export_script().export(name, tmp_path, weights=True)
    shape = _ort_input_shapes(result.path)[0]
    module, worst = _check(result.path, _inputs((2, *shape[1:])), chunk=1, relative=True)
    _assert_layers_match_workload(module, result.path)
    if name == "vit_b32":
        kinds = [type(c) for c in module.children()]
        assert kinds.count(ActivationMatMul) == 24 and kinds.count(nn.Linear) == 73 and kinds[0] is nn.Conv2d
        # the exporter's MatMul + Add pairs became Linears with a bias
        assert sum(isinstance(c, nn.Linear) and c.bias is not None for c in module.children()) == 73
    assert worst < 1e-5


def _ort_input_shapes(path: Path) -> list[list[int]]:
    model = onnx.load(str(path), load_external_data=False)
    return [[d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input]


def _with_random_weights(path: Path) -> onnx.ModelProto:
    """A structure-only file with every external initializer replaced by seeded He-scaled random data."""
    model = onnx.load(str(path), load_external_data=False)
    for seed, tensor in enumerate(model.graph.initializer):
        if tensor.data_location == TensorProto.EXTERNAL:
            dims = list(tensor.dims)
            scale = (2.0 / int(np.prod(dims[1:]))) ** 0.5 if len(dims) > 1 else 0.1
            tensor.CopyFrom(_rand(tensor.name, dims, seed, scale))
    return model


def test_zigzag_resnet18_with_random_weights_matches_onnxruntime() -> None:
    model = _with_random_weights(ZIGZAG_RESNET18)
    module, worst = _check(model, _inputs((2, 3, 224, 224)), chunk=1, relative=True)
    _assert_layers_match_workload(module, model)
    assert sum(isinstance(c, nn.Conv2d) for c in module.children()) == 20
    assert worst < 1e-5


def test_structure_only_file_needs_its_weights() -> None:
    with pytest.raises(
        InputError, match=r"zigzag_resnet18\.onnx: initializer '.*': its data is in 'resnet18\.external'"
    ):
        load_torch_model(ZIGZAG_RESNET18)
    with pytest.raises(InputError, match="external file that was not loaded"):
        load_torch_model(onnx.load(str(ZIGZAG_RESNET18), load_external_data=False))


# -- compute ops -------------------------------------------------------------------------------------------------

CONV_CASES = {
    "pads_stride": ([2, 4, 9, 9], [6, 4, 3, 3], {"pads": [1, 1, 1, 1], "strides": [2, 2]}),
    "groups_dilation": ([2, 4, 10, 10], [6, 2, 3, 3], {"group": 2, "dilations": [2, 2], "pads": [2, 2, 2, 2]}),
    "depthwise": ([2, 4, 8, 8], [4, 1, 3, 3], {"group": 4, "pads": [1, 1, 1, 1]}),
    "asymmetric_pads": ([2, 3, 7, 8], [5, 3, 3, 2], {"pads": [0, 1, 2, 0], "strides": [2, 1]}),
    "same_upper": ([2, 3, 9, 8], [4, 3, 3, 3], {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    "same_lower": ([2, 3, 8, 8], [4, 3, 2, 4], {"auto_pad": "SAME_LOWER"}),
    "valid": ([2, 3, 8, 8], [4, 3, 3, 3], {"auto_pad": "VALID", "strides": [2, 2]}),
    "one_d": ([2, 4, 11], [6, 4, 3], {"pads": [1, 2], "strides": [2]}),
}


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv_variants(case: str, bias: bool) -> None:
    x_shape, w_shape, attrs = CONV_CASES[case]
    model = fx.conv_model(["N", *x_shape[1:]], w_shape, bias=bias, weights="random", **attrs)
    module, _ = _check(model, _inputs(x_shape))
    (conv,) = module.children()
    assert isinstance(conv, nn.Conv2d) and (conv.bias is not None) == bias
    assert module.node_of == {"conv": "conv"}
    _check(model, _inputs([5, *x_shape[1:]], seed=2))  # another batch size


def _gemm(a_shape: Sequence[int], b_shape: Sequence[int], c_shape: Sequence[int] | None,
          b_constant: bool = True, **attrs) -> onnx.ModelProto:  # fmt: skip
    inputs, inits = [fx.value("a", a_shape)], []
    if b_constant:
        inits.append(_rand("B", b_shape, 3))
    else:
        inputs.append(fx.value("B", b_shape))
    if c_shape is not None:
        inits.append(_rand("C", c_shape, 4))
    node = helper.make_node("Gemm", ["a", "B"] + (["C"] if c_shape is not None else []), ["y"], name="fc", **attrs)
    return fx.model([node], inputs, [fx.value("y", None)], inits)


GEMM_CASES = {
    "transB_bias": (([3, 8], [6, 8], [6]), {"transB": 1}),
    "transA": (([8, 3], [8, 6], [6]), {"transA": 1}),
    "alpha_beta": (([3, 8], [8, 6], [6]), {"alpha": 0.7, "beta": 1.9}),
    "beta_row_bias": (([3, 8], [8, 6], [1, 6]), {"beta": 0.5}),
    "scalar_bias": (([3, 8], [8, 6], []), {}),
    "matrix_bias": (([3, 8], [8, 6], [3, 6]), {"transB": 0}),
    "no_bias": (([3, 8], [8, 6], None), {"alpha": 2.0}),
}


@pytest.mark.parametrize("case", list(GEMM_CASES))
def test_gemm_variants(case: str) -> None:
    (a_shape, b_shape, c_shape), attrs = GEMM_CASES[case]
    model = _gemm(a_shape, b_shape, c_shape, **attrs)
    module, _ = _check(model, _inputs(a_shape))
    (linear,) = module.children()
    assert isinstance(linear, nn.Linear) and (linear.in_features, linear.out_features) == (8, 6)


def test_gemm_of_two_activations_is_an_activation_matmul() -> None:
    model = _gemm([3, 8], [6, 8], [6], b_constant=False, transB=1, alpha=0.5, beta=2.0)
    module, _ = _check(model, _inputs([3, 8], [6, 8]))
    assert [type(c) for c in module.children()] == [ActivationMatMul]
    _assert_layers_match_workload(module, model)


def test_matmul_plus_bias_becomes_one_linear_on_any_rank() -> None:
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"], name="/fc/MatMul"),
        helper.make_node("Add", ["b", "h"], ["y"], name="/fc/Add"),
    ]
    model = fx.model(
        nodes, [fx.value("x", ["N", 5, 8])], [fx.value("y", None)], [_rand("W", [8, 6], 1), _rand("b", [6], 2)]
    )
    module, _ = _check(model, _inputs([3, 5, 8]))
    (linear,) = module.children()
    assert isinstance(linear, nn.Linear) and linear.bias is not None
    assert module.node_of == {"fc_MatMul": "/fc/MatMul"}
    assert not list(module.buffers())  # weight and bias live in the Linear
    _assert_layers_match_workload(module, model)


def test_matmul_bias_stays_separate_when_not_a_vector_or_reused() -> None:
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"], name="mm1"),
        helper.make_node("Add", ["h", "b2"], ["y1"], name="add_row"),  # (1, 6): not a plain bias
        helper.make_node("MatMul", ["x", "W"], ["g"], name="mm2"),
        helper.make_node("Add", ["g", "b"], ["y2"], name="add"),
        helper.make_node("Relu", ["g"], ["y3"], name="relu"),  # g is read twice: no folding
    ]
    inits = [_rand("W", [8, 6], 1), _rand("b", [6], 2), _rand("b2", [1, 6], 3)]
    outs = [fx.value(n, None) for n in ("y1", "y2", "y3")]
    model = fx.model(nodes, [fx.value("x", ["N", 8])], outs, inits)
    module, _ = _check(model, _inputs([4, 8]))
    assert [c.bias for c in module.children()] == [None, None]


MATMUL_CASES = {
    "vector_weight": ([["N", 8]], [("W", [8])], ["x", "W"], [[3, 8]], [nn.Linear]),
    "vector_input": ([[8]], [("W", [8, 6])], ["x", "W"], [[8]], [nn.Linear]),
    "constant_left": ([["N", 8, 5]], [("W", [6, 8])], ["W", "x"], [[3, 8, 5]], [nn.Linear]),
    "constant_left_vector": ([[8]], [("W", [6, 8])], ["W", "x"], [[8]], [nn.Linear]),
    "broadcast_activations": (
        [["N", 1, 4, 5], [3, 5, 6]],
        [],
        ["x", "x1"],
        [[2, 1, 4, 5], [3, 5, 6]],
        [ActivationMatMul],
    ),
    "batched_constant": ([["N", 3, 4, 5]], [("W", [3, 5, 6])], ["x", "W"], [[2, 3, 4, 5]], [ActivationMatMul]),
    "two_constants": ([["N", 4]], [("A", [3, 4]), ("W", [4, 5])], ["A", "W"], [[2, 4]], [nn.Linear]),
}


@pytest.mark.parametrize("case", list(MATMUL_CASES))
def test_matmul_variants(case: str) -> None:
    declared, constants, operands, shapes, kinds = MATMUL_CASES[case]
    nodes = [helper.make_node("MatMul", operands, ["y"], name="mm")]
    outputs = [fx.value("y", None)]
    if case == "two_constants":  # keep the graph input in use
        nodes.append(helper.make_node("Relu", ["x"], ["r"], name="relu"))
        outputs.append(fx.value("r", None))
    inputs = [fx.value("x" if i == 0 else f"x{i}", d) for i, d in enumerate(declared)]
    inits = [_rand(n, s, i) for i, (n, s) in enumerate(constants)]
    model = fx.model(nodes, inputs, outputs, inits)
    module, _ = _check(model, _inputs(*shapes))
    assert [type(c) for c in module.children()] == kinds
    _assert_layers_match_workload(module, model)


# -- pooling -----------------------------------------------------------------------------------------------------

POOL_CASES = {
    "max_pads": ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    "max_asym_ceil": ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 1, 2, 0], "ceil_mode": 1}),
    "max_ceil": ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
    "max_dilated": ("MaxPool", {"kernel_shape": [2, 3], "dilations": [2, 2], "pads": [1, 1, 1, 1]}),
    "max_same": ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    "max_wide_pads": ("MaxPool", {"kernel_shape": [3, 3], "pads": [2, 2, 2, 2], "strides": [2, 2]}),
    "avg_include_pad": ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    "avg_exclude_pad": ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [2, 2]}),
    "avg_ceil": ("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
    "avg_asym_ceil_exclude": (
        "AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 1, 2, 1], "ceil_mode": 1},
    ),
    "avg_asym_ceil_include": (
        "AveragePool",
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 1, 2, 1], "ceil_mode": 1, "count_include_pad": 1},
    ),
    "avg_same_lower": ("AveragePool", {"kernel_shape": [2, 3], "auto_pad": "SAME_LOWER"}),
}  # fmt: skip


@pytest.mark.parametrize("case", list(POOL_CASES))
def test_pool_variants(case: str) -> None:
    op, attrs = POOL_CASES[case]
    _check(_single(op, ["x"], ["N", 3, 7, 8], **attrs), _inputs([2, 3, 7, 8]))


def test_one_d_and_global_pools() -> None:
    nodes = [
        helper.make_node("MaxPool", ["x"], ["m"], name="mp", kernel_shape=[3], strides=[2], pads=[1, 0]),
        helper.make_node("AveragePool", ["x"], ["a"], name="ap", kernel_shape=[2], strides=[2], ceil_mode=1),
        helper.make_node("GlobalAveragePool", ["x"], ["g"], name="gap"),
        helper.make_node("GlobalMaxPool", ["x"], ["h"], name="gmp"),
    ]
    model = fx.model(nodes, [fx.value("x", ["N", 3, 9])], [fx.value(n, None) for n in "magh"])
    _check(model, _inputs([2, 3, 9]))


# -- element-wise, normalisation ---------------------------------------------------------------------------------


def test_elementwise_and_activation_ops() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["relu"]),
        helper.make_node("Sigmoid", ["x"], ["sig"]),
        helper.make_node("Tanh", ["x"], ["tanh"]),
        helper.make_node("Erf", ["x"], ["erf"]),
        helper.make_node("Gelu", ["x"], ["gelu"]),
        helper.make_node("Gelu", ["x"], ["gelu_tanh"], approximate="tanh"),
        helper.make_node("Softmax", ["x"], ["softmax"], axis=1),
        helper.make_node("LeakyRelu", ["x"], ["leaky"], alpha=0.2),
        helper.make_node("HardSigmoid", ["x"], ["hsig"]),
        helper.make_node("HardSwish", ["x"], ["hswish"]),
        helper.make_node("Clip", ["x", "lo", "hi"], ["clip"]),
        helper.make_node("Clip", ["x", "", "hi"], ["clip_max"]),
        helper.make_node("Clip", ["x", "lo"], ["clip_min"]),
        helper.make_node("Add", ["x", "row"], ["add"]),
        helper.make_node("Sub", ["row", "x"], ["sub"]),
        helper.make_node("Mul", ["x", "two"], ["mul"]),
        helper.make_node("Abs", ["x"], ["abs"]),
        helper.make_node("Add", ["abs", "two"], ["pos"]),
        helper.make_node("Div", ["x", "pos"], ["div"]),
        helper.make_node("Pow", ["pos", "row"], ["pow"]),
        helper.make_node("Pow", ["x", "two"], ["square"]),
        helper.make_node("Sqrt", ["pos"], ["sqrt"]),
        helper.make_node("Max", ["x", "row", "two"], ["max"]),
        helper.make_node("Exp", ["x"], ["exp"]),
        helper.make_node("Log", ["pos"], ["log"]),
    ]
    for i, node in enumerate(nodes):
        node.name = f"n{i}"
    inits = [_const("lo", -0.5, np.float32), _const("hi", 0.7, np.float32), _rand("row", [5], 9),
             _const("two", 2.0, np.float32)]  # fmt: skip
    outputs = [fx.value(n.output[0], None) for n in nodes if n.output[0] not in ("abs", "pos")]
    model = fx.model(nodes, [fx.value("x", ["N", 4, 5])], outputs, inits, opset=20)
    module, _ = _check(model, _inputs([3, 4, 5]))
    assert not list(module.children())
    assert {"c_lo", "c_hi", "c_row", "c_two"} <= set(dict(module.named_buffers()))


def test_normalisations() -> None:
    rng = np.random.default_rng(5)
    nodes = [
        helper.make_node("BatchNormalization", ["x", "s", "b", "mean", "var"], ["bn"], name="bn", epsilon=1e-3),
        helper.make_node("LayerNormalization", ["x", "ln_s", "ln_b"], ["ln"], name="ln", epsilon=1e-6),
        helper.make_node("LayerNormalization", ["x", "ln2_s"], ["ln2"], name="ln2", axis=1),
        helper.make_node("InstanceNormalization", ["x", "s", "b"], ["inorm"], name="in"),
    ]
    inits = [
        _rand("s", [4], 1), _rand("b", [4], 2), _rand("mean", [4], 3),
        numpy_helper.from_array(rng.uniform(0.5, 2.0, 4).astype(np.float32), "var"),
        _rand("ln_s", [6], 4), _rand("ln_b", [6], 5), _rand("ln2_s", [4, 5, 6], 6),
    ]  # fmt: skip
    model = fx.model(nodes, [fx.value("x", ["N", 4, 5, 6])], [fx.value(n, None) for n in ("bn", "ln", "ln2", "inorm")],
                     inits)  # fmt: skip
    _check(model, _inputs([3, 4, 5, 6]))


def test_old_opset_attribute_forms() -> None:
    """Opset 10: Clip bounds, Pad pads, Squeeze/Unsqueeze/ReduceMean axes, Split sizes as attributes; old Softmax."""
    nodes = [
        helper.make_node("Clip", ["x"], ["clip"], min=-0.3, max=0.4),
        helper.make_node("Softmax", ["x"], ["softmax"], axis=1),  # softmax over the flattened dims 1..
        helper.make_node("Unsqueeze", ["x"], ["u"], axes=[0, 5]),
        helper.make_node("Squeeze", ["u"], ["sq"], axes=[0, 5]),
        helper.make_node("ReduceMean", ["x"], ["mean"], axes=[1, 3], keepdims=0),
        helper.make_node("Split", ["x"], ["s0", "s1"], axis=2, split=[1, 4]),
        helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["slice"]),
        helper.make_node("Pad", ["x"], ["pad"], mode="constant", pads=[0, 0, 1, 0, 0, 2, 1, 3], value=0.5),
    ]
    for i, node in enumerate(nodes):
        node.name = f"n{i}"
    inits = [_const("starts", [-1, 1]), _const("ends", [-100, 4]), _const("axes", [2, 1]), _const("steps", [-2, 2])]
    outputs = [fx.value(n, None) for n in ("clip", "softmax", "sq", "mean", "s0", "s1", "slice", "pad")]
    model = fx.model(nodes, [fx.value("x", ["N", 4, 5, 6])], outputs, inits, opset=10)
    _check(model, _inputs([3, 4, 5, 6]))
    clip = _single("Clip", ["x"], ["N", 4], opset=10, min=-0.3)  # opset 10 with only one bound
    _check(clip, _inputs([3, 4]))


def test_shape_and_data_movement_ops() -> None:
    """A dynamic-batch flatten built from Shape/Gather/Unsqueeze/Concat, and the other layout ops (opset 18)."""
    n = helper.make_node
    nodes = [
        n("Shape", ["x"], ["shape"]),
        n("Gather", ["shape", "zero"], ["batch"]),
        n("Unsqueeze", ["batch", "zero_axis"], ["batch1"]),
        n("Concat", ["batch1", "minus_one"], ["target"], axis=0),
        n("Reshape", ["x", "target"], ["flat"]),
        n("Flatten", ["x"], ["flat2"], axis=2),
        n("Reshape", ["x", "zero_minus_one"], ["r0"]),
        n("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
        n("Concat", ["x", "x"], ["cat"], axis=-1),
        n("Split", ["x", "split"], ["sp0", "sp1"], axis=3),
        n("Split", ["x"], ["eq0", "eq1", "eq2"], axis=3, num_outputs=3),
        n("Slice", ["x", "starts", "ends", "axes"], ["sl"]),
        n("Gather", ["x", "indices"], ["g"], axis=1),
        n("Unsqueeze", ["x", "axes_u"], ["u"]),
        n("Squeeze", ["u", "axes_u"], ["sq"]),
        n("Constant", [], ["k"], value=_const("kv", [[1.0, -2.0, 3.0, 0.5, 4.0, -1.0]], np.float32)),
        n("Add", ["x", "k"], ["xk"]),
        n("Shape", ["x"], ["shape_tail"], start=-2),
        n("ConstantOfShape", ["shape"], ["ones"], value=_const("one", [1.5], np.float32)),
        n("Add", ["x", "ones"], ["x_ones"]),
        n("Identity", ["x"], ["ident"]),
        n("Dropout", ["x"], ["drop"]),
        n("Cast", ["x"], ["xi"], to=TensorProto.INT64),
        n("Cast", ["xi"], ["xf"], to=TensorProto.FLOAT),
        n("ReduceMean", ["x", "axes_r"], ["rmean"], keepdims=1),
        n("ReduceSum", ["x", "axes_r"], ["rsum"], keepdims=0),
        n("Expand", ["col", "expand_to"], ["ex"]),
        n("Equal", ["xi", "zero"], ["eq"]),
        n("Where", ["eq", "x", "ex"], ["where"]),
        n("Pad", ["x", "pads_r"], ["pad_reflect"], mode="reflect"),
        n("Pad", ["x", "pads_e", "", "pad_axes"], ["pad_edge"], mode="edge"),
        n("Tile", ["x", "reps"], ["tile"]),
    ]
    for i, node in enumerate(nodes):
        node.name = f"n{i}"
    inits = [
        _const("zero", 0), _const("zero_axis", [0]), _const("minus_one", [-1]), _const("zero_minus_one", [0, -1, 6]),
        _const("split", [2, 4]), _const("starts", [1, -4]), _const("ends", [100, -1]), _const("axes", [1, 3]),
        _const("indices", [[2, -1], [0, 0]]), _const("axes_u", [1, -1]), _const("axes_r", [1, 2]),
        _rand("col", [4, 1, 1], 7), _const("expand_to", [1, 1, 5, 6]),
        _const("pads_r", [0, 0, 1, 2, 0, 0, 2, 1]), _const("pads_e", [2, 3]), _const("pad_axes", [-1]),
        _const("reps", [1, 2, 1, 1]),
    ]  # fmt: skip
    names = ["shape", "flat", "flat2", "r0", "t", "cat", "sp0", "sp1", "eq0", "eq1", "eq2", "sl", "g", "sq", "xk",
             "shape_tail", "x_ones", "ident", "drop", "xf", "rmean", "rsum", "eq", "where", "pad_reflect", "pad_edge",
             "tile"]  # fmt: skip
    types = {"shape": TensorProto.INT64, "shape_tail": TensorProto.INT64, "eq": TensorProto.BOOL}
    outputs = [fx.value(o, None, types.get(o, TensorProto.FLOAT)) for o in names]
    model = fx.model(nodes, [fx.value("x", ["N", 4, 5, 6])], outputs, inits, opset=18)
    x = (np.round(_inputs([3, 4, 5, 6])[0] * 2) / 2).astype(np.float32)  # some exact zeros for Equal
    module, _ = _check(model, [x])
    assert not list(module.children())


def test_constant_subgraphs_are_folded_at_load() -> None:
    n = helper.make_node
    nodes = [
        n("Constant", [], ["c"], name="c", value_floats=[1.0, 2.0, 3.0]),
        n("Mul", ["c", "c"], ["c2"], name="square"),
        n("Transpose", ["Wt"], ["W"], name="wt"),
        n("MatMul", ["x", "W"], ["h"], name="mm"),
        n("Add", ["h", "c2"], ["y"], name="add"),
    ]
    model = fx.model(nodes, [fx.value("x", ["N", 4])], [fx.value("y", None)], [_rand("Wt", [3, 4], 1)])
    module, _ = _check(model, _inputs([2, 4]))
    (linear,) = module.children()
    assert isinstance(linear, nn.Linear) and linear.bias.tolist() == [1.0, 4.0, 9.0]
    assert len(module._steps) == 1  # the Constant, Mul and Transpose ran once, at load


def test_qdq_model_runs_with_dequantized_constant_weights() -> None:
    """QuantizeLinear/DequantizeLinear around a Conv: the int8 weight is dequantized once, into the Conv2d."""
    n = helper.make_node
    nodes = [
        n("QuantizeLinear", ["x", "x_scale", "x_zero"], ["xq"], name="xq"),
        n("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xd"], name="xd"),
        n("DequantizeLinear", ["w_q", "w_scale"], ["w"], name="wd", axis=0),
        n("Conv", ["xd", "w"], ["y"], name="conv", pads=[1, 1, 1, 1]),
    ]
    rng = np.random.default_rng(3)
    inits = [
        _const("x_scale", 0.02, np.float32), _const("x_zero", 128, np.uint8),
        _const("w_q", rng.integers(-127, 128, (4, 3, 3, 3)), np.int8),
        _const("w_scale", [0.01, 0.02, 0.03, 0.04], np.float32),
    ]  # fmt: skip
    model = fx.model(nodes, [fx.value("x", ["N", 3, 6, 6])], [fx.value("y", None)], inits)
    module, _ = _check(model, _inputs([2, 3, 6, 6]))
    (conv,) = module.children()
    assert isinstance(conv, nn.Conv2d) and conv.weight.dtype == torch.float32
    _assert_layers_match_workload(module, model)


# -- the batch dimension -----------------------------------------------------------------------------------------


def _batch1_flatten_model() -> onnx.ModelProto:
    """Conv -> Reshape to the exported [1, 36] -> Gemm: how some exporters write a flatten."""
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Reshape", ["c", "target"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], name="fc", transB=1),
    ]
    inits = [_rand("W", [4, 2, 3, 3], 1), _const("target", [1, 36]), _rand("fc_w", [5, 36], 2), _rand("fc_b", [5], 3)]
    return fx.model(nodes, [fx.value("x", [1, 2, 3, 3])], [fx.value("y", None)], inits)


def test_reshape_with_exported_batch_runs_any_batch() -> None:
    model = _batch1_flatten_model()
    module, _ = _check(model, _inputs([6, 2, 3, 3]), chunk=1)
    assert module.export_batch == 1
    _assert_layers_match_workload(module, model)


def test_reshape_that_is_not_per_sample_keeps_its_target() -> None:
    # [1, 12] on a (3, 4) input is a real reshape of all rows into one, not a batch-1 leftover
    model = _single("Reshape", ["x", "t"], [3, 4], [_const("t", [1, 12])])
    module, _ = _check(model, _inputs([3, 4]))
    assert module.export_batch == 3
    _check(_single("Reshape", ["x", "t"], [2, 3, 4], [_const("t", [2, 0, 2, -1])]), _inputs([2, 3, 4]))


# -- modules, buffers, gradients ---------------------------------------------------------------------------------


def test_child_names_are_identifiers_and_follow_the_loader() -> None:
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["a"], pads=[1, 1, 1, 1]),  # unnamed: Conv_0
        helper.make_node("Conv", ["a", "W"], ["b"], name="1 odd/name.0", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["b", "W"], ["c"], name="forward", pads=[1, 1, 1, 1]),  # a Module attribute
        helper.make_node("Conv", ["c", "W"], ["d"], name="1 odd/name.0", pads=[1, 1, 1, 1]),  # duplicate
    ]
    model = fx.model(nodes, [fx.value("x", ["N", 2, 4, 4])], [fx.value("d", None)], [_rand("W", [2, 2, 3, 3], 1, 0.3)])
    module = load_torch_model(model)  # not for onnxruntime: it refuses duplicate node names
    assert module(torch.zeros(2, 2, 4, 4)).shape == (2, 2, 4, 4)
    assert list(module.node_of.items()) == [
        ("Conv_0", "Conv_0"), ("n_1_odd_name_0", "1 odd/name.0"), ("forward_1", "forward"),
        ("n_1_odd_name_0_1", "1 odd/name.0_1"),
    ]  # fmt: skip
    _assert_layers_match_workload(module, model)


def test_children_are_looked_up_at_run_time_so_they_can_be_swapped_and_copied() -> None:
    module = load_torch_model(WORKLOADS / "digits_cnn.onnx")
    x = torch.from_numpy(_inputs([3, 1, 8, 8])[0])
    with torch.no_grad():
        before = module(x)
        twin = copy.deepcopy(module)
        module.fc_Gemm = nn.Sequential(module.fc_Gemm, nn.Identity())
        twin.fc_Gemm.weight.mul_(2.0)
        torch.testing.assert_close(module(x), before)  # the swapped child ran, same numbers
        assert not torch.allclose(twin(x), before)  # the copy has its own children
        assert torch.equal(module(x), before)


def test_a_weight_also_read_elsewhere_is_a_separate_buffer() -> None:
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["y"], name="conv"),
        helper.make_node("Add", ["x", "W"], ["z"], name="add"),  # W (2, 2, 3, 3) read at run time too
    ]
    outputs = [fx.value("y", None), fx.value("z", None)]
    model = fx.model(nodes, [fx.value("x", [2, 2, 3, 3])], outputs, [_rand("W", [2, 2, 3, 3], 1)])
    module, _ = _check(model, _inputs([2, 2, 3, 3]))
    with torch.no_grad():
        module.conv.weight.zero_()
    assert module.c_W.abs().sum() > 0


def test_buffers_follow_dtype_and_device_moves() -> None:
    model = _single(
        "Clip", ["x", "lo", "hi"], ["N", 4], [_const("lo", -0.5, np.float32), _const("hi", 0.5, np.float32)]
    )
    module = load_torch_model(model).double()
    assert {b.dtype for b in module.buffers()} == {torch.float64}
    x = torch.linspace(-1, 1, 8, dtype=torch.float64).reshape(2, 4)
    assert module(x).dtype == torch.float64
    assert module.to("meta")(x.to("meta")).device.type == "meta"


def test_gradients_flow_for_fine_tuning() -> None:
    module = load_torch_model(WORKLOADS / "digits_cnn.onnx").train()
    x = torch.from_numpy(_inputs([4, 1, 8, 8])[0])
    loss = nn.functional.cross_entropy(module(x), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    params = list(module.parameters())
    assert len(params) == 8 and all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.01)
    optimizer.step()
    assert nn.functional.cross_entropy(module(x), torch.tensor([0, 1, 2, 3])) < loss

    attention = load_torch_model(fx.attention_model(batch=2, heads=2, seq=3, dim=4))
    q, k, v = (torch.randn(2, 2, 3, 4, requires_grad=True) for _ in range(3))
    attention(q, k, v).sum().backward()
    assert all(t.grad is not None for t in (q, k, v))
    assert [type(c) for c in attention.children()] == [ActivationMatMul, ActivationMatMul]


# -- errors ------------------------------------------------------------------------------------------------------


def test_unsupported_op_names_file_node_and_op(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Det", ["r"], ["y"], name="/head/Det"),
    ]
    path = tmp_path / "odd.onnx"
    onnx.save(fx.model(nodes, [fx.value("x", [2, 3, 3])], [fx.value("y", None)]), str(path))
    with pytest.raises(InputError, match=r"odd\.onnx: node '/head/Det' \(Det\): unsupported op; supported: Abs, "):
        load_torch_model(path)


def test_other_load_errors() -> None:
    conv = helper.make_node("Conv", ["x", "w"], ["y"], name="c")
    computed_weight = fx.model(
        [conv], [fx.value("x", [1, 2, 4, 4]), fx.value("w", [2, 2, 3, 3])], [fx.value("y", None)]
    )
    with pytest.raises(InputError, match=r"<model>: node 'c' \(Conv\): the weight is computed"):
        load_torch_model(computed_weight)
    pool = _single("MaxPool", ["x"], [1, 2, 4, 4], outputs=2, kernel_shape=[2, 2])
    with pytest.raises(InputError, match=r"node 'the_maxpool' \(MaxPool\): the Indices output is not supported"):
        load_torch_model(pool)
    custom = _single("Foo", ["x"], [1, 2])
    custom.graph.node[0].domain = "com.example"
    with pytest.raises(InputError, match=r"node 'the_foo' \(Foo\): unsupported op \(domain 'com.example'\)"):
        load_torch_model(custom)
    with pytest.raises(InputError, match="file not found"):
        load_torch_model(ROOT / "no_such.onnx")


def test_run_time_errors_name_the_node() -> None:
    module = load_torch_model(_single("Reshape", ["x", "t"], ["N", 6], [_const("t", [4, -1])]))
    with pytest.raises(RuntimeError, match=r"<model>: node 'the_reshape' \(Reshape\): shape '\[4, -1\]' is invalid"):
        module(torch.zeros(3, 6))
    digits = load_torch_model(WORKLOADS / "digits_cnn.onnx")
    with pytest.raises(RuntimeError, match="expected input.* to have 1 channels") as info:  # the child's own error
        digits(torch.zeros(2, 3, 8, 8))
    assert "node '/conv1/Conv' (Conv)" in "".join(getattr(info.value, "__notes__", ["node '/conv1/Conv' (Conv)"]))
    with pytest.raises(TypeError, match=r"expected 1 input\(s\) \(input\), got 2"):
        digits(torch.zeros(1, 1, 8, 8), torch.zeros(1))
