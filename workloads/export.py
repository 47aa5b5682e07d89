"""Export the reference model zoo (``dse.models``) to the ONNX workloads in this folder.

    python workloads/export.py [NAMES...] [--weights] [--out DIR]

Every model is exported with static shapes, batch 1, opset 17, by the legacy TorchScript exporter
(``dynamo=False``), whose node names follow the module path (``/layer1/layer1.0/conv1/Conv``) and so
make readable layer names in the tool's reports. Constants the exporter leaves unfolded are folded
here, shapes are inferred and stored, and the checker runs before anything is written.

The big models are random-init (seeded) and committed *structure-only*: every floating-point
initializer keeps its dims but points into ``<stem>.weights.bin``, which is not committed, so the
.onnx stays tens of KB and loads with ``onnx.load(path, load_external_data=False)``. ``--weights``
keeps that file next to it, which makes the same .onnx runnable in onnxruntime.

``digits_cnn`` is the exception: it is trained here on scikit-learn's digits (seeded, CPU, seconds),
saved with its weights embedded, and its float accuracy (measured in onnxruntime) is written to
``digits_cnn.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from onnx.external_data_helper import set_external_data
from onnx.reference import ReferenceEvaluator
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO_ROOT))

from dse.accuracy.datasets import DIGITS_TEST_FRACTION, digits_split  # noqa: E402
from dse.errors import InputError, did_you_mean, display_path  # noqa: E402
from dse.models import MODELS, count_macs, get_model_spec  # noqa: E402

WORKLOADS_DIR = Path(__file__).resolve().parent
OPSET = 17
SEED = 0
"""Seeds the random init of every model and the digits split and training, for byte-identical re-exports."""

TRAINED = frozenset({"digits_cnn"})
"""Models trained by this script and saved with their weights embedded."""

DIGITS_TRAINING = {"optimizer": "Adam", "lr": 2e-3, "batch_size": 32, "epochs": 40, "loss": "cross_entropy"}

_FLOAT_TYPES = frozenset(
    {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}
)


@dataclass
class ExportResult:
    """What one export wrote: the .onnx, its size, the model's MACs, and for digits_cnn its accuracy."""

    name: str
    path: Path
    size_bytes: int
    macs: int
    weights_path: Path | None = None
    max_abs_diff: float | None = None  # torch vs onnxruntime logits, when the weights were kept
    accuracy: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        text = f"{display_path(self.path)}: {self.size_bytes / 1024:.1f} KiB, {format_macs(self.macs)}"
        if self.name in TRAINED:
            text += ", weights embedded"
        elif self.weights_path is not None:
            text += (
                f", weights in {self.weights_path.name} ({self.weights_path.stat().st_size / 2**20:.1f} MiB)"
            )
        else:
            text += ", structure only"
        if self.max_abs_diff is not None:
            text += f", onnxruntime vs torch max |diff| {self.max_abs_diff:.1e}"
        if self.accuracy:
            text += f", accuracy train {self.accuracy['train']:.4f} test {self.accuracy['test']:.4f}"
        return text


def format_macs(macs: int) -> str:
    """``555,422,720 MACs (0.555 G)``: the exact count and a rounded one to compare with papers."""
    rounded = f"{macs / 1e9:.3f} G" if macs >= 1e8 else f"{macs / 1e6:.3f} M"
    return f"{macs:,} MACs ({rounded})"


# -- digits training ------------------------------------------------------------------------------
def train_digits(model: nn.Module, seed: int = SEED) -> None:
    """Train the digits CNN in place on the seeded train split (single-threaded, so reproducible)."""
    x_train, y_train, _, _ = digits_split(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=DIGITS_TRAINING["lr"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.train()
        for _ in range(DIGITS_TRAINING["epochs"]):
            order = torch.randperm(len(x_train), generator=generator)
            for start in range(0, len(order), DIGITS_TRAINING["batch_size"]):
                idx = order[start : start + DIGITS_TRAINING["batch_size"]]
                optimizer.zero_grad()
                loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
                loss.backward()
                optimizer.step()
    finally:
        model.eval()
        torch.set_num_threads(threads)


def onnx_accuracy(path: Path, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of the (batch-1, static-shape) ONNX model at ``path`` in onnxruntime."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    images = x.numpy()
    correct = sum(
        int(np.argmax(session.run(None, {input_name: images[i : i + 1]})[0]) == int(y[i]))
        for i in range(len(y))
    )
    return correct / len(y)


# -- ONNX graph clean-up ----------------------------------------------------------------------------
def fold_constants(model: onnx.ModelProto) -> None:
    """Turn Constant nodes, and every node computed only from constants, into initializers, in place.

    The legacy exporter's own folding leaves some behind: Identity nodes for initializers it
    de-duplicated (equal BN biases, LayerNorm weights) and the shape arithmetic of ``F.pad``.
    Afterwards every node reads at least one activation, so the graph holds only real ops.
    """
    graph = model.graph
    stored = {init.name: init for init in graph.initializer}
    # Folded outputs, and the initializers read so far (read lazily: ViT's weights are 350 MB).
    values: dict[str, np.ndarray] = {}

    def read(name: str) -> np.ndarray:
        if name not in values:
            values[name] = numpy_helper.to_array(stored[name])
        return values[name]

    kept: list[onnx.NodeProto] = []
    folded: list[onnx.TensorProto] = []
    for node in graph.node:
        inputs = [name for name in node.input if name]
        if all(name in values or name in stored for name in inputs):
            outputs = ReferenceEvaluator(node).run(None, {name: read(name) for name in inputs})
            for name, value in zip(node.output, outputs, strict=True):
                values[name] = np.asarray(value)
                folded.append(numpy_helper.from_array(values[name], name))
        else:
            kept.append(node)
    # Keep the initializers still read, in order of first use, so the weights file follows the model.
    first_use: dict[str, int] = {}
    for index, node in enumerate(kept):
        for name in node.input:
            first_use.setdefault(name, index)
    for out in graph.output:
        first_use.setdefault(out.name, len(kept))
    initializers = sorted(
        (t for t in [*graph.initializer, *folded] if t.name in first_use), key=lambda t: first_use[t.name]
    )
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(initializers)


def module_path(node_name: str) -> str:
    """``/layer1/layer1.0/conv1/Conv`` -> ``layer1.0.conv1``: the torch module a node was exported from."""
    scopes = node_name.strip("/").split("/")[:-1]
    path = ""
    for prev, scope in zip(["", *scopes], scopes, strict=False):
        path += scope[len(prev) :] if prev and scope.startswith(prev + ".") else ("." if path else "") + scope
    return path


_WEIGHT_SUFFIXES = {"Conv": (".weight", ".bias"), "Gemm": (".weight", ".bias"), "MatMul": (".weight_t",)}


def name_weights(model: onnx.ModelProto) -> None:
    """Rename exporter-made initializers (``onnx::Conv_192``) after their module (``conv1.weight``), in place.

    BN-folded conv weights and transposed Linear weights (``.weight_t``, shape in x out, as MatMul
    takes it) get fresh names from the exporter; naming them after the layer keeps the files readable.
    """
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    taken = set(initializers)
    for node in graph.node:
        prefix = module_path(node.name)
        for i, suffix in enumerate(_WEIGHT_SUFFIXES.get(node.op_type, ()), start=1):
            old = node.input[i] if i < len(node.input) else ""
            new = prefix + suffix
            if (
                prefix
                and old.startswith("onnx::")
                and old in initializers
                and uses[old] == 1
                and new not in taken
            ):
                initializers[old].name = new
                node.input[i] = new
                taken.add(new)


def to_onnx(model: nn.Module, input_shape: tuple[int, ...], name: str, description: str) -> onnx.ModelProto:
    """Export ``model`` (eval mode) to a constant-folded ModelProto with layer-named weights."""
    model.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo, but its node names are readable.
        warnings.simplefilter("ignore", DeprecationWarning)
        # F.pad's reversed-slice shape arithmetic defeats the exporter's folding; fold_constants handles it.
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
        torch.onnx.export(
            model,
            (torch.zeros(input_shape),),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            do_constant_folding=True,
            training=torch.onnx.TrainingMode.EVAL,
            input_names=["input"],
            output_names=["logits"],
        )
    proto = onnx.load_from_string(buffer.getvalue())
    fold_constants(proto)
    name_weights(proto)
    proto.graph.name = name
    proto.doc_string = f"{description}; exported by workloads/export.py"
    return proto


def save_checked(proto: onnx.ModelProto, path: Path, structure_only: bool, keep_weights: bool) -> Path | None:
    """Save ``proto`` to ``path`` after shape inference (stored in the file) and the full checker.

    Both run on the file in a scratch folder, so nothing unchecked lands in the output folder and
    the big models' weights are never serialised twice in memory. With ``structure_only`` every
    float initializer's data goes to ``<stem>.weights.bin``; integer initializers (shapes, indices)
    and float scalars (Clip bounds, scales) stay embedded, so shape inference works without that
    file and the constants stay readable. The weights file is kept when asked or when one already
    sits there (replacing it, so it always matches the new .onnx); otherwise it is dropped.
    Returns the weights file kept, if any.
    """
    location = f"{path.stem}.weights.bin"
    if structure_only:
        for tensor in proto.graph.initializer:
            if tensor.data_type in _FLOAT_TYPES and np.prod(tensor.dims) > 1:
                if not tensor.HasField("raw_data"):
                    tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor), tensor.name))
                set_external_data(tensor, location)
    target = path.parent / location
    with tempfile.TemporaryDirectory() as scratch:
        draft = Path(scratch) / path.name
        onnx.save_model(proto, str(draft))
        onnx.shape_inference.infer_shapes_path(str(draft), check_type=True, strict_mode=True, data_prop=True)
        onnx.checker.check_model(str(draft), full_check=True)
        shutil.move(str(draft), path)
        if structure_only and (keep_weights or target.exists()):
            shutil.move(str(Path(scratch) / location), target)
            target.chmod(0o644)  # onnx creates it owner-only
            return target
    return None


def max_abs_diff(model: nn.Module, path: Path, input_shape: tuple[int, ...]) -> float:
    """Largest |torch - onnxruntime| logit on one seeded random input: the export computes the same thing."""
    x = torch.randn(input_shape, generator=torch.Generator().manual_seed(SEED))
    with torch.no_grad():
        expected = model(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    return float(np.max(np.abs(got - expected)))


# -- entry points ---------------------------------------------------------------------------------------
def export(name: str, out_dir: str | Path = WORKLOADS_DIR, weights: bool = False) -> ExportResult:
    """Export zoo model ``name`` to ``out_dir/<name>.onnx`` (see the module docstring); returns what it wrote.

    Raises InputError for an unknown name, listing the valid ones.
    """
    if name not in MODELS:
        raise InputError(
            None, None, f"unknown model '{name}' (valid: {', '.join(MODELS)})", did_you_mean(name, MODELS)
        )
    spec = get_model_spec(name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.onnx"

    torch.manual_seed(SEED)
    model = spec.build().eval()
    if name in TRAINED:
        train_digits(model)
    macs = count_macs(model, spec.input_shape)
    proto = to_onnx(model, spec.input_shape, name, spec.description)

    result = ExportResult(name, path, 0, macs)
    result.weights_path = save_checked(proto, path, structure_only=name not in TRAINED, keep_weights=weights)
    if name in TRAINED:
        result.accuracy = write_digits_record(path, out_dir / f"{name}.json")
    elif result.weights_path is not None:
        result.max_abs_diff = max_abs_diff(model, path, spec.input_shape)
    result.size_bytes = path.stat().st_size
    return result


def write_digits_record(onnx_path: Path, json_path: Path) -> dict[str, float]:
    """Measure the exported digits model in onnxruntime and write how it was made to ``json_path``."""
    x_train, y_train, x_test, y_test = digits_split(SEED)
    accuracy = {
        "train": round(onnx_accuracy(onnx_path, x_train, y_train), 6),
        "test": round(onnx_accuracy(onnx_path, x_test, y_test), 6),
    }
    record = {
        "model": "digits_cnn",
        "onnx": onnx_path.name,
        "seed": SEED,
        "split": {
            "function": "dse.accuracy.datasets.digits_split",
            "dataset": "sklearn.datasets.load_digits (8x8, 10 classes, pixels scaled to [0, 1])",
            "test_fraction": DIGITS_TEST_FRACTION,
            "stratified": True,
            "seed": SEED,
            "train_size": len(y_train),
            "test_size": len(y_test),
        },
        "training": DIGITS_TRAINING,
        "accuracy": accuracy,
        "accuracy_measured_with": f"onnxruntime {ort.__version__}, float32 (CPUExecutionProvider)",
        "torch_version": torch.__version__,
    }
    json_path.write_text(json.dumps(record, indent=2) + "\n")
    return accuracy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export the reference model zoo to ONNX workloads.")
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"models to export (default: all of {', '.join(MODELS)})"
    )
    parser.add_argument(
        "--weights", action="store_true", help="also keep <stem>.weights.bin (seeded random init)"
    )
    parser.add_argument("--out", type=Path, default=WORKLOADS_DIR, help="output folder (default: workloads/)")
    args = parser.parse_args(argv)
    names = args.names or list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model {', '.join(repr(n) for n in unknown)}; valid names: {', '.join(MODELS)}")
    for name in names:
        print(export(name, args.out, weights=args.weights).summary(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
