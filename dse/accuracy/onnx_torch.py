"""Run an ONNX model in torch, with its compute layers as real (swappable, trainable) torch modules.

The accuracy simulation swaps a model's compute layers for CiM layers, so an ONNX file has to become an
``nn.Module`` whose Conv/Gemm/MatMul nodes are ordinary children:

* ``Conv`` (1-D or 2-D) -> ``nn.Conv2d`` (a 1-D conv runs as N C 1 L with a 1 x k kernel, as the workload
  loader maps it); symmetric ``pads`` live in the module, asymmetric pads and ``auto_pad`` SAME are a
  zero ``F.pad`` in front of it.
* ``Gemm`` / ``MatMul`` whose stored operand is a constant 2-D matrix -> ``nn.Linear`` holding it
  transposed as torch wants it (``W @ x`` with a constant left operand runs as ``(x^T W^T)^T``). A Gemm's
  ``C`` becomes the Linear's bias when it is a constant vector and ``alpha == 1`` (otherwise it is added
  after, in ONNX's order); a MatMul whose only consumer is an ``Add`` of a constant vector of its
  width (how torch exports ``nn.Linear`` on 3-D inputs) takes that vector as its bias.
* ``Gemm`` / ``MatMul`` of two activations (or of a constant of rank > 2) ->
  :class:`dse.models.vit.ActivationMatMul`.

Every other node (``SUPPORTED_OPS``) is evaluated with torch functions; nodes that read only constants
are folded once at load time, so a QDQ model's DequantizeLinear'd weights land in the Conv2d / Linear as
floats. Child modules are named after the ONNX nodes (sanitised to identifiers, in graph order);
``node_of`` maps each back to the node name ``dse.workload.load_onnx`` gives that layer. Initializers
that are no Conv/Linear weight stay as buffers, so ``.to(device)`` moves them.

The batch dimension is free: a constant ``Reshape`` target that starts with the exported batch (the
first graph input's static leading dim) and whose other dims hold exactly one sample of the input
(``prod(target[1:]) * x.shape[0] == x.numel()``) gets ``-1`` as its first dim. This only changes
reshapes that would fail otherwise (batch != exported batch), such as the ``[1, 512]`` a Flatten may
be exported as. Other batch-hard-coding constants (say a ``Concat`` with a batch-1 constant) are not
rewritten. ``Dropout`` is always the identity and ``BatchNormalization`` always uses its running
statistics, so the module computes the inference graph also in ``train()`` mode.
"""

from __future__ import annotations

import keyword
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data
from torch import Tensor, nn

from dse.errors import InputError, display_path
from dse.models.vit import ActivationMatMul
from dse.workload.onnx_loader import check_model, read_model, unique_node_names  # same files, same layer names

__all__ = ["OnnxModule", "load_torch_model", "SUPPORTED_OPS"]

DTYPES: dict[int, torch.dtype] = {
    TensorProto.FLOAT: torch.float32,
    TensorProto.DOUBLE: torch.float64,
    TensorProto.FLOAT16: torch.float16,
    TensorProto.BFLOAT16: torch.bfloat16,
    TensorProto.INT8: torch.int8,
    TensorProto.UINT8: torch.uint8,
    TensorProto.INT16: torch.int16,
    TensorProto.UINT16: torch.uint16,
    TensorProto.INT32: torch.int32,
    TensorProto.UINT32: torch.uint32,
    TensorProto.INT64: torch.int64,
    TensorProto.UINT64: torch.uint64,
    TensorProto.BOOL: torch.bool,
}

COMPUTE_OPS = ("Conv", "Gemm", "MatMul")
_SAME = ("SAME_UPPER", "SAME_LOWER")

Args = list[Tensor | None]
Handler = Callable[["OnnxModule", "_Step", Args], "Tensor | Sequence[Tensor]"]


@dataclass
class _Step:
    """One ONNX node as it runs: its op, tensor names, parsed attributes and (for compute ops) child."""

    key: str  # node name as dse.workload.load_onnx names it
    op: str
    inputs: tuple[str, ...]  # "" for an omitted optional input
    outputs: tuple[str, ...]
    attrs: dict[str, Any]
    module: str | None = None  # child module name of a compute op
    drop: tuple[str, ...] = field(default=())  # tensors read for the last time here (freed after)


class OnnxModule(nn.Module):
    """Executes an ONNX graph in torch; Conv/Gemm/MatMul nodes are nn.Conv2d / nn.Linear / ActivationMatMul children.

    ``forward`` takes the graph's (non-initializer) inputs in order and returns its output, or a tuple
    when the graph has several. ``node_of`` maps each child's name to its ONNX node (layer) name.
    """

    node_of: dict[str, str]
    input_names: list[str]
    output_names: list[str]
    export_batch: int | None

    def __init__(self, model: onnx.ModelProto, source: str = "<model>"):
        super().__init__()
        self.source = source
        self.opset = _default_opset(model)
        self.node_of = {}
        self._steps: list[_Step] = []
        self._buffer_of: dict[str, str] = {}  # ONNX tensor name -> buffer attribute name
        _Builder(self, model).build()

    def forward(self, *inputs: Tensor) -> Tensor | tuple[Tensor, ...]:
        if len(inputs) != len(self.input_names):
            names = ", ".join(self.input_names)
            raise TypeError(f"{self.source}: expected {len(self.input_names)} input(s) ({names}), got {len(inputs)}")
        env: dict[str, Tensor] = {name: self._buffers[attr] for name, attr in self._buffer_of.items()}
        env.update(zip(self.input_names, inputs, strict=True))
        for step in self._steps:
            args: Args = [env[name] if name else None for name in step.inputs]
            try:
                result = HANDLERS[step.op](self, step, args)
            except (RuntimeError, ValueError, IndexError, TypeError) as err:
                where = f"{self.source}: node '{step.key}' ({step.op})"
                if step.module is not None:  # a child's own error (maybe a swapped-in layer's): keep its type
                    if hasattr(err, "add_note"):  # Python >= 3.11
                        err.add_note(f"in {where}")
                    raise
                raise RuntimeError(f"{where}: {err}") from err
            values = (result,) if isinstance(result, Tensor) else tuple(result)
            for name, value in zip(step.outputs, values, strict=False):
                if name:
                    env[name] = value
            for name in step.drop:
                env.pop(name, None)
        outputs = tuple(env[name] for name in self.output_names)
        return outputs[0] if len(outputs) == 1 else outputs

    def child(self, step: _Step) -> nn.Module:
        """The (possibly swapped) child module of a compute step, looked up by name on every call."""
        assert step.module is not None
        return self._modules[step.module]

    def extra_repr(self) -> str:
        return f"source={self.source!r}, opset={self.opset}, nodes={len(self._steps)}"


def load_torch_model(model: str | Path | onnx.ModelProto) -> OnnxModule:
    """An ONNX file (with its weights) or ``ModelProto`` as an :class:`OnnxModule` in eval mode.

    Raises :class:`InputError` for unreadable files, missing external weights and unsupported ops.
    """
    if isinstance(model, onnx.ModelProto):
        source = "<model>"
        proto = model
        check_model(proto, source)
        for tensor in proto.graph.initializer:
            if uses_external_data(tensor):
                raise InputError(
                    source, f"initializer '{tensor.name}'", "its data is in an external file that was not loaded",
                    "pass the path of the .onnx file, or load it with onnx.load() next to its weights file",
                )  # fmt: skip
    else:
        source = display_path(model)
        proto = read_model(Path(model), source)
        check_model(proto, source)
        _load_external_data(proto, Path(model).parent, source)
    return OnnxModule(proto, source).eval()


def _load_external_data(model: onnx.ModelProto, base_dir: Path, source: str) -> None:
    """Read every initializer stored in an external file, or say which file is missing."""
    for tensor in model.graph.initializer:
        if not uses_external_data(tensor):
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "?")
        try:
            load_external_data_for_tensor(tensor, str(base_dir))
        except Exception as err:
            if not (base_dir / location).is_file():
                reason = "file not found"
            else:
                reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise InputError(
                source, f"initializer '{tensor.name}'",
                f"its data is in '{location}', which cannot be read ({reason})",
                "the .onnx is structure-only: put its weights file next to it "
                "(workloads/export.py --weights writes one for the zoo models)",
            ) from None  # fmt: skip
        tensor.data_location = TensorProto.DEFAULT
        del tensor.external_data[:]


def _default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    return 1


# -- building ---------------------------------------------------------------------------------------------------


class _Builder:
    """Folds constant nodes, turns the rest into steps and creates the compute children and buffers."""

    def __init__(self, owner: OnnxModule, model: onnx.ModelProto):
        self.owner = owner
        self.graph = model.graph
        self.source = owner.source
        self.keys = unique_node_names(self.graph.node)
        self.constants: dict[str, Tensor] = {}
        for tensor in self.graph.initializer:
            self.constants[tensor.name] = _tensor(tensor, self.source, f"initializer '{tensor.name}'")
        if len(self.graph.sparse_initializer):
            name = self.graph.sparse_initializer[0].values.name
            raise InputError(self.source, f"initializer '{name}'", "sparse initializers are not supported")
        self.consumers: dict[str, list[int]] = {}
        for index, node in enumerate(self.graph.node):
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(index)
        self.outputs = [o.name for o in self.graph.output]
        self.absorbed: set[int] = set()  # Add nodes folded into a Linear's bias
        self.modules: list[tuple[str, nn.Module]] = []  # (node key, child), in graph order

    def error(self, index: int, problem: str, hint: str | None = None) -> InputError:
        node = self.graph.node[index]
        return InputError(self.source, f"node '{self.keys[index]}' ({node.op_type})", problem, hint)

    def build(self) -> None:
        owner = self.owner
        owner.input_names = [i.name for i in self.graph.input if i.name not in self.constants]
        owner.output_names = list(self.outputs)
        owner.export_batch = self._export_batch()
        known = set(owner.input_names) | set(self.constants)
        for index, node in enumerate(self.graph.node):
            self._check_supported(index, node)
            for name in node.input:
                if name and name not in known:
                    raise self.error(
                        index, f"input '{name}' is not produced by an earlier node",
                        "the graph is not topologically sorted or misses a tensor; re-export it",
                    )  # fmt: skip
            known.update(n for n in node.output if n)
            if index in self.absorbed:
                continue
            if node.op_type not in COMPUTE_OPS and all(n in self.constants for n in node.input if n):
                self._fold(index, node)
            else:
                owner._steps.append(self._step(index, node))
        for name in self.outputs:
            if name not in known:
                raise InputError(self.source, f"graph output '{name}'", "is produced by no node")
        self._register()

    def _export_batch(self) -> int | None:
        """The static leading dim of the first graph input (the batch the model was exported with)."""
        for vi in self.graph.input:
            if vi.name in self.constants or not vi.type.HasField("tensor_type"):
                continue
            dims = vi.type.tensor_type.shape.dim
            if len(dims) >= 2 and dims[0].HasField("dim_value") and dims[0].dim_value > 0:
                return dims[0].dim_value
            return None
        return None

    def _check_supported(self, index: int, node: onnx.NodeProto) -> None:
        if node.domain not in ("", "ai.onnx"):
            raise self.error(index, f"unsupported op (domain '{node.domain}')", "only standard ONNX ops run in torch")
        if node.op_type not in HANDLERS:
            raise self.error(index, "unsupported op", "supported: " + ", ".join(SUPPORTED_OPS))
        check = _LOAD_CHECKS.get(node.op_type)
        if check is not None:
            problem = check(node, _attributes(node, self.source))
            if problem:
                raise self.error(index, problem)

    def _fold(self, index: int, node: onnx.NodeProto) -> None:
        """Evaluate a node that reads only constants, once, now."""
        step = self._plain_step(index, node)
        args: Args = [self.constants[n] if n else None for n in node.input]
        try:
            with torch.no_grad():
                result = HANDLERS[node.op_type](self.owner, step, args)
        except (RuntimeError, ValueError, IndexError, TypeError) as err:
            raise self.error(index, f"cannot evaluate on its constant inputs ({err})") from None
        values = (result,) if isinstance(result, Tensor) else tuple(result)
        for name, value in zip(node.output, values, strict=False):
            if name:
                self.constants[name] = value

    def _plain_step(self, index: int, node: onnx.NodeProto) -> _Step:
        attrs = _attributes(node, self.source)
        if node.op_type == "Reshape":
            attrs["const_target"] = len(node.input) < 2 or node.input[1] in self.constants  # < 2: opset-1 attribute
        return _Step(self.keys[index], node.op_type, tuple(node.input), tuple(node.output), attrs)

    def _step(self, index: int, node: onnx.NodeProto) -> _Step:
        step = self._plain_step(index, node)
        if node.op_type == "Conv":
            self._conv(index, node, step)
        elif node.op_type == "Gemm":
            self._gemm(index, node, step)
        elif node.op_type == "MatMul":
            self._matmul(index, node, step)
        return step

    def _add_module(self, step: _Step, module: nn.Module) -> None:
        step.module = f"#{len(self.modules)}"  # renamed in _register
        self.modules.append((step.key, module))

    def _const(self, name: str) -> Tensor | None:
        return self.constants.get(name) if name else None

    # -- compute ops ---------------------------------------------------------------------------------------------

    def _conv(self, index: int, node: onnx.NodeProto, step: _Step) -> None:
        weight = self._const(node.input[1]) if len(node.input) > 1 else None
        if weight is None:
            raise self.error(index, "the weight is computed, not a constant", "expected an initializer as weight")
        if not weight.is_floating_point():
            raise self.error(index, f"weight has type {weight.dtype}; expected a float tensor")
        if weight.dim() not in (3, 4):
            raise self.error(index, f"{weight.dim() - 2}-D convolution is not supported", "supported: 1-D and 2-D Conv")
        attrs = step.attrs
        one_d = weight.dim() == 3
        spatial = weight.dim() - 2
        strides = list(attrs.get("strides", [1] * spatial))
        dilations = list(attrs.get("dilations", [1] * spatial))
        pads = list(attrs.get("pads", [0] * 2 * spatial))
        auto_pad = attrs.get("auto_pad", "NOTSET")
        group = attrs.get("group", 1)
        if auto_pad not in ("NOTSET", "VALID", *_SAME):
            raise self.error(index, f"auto_pad = '{auto_pad}'", "expected NOTSET, SAME_UPPER, SAME_LOWER or VALID")
        if len(strides) != spatial or len(dilations) != spatial or len(pads) != 2 * spatial:
            raise self.error(index, f"strides/dilations/pads do not fit a {spatial}-D weight {list(weight.shape)}")
        if auto_pad == "VALID":
            pads = [0] * 2 * spatial
        if one_d:
            weight = weight.unsqueeze(2)
            strides, dilations, pads = [1, *strides], [1, *dilations], [0, pads[0], 0, pads[1]]
        begin, end = pads[:2], pads[2:]
        symmetric = begin == end and auto_pad not in _SAME
        bias = self._const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        out_ch, in_per_group, kh, kw = weight.shape
        conv = nn.Conv2d(
            in_per_group * group, out_ch, (kh, kw), stride=tuple(strides), padding=tuple(begin) if symmetric else 0,
            dilation=tuple(dilations), groups=group, bias=bias is not None, device="meta",
        )  # fmt: skip
        _set_parameters(conv, weight, None if bias is None else bias.reshape(-1).to(weight.dtype))
        step.attrs = {
            "one_d": one_d,
            "auto_pad": auto_pad,
            "kernel": [kh, kw],
            "strides": strides,
            "dilations": dilations,
            "pad": None if symmetric else (begin[1], end[1], begin[0], end[0]),
            "extra_bias": bias is None and len(node.input) > 2 and bool(node.input[2]),
        }
        step.inputs = (node.input[0], "", node.input[2] if step.attrs["extra_bias"] else "")
        self._add_module(step, conv)

    def _gemm(self, index: int, node: onnx.NodeProto, step: _Step) -> None:
        attrs = step.attrs
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        trans_a, trans_b = bool(attrs.get("transA", 0)), bool(attrs.get("transB", 0))
        b = self._const(node.input[1])
        c_name = node.input[2] if len(node.input) > 2 else ""
        c = self._const(c_name)
        step.attrs = {"alpha": alpha, "beta": beta, "transA": trans_a, "transB": trans_b, "linear": b is not None}
        if b is None:
            step.attrs["add_c"] = bool(c_name)
            self._add_module(step, ActivationMatMul())
            return
        if b.dim() != 2:
            raise self.error(index, f"B has shape {list(b.shape)}", "Gemm expects a 2-D B")
        weight = b if trans_b else b.t()  # nn.Linear stores out x in
        out_features = weight.shape[0]
        bias = None
        if c is not None and alpha == 1.0 and c.numel() in (1, out_features) and (c.dim() <= 1 or c.shape[0] == 1):
            bias = (c.reshape(-1) * beta if beta != 1.0 else c.reshape(-1)).expand(out_features)
        linear = _linear(weight, bias)
        step.attrs["add_c"] = bool(c_name) and bias is None
        step.inputs = (node.input[0], "", c_name if step.attrs["add_c"] else "")
        self._add_module(step, linear)

    def _matmul(self, index: int, node: onnx.NodeProto, step: _Step) -> None:
        a, b = self._const(node.input[0]), self._const(node.input[1])
        if b is not None and b.dim() in (1, 2) and b.is_floating_point():
            weight = b.t() if b.dim() == 2 else b.unsqueeze(0)
            bias, add = self._bias_after(index, node, weight.shape[0]) if b.dim() == 2 else (None, None)
            step.attrs = {"kind": "linear", "vector": b.dim() == 1}
            step.inputs = (node.input[0],)
            if add is not None:
                self.absorbed.add(add)
                step.outputs = tuple(self.graph.node[add].output)
            self._add_module(step, _linear(weight, bias))
        elif a is not None and b is None and a.dim() == 2 and a.is_floating_point():
            step.attrs = {"kind": "linear_t"}
            step.inputs = (node.input[1],)
            self._add_module(step, _linear(a, None))
        else:
            step.attrs = {"kind": "activations"}
            self._add_module(step, ActivationMatMul())

    def _bias_after(self, index: int, node: onnx.NodeProto, width: int) -> tuple[Tensor | None, int | None]:
        """The constant vector an Add adds right after this MatMul (its only consumer), to use as bias."""
        out = node.output[0]
        users = self.consumers.get(out, [])
        if out in self.outputs or len(users) != 1:
            return None, None
        add = self.graph.node[users[0]]
        if add.op_type != "Add" or add.domain not in ("", "ai.onnx") or len(add.input) != 2:
            return None, None
        other = add.input[1] if add.input[0] == out else add.input[0]
        value = self._const(other)
        if other == out or value is None or value.dim() != 1 or value.shape[0] != width:
            return None, None
        if value.dtype != self.constants.get(node.input[1], value).dtype:
            return None, None
        return value, users[0]

    # -- children and buffers ---------------------------------------------------------------------------------------

    def _register(self) -> None:
        """Add the children in graph order and the constants still read at run time as buffers."""
        owner = self.owner
        taken = set(dir(owner)) | {"input_names", "output_names", "export_batch", "source", "opset"}
        renamed: dict[str, str] = {}
        for number, (key, module) in enumerate(self.modules):
            name = _identifier(key, taken)
            renamed[f"#{number}"] = name
            owner.add_module(name, module)
            owner.node_of[name] = key
        needed: set[str] = set(self.outputs)
        last_use: dict[str, int] = {}
        for position, step in enumerate(owner._steps):
            if step.module is not None:
                step.module = renamed[step.module]
            for name in step.inputs:
                if name:
                    needed.add(name)
                    last_use[name] = position
        weights = {p.untyped_storage().data_ptr() for p in owner.parameters()}
        for name, tensor in self.constants.items():
            if name in needed:
                attr = _identifier(name, taken, prefix="c_")
                if tensor.untyped_storage().data_ptr() in weights:  # also a weight: training must not change it
                    tensor = tensor.clone()
                owner.register_buffer(attr, tensor.contiguous())  # folded Expand results are views
                owner._buffer_of[name] = attr
        keep = set(self.outputs) | set(owner._buffer_of)
        drops: dict[int, list[str]] = {}
        for name, position in last_use.items():
            if name not in keep:
                drops.setdefault(position, []).append(name)
        for position, step in enumerate(owner._steps):
            step.drop = tuple(drops.get(position, ()))


def _linear(weight: Tensor, bias: Tensor | None) -> nn.Linear:
    """An nn.Linear holding ``weight`` (out x in) and ``bias``."""
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    _set_parameters(linear, weight, None if bias is None else bias.to(weight.dtype))
    return linear


def _set_parameters(module: nn.Module, weight: Tensor, bias: Tensor | None) -> None:
    """Give a module built on the meta device (no random init to pay for) its real weight and bias."""
    module.weight = nn.Parameter(weight.detach().contiguous())
    if bias is not None:
        module.bias = nn.Parameter(bias.detach().contiguous())


def _identifier(name: str, taken: set[str], prefix: str = "") -> str:
    """``prefix + name`` as a fresh Python identifier: non-word runs become ``_``, clashes get a ``_<n>`` suffix."""
    base = prefix + (re.sub(r"\W+", "_", name, flags=re.ASCII).strip("_") or "node")
    if base[0].isdigit() or keyword.iskeyword(base):
        base = "n_" + base
    unique, suffix = base, 1
    while unique in taken:
        unique = f"{base}_{suffix}"
        suffix += 1
    taken.add(unique)
    return unique


def _tensor(proto: onnx.TensorProto, source: str, where: str) -> Tensor:
    """An ONNX tensor as a torch tensor (a copy, so it owns its memory)."""
    dtype = DTYPES.get(proto.data_type)
    if dtype is None:
        type_name = TensorProto.DataType.Name(proto.data_type) if proto.data_type else "UNDEFINED"
        raise InputError(source, where, f"element type {type_name} is not supported in torch")
    array = numpy_helper.to_array(proto)
    if dtype == torch.bfloat16:
        return torch.from_numpy(array.astype("float32")).to(torch.bfloat16)
    return torch.from_numpy(array.copy())


def _attributes(node: onnx.NodeProto, source: str) -> dict[str, Any]:
    """Node attributes as Python values: strings decoded, tensors as torch tensors."""
    attrs: dict[str, Any] = {}
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.TENSOR:
            attrs[attr.name] = _tensor(attr.t, source, f"node '{node.name}' attribute '{attr.name}'")
            continue
        value = helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, list) and value and isinstance(value[0], bytes):
            value = [v.decode() for v in value]
        attrs[attr.name] = value
    return attrs


# -- load-time checks of attributes torch cannot honour ----------------------------------------------------------


def _extra_outputs(node: onnx.NodeProto, what: str) -> str | None:
    return f"{what} output is not supported" if any(node.output[1:]) else None


def _check_pool(node: onnx.NodeProto, attrs: dict) -> str | None:
    if node.op_type == "AveragePool" and any(d != 1 for d in attrs.get("dilations", [])):
        return "dilations on AveragePool are not supported"
    if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID", *_SAME):
        return f"auto_pad = '{attrs['auto_pad']}'"
    if len(attrs.get("kernel_shape", [])) not in (1, 2, 3):
        return "expected a 1-, 2- or 3-D kernel_shape"
    return _extra_outputs(node, "the Indices")


def _check_constant(node: onnx.NodeProto, attrs: dict) -> str | None:
    if not any(k in attrs for k in ("value", "value_float", "value_floats", "value_int", "value_ints")):
        return f"constant of kind {', '.join(attrs) or 'none'} is not supported"
    return None


def _check_cast(node: onnx.NodeProto, attrs: dict) -> str | None:
    to = attrs.get("to")
    if to not in DTYPES:
        return f"cast to {TensorProto.DataType.Name(to) if to else to} is not supported"
    return None


def _check_quantize(node: onnx.NodeProto, attrs: dict) -> str | None:
    if attrs.get("block_size", 0):
        return "blocked quantization (block_size) is not supported"
    out = attrs.get("output_dtype", 0)
    if out and out not in (TensorProto.INT8, TensorProto.UINT8, TensorProto.INT16, TensorProto.UINT16):
        return f"output_dtype {TensorProto.DataType.Name(out)} is not supported"
    return None


def _check_pad(node: onnx.NodeProto, attrs: dict) -> str | None:
    mode = attrs.get("mode", "constant")
    return None if mode in ("constant", "reflect", "edge", "wrap") else f"mode = '{mode}'"


_LOAD_CHECKS: dict[str, Callable[[onnx.NodeProto, dict], str | None]] = {
    "MaxPool": _check_pool,
    "AveragePool": _check_pool,
    "Constant": _check_constant,
    "Cast": _check_cast,
    "BatchNormalization": lambda node, attrs: _extra_outputs(node, "training-mode (running statistics)"),
    "Gelu": lambda node, attrs: None if attrs.get("approximate", "none") in ("none", "tanh") else "unknown approximate",
    "Pad": _check_pad,
    "QuantizeLinear": _check_quantize,
    "DequantizeLinear": _check_quantize,
}


# -- helpers for the handlers ----------------------------------------------------------------------------------


def _ints(value: Tensor | None) -> list[int]:
    """A (shape-like) integer tensor as a list of ints."""
    if value is None:
        return []
    return [int(v) for v in value.reshape(-1).tolist()]


def _arg(args: Args, index: int) -> Tensor | None:
    return args[index] if index < len(args) else None


def _axes(step: _Step, args: Args, position: int = 1) -> list[int] | None:
    """Axes from the input at ``position`` (newer opsets) or the ``axes`` attribute (older ones); None if absent."""
    value = _arg(args, position)
    if value is not None:
        return _ints(value)
    axes = step.attrs.get("axes")
    return list(axes) if axes is not None else None


def _same_pads(size: Sequence[int], kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int],
               upper: bool) -> tuple[list[int], list[int]]:  # fmt: skip
    """auto_pad SAME_UPPER / SAME_LOWER padding (begin, end) per axis: output = ceil(input / stride)."""
    begin, end = [], []
    for i, k, s, d in zip(size, kernel, strides, dilations, strict=True):
        total = max(0, (-(-i // s) - 1) * s + d * (k - 1) + 1 - i)
        small, large = total // 2, total - total // 2
        begin.append(small if upper else large)
        end.append(large if upper else small)
    return begin, end


def _torch_pad(begin: Sequence[int], end: Sequence[int]) -> tuple[int, ...]:
    """ONNX-style per-axis (begin, end) padding of the trailing axes in F.pad's last-axis-first order."""
    pad: list[int] = []
    for b, e in zip(reversed(begin), reversed(end), strict=True):
        pad += [b, e]
    return tuple(pad)


# -- handlers: compute ops ---------------------------------------------------------------------------------------


def _conv(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    a = step.attrs
    x = args[0]
    assert x is not None
    if a["one_d"]:
        x = x.unsqueeze(-2)
    pad = a["pad"]
    if a["auto_pad"] in _SAME:
        begin, end = _same_pads(x.shape[-2:], a["kernel"], a["strides"], a["dilations"], a["auto_pad"] == "SAME_UPPER")
        pad = _torch_pad(begin, end)
    if pad is not None and any(pad):
        x = F.pad(x, pad)
    y = m.child(step)(x)
    if a["one_d"]:
        y = y.squeeze(-2)
    bias = _arg(args, 2)
    if bias is not None:
        y = y + bias.reshape(1, -1, *([1] * (y.dim() - 2)))
    return y


def _gemm(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    a = step.attrs
    x = args[0]
    assert x is not None
    if a["transA"]:
        x = x.t()
    if a["linear"]:
        y = m.child(step)(x)
    else:
        b = args[1]
        assert b is not None
        y = m.child(step)(x, b.t() if a["transB"] else b)
    if a["alpha"] != 1.0:
        y = y * a["alpha"]
    c = _arg(args, 2) if a["add_c"] else None
    if c is not None:
        y = y + (c * a["beta"] if a["beta"] != 1.0 else c)
    return y


def _matmul(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    kind = step.attrs["kind"]
    module = m.child(step)
    if kind == "linear":
        y = module(args[0])
        return y.squeeze(-1) if step.attrs["vector"] else y
    if kind == "linear_t":  # constant A (M x K) @ activation B (..., K, N) = (B^T A^T)^T
        b = args[0]
        assert b is not None
        return module(b) if b.dim() == 1 else module(b.transpose(-1, -2)).transpose(-1, -2)
    return module(args[0], args[1])


# -- handlers: normalisation, activations, pooling -------------------------------------------------------------


def _batch_norm(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    x, scale, bias, mean, var = args[:5]
    eps = float(step.attrs.get("epsilon", 1e-5))
    return F.batch_norm(x, mean, var, scale, bias, training=False, momentum=0.0, eps=eps)


def _instance_norm(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    x, scale, bias = args[:3]
    return F.instance_norm(x, weight=scale, bias=bias, eps=float(step.attrs.get("epsilon", 1e-5)))


def _layer_norm(m: OnnxModule, step: _Step, args: Args) -> list[Tensor]:
    x, scale, bias = args[0], args[1], _arg(args, 2)
    assert x is not None and scale is not None
    axis = step.attrs.get("axis", -1) % x.dim()
    eps = float(step.attrs.get("epsilon", 1e-5))
    shape = tuple(x.shape[axis:])
    if tuple(scale.shape) == shape and (bias is None or tuple(bias.shape) == shape):
        y = F.layer_norm(x, shape, scale, bias, eps)
    else:  # broadcastable scale / bias
        y = F.layer_norm(x, shape, None, None, eps) * scale
        y = y if bias is None else y + bias
    results = [y]
    if any(step.outputs[1:]):
        dims = tuple(range(axis, x.dim()))
        mean = x.mean(dim=dims, keepdim=True)
        results += [mean, torch.rsqrt(x.var(dim=dims, unbiased=False, keepdim=True) + eps)]
    return results


def _softmax(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    x = args[0]
    assert x is not None
    fn = torch.log_softmax if step.op == "LogSoftmax" else torch.softmax
    if m.opset >= 13:
        return fn(x, dim=step.attrs.get("axis", -1))
    axis = step.attrs.get("axis", 1) % max(x.dim(), 1)  # before opset 13: over the 2-D coercion at axis
    return fn(x.reshape(math.prod(x.shape[:axis]), -1), dim=-1).reshape(x.shape)


def _clip(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    x = args[0]
    assert x is not None
    if m.opset < 11:
        low, high = step.attrs.get("min"), step.attrs.get("max")
    else:
        low, high = _arg(args, 1), _arg(args, 2)
    if low is None and high is None:
        return x
    return torch.clamp(x, low, high)


def _gelu(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    return F.gelu(args[0], approximate=step.attrs.get("approximate", "none"))


def _hard_sigmoid(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    alpha, beta = step.attrs.get("alpha", 0.2), step.attrs.get("beta", 0.5)
    return torch.clamp(args[0] * alpha + beta, 0.0, 1.0)


def _hard_swish(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    x = args[0]
    assert x is not None
    return x * torch.clamp(x * (1.0 / 6.0) + 0.5, 0.0, 1.0)


def _prelu(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    x, slope = args[0], args[1]
    assert x is not None and slope is not None
    return torch.where(x < 0, x * slope, x)


def _pool_pads(a: dict, size: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
               dilations: Sequence[int]) -> tuple[list[int], list[int]]:  # fmt: skip
    auto_pad = a.get("auto_pad", "NOTSET")
    if auto_pad in _SAME:
        return _same_pads(size, kernel, strides, dilations, auto_pad == "SAME_UPPER")
    spatial = len(kernel)
    pads = [0] * 2 * spatial if auto_pad == "VALID" else list(a.get("pads", [0] * 2 * spatial))
    return pads[:spatial], pads[spatial:]


def _pool_size(size: int, begin: int, end: int, k: int, s: int, d: int, ceil: bool) -> int:
    """ONNX's pooled length: floor or ceil, and with ceil no window may start in the end padding."""
    span = size + begin + end - d * (k - 1) - 1
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + begin:
        out -= 1
    return out


def _pool(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    x = args[0]
    assert x is not None
    a = step.attrs
    kernel = list(a["kernel_shape"])
    spatial = len(kernel)
    strides = list(a.get("strides", [1] * spatial))
    dilations = list(a.get("dilations", [1] * spatial))
    ceil = bool(a.get("ceil_mode", 0))
    size = list(x.shape[2:])
    begin, end = _pool_pads(a, size, kernel, strides, dilations)
    symmetric = begin == end and all(2 * p <= d * (k - 1) + 1 for p, k, d in zip(begin, kernel, dilations, strict=True))
    if step.op == "MaxPool":
        fn = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[spatial - 1]
        if symmetric:
            y = fn(x, kernel, strides, begin, dilations, ceil_mode=ceil)
        else:
            y = fn(F.pad(x, _torch_pad(begin, end), value=-math.inf), kernel, strides, 0, dilations, ceil_mode=ceil)
    else:
        fn = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[spatial - 1]
        include_pad = bool(a.get("count_include_pad", 0))
        if symmetric and all(2 * p <= k for p, k in zip(begin, kernel, strict=True)):
            y = fn(x, kernel, strides, begin, ceil_mode=ceil, count_include_pad=include_pad)
        else:
            pad = _torch_pad(begin, end)
            y = fn(F.pad(x, pad), kernel, strides, 0, ceil_mode=ceil, count_include_pad=True)
            if not include_pad:  # mean over the real elements: divide by the share of them in each window
                ones = F.pad(torch.ones((1, 1, *size), dtype=x.dtype, device=x.device), pad)
                y = y / fn(ones, kernel, strides, 0, ceil_mode=ceil, count_include_pad=True)
    expected = [_pool_size(*v, ceil) for v in zip(size, begin, end, kernel, strides, dilations, strict=True)]
    if list(y.shape[2:]) != expected:  # torch keeps a last ceil window that starts in the end padding
        y = y[(..., *(slice(0, n) for n in expected))]
    return y


def _global_pool(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    x = args[0]
    assert x is not None
    dims = tuple(range(2, x.dim()))
    return x.mean(dim=dims, keepdim=True) if step.op == "GlobalAveragePool" else x.amax(dim=dims, keepdim=True)


# -- handlers: element-wise -------------------------------------------------------------------------------------


def _unary(fn: Callable[[Tensor], Tensor]) -> Handler:
    def handler(m: OnnxModule, step: _Step, args: Args) -> Tensor:
        return fn(args[0])

    return handler


def _binary(fn: Callable[[Tensor, Tensor], Tensor]) -> Handler:
    def handler(m: OnnxModule, step: _Step, args: Args) -> Tensor:
        return fn(args[0], args[1])

    return handler


def _variadic(fn: Callable[[Tensor, Tensor], Tensor]) -> Handler:
    def handler(m: OnnxModule, step: _Step, args: Args) -> Tensor:
        values = [a for a in args if a is not None]
        result = values[0]
        for value in values[1:]:
            result = fn(result, value)
        return result

    return handler


def _div(a: Tensor, b: Tensor) -> Tensor:
    if a.is_floating_point():
        return a / b
    return torch.div(a, b, rounding_mode="trunc").to(a.dtype)


def _pow(a: Tensor, b: Tensor) -> Tensor:
    return torch.pow(a, b).to(a.dtype)


def _mean(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    values = [a for a in args if a is not None]
    return _variadic(torch.add)(m, step, values) / len(values)


def _leaky_relu(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    return F.leaky_relu(args[0], float(step.attrs.get("alpha", 0.01)))


def _elu(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    return F.elu(args[0], float(step.attrs.get("alpha", 1.0)))


def _where(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    cond, x, y = args[:3]
    assert cond is not None
    return torch.where(cond.to(torch.bool), x, y)


def _cast(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    x = args[0]
    assert x is not None
    return x.to(DTYPES[step.attrs["to"]])


def _per_axis(step: _Step, x: Tensor, value: Tensor | None) -> Tensor | None:
    """A 1-D scale or zero point shaped to broadcast along the node's ``axis`` (default 1)."""
    if value is None or value.dim() != 1 or x.dim() == 0:
        return value
    shape = [1] * x.dim()
    shape[step.attrs.get("axis", 1) % x.dim()] = -1
    return value.reshape(shape)


def _dequantize(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    x, scale, zero = args[0], args[1], _arg(args, 2)
    assert x is not None and scale is not None
    y = x.to(scale.dtype)
    zero = _per_axis(step, x, zero)
    if zero is not None:
        y = y - zero.to(scale.dtype)
    return y * _per_axis(step, x, scale)


def _quantize(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    x, scale, zero = args[0], args[1], _arg(args, 2)
    assert x is not None and scale is not None
    dtype = zero.dtype if zero is not None else DTYPES[step.attrs.get("output_dtype") or TensorProto.UINT8]
    y = torch.round(x / _per_axis(step, x, scale))  # round half to even, as ONNX
    zero = _per_axis(step, x, zero)
    if zero is not None:
        y = y + zero.to(y.dtype)
    info = torch.iinfo(dtype)
    return y.clamp(info.min, info.max).to(dtype)


def _identity(m: OnnxModule, step: _Step, args: Args) -> list[Tensor]:
    x = args[0]
    assert x is not None
    if step.op == "Dropout" and any(step.outputs[1:]):  # inference: nothing dropped, mask all true
        return [x, torch.ones_like(x, dtype=torch.bool)]
    return [x]


# -- handlers: shapes and data movement ------------------------------------------------------------------------


def _reshape(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    x = args[0]
    assert x is not None
    shape = _ints(args[1]) if m.opset >= 5 else list(step.attrs.get("shape", []))
    if not step.attrs.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 and i < x.dim() else s for i, s in enumerate(shape)]
    batch = m.export_batch
    if (
        step.attrs["const_target"]
        and batch is not None
        and shape
        and shape[0] == batch
        and -1 not in shape
        and x.dim() >= 1
        and x.shape[0] != batch
    ):
        rest = math.prod(shape[1:])
        if rest > 0 and x.shape[0] * rest == x.numel():  # the rest is one sample: the first dim is the batch
            shape[0] = -1
    return x.reshape(shape)


def _flatten(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    x = args[0]
    assert x is not None
    axis = step.attrs.get("axis", 1)
    axis = axis + x.dim() if axis < 0 else axis
    return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


def _transpose(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    x = args[0]
    assert x is not None
    perm = step.attrs.get("perm") or list(reversed(range(x.dim())))
    return x.permute(*perm)


def _concat(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    return torch.cat([a for a in args if a is not None], dim=step.attrs["axis"])


def _split(m: OnnxModule, step: _Step, args: Args) -> tuple[Tensor, ...]:
    x = args[0]
    assert x is not None
    axis = step.attrs.get("axis", 0)
    sizes = _ints(_arg(args, 1)) if _arg(args, 1) is not None else list(step.attrs.get("split", []))
    if not sizes:  # equal parts, the last one smaller when it does not divide (opset 18)
        parts = step.attrs.get("num_outputs", len(step.outputs))
        sizes = -(-x.shape[axis] // parts)
    return torch.split(x, sizes, dim=axis)


def _slice(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    x = args[0]
    assert x is not None
    if m.opset < 10:
        starts, ends = list(step.attrs["starts"]), list(step.attrs["ends"])
        axes = list(step.attrs.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts, ends = _ints(args[1]), _ints(args[2])
        axes = _ints(_arg(args, 3)) if _arg(args, 3) is not None else list(range(len(starts)))
        steps = _ints(_arg(args, 4)) if _arg(args, 4) is not None else [1] * len(starts)
    index: list[slice] = [slice(None)] * x.dim()
    for start, end, axis, stride in zip(starts, ends, axes, steps, strict=True):
        axis %= x.dim()
        dim = x.shape[axis]
        start = start + dim if start < 0 else start
        end = end + dim if end < 0 else end
        if stride > 0:
            index[axis] = slice(min(max(start, 0), dim), min(max(end, 0), dim), stride)
        elif stride < 0:  # torch slices have no negative steps: pick the indices
            start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
            x = x.index_select(axis, torch.arange(start, end, stride, device=x.device))
        else:
            raise ValueError("Slice step 0")
    return x[tuple(index)]


def _gather(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    data, indices = args[0], args[1]
    assert data is not None and indices is not None
    axis = step.attrs.get("axis", 0) % data.dim()
    idx = indices.to(device=data.device, dtype=torch.long)
    idx = torch.where(idx < 0, idx + data.shape[axis], idx)
    picked = data.index_select(axis, idx.reshape(-1))
    return picked.reshape((*data.shape[:axis], *indices.shape, *data.shape[axis + 1 :]))


def _squeeze(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    x = args[0]
    assert x is not None
    axes = _axes(step, args)
    if not axes:
        return x.squeeze()
    return x.squeeze(tuple(a % x.dim() for a in axes))


def _unsqueeze(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    x = args[0]
    assert x is not None
    axes = _axes(step, args) or []
    rank = x.dim() + len(axes)
    for axis in sorted(a % rank for a in axes):
        x = x.unsqueeze(axis)
    return x


def _shape(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    x = args[0]
    assert x is not None
    dims = list(x.shape)
    start, end = step.attrs.get("start", 0), step.attrs.get("end")
    return torch.tensor(dims[start:end], dtype=torch.int64, device=x.device)


def _size(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    x = args[0]
    assert x is not None
    return torch.tensor(x.numel(), dtype=torch.int64, device=x.device)


def _constant(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    a = step.attrs
    if "value" in a:
        return a["value"].clone()
    if "value_float" in a:
        return torch.tensor(a["value_float"], dtype=torch.float32)
    if "value_floats" in a:
        return torch.tensor(a["value_floats"], dtype=torch.float32)
    if "value_int" in a:
        return torch.tensor(a["value_int"], dtype=torch.int64)
    return torch.tensor(a["value_ints"], dtype=torch.int64)


def _constant_of_shape(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    shape = args[0]
    assert shape is not None
    value = step.attrs.get("value")
    if value is None:
        value = torch.zeros(1, dtype=torch.float32)
    return torch.full(_ints(shape), value.reshape(-1)[0].item(), dtype=value.dtype, device=shape.device)


def _expand(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    x = args[0]
    assert x is not None
    return x.expand(torch.broadcast_shapes(tuple(x.shape), tuple(_ints(args[1]))))


def _tile(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    x = args[0]
    assert x is not None
    return x.repeat(_ints(args[1]))


def _range(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    start, limit, delta = args[:3]
    assert start is not None and limit is not None and delta is not None
    return torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype, device=start.device)


def _pad(m: OnnxModule, step: _Step, args: Args) -> Tensor:
    x = args[0]
    assert x is not None
    mode = step.attrs.get("mode", "constant")
    if m.opset < 11:
        pads, value, axes = list(step.attrs["pads"]), float(step.attrs.get("value", 0.0)), None
    else:
        pads = _ints(args[1])
        fill = _arg(args, 2)
        value = fill.item() if fill is not None and fill.numel() else 0.0
        axes = _ints(_arg(args, 3)) if _arg(args, 3) is not None else None
    axes = [a % x.dim() for a in axes] if axes is not None else list(range(x.dim()))
    begin, end = [0] * x.dim(), [0] * x.dim()
    for i, axis in enumerate(axes):
        begin[axis], end[axis] = pads[i], pads[len(axes) + i]
    if mode == "constant":
        return F.pad(x, _torch_pad(begin, end), value=value)
    for axis, (b, e) in enumerate(zip(begin, end, strict=True)):  # reflect / edge / wrap: gather per axis
        if b or e:
            size = x.shape[axis]
            idx = torch.arange(-b, size + e, device=x.device)
            if mode == "edge":
                idx = idx.clamp(0, size - 1)
            elif mode == "wrap":
                idx = idx % size
            else:  # reflect about the first and last element (period 2 (size - 1))
                idx = idx.abs() % max(2 * (size - 1), 1)
                idx = torch.where(idx >= size, 2 * (size - 1) - idx, idx)
            x = x.index_select(axis, idx)
    return x


def _reduce(fn: Callable[[Tensor, tuple[int, ...], bool], Tensor]) -> Handler:
    def handler(m: OnnxModule, step: _Step, args: Args) -> Tensor:
        x = args[0]
        assert x is not None
        axes = _axes(step, args)
        keep = bool(step.attrs.get("keepdims", 1))
        if not axes:
            if step.attrs.get("noop_with_empty_axes", 0):
                return x
            axes = list(range(x.dim()))
        return fn(x, tuple(a % x.dim() for a in axes), keep)

    return handler


def _prod(x: Tensor, dims: tuple[int, ...], keep: bool) -> Tensor:
    for dim in sorted(dims, reverse=True):
        x = x.prod(dim=dim, keepdim=keep)
    return x


HANDLERS: dict[str, Handler] = {
    # compute
    "Conv": _conv,
    "Gemm": _gemm,
    "MatMul": _matmul,
    # normalisation, activations, pooling
    "BatchNormalization": _batch_norm,
    "InstanceNormalization": _instance_norm,
    "LayerNormalization": _layer_norm,
    "Softmax": _softmax,
    "LogSoftmax": _softmax,
    "Relu": _unary(torch.relu),
    "LeakyRelu": _leaky_relu,
    "Elu": _elu,
    "PRelu": _prelu,
    "Clip": _clip,
    "Sigmoid": _unary(torch.sigmoid),
    "HardSigmoid": _hard_sigmoid,
    "HardSwish": _hard_swish,
    "Tanh": _unary(torch.tanh),
    "Softplus": _unary(F.softplus),
    "Gelu": _gelu,
    "Erf": _unary(torch.erf),
    "MaxPool": _pool,
    "AveragePool": _pool,
    "GlobalAveragePool": _global_pool,
    "GlobalMaxPool": _global_pool,
    # element-wise
    "Add": _binary(torch.add),
    "Sub": _binary(torch.sub),
    "Mul": _binary(torch.mul),
    "Div": _binary(_div),
    "Pow": _binary(_pow),
    "Sqrt": _unary(torch.sqrt),
    "Reciprocal": _unary(torch.reciprocal),
    "Exp": _unary(torch.exp),
    "Log": _unary(torch.log),
    "Neg": _unary(torch.neg),
    "Abs": _unary(torch.abs),
    "Floor": _unary(torch.floor),
    "Ceil": _unary(torch.ceil),
    "Max": _variadic(torch.maximum),
    "Min": _variadic(torch.minimum),
    "Sum": _variadic(torch.add),
    "Mean": _mean,
    "Equal": _binary(torch.eq),
    "Less": _binary(torch.lt),
    "LessOrEqual": _binary(torch.le),
    "Greater": _binary(torch.gt),
    "GreaterOrEqual": _binary(torch.ge),
    "Not": _unary(torch.logical_not),
    "And": _binary(torch.logical_and),
    "Or": _binary(torch.logical_or),
    "Where": _where,
    "Cast": _cast,
    "QuantizeLinear": _quantize,
    "DequantizeLinear": _dequantize,
    "Identity": _identity,
    "Dropout": _identity,
    # shapes and data movement
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Transpose": _transpose,
    "Concat": _concat,
    "Split": _split,
    "Slice": _slice,
    "Gather": _gather,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Shape": _shape,
    "Size": _size,
    "Constant": _constant,
    "ConstantOfShape": _constant_of_shape,
    "Expand": _expand,
    "Tile": _tile,
    "Range": _range,
    "Pad": _pad,
    "ReduceMean": _reduce(lambda x, dims, keep: x.mean(dim=dims, keepdim=keep)),
    "ReduceSum": _reduce(lambda x, dims, keep: x.sum(dim=dims, keepdim=keep)),
    "ReduceMax": _reduce(lambda x, dims, keep: x.amax(dim=dims, keepdim=keep)),
    "ReduceMin": _reduce(lambda x, dims, keep: x.amin(dim=dims, keepdim=keep)),
    "ReduceProd": _reduce(_prod),
}

SUPPORTED_OPS: tuple[str, ...] = tuple(sorted(HANDLERS))
"""The ONNX ops (default domain) an :class:`OnnxModule` runs."""
