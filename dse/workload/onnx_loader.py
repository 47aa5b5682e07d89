"""Read an ONNX model into a :class:`~dse.workload.graph.Workload`.

Every ONNX node becomes a graph node. Conv, Gemm and MatMul kinds become :class:`Layer`
objects with their loop nest (see ``dse.workload.layer`` for the loop equation); all other
nodes become zero-cost :class:`OtherOp` objects that keep the graph's edges (residual
branches, attention's two activation operands). Shapes come from ONNX shape inference,
run here on a copy of the model; weights are never read, so models whose external weight
file is missing load as well as complete ones.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import networkx as nx
import onnx
from onnx import TensorProto, helper
from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data

from dse.errors import InputError, display_path
from dse.workload.graph import Workload
from dse.workload.layer import Layer, Loops, OtherOp, Precision

CONV_OPS = ("Conv", "ConvInteger", "QLinearConv")
GEMM_OPS = ("Gemm",)
MATMUL_OPS = ("MatMul", "MatMulInteger", "QLinearMatMul")
SUPPORTED_OPS = CONV_OPS + GEMM_OPS + MATMUL_OPS

# Compute-like ops the cost model cannot map: refused with a clear message rather than
# silently costed as zero.
UNSUPPORTED_COMPUTE_OPS = frozenset(
    {
        "ConvTranspose", "DeformConv", "Einsum", "LSTM", "GRU", "RNN", "Attention",
        "MultiHeadAttention", "GroupQueryAttention", "PackedAttention", "SparseAttention",
        "LongformerAttention", "DecoderAttention", "DecoderMaskedMultiHeadAttention", "QAttention",
        "MatMulNBits", "MatMulBnb4", "MatMulFpQ4", "FusedConv", "FusedGemm", "FusedMatMul", "QGemm",
        "NhwcConv", "QLinearConvTranspose", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
        "DynamicQuantizeLSTM", "GemmFastGelu", "GemmFloat8",
    }
)  # fmt: skip

# Ops through which a constant stays a constant (weight layout and quantisation changes).
PASS_THROUGH_OPS = frozenset(
    {"Transpose", "Reshape", "Cast", "Identity", "Unsqueeze", "Squeeze", "DequantizeLinear",
     "QuantizeLinear", "Flatten"}
)  # fmt: skip

# (streamed input, stored input, bias or None) positions of each compute op's operands.
OPERANDS: dict[str, tuple[int, int, int | None]] = {
    "Conv": (0, 1, 2),
    "ConvInteger": (0, 1, None),
    "QLinearConv": (0, 3, 8),
    "Gemm": (0, 1, 2),
    "MatMul": (0, 1, None),
    "MatMulInteger": (0, 1, None),
    "QLinearMatMul": (0, 3, None),
}

_BITS_BY_TYPE_NAME = {
    "INT2": 2, "UINT2": 2, "INT4": 4, "UINT4": 4, "FLOAT4E2M1": 4, "FLOAT6E2M3": 6, "FLOAT6E3M2": 6,
    "INT8": 8, "UINT8": 8, "FLOAT8E4M3FN": 8, "FLOAT8E4M3FNUZ": 8, "FLOAT8E5M2": 8,
    "FLOAT8E5M2FNUZ": 8, "FLOAT8E8M0": 8, "INT16": 16, "UINT16": 16, "FLOAT16": 16, "BFLOAT16": 16,
    "INT32": 32, "UINT32": 32, "FLOAT": 32, "INT64": 64, "UINT64": 64, "DOUBLE": 64,
}  # fmt: skip
BITS_BY_ELEM_TYPE: dict[int, int] = {
    getattr(TensorProto, n): b for n, b in _BITS_BY_TYPE_NAME.items() if hasattr(TensorProto, n)
}

# ZigZag-style integer node attributes that set a layer's precision.
PRECISION_ATTRS = {"weight_size": "W", "act_size": "I", "output_size": "O"}

STATIC_SHAPES_HINT = "export with static shapes"

Shape = tuple[int, ...]


def load_onnx(
    path: str | Path | onnx.ModelProto,
    *,
    default_precision: Precision = Precision(),  # noqa: B008 - frozen dataclass, safe default
    name: str | None = None,
) -> Workload:
    """Parse an ONNX file (or an in-memory ``ModelProto``) into a :class:`Workload`.

    Float compute ops get ``default_precision``; quantised ops take theirs from their
    element types. Raises :class:`InputError` for anything the loader cannot use.
    """
    if isinstance(path, onnx.ModelProto):
        source = "<model>"
        model = onnx.ModelProto()
        model.CopyFrom(path)
        base_dir = None
        default_name = path.graph.name or "model"
    else:
        source = display_path(path)
        model = read_model(Path(path), source)
        base_dir = Path(path).parent
        default_name = Path(path).stem
    check_model(model, source)
    _fix_dynamic_batch(model, source)
    notes = []
    if base_dir is not None and not _load_small_int_initializers(model, base_dir):
        notes.append("shape tensors stored in the missing external data file could not be read")
    model, inference_error = _infer_shapes(model)
    if inference_error:
        notes.append(f"ONNX shape inference failed: {inference_error}")
    return _WorkloadBuilder(model, source, default_precision, notes).build(name or default_name)


# -- reading --------------------------------------------------------------------------------------


def read_model(path: Path, source: str) -> onnx.ModelProto:
    if not path.exists():
        raise InputError(source, None, "file not found", "check the path to the ONNX model")
    if path.is_dir():
        raise InputError(source, None, "is a directory, not an ONNX file")
    try:
        size = path.stat().st_size
    except OSError as err:
        raise InputError(source, None, f"cannot read the file ({err.strerror})") from None
    if size == 0:
        raise InputError(source, None, "empty file, not an ONNX model")
    try:
        return onnx.load(str(path), load_external_data=False)
    except OSError as err:
        raise InputError(source, None, f"cannot read the file ({err.strerror or err})") from None
    except Exception as err:  # protobuf DecodeError and friends
        raise InputError(
            source,
            None,
            f"not a readable ONNX model (protobuf parse failed: {type(err).__name__})",
            "the file is truncated, corrupt or not an ONNX file; re-export or re-download it",
        ) from None


def check_model(model: onnx.ModelProto, source: str) -> None:
    """Catch byte strings that happened to parse as a protobuf but are no ONNX model."""
    if not model.HasField("graph") or model.ir_version <= 0 or not model.opset_import:
        raise InputError(
            source, None, "not an ONNX model (no graph, IR version or opset import found)",
            "is this file really an .onnx export?",
        )  # fmt: skip
    if not model.graph.node:
        raise InputError(source, None, "the model's graph has no nodes")


def _fix_dynamic_batch(model: onnx.ModelProto, source: str) -> None:
    """Set an unknown leading (batch) dim of each graph input to 1, with one warning."""
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    fixed: list[str] = []
    params: set[str] = set()
    for vi in graph.input:
        if vi.name in initializers or not vi.type.HasField("tensor_type"):
            continue
        tt = vi.type.tensor_type
        if not tt.HasField("shape") or len(tt.shape.dim) < 2:
            continue
        dim = tt.shape.dim[0]
        if dim.HasField("dim_value") and dim.dim_value > 0:
            continue
        fixed.append(f"'{vi.name}'" + (f" ('{dim.dim_param}')" if dim.dim_param else ""))
        if dim.dim_param:
            params.add(dim.dim_param)
        dim.dim_value = 1  # clears dim_param (a oneof)
    if not fixed:
        return
    if params:  # keep declared shapes that name the same symbol consistent
        for vi in (*graph.input, *graph.output, *graph.value_info):
            if vi.type.HasField("tensor_type"):
                for dim in vi.type.tensor_type.shape.dim:
                    if dim.dim_param in params:
                        dim.dim_value = 1
    warnings.warn(
        f"{source}: dynamic batch dimension of input{'s' if len(fixed) > 1 else ''} {', '.join(fixed)} "
        "treated as batch size 1",
        stacklevel=3,
    )


def _load_small_int_initializers(model: onnx.ModelProto, base_dir: Path) -> bool:
    """Read small integer initializers (Reshape targets) from external data; False if some are missing."""
    complete = True
    for tensor in model.graph.initializer:
        is_int = tensor.data_type in (TensorProto.INT64, TensorProto.INT32)
        small_int = is_int and math.prod(tensor.dims) <= 16
        if small_int and uses_external_data(tensor):
            try:
                load_external_data_for_tensor(tensor, str(base_dir))
                tensor.data_location = TensorProto.DEFAULT
                del tensor.external_data[:]
            except Exception:  # missing or unreadable weight file: shapes may still be inferable
                complete = False
    return complete


def _infer_shapes(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str | None]:
    """Run ONNX shape inference; on failure keep the declared shapes and remember why."""
    try:
        inferred = onnx.shape_inference.infer_shapes(
            model, check_type=False, strict_mode=False, data_prop=True
        )
    except Exception as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return model, first_line
    return inferred, None


# -- tensors --------------------------------------------------------------------------------------


class _Tensors:
    """Shapes, element types, producers and constant-ness of the graph's tensors."""

    def __init__(self, graph: onnx.GraphProto):
        self.shapes: dict[str, tuple[int | str | None, ...] | None] = {}
        self.types: dict[str, int] = {}
        self.constants: set[str] = set()
        self.producer: dict[str, onnx.NodeProto] = {}
        for vi in (*graph.input, *graph.value_info, *graph.output):
            self._add_value_info(vi)
        for tensor in graph.initializer:
            self._add(tensor.name, tuple(tensor.dims), tensor.data_type)
            self.constants.add(tensor.name)
        for sparse in graph.sparse_initializer:
            self._add(sparse.values.name, tuple(sparse.dims), sparse.values.data_type)
            self.constants.add(sparse.values.name)
        for node in graph.node:
            for out in node.output:
                if out:
                    self.producer[out] = node
            if node.op_type == "Constant" and node.output:
                self._add_constant(node)

    def _add(self, name: str, shape: tuple | None, elem_type: int) -> None:
        self.shapes[name] = shape
        if elem_type:
            self.types[name] = elem_type

    def _add_value_info(self, vi: onnx.ValueInfoProto) -> None:
        if not vi.type.HasField("tensor_type"):
            return
        tt = vi.type.tensor_type
        shape = None
        if tt.HasField("shape"):
            shape = tuple(
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim
            )
        if shape is not None or vi.name not in self.shapes:
            self.shapes[vi.name] = shape
        if tt.elem_type:
            self.types[vi.name] = tt.elem_type

    def _add_constant(self, node: onnx.NodeProto) -> None:
        out = node.output[0]
        self.constants.add(out)
        for attr in node.attribute:
            if attr.name == "value":
                self._add(out, tuple(attr.t.dims), attr.t.data_type)
            elif attr.name == "sparse_value":
                self._add(out, tuple(attr.sparse_tensor.dims), attr.sparse_tensor.values.data_type)
            elif attr.name in ("value_float", "value_int", "value_string"):
                kind = {"value_float": TensorProto.FLOAT, "value_int": TensorProto.INT64}
                self._add(out, (), kind.get(attr.name, TensorProto.STRING))
            elif attr.name in ("value_floats", "value_ints", "value_strings"):
                values = {"value_floats": attr.floats, "value_ints": attr.ints}.get(attr.name, attr.strings)
                kind = {"value_floats": TensorProto.FLOAT, "value_ints": TensorProto.INT64}
                self._add(out, (len(values),), kind.get(attr.name, TensorProto.STRING))

    def static_shape(self, name: str) -> Shape | None:
        """The shape if every dimension is known, else None."""
        shape = self.shapes.get(name)
        if shape is None or not all(isinstance(d, int) and d > 0 for d in shape):
            return None
        return shape

    def bits(self, name: str) -> int | None:
        return BITS_BY_ELEM_TYPE.get(self.types.get(name, 0))

    def quantized_bits(self, name: str) -> int | None:
        """Bits of the integer tensor a DequantizeLinear turns into ``name`` (QDQ models), if any.

        Walks back through layout ops (Transpose, Reshape, ...) to the nearest DequantizeLinear.
        """
        seen: set[str] = set()
        while name not in seen:
            seen.add(name)
            node = self.producer.get(name)
            if node is None or not node.input:
                return None
            if node.op_type == "DequantizeLinear":
                return self.bits(node.input[0])
            if node.op_type not in PASS_THROUGH_OPS or node.op_type == "QuantizeLinear":
                return None
            name = node.input[0]
        return None

    def is_constant(self, name: str) -> bool:
        """An initializer or Constant output, possibly through layout/cast/quantise ops."""
        seen: set[str] = set()
        while name not in self.constants:
            node = self.producer.get(name)
            if node is None or node.op_type not in PASS_THROUGH_OPS or not node.input or name in seen:
                return False
            seen.add(name)
            name = node.input[0]
        return True


# -- building the workload ------------------------------------------------------------------------


class _WorkloadBuilder:
    """Turns the (shape-inferred) ONNX graph into Workload nodes and edges."""

    def __init__(
        self, model: onnx.ModelProto, source: str, precision: Precision, notes: Sequence[str] = ()
    ):
        self.graph = model.graph
        self.source = source
        self.default_precision = precision
        self.notes = tuple(notes)  # why shapes may be missing, added to shape errors
        self.tensors = _Tensors(model.graph)

    def build(self, name: str) -> Workload:
        dag = nx.DiGraph()
        producer_key: dict[str, str] = {}
        keys = unique_node_names(self.graph.node)
        for index, (key, node) in enumerate(zip(keys, self.graph.node, strict=True)):
            dag.add_node(key, node=self._convert(key, node), index=index)
            for out in node.output:
                if out:
                    producer_key[out] = key
        for key, node in zip(keys, self.graph.node, strict=True):
            for tensor in node.input:
                src = producer_key.get(tensor)
                if src is not None and src != key and not dag.has_edge(src, key):
                    dag.add_edge(src, key, tensor=tensor)
        if not nx.is_directed_acyclic_graph(dag):
            cycle = " -> ".join(u for u, _ in nx.find_cycle(dag))
            raise InputError(self.source, None, f"the graph has a cycle ({cycle})", "not a valid ONNX model")
        return Workload(name=name, graph=dag, source=self.source)

    def _convert(self, key: str, node: onnx.NodeProto) -> Layer | OtherOp:
        op = node.op_type
        if op in CONV_OPS:
            return self._conv(key, node)
        if op in GEMM_OPS:
            return self._gemm(key, node)
        if op in MATMUL_OPS:
            return self._matmul(key, node)
        if op in UNSUPPORTED_COMPUTE_OPS:
            supported = "supported: " + ", ".join(SUPPORTED_OPS)
            raise InputError(self.source, _where(key, op), "unsupported compute op", supported)
        return OtherOp(
            name=key,
            onnx_op=op,
            inputs=tuple(t for t in node.input if t),
            outputs=tuple(t for t in node.output if t),
        )

    # -- helpers shared by the op families --------------------------------------------------

    def _error(self, key: str, node: onnx.NodeProto, problem: str, hint: str | None = None) -> InputError:
        return InputError(self.source, _where(key, node.op_type), problem, hint)

    def _operand(self, key: str, node: onnx.NodeProto, position: int, role: str) -> str:
        if position >= len(node.input) or not node.input[position]:
            raise self._error(key, node, f"missing {role} input (input #{position})")
        return node.input[position]

    def _shape(self, key: str, node: onnx.NodeProto, tensor: str, kind: str = "input") -> Shape:
        shape = self.tensors.static_shape(tensor)
        if shape is not None:
            return shape
        known = self.tensors.shapes.get(tensor)
        if known is None:
            problem = f"{kind} '{tensor}' has no shape after shape inference"
        else:
            dims = ", ".join("?" if d is None else str(d) for d in known)
            problem = f"{kind} '{tensor}' has a dynamic shape [{dims}] after shape inference"
        hint = STATIC_SHAPES_HINT
        if self.notes:
            hint += f" ({'; '.join(self.notes)})"
        raise self._error(key, node, problem, hint)

    def _precision(self, key: str, node: onnx.NodeProto, stored: str, streamed: str) -> Precision:
        bits = self.default_precision.as_dict()
        op = node.op_type
        if op.startswith("QLinear") or op.endswith("Integer"):
            for field, tensor in (("W", stored), ("I", streamed)):
                bits[field] = self.tensors.bits(tensor) or bits[field]
            if op.endswith("Integer"):
                bits["O"] = 32
            else:  # y has the type of y_zero_point (input 7 of both QLinear ops)
                y_zero = node.input[7] if len(node.input) > 7 else ""
                y = node.output[0] if node.output else ""
                bits["O"] = self.tensors.bits(y_zero) or self.tensors.bits(y) or bits["O"]
        else:  # float op in a QDQ model: operands come out of DequantizeLinear nodes
            for field, tensor in (("W", stored), ("I", streamed)):
                bits[field] = self.tensors.quantized_bits(tensor) or bits[field]
        for attr in node.attribute:
            if attr.name in PRECISION_ATTRS:
                value = helper.get_attribute_value(attr)
                if not isinstance(value, int) or not 1 <= value <= 64:
                    raise self._error(
                        key, node, f"attribute {attr.name} = {value!r}",
                        "expected an integer number of bits 1..64",
                    )  # fmt: skip
                bits[PRECISION_ATTRS[attr.name]] = value
        return Precision(**bits)

    def _layer(
        self, key: str, node: onnx.NodeProto, op: str, loops: dict[str, int], swap: bool = False, **kw
    ) -> Layer:
        """The Layer of ``node``; ``swap`` makes the first operand the stored one (constant x activation)."""
        streamed_at, stored_at, bias_at = OPERANDS[node.op_type]
        if swap:
            streamed_at, stored_at = stored_at, streamed_at
        streamed, stored = node.input[streamed_at], node.input[stored_at]
        has_bias = bias_at is not None and bias_at < len(node.input) and bool(node.input[bias_at])
        try:
            lp = Loops(**loops)
        except ValueError as err:
            raise self._error(key, node, str(err)) from None
        return Layer(
            name=key,
            op=op,
            onnx_op=node.op_type,
            loops=lp,
            precision=self._precision(key, node, stored, streamed),
            weight_constant=self.tensors.is_constant(stored),
            input=streamed,
            weight=stored,
            output=node.output[0] if node.output else "",
            has_bias=has_bias,
            **kw,
        )

    # -- Conv, ConvInteger, QLinearConv ---------------------------------------------------------

    def _conv(self, key: str, node: onnx.NodeProto) -> Layer:
        """N C H W (or N C L) input, Cout Cin/G kH kW weight -> B, G, K, C, OY, OX, FY, FX."""
        streamed_at, stored_at, _ = OPERANDS[node.op_type]
        w_name = self._operand(key, node, stored_at, "weight")
        x_name = self._operand(key, node, streamed_at, "data")
        w_shape = self._shape(key, node, w_name, "weight")
        if len(w_shape) >= 5:
            raise self._error(
                key, node, f"{len(w_shape) - 2}-D convolution (weight {list(w_shape)}) is not supported",
                "supported: 1-D and 2-D Conv",
            )  # fmt: skip
        if len(w_shape) not in (3, 4):
            raise self._error(key, node, f"weight '{w_name}' has rank {len(w_shape)}; expected 3 or 4")
        x_shape = self._shape(key, node, x_name)
        if len(x_shape) != len(w_shape):
            raise self._error(
                key, node, f"input '{x_name}' has shape {list(x_shape)} but weight has {list(w_shape)}",
                "expected the same rank (N C H W with Cout Cin/group kH kW)",
            )  # fmt: skip
        one_d = len(w_shape) == 3
        attrs = _attributes(node)
        group = attrs.get("group", 1)
        n, c_in = x_shape[0], x_shape[1]
        c_out, c_per_group = w_shape[0], w_shape[1]
        if not isinstance(group, int) or group < 1 or c_out % group or c_in != c_per_group * group:
            raise self._error(
                key, node, f"group = {group!r} does not fit input channels {c_in}, weight {list(w_shape)}",
                "expected input channels = weight dim 1 x group and output channels divisible by group",
            )  # fmt: skip
        spatial = len(w_shape) - 2
        kernel = tuple(w_shape[2:])
        if "kernel_shape" in attrs and tuple(attrs["kernel_shape"]) != kernel:
            problem = f"kernel_shape {list(attrs['kernel_shape'])} disagrees with weight {list(w_shape)}"
            raise self._error(key, node, problem)
        in_size = tuple(x_shape[2:])
        strides = self._ints(key, node, attrs, "strides", spatial, 1)
        dilations = self._ints(key, node, attrs, "dilations", spatial, 1)
        begin, end = self._conv_pads(key, node, attrs, in_size, kernel, strides, dilations)
        out_size = tuple(
            (i + b + e - d * (k - 1) - 1) // s + 1
            for i, b, e, k, s, d in zip(in_size, begin, end, kernel, strides, dilations, strict=True)
        )
        if min(out_size) < 1:
            raise self._error(
                key, node,
                f"kernel {list(kernel)} (dilation {list(dilations)}) is larger than the padded input "
                f"{list(in_size)}",
            )  # fmt: skip
        self._check_conv_output(key, node, (n, c_out, *out_size))
        if one_d:  # N C L: the length runs along X
            kernel, strides, dilations = (1, *kernel), (1, *strides), (1, *dilations)
            out_size, begin, end = (1, *out_size), (0, *begin), (0, *end)
        op = "dwconv" if group > 1 and c_per_group == 1 else "conv"
        loops = {
            "B": n, "G": group, "K": c_out // group, "C": c_per_group,
            "OY": out_size[0], "OX": out_size[1], "FY": kernel[0], "FX": kernel[1],
        }  # fmt: skip
        return self._layer(
            key, node, op, loops, stride=tuple(strides), dilation=tuple(dilations),
            padding=(begin[0], begin[1], end[0], end[1]),
        )  # fmt: skip

    def _ints(
        self, key: str, node: onnx.NodeProto, attrs: dict, attr: str, count: int, default: int
    ) -> tuple[int, ...]:
        values = tuple(attrs.get(attr, [default] * count))
        if len(values) != count or not all(isinstance(v, int) and v >= 1 for v in values):
            raise self._error(key, node, f"{attr} = {list(values)}", f"expected {count} positive integers")
        return values

    def _conv_pads(
        self, key: str, node: onnx.NodeProto, attrs: dict, in_size: Shape, kernel: Shape, strides: Shape,
        dilations: Shape,
    ) -> tuple[Shape, Shape]:  # fmt: skip
        """(begin, end) padding per spatial axis from ``pads`` or ``auto_pad``."""
        spatial = len(in_size)
        auto_pad = attrs.get("auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            begin, end = [], []
            for i, k, s, d in zip(in_size, kernel, strides, dilations, strict=True):
                total = max(0, (-(-i // s) - 1) * s + d * (k - 1) + 1 - i)
                small, large = total // 2, total - total // 2
                begin.append(small if auto_pad == "SAME_UPPER" else large)
                end.append(large if auto_pad == "SAME_UPPER" else small)
            return tuple(begin), tuple(end)
        if auto_pad == "VALID":
            return (0,) * spatial, (0,) * spatial
        if auto_pad != "NOTSET":
            raise self._error(
                key, node, f"auto_pad = '{auto_pad}'", "expected NOTSET, SAME_UPPER, SAME_LOWER or VALID"
            )
        pads = tuple(attrs.get("pads", [0] * 2 * spatial))
        if len(pads) != 2 * spatial or not all(isinstance(p, int) and p >= 0 for p in pads):
            expected = f"expected {2 * spatial} non-negative integers"
            raise self._error(key, node, f"pads = {list(pads)}", expected)
        return pads[:spatial], pads[spatial:]

    def _check_conv_output(self, key: str, node: onnx.NodeProto, expected: Shape) -> None:
        declared = self.tensors.static_shape(node.output[0]) if node.output else None
        if declared is not None and tuple(declared) != expected:
            raise self._error(
                key, node, f"output '{node.output[0]}' has shape {list(declared)} but the conv arithmetic "
                f"gives {list(expected)}",
                "the model's value_info disagrees with its attributes; re-export it",
            )  # fmt: skip

    # -- Gemm ----------------------------------------------------------------------------------

    def _gemm(self, key: str, node: onnx.NodeProto) -> Layer:
        """Y = A' B' (+ C): A' (M x Kc) streamed, B' (Kc x N) stored -> B=M, C=Kc, K=N."""
        a_name = self._operand(key, node, 0, "A")
        b_name = self._operand(key, node, 1, "B")
        a_shape, b_shape = self._shape(key, node, a_name), self._shape(key, node, b_name)
        if len(a_shape) != 2 or len(b_shape) != 2:
            problem = f"inputs have shapes {list(a_shape)} and {list(b_shape)}"
            raise self._error(key, node, problem, "Gemm expects 2-D A and B")
        attrs = _attributes(node)
        m, kc = a_shape[::-1] if attrs.get("transA", 0) else a_shape
        kb, n = b_shape[::-1] if attrs.get("transB", 0) else b_shape
        if kc != kb:
            raise self._error(
                key, node, f"inner dimensions differ: A {list(a_shape)}, B {list(b_shape)} "
                f"(transA={attrs.get('transA', 0)}, transB={attrs.get('transB', 0)})",
            )  # fmt: skip
        return self._layer(key, node, "gemm", {"B": m, "C": kc, "K": n})

    # -- MatMul, MatMulInteger, QLinearMatMul -----------------------------------------------------

    def _matmul(self, key: str, node: onnx.NodeProto) -> Layer:
        """numpy matmul (..., M, C) @ (..., C, N); leading dims go to G where the stored operand varies.

        The second operand is the stored one, unless only the first is constant.
        """
        streamed_at, stored_at, _ = OPERANDS[node.op_type]
        a_name = self._operand(key, node, streamed_at, "A")
        b_name = self._operand(key, node, stored_at, "B")
        a_shape, b_shape = self._shape(key, node, a_name), self._shape(key, node, b_name)
        if not a_shape or not b_shape:
            raise self._error(key, node, "MatMul of a scalar", "expected operands of rank 1 or more")
        a = (1, *a_shape) if len(a_shape) == 1 else a_shape
        b = (*b_shape, 1) if len(b_shape) == 1 else b_shape
        if a[-1] != b[-2]:
            raise self._error(key, node, f"inner dimensions differ: A {list(a_shape)}, B {list(b_shape)}")
        # constant A times activation B (e.g. W @ x): A is what the macro stores, so compute the
        # transposed product B^T A^T, whose stored operand is the constant.
        swap = self.tensors.is_constant(a_name) and not self.tensors.is_constant(b_name)
        if swap:
            a, b = (*b[:-2], b[-1], b[-2]), (*a[:-2], a[-1], a[-2])
        streamed_rank = len(b_shape if swap else a_shape)
        m, c = a[-2:]
        a_batch, b_batch = a[:-2], b[:-2]
        rank = max(len(a_batch), len(b_batch))
        a_batch = (1,) * (rank - len(a_batch)) + a_batch
        b_batch = (1,) * (rank - len(b_batch)) + b_batch
        groups = rest = 1
        for da, db in zip(a_batch, b_batch, strict=True):
            if da != db and 1 not in (da, db):
                raise self._error(
                    key, node, f"batch dimensions do not broadcast: A {list(a_shape)}, B {list(b_shape)}"
                )
            if db > 1:
                groups *= db  # the stored operand differs along this dim
            else:
                rest *= da
        # 2-D streamed operand: its rows are independent vectors (batch); >= 3-D: a sequence along OX.
        rows = {"B": m * rest, "OX": 1} if streamed_rank <= 2 else {"B": rest, "OX": m}
        loops = {**rows, "G": groups, "C": c, "K": b[-1]}
        return self._layer(key, node, "matmul", loops, swap=swap)


def _attributes(node: onnx.NodeProto) -> dict:
    return {attr.name: helper.get_attribute_value(attr) for attr in node.attribute}


def _where(key: str, op_type: str) -> str:
    return f"node '{key}' ({op_type})"


def unique_node_names(nodes: Sequence[onnx.NodeProto]) -> list[str]:
    """Node names, ``<op_type>_<index>`` for unnamed ones, made unique with a ``_<n>`` suffix."""
    wanted = [node.name or f"{node.op_type}_{i}" for i, node in enumerate(nodes)]
    taken = set(wanted)
    used: set[str] = set()
    names = []
    for name in wanted:
        unique = name
        suffix = 1
        while unique in used or (unique != name and unique in taken):
            unique = f"{name}_{suffix}"
            suffix += 1
        used.add(unique)
        names.append(unique)
    return names
