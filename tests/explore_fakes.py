"""Fake accuracy evaluators for the exploration tests: module-level, so pool and Dask workers unpickle them."""

from __future__ import annotations

import os
import time


def accuracy(acc, settings) -> float:
    """Deterministic: falls with the rows summed per ADC level; a digital macro keeps the float accuracy."""
    m = acc.macro
    if m.kind == "digital":
        return 0.97
    return round(max(0.1, 0.97 - 0.002 * m.rows / 2**m.adc_bits * m.input_bits_per_cycle), 6)


def logged(acc, settings) -> dict:
    """``accuracy`` as a result dict, after $EXPLORE_FAKE_SLEEP seconds, logging one line per call to
    the file $EXPLORE_FAKE_LOG."""
    time.sleep(float(os.environ.get("EXPLORE_FAKE_SLEEP", "0")))
    m = acc.macro
    with open(os.environ["EXPLORE_FAKE_LOG"], "a", encoding="utf-8") as fh:
        fh.write(f"{m.kind},{m.rows},{m.adc_bits},{m.input_bits_per_cycle}\n")
    return {"accuracy": accuracy(acc, settings), "accuracy_std": 0.0, "float_accuracy": 0.975, "samples": 360}


def failing(acc, settings) -> float:
    raise RuntimeError("simulator exploded")
