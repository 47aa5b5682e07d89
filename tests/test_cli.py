"""The cim-dse command line: JSON outputs, error lines and exit codes, generated docs in step."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dse.cli import main, schema_text

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_workload_json_resnet18_cifar10(capsys):
    code, out, _ = run_cli(capsys, "workload", str(ROOT / "workloads" / "resnet18_cifar10.onnx"), "--json")
    assert code == 0
    data = json.loads(out)
    assert round(data["total_macs"] / 1e9, 2) == 0.56
    assert len(data["layers"]) == 21
    first = data["layers"][0]
    assert set(first) >= {"name", "op", "loops", "macs"}
    assert set(first["loops"]) == {"B", "K", "C", "OY", "OX", "FY", "FX", "G"}
    assert sum(layer["macs"] for layer in data["layers"]) == data["total_macs"]


def test_workload_table_and_mapping_overrides(capsys, tmp_path):
    mapping = tmp_path / "m.yaml"
    mapping.write_text("- name: default\n  precision: {W: 4, I: 6}\n")
    code, out, _ = run_cli(capsys, "workload", str(ROOT / "tests" / "data" / "zigzag_resnet18.onnx"),
                           "--mapping", str(mapping), "--json")
    assert code == 0
    assert {tuple(layer["precision"].values()) for layer in json.loads(out)["layers"]} == {(4, 6, 8)}
    code, out, _ = run_cli(capsys, "workload", str(ROOT / "tests" / "data" / "zigzag_resnet18.onnx"))
    assert code == 0 and "1.814 GMAC" in out and "/layer4/layer4.1/conv2/Conv" in out


def test_hardware_json(capsys):
    code, out, _ = run_cli(capsys, "hardware", str(ROOT / "hardware" / "dimc4.yaml"), "--json")
    data = json.loads(out)
    assert code == 0 and data["macro"]["rows"] == 128 and data["reported"]["tops_per_w"] == 275
    model = data["model"]
    assert model["tops_per_w"] == pytest.approx(2e3 / model["energy_per_mac_fJ"])
    assert sum(model["area_mm2_by_component"].values()) == pytest.approx(model["area_mm2"])


def test_hardware_zigzag_compat_peak(capsys):
    code, out, _ = run_cli(capsys, "hardware", str(ROOT / "hardware" / "aimc_template.yaml"), "--zigzag-compat", "--json")
    model = json.loads(out)["model"]
    assert code == 0 and f"{model['clock_ns']:.4g}" == "14.07" and f"{model['tops_per_w']:.3g}" == "9.62"


def test_hardware_text(capsys):
    code, out, _ = run_cli(capsys, "hardware", str(ROOT / "hardware" / "aimc_template.yaml"))
    assert code == 0 and "8-bit ADC" in out and "sram" in out


def test_mapping_command(capsys):
    code, out, _ = run_cli(capsys, "mapping", str(ROOT / "mapping" / "default.yaml"), "--workload",
                           str(ROOT / "tests" / "data" / "zigzag_resnet18.onnx"), "--hardware",
                           str(ROOT / "hardware" / "aimc_template.yaml"), "--json")
    layers = json.loads(out)["layers"]
    assert code == 0 and len(layers) == 21 and layers[0]["spatial_mapping_hint"]["D1"] == ["K"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["hardware", "nothere.yaml"], "cim-dse: error: nothere.yaml: file not found"),
        (["workload", "nothere.onnx"], "cim-dse: error: nothere.onnx"),
        (["mapping", "nothere.yaml", "--workload", "x.onnx"], "cim-dse: error: nothere.yaml: file not found"),
    ],
)
def test_errors_are_one_line_with_exit_2(capsys, argv, expected):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith(expected) and err.count("\n") == 1, err


def test_console_script_error_has_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmacro: {kind: digital, rows: 8, columns: 8, adc_bits: 4}\n")
    proc = subprocess.run([sys.executable, "-m", "dse.cli", "hardware", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "macro.adc_bits = 4: a digital macro has no ADC" in proc.stderr


def test_overview_runs(capsys):
    code, out, _ = run_cli(capsys, "overview")
    assert code == 0
    for chip in ("aimc1", "aimc2", "aimc3", "dimc1", "dimc2", "dimc3", "dimc4"):
        assert chip in out
    assert "555.423 MMAC" in out


@pytest.mark.parametrize("which", ["hardware", "mapping"])
def test_schema_docs_are_current(which):
    committed = (ROOT / "docs" / f"{which}.md").read_text(encoding="utf-8")
    assert committed == schema_text(which), f"docs/{which}.md is stale: run ./run.sh schema {which} --output docs/{which}.md"
