"""The chip validation report: 28 rows, files written, and the calibration pinned (no regressions)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dse.cli import CHIPS, main
from dse.cost.validation import chip_rows
from dse.hardware import load_accelerator

ROOT = Path(__file__).resolve().parents[1]

# modelled / reported of every chip and metric in the default mode, as validated when this was
# last changed. A change may move a ratio closer to 1, never further away (beyond rounding).
PINNED = {
    "aimc1": {"clock_ns": 1.01, "area_mm2": 0.722, "tops_per_w": 0.997, "tops_per_mm2": 1.38},
    # aimc2 re-pinned when it was modelled as UIUC describes it: two 4-bit invocations of 3.6 ns per 8-bit MAC
    # (compared per invocation; it was 7.2 ns against one 2-bit cycle), 2-bit DAC levels applied twice per half,
    # the 2:1 column-muxed cells counted: clock 0.524 -> 1.05, area 0.507 -> 0.716, TOP/s/W 0.143 -> 0.279; the
    # derived TOP/s/mm^2 moves 0.942 -> 1.33 because the area (still a miss, ADC area law) is too small
    "aimc2": {"clock_ns": 1.05, "area_mm2": 0.716, "tops_per_w": 0.279, "tops_per_mm2": 1.33},
    # aimc3 re-pinned when the 6-bit adder after its LSB-first ADC was modelled (circuit.adc_adder_bits): it sets
    # the clock (0.771 -> 1.00) and costs a little energy and area (TOP/s/W 0.876 -> 0.833, area 1.06 -> 1.08)
    "aimc3": {"clock_ns": 1.0, "area_mm2": 1.08, "tops_per_w": 0.833, "tops_per_mm2": 0.927},
    "dimc1": {"clock_ns": 0.842, "area_mm2": 0.902, "tops_per_w": 0.952, "tops_per_mm2": 1.32},
    # dimc2 re-pinned when it moved to 0.8 V, the supply of the paper's 3 ns and 27.38 TOP/s/W (it was compared
    # at 0.9 V with the anchor's 0.9 V-equivalent 22 TOP/s/W): clock 0.742 -> 0.857, TOP/s/W 1.09 -> 1.11
    "dimc2": {"clock_ns": 0.857, "area_mm2": 0.21, "tops_per_w": 1.11, "tops_per_mm2": 5.56},
    "dimc3": {"clock_ns": 0.928, "area_mm2": 1.05, "tops_per_w": 1.06, "tops_per_mm2": 1.03},
    # dimc4 re-pinned when its 275 TOP/s/W was found to be the dense INT4 figure (JSSC 2024) and modelled in INT4
    # mode (reported.conditions): clock 1.15 -> 1.00, area 0.847 -> 0.932, TOP/s/W 0.103 -> 0.354; TOP/s/mm^2
    # re-derived at INT4 (1.03 -> 1.07)
    "dimc4": {"clock_ns": 0.998, "area_mm2": 0.932, "tops_per_w": 0.354, "tops_per_mm2": 1.07},
}

# Figures still outside +-20% and why (README, "Cost model"); everything else must stay inside.
KNOWN_MISSES = {
    ("aimc1", "area_mm2"), ("aimc2", "area_mm2"), ("aimc2", "tops_per_w"),
    ("dimc2", "area_mm2"), ("dimc4", "tops_per_w"),
}


def test_pins_cover_every_chip_and_metric():
    assert set(PINNED) == set(CHIPS)
    assert all(len(metrics) == 4 for metrics in PINNED.values())


@pytest.mark.parametrize("chip", CHIPS)
def test_calibration_does_not_regress(chip):
    rows = chip_rows(load_accelerator(ROOT / "hardware" / f"{chip}.yaml"))
    assert {r.metric for r in rows} == set(PINNED[chip])
    for row in rows:
        pinned = PINNED[chip][row.metric]
        assert abs(math.log(row.ratio)) <= abs(math.log(pinned)) + 0.01, (chip, row.metric, row.ratio, pinned)


def test_targets_met_except_the_listed_misses():
    """Clock, area and TOP/s/W within +-20% for every chip, but for the misses the README explains."""
    for chip in CHIPS:
        for row in chip_rows(load_accelerator(ROOT / "hardware" / f"{chip}.yaml")):
            if row.metric == "tops_per_mm2":
                continue
            inside = 0.8 <= row.ratio <= 1.2
            assert inside != ((chip, row.metric) in KNOWN_MISSES), (chip, row.metric, row.ratio)


def test_validate_chips_command(tmp_path, capsys):
    assert main(["validate-chips", "--json", "--output", str(tmp_path)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 28
    assert {tuple(sorted(r)) for r in rows} == {("chip", "metric", "modelled", "ratio", "reported")}
    assert {r["metric"] for r in rows} == {"clock_ns", "area_mm2", "tops_per_w", "tops_per_mm2"}
    for r in rows:
        assert r["ratio"] == pytest.approx(r["modelled"] / r["reported"])
    csv_lines = (tmp_path / "chips.csv").read_text().splitlines()
    assert csv_lines[0] == "chip,metric,reported,modelled,ratio" and len(csv_lines) == 29
    html = (tmp_path / "chips.html").read_text()
    assert "plotly" in html.lower() and "dimc4" in html and "reported" in html
    assert "Chips outside ±20%, and why" in html and "low-MAC-value" in html  # DIMC4's reason is shown
    assert "dimc4</b>: weight_bits 4, input_bits 4, columns 16" in html  # and the mode it is modelled in
