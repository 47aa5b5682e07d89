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
    "aimc1": {"clock_ns": 0.997, "area_mm2": 0.536, "tops_per_w": 0.997, "tops_per_mm2": 1.88},
    "aimc2": {"clock_ns": 0.524, "area_mm2": 0.328, "tops_per_w": 0.143, "tops_per_mm2": 1.45},
    "aimc3": {"clock_ns": 1.56, "area_mm2": 1.32, "tops_per_w": 0.23, "tops_per_mm2": 0.971},
    "dimc1": {"clock_ns": 0.833, "area_mm2": 1.34, "tops_per_w": 0.612, "tops_per_mm2": 0.9},
    "dimc2": {"clock_ns": 0.742, "area_mm2": 0.107, "tops_per_w": 2.76, "tops_per_mm2": 12.6},
    "dimc3": {"clock_ns": 0.705, "area_mm2": 5.43, "tops_per_w": 1.46, "tops_per_mm2": 2.09},
    "dimc4": {"clock_ns": 1.15, "area_mm2": 0.739, "tops_per_w": 0.103, "tops_per_mm2": 1.18},
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
