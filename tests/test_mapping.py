"""Mapping YAML: parsing, ZigZag compatibility, per-layer resolution, precision overrides, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from dse.errors import InputError
from dse.hardware import load_accelerator
from dse.mapping import check_mapping, load_mapping, mapping_from_data
from dse.workload import Precision, load_onnx

ROOT = Path(__file__).resolve().parents[1]
RESNET = ROOT / "tests" / "data" / "zigzag_resnet18.onnx"
ZIGZAG_MAPPING = ROOT / "tests" / "data" / "zigzag_default_imc.yaml"


@pytest.fixture(scope="module")
def resnet():
    return load_onnx(RESNET)


def test_shipped_default_validates(resnet):
    spec = load_mapping(ROOT / "mapping" / "default.yaml")
    check_mapping(spec, resnet, load_accelerator(ROOT / "hardware" / "aimc_template.yaml"))
    resolved = spec.resolve(resnet.layers[0])
    assert resolved.spatial_mapping_hint["D1"] == ("K",)
    assert resolved.spatial_mapping_hint["D2"] == ("C", "FX", "FY")
    assert resolved.memory_operand_links == {"W": "I2", "I": "I1", "O": "O"}


def test_zigzag_mapping_file_loads_unchanged(resnet):
    spec = load_mapping(ZIGZAG_MAPPING)
    assert [e.name for e in spec.entries] == ["default", "Add"]
    check_mapping(spec, resnet)


def test_resolution_order_and_field_fallback(resnet):
    conv1 = resnet.layers[0]
    fc = resnet.layers[-1]
    spec = mapping_from_data([
        {"name": "default", "spatial_mapping_hint": {"D1": ["K"], "D2": ["C"]}, "precision": {"W": 8, "I": 8}},
        {"name": "conv", "spatial_mapping_hint": {"D1": ["K"], "D2": ["C", "FX", "FY"]}},
        {"name": "Conv", "precision": {"W": 6}},
        {"name": conv1.name, "spatial_mapping": {"D1": ["K, 64"], "D2": ["FX, 7", "FY, 7"]}, "precision": {"W": 4}},
    ])
    r = spec.resolve(conv1)
    assert r.spatial_mapping == {"D1": (("K", 64),), "D2": (("FX", 7), ("FY", 7))}
    assert r.spatial_mapping_hint["D2"] == ("C", "FX", "FY")  # from the op-type entry
    assert r.sources == {"spatial_mapping": conv1.name, "spatial_mapping_hint": "conv", "precision": conv1.name}
    assert spec.precision_of(conv1) == Precision(W=4, I=8, O=8)
    assert spec.precision_of(resnet.layers[1]) == Precision(W=6, I=8, O=8)  # ONNX op type beats default
    assert spec.resolve(fc).spatial_mapping_hint["D2"] == ("C",)
    assert spec.precision_of(fc) == Precision(W=8, I=8, O=8)


def test_weight_diagonal_option(resnet):
    conv1, fc = resnet.layers[0], resnet.layers[-1]
    assert load_mapping(ROOT / "mapping" / "default.yaml").resolve(conv1).weight_diagonal is False  # ZigZag's default
    shipped = load_mapping(ROOT / "mapping" / "weight_diagonal.yaml")
    check_mapping(shipped, resnet, load_accelerator(ROOT / "hardware" / "dimc_template.yaml"))
    assert shipped.resolve(conv1).weight_diagonal is True
    spec = mapping_from_data([{"name": "default", "weight_diagonal": True}, {"name": "Gemm", "weight_diagonal": False}])
    assert (spec.resolve(conv1).weight_diagonal, spec.resolve(fc).weight_diagonal) == (True, False)
    assert spec.resolve(fc).sources["weight_diagonal"] == "Gemm"


def test_precision_overrides_apply_to_the_workload(resnet):
    spec = mapping_from_data([{"name": "default"}, {"name": "Gemm", "precision": {"W": 4, "I": 4, "O": 16}}])
    narrowed = resnet.with_precisions(spec.precision_of)
    assert narrowed.layers[-1].precision == Precision(W=4, I=4, O=16)
    assert narrowed.layers[0].precision == resnet.layers[0].precision
    assert resnet.layers[-1].precision == Precision()  # the original is untouched
    assert narrowed.total_macs == resnet.total_macs


def test_unrolling_forms():
    spec = mapping_from_data([{"name": "default", "spatial_mapping": {"D1": ["K, 32"], "D2": [["C", 16], {"FX": 3}]},
                               "temporal_ordering": [["OX", 112], ["OY", "*"]]}])
    entry = spec.entry("default")
    assert entry.spatial_mapping == {"D1": (("K", 32),), "D2": (("C", 16), ("FX", 3))}
    assert entry.temporal_ordering == (("OX", 112), ("OY", "*"))


BAD = [
    ("not a list", {"name": "default"}, "m.yaml: expected a list of mapping entries, found a dict"),
    ("no default", [{"name": "conv"}], "m.yaml: no 'default' entry; add one"),
    ("duplicate", [{"name": "default"}, {"name": "default"}],
     "m.yaml: [1:default].name = 'default': an earlier entry has the same name"),
    ("unknown field", [{"name": "default", "spatial_maping": {}}],
     "m.yaml: [0:default].spatial_maping: unknown field (did you mean 'spatial_mapping'?)"),
    ("unknown loop dim", [{"name": "default", "spatial_mapping": {"D1": ["KX, 4"]}}],
     "m.yaml: [0:default].spatial_mapping.D1[0][0] = 'KX': expected 'B', 'K', 'C', 'OY', 'OX', 'FY', 'FX' or 'G'"),
    ("unknown array dim", [{"name": "default", "spatial_mapping_hint": {"D7": ["K"]}}],
     "m.yaml: [0:default].spatial_mapping_hint.D7 = 'D7': expected 'D1', 'D2' or 'D3'"),
    ("zero unrolling", [{"name": "default", "spatial_mapping": {"D1": ["K, 0"]}}],
     "m.yaml: [0:default].spatial_mapping.D1[0][1] = 0: must be > 0"),
    ("bad operand link", [{"name": "default", "memory_operand_links": {"W": "I3"}}],
     "m.yaml: [0:default].memory_operand_links.W = 'I3': expected 'I1', 'I2' or 'O'"),
    ("bad precision", [{"name": "default", "precision": {"W": 0}}], "m.yaml: [0:default].precision.W = 0: must be >= 1"),
    ("entry not a mapping", ["default"], "m.yaml: [0]: expected a mapping of fields, found a str"),
    ("bad weight_diagonal", [{"name": "default", "weight_diagonal": "sometimes"}],
     "m.yaml: [0:default].weight_diagonal = 'sometimes': "),
]


@pytest.mark.parametrize(("case", "data", "expected"), BAD, ids=[b[0] for b in BAD])
def test_bad_mapping_files(case, data, expected):
    with pytest.raises(InputError) as info:
        mapping_from_data(data, "m.yaml")
    assert str(info.value).startswith(expected), str(info.value)


def test_entry_naming_a_missing_layer(resnet):
    spec = mapping_from_data([{"name": "default"}, {"name": "/layer1/layer1.0/conv1/Cnov"}], "m.yaml")
    with pytest.raises(InputError) as info:
        check_mapping(spec, resnet)
    message = str(info.value)
    assert message.startswith("m.yaml: [1:/layer1/layer1.0/conv1/Cnov].name = '/layer1/layer1.0/conv1/Cnov': "
                              "no layer, op type or 'default' of this name in ")
    assert "did you mean '/layer1/layer1.0/conv1/Conv'?" in message


def test_unrolling_larger_than_the_array(resnet):
    acc = load_accelerator(ROOT / "hardware" / "dimc1.yaml")  # 32 rows x 6 columns
    spec = mapping_from_data([{"name": "default", "spatial_mapping": {"D1": ["K, 8"]}}], "m.yaml")
    with pytest.raises(InputError, match=r"^m.yaml: \[0:default\].spatial_mapping.D1 = K 8: unrolls 8 but the macro "
                                         r"has 6 columns$"):
        check_mapping(spec, resnet, acc)


def test_missing_mapping_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_mapping(tmp_path / "none.yaml")
