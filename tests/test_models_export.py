"""The model zoo and the shipped ONNX workloads: MACs, structure-only files, the trained digits model,
and that ``workloads/export.py`` reproduces the committed files byte for byte."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from export_script import load_export_script
from onnx import numpy_helper

from dse.accuracy.datasets import digits_split
from dse.errors import InputError
from dse.models import MODELS, DigitsCNN, build_model, count_macs

WORKLOADS = Path(__file__).resolve().parents[1] / "workloads"
BIG_MODELS = ("resnet18_cifar10", "resnet18_imagenet", "mobilenetv2", "vit_b32")


@pytest.fixture(scope="module")
def export_script() -> ModuleType:
    return load_export_script()


def _ops(model: onnx.ModelProto) -> Counter[str]:
    return Counter(node.op_type for node in model.graph.node)


def _run_batch1(session: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])


# -- the zoo ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "macs"),
    [
        ("resnet18_cifar10", 555_422_720),
        ("resnet18_imagenet", 1_814_073_344),
        ("mobilenetv2", 300_774_272),
        ("digits_cnn", 456_704),
    ],
)
def test_zoo_macs(name: str, macs: int) -> None:
    assert count_macs(build_model(name), MODELS[name].input_shape) == macs


def test_digits_split_is_seeded_stratified_and_scaled() -> None:
    x_train, y_train, x_test, y_test = digits_split(0)
    assert x_train.shape == (1437, 1, 8, 8) and x_test.shape == (360, 1, 8, 8)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    assert float(x_train.min()) >= 0.0 and float(x_train.max()) == 1.0
    assert set(torch.bincount(y_test).tolist()) <= {35, 36, 37}  # stratified: ~36 of each class
    again = digits_split(0)
    assert torch.equal(again[0], x_train) and torch.equal(again[3], y_test)
    assert not torch.equal(digits_split(1)[3], y_test)


# -- the shipped files ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", BIG_MODELS)
def test_big_models_are_structure_only(name: str) -> None:
    path = WORKLOADS / f"{name}.onnx"
    assert path.stat().st_size < 200_000
    model = onnx.load(str(path), load_external_data=False)
    weights = [
        t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) > 1
    ]
    assert weights and all(t.data_location == onnx.TensorProto.EXTERNAL for t in weights)
    assert {e.value for t in weights for e in t.external_data if e.key == "location"} == {
        f"{name}.weights.bin"
    }
    assert model.opset_import[0].version == 17
    onnx.shape_inference.infer_shapes(model, strict_mode=True)  # works without the weights file
    assert all(node.op_type != "Constant" for node in model.graph.node)


def test_digits_onnx_reaches_95_percent() -> None:
    _, _, x_test, y_test = digits_split(0)
    session = ort.InferenceSession(str(WORKLOADS / "digits_cnn.onnx"), providers=["CPUExecutionProvider"])
    accuracy = float(np.mean(_run_batch1(session, x_test.numpy()).argmax(1) == y_test.numpy()))
    assert accuracy >= 0.95
    record = json.loads((WORKLOADS / "digits_cnn.json").read_text())
    assert record["accuracy"]["test"] == pytest.approx(accuracy)


def test_digits_torch_definition_matches_onnx() -> None:
    model = onnx.load(str(WORKLOADS / "digits_cnn.onnx"))
    assert _ops(model) == {"Conv": 3, "Relu": 3, "MaxPool": 1, "Flatten": 1, "Gemm": 1}
    state = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in model.graph.initializer}
    net = DigitsCNN().eval()
    net.load_state_dict(state)  # strict: the initializers are exactly the torch parameters, by name
    _, _, x_test, _ = digits_split(0)
    with torch.no_grad():
        expected = net(x_test).numpy()
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(_run_batch1(session, x_test.numpy()), expected, atol=1e-4, rtol=0)


# -- the export script ----------------------------------------------------------------------------------
def test_export_resnet18_cifar10_reproduces_committed_file(export_script: ModuleType, tmp_path: Path) -> None:
    result = export_script.export("resnet18_cifar10", tmp_path)
    assert result.macs == 555_422_720 and result.weights_path is None
    assert not (tmp_path / "resnet18_cifar10.weights.bin").exists()
    model = onnx.load(str(result.path), load_external_data=False)
    ops = _ops(model)
    assert ops["Conv"] == 20 and ops["Gemm"] == 1
    assert model.graph.node[2].name == "/layer1/layer1.0/conv1/Conv"
    assert result.path.read_bytes() == (WORKLOADS / "resnet18_cifar10.onnx").read_bytes()


def test_export_vit_b32_has_attention_matmuls(export_script: ModuleType, tmp_path: Path) -> None:
    result = export_script.export("vit_b32", tmp_path)
    assert result.macs == 4_409_186_304
    model = onnx.load(str(result.path), load_external_data=False)
    constants = {t.name for t in model.graph.initializer}
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul"]
    attention = [n for n in matmuls if not any(i in constants for i in n.input)]
    assert len(attention) == 24
    assert {n.name.rsplit("/", 2)[-2] for n in attention} == {"qk", "av"}
    assert len(matmuls) - len(attention) == 12 * 6  # q, k, v, proj, fc1, fc2 with constant weights
    assert result.path.read_bytes() == (WORKLOADS / "vit_b32.onnx").read_bytes()


def test_export_rejects_unknown_names(export_script: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="valid: resnet18_cifar10, .*digits_cnn"):
        export_script.export("resnet18_cifar", tmp_path)
    with pytest.raises(SystemExit):
        export_script.main(["nope", "--out", str(tmp_path)])
