"""The design-space file: values, parameter paths and their errors, conditional parameters, the grid,
and the accuracy cache key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dse.cli import schema_text
from dse.errors import InputError
from dse.explore import grid, grid_size, load_space
from dse.explore.accuracy import accuracy_fields
from dse.explore.objectives import OBJECTIVES
from dse.explore.paths import get_path, set_path
from dse.explore.points import build_accelerator
from dse.explore.space import DesignSpace
from dse.hardware import accelerator_from_dict, accelerator_to_dict, load_accelerator

ROOT = Path(__file__).resolve().parents[1]
AIMC = str(ROOT / "hardware" / "aimc_template.yaml")
DIMC = str(ROOT / "hardware" / "dimc_template.yaml")
MODEL = str(ROOT / "workloads" / "digits_cnn.onnx")


def write_space(tmp_path: Path, **fields) -> Path:
    data = {"base": [AIMC], "workload": {"model": MODEL}, "references": [], **fields}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def values_of(tmp_path, entry):
    space = load_space(write_space(tmp_path, parameters={"macro.rows": entry}))
    return list(space.params[0].values)


@pytest.mark.parametrize(("entry", "expected"), [
    ([64, 128, 256], [64, 128, 256]),
    (128, [128]),
    ({"range": [32, 128, 32]}, [32, 64, 96, 128]),
    ({"range": [32, 100, 32]}, [32, 64, 96]),
    ({"log_range": [16, 256, 5]}, [16, 32, 64, 128, 256]),
    ({"log_range": [16, 20, 5]}, [16, 17, 18, 19, 20]),
    ({"pow2": [20, 300]}, [32, 64, 128, 256]),
    ({"values": [64, 64, 128]}, [64, 128]),
])
def test_values(tmp_path, entry, expected):
    assert values_of(tmp_path, entry) == expected


def test_float_values(tmp_path):
    space = load_space(write_space(tmp_path, parameters={"technology.vdd_V": {"range": [0.7, 1.0, 0.1]},
                                                         "macro.accuracy.noise_sigma_pct": {"log_range": [0.1, 10, 3]}}))
    assert list(space.params[0].values) == [0.7, 0.8, 0.9, 1.0]
    assert list(space.params[1].values) == [0.1, 1.0, 10.0]


@pytest.mark.parametrize(("parameters", "message"), [
    ({"macro.adc_bitz": [4]},
     "space.yaml: parameters.macro.adc_bitz: no field 'adc_bitz' in macro; valid: kind, rows, columns, count, "
     "weight_bits, input_bits, input_bits_per_cycle, adc_bits"),
    ({"memories.sramm.size_bits": [1024]}, "no memory level 'sramm' in any base; levels: dram, rf_in, rf_out, sram "
                                           "(did you mean 'sram'?)"),
    ({"macro.circuit": [1]}, "parameters.macro.circuit: names a group of fields; name one of: dac_bits, rows_active"),
    ({"memories.sram.operands": [1]}, "parameters.memories.sram.operands: is not a single value"),
    ({"name": ["x"]}, "parameters.name: no field 'name' in an accelerator; valid: macro, technology, memories, "
                      "clock_ns"),
    ({"macro.rows.x": [1]}, "'rows' is a value, it has no field 'x'"),
    ({"macro.rows": {"range": [1, 2, 1], "pow2": [1, 2]}}, "give exactly one of values, range, log_range, pow2 "
                                                            "(found range and pow2)"),
    ({"macro.rows": {"range": [10, 1, 1]}}, "parameters.macro.rows.range = [10, 1, 1]: expected [lo, hi, step]"),
    ({"macro.rows": {"pow2": [3, 3]}}, "no power of two lies in [lo, hi]"),
    ({"accelerator": [1]}, "parameters.accelerator: is set by `base`"),
])
def test_bad_parameters(tmp_path, parameters, message):
    with pytest.raises(InputError) as err:
        load_space(write_space(tmp_path, parameters=parameters))
    assert message in str(err.value)
    assert str(err.value).startswith(str(tmp_path.name) + "/space.yaml:") or "space.yaml" in str(err.value)


def test_bad_fields_and_files(tmp_path):
    with pytest.raises(InputError, match=r"objectivez: unknown field \(did you mean 'objectives'\?\)"):
        load_space(write_space(tmp_path, objectivez=["energy"]))
    with pytest.raises(InputError, match="objectives = \\['energy'\\]: give 2 to 4 objectives"):
        load_space(write_space(tmp_path, objectives=["energy"]))
    with pytest.raises(InputError, match="objectives\\[1\\] = 'speed': expected"):
        load_space(write_space(tmp_path, objectives=["energy", "speed"]))
    with pytest.raises(InputError, match="base\\[0\\] = 'nothere.yaml': no such file"):
        load_space(write_space(tmp_path, base=["nothere.yaml"]))
    with pytest.raises(InputError, match="base\\[1\\] = .*another base is also named 'aimc_template'"):
        load_space(write_space(tmp_path, base=[AIMC, AIMC]))


def test_relative_paths_are_read_from_the_space_file(tmp_path):
    space = load_space(ROOT / "spaces" / "demo.yaml")
    assert space.model == ROOT / "spaces" / ".." / "workloads" / "digits_cnn.onnx"
    assert [b.name for b in space.bases] == ["aimc_template", "dimc_template"]


@pytest.mark.parametrize("path", sorted((ROOT / "spaces").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_space_loads_and_builds_its_points(path):
    space = load_space(path)
    assert space.name == path.stem
    for point in grid(space):
        build_accelerator(space, point)


def test_parameter_that_does_not_apply_is_dropped_not_multiplied(tmp_path):
    space = load_space(write_space(tmp_path, base=[AIMC, DIMC], parameters={
        "macro.rows": [64, 128], "macro.adc_bits": [4, 6, 8]}))
    adc = space.params[1]
    assert adc.bases == ("aimc_template",)
    assert any("macro.adc_bits is not varied on dimc_template" in n and "a digital macro has no ADC" in n
               for n in space.notes)
    points = list(grid(space))
    assert len(points) == 2 * 3 + 2 == grid_size(space)
    digital = [p for p in points if p.base == "dimc_template"]
    assert all("macro.adc_bits" not in p.params for p in digital)


def test_parameter_that_applies_to_no_base(tmp_path):
    with pytest.raises(InputError, match="parameters.macro.adc_bits: applies to no base: every value is invalid on "
                                         "dimc_template"):
        load_space(write_space(tmp_path, base=[DIMC], parameters={"macro.adc_bits": [4]}))


def test_when_condition(tmp_path):
    space = load_space(write_space(tmp_path, base=[AIMC, DIMC], parameters={
        "macro.rows": [64, 128],
        "macro.input_bits_per_cycle": {"values": [1, 2, 4], "when": {"accelerator": "aimc_template",
                                                                     "macro.rows": [128]}}}))
    points = list(grid(space))
    assert len(points) == (1 + 3) + 2 == grid_size(space)
    assert sum("macro.input_bits_per_cycle" in p.params for p in points) == 3
    with pytest.raises(InputError, match="names another conditional parameter"):
        load_space(write_space(tmp_path, parameters={
            "macro.rows": {"values": [64], "when": {"macro.count": 1}},
            "macro.adc_bits": {"values": [4], "when": {"macro.rows": 64}}}))


def test_grid_3x2_and_stable_ids(tmp_path):
    path = write_space(tmp_path, parameters={"macro.rows": [32, 64, 128], "macro.count": [1, 2]})
    points = list(grid(load_space(path)))
    assert len(points) == 6 and len({p.id for p in points}) == 6
    assert [p.id for p in grid(load_space(path))] == [p.id for p in points]
    assert points[0].params == {"accelerator": "aimc_template", "macro.rows": 32, "macro.count": 1}
    acc = build_accelerator(load_space(path), points[-1])
    assert (acc.macro.rows, acc.macro.count) == (128, 2)


def test_invalid_combination_is_an_error_of_the_point(tmp_path):
    space = load_space(write_space(tmp_path, parameters={"macro.input_bits_per_cycle": [3, 2]}))
    with pytest.raises(InputError, match="macro.input_bits_per_cycle = 3: must divide macro.input_bits = 8"):
        build_accelerator(space, next(grid(space)))


def test_paths_read_and_write_plain_data():
    data = accelerator_to_dict(load_accelerator(AIMC))
    out = set_path(data, "memories.sram.size_bits", 1024)
    out = set_path(out, "macro.accuracy.device_variation.dev_var", 0.2)
    out = set_path(out, "macro.adc_bits", None)
    assert get_path(out, "memories.sram.size_bits") == 1024 and get_path(data, "memories.sram.size_bits") == 262144
    assert get_path(out, "macro.accuracy.device_variation.dev_var") == 0.2
    assert get_path(out, "macro.adc_bits") is None and get_path(out, "memories.nothere.size_bits") is None


# -- the accuracy cache key -----------------------------------------------------------------------
def _variant(base, path, value):
    return accelerator_from_dict(set_path(accelerator_to_dict(base), path, value)).macro


IRRELEVANT = [("macro.count", 4), ("macro.columns", 64), ("macro.cells_per_group", 2),
              ("macro.cell_write_energy_pJ", 1.0), ("macro.leakage_mW", 0.5), ("macro.activity.weight_sparsity", 0.9),
              ("macro.circuit.pipelined", True), ("macro.circuit.column_mux", 2), ("macro.circuit.adc_physical_bits", 10),
              ("technology.node_nm", 7), ("technology.vdd_V", 0.7), ("clock_ns", 5.0),
              ("memories.sram.size_bits", 1024), ("memories.dram.read_energy_pJ", 1.0)]
RELEVANT = [("macro.rows", 64), ("macro.adc_bits", 6), ("macro.input_bits_per_cycle", 4), ("macro.weight_bits", 4),
            ("macro.input_bits", 4), ("macro.circuit.rows_active", 64), ("macro.accuracy.noise_sigma_pct", 1.0),
            ("macro.accuracy.nonlinear_sigma_pct", 1.0), ("macro.accuracy.hybrid_levels", 2),
            ("macro.accuracy.votes", 3), ("macro.accuracy.pac_operand", 4),
            ("macro.accuracy.device_variation.dev_var", 0.2)]


def test_cache_key_ignores_parameters_that_cannot_change_accuracy():
    base = load_accelerator(AIMC)
    key = accuracy_fields(base.macro)
    for path, value in IRRELEVANT:
        assert accuracy_fields(_variant(base, path, value)) == key, path
    for path, value in RELEVANT:
        assert accuracy_fields(_variant(base, path, value)) != key, path
    # the same noise in LSB or in % of full scale is one key
    lsb = _variant(base, "macro.accuracy.noise_sigma_lsb", 0.5)
    pct = _variant(base, "macro.accuracy.noise_sigma_pct", 0.5 * 100 / 255)
    assert accuracy_fields(lsb) == accuracy_fields(pct)
    # a digital macro sums exactly: rows and input bits per cycle cannot change it
    digital = load_accelerator(DIMC)
    for path, value in [("macro.rows", 64), ("macro.input_bits_per_cycle", 2), *IRRELEVANT]:
        assert accuracy_fields(_variant(digital, path, value)) == accuracy_fields(digital.macro), path


def test_cache_key_agrees_with_the_simulator():
    """dse.accuracy.simulate.accuracy_key (the simulator's own key) ignores what ours ignores."""
    simulate = pytest.importorskip("dse.accuracy.simulate", reason="the accuracy simulator is not importable yet",
                                   exc_type=ImportError)
    base = load_accelerator(AIMC)
    key = simulate.accuracy_key(base.macro)
    for path, value in IRRELEVANT:
        assert simulate.accuracy_key(_variant(base, path, value)) == key, path
    for path, value in RELEVANT:
        assert simulate.accuracy_key(_variant(base, path, value)) != key, path


# -- schema -----------------------------------------------------------------------------------
def test_objectives_match_the_schema():
    import typing

    hint = typing.get_type_hints(DesignSpace)["objectives"]
    assert set(typing.get_args(typing.get_args(hint)[0])) == set(OBJECTIVES)


def test_schema_docs_are_current():
    committed = (ROOT / "docs" / "space.md").read_text(encoding="utf-8")
    assert committed == schema_text("space"), "docs/space.md is stale: run ./run.sh schema space --output docs/space.md"
