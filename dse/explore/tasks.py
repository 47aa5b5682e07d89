"""The work done on a worker: one point's cost, one accuracy key's simulation.

Each returns plain data and never raises for a bad design: an InputError (unmappable layer,
precision mismatch) or any other exception becomes the point's recorded reason, and the run goes on.
"""

from __future__ import annotations

import time
from typing import Any

from dse.errors import InputError
from dse.explore.accuracy import normalise
from dse.explore.objectives import cost_metrics


def _failure(exc: Exception) -> str:
    if isinstance(exc, InputError):
        return str(InputError(None, exc.where, exc.problem, exc.hint))
    return f"{type(exc).__name__}: {exc}"


def cost_task(cost_fn, workload, mapping, accelerator, opt: str, activity: dict | None = None) -> dict[str, Any]:
    """``{"cost": metrics, "cost_s": seconds}`` or ``{"error": reason, ...}``; ``activity`` (per layer, measured)
    goes to the cost function only when given, so a custom one without that argument still works."""
    start = time.perf_counter()
    try:
        extra = {} if activity is None else {"activity": activity}
        result = cost_fn(workload, accelerator, mapping, opt=opt, **extra)
        out: dict[str, Any] = {"cost": cost_metrics(result)}
    except Exception as exc:
        out = {"error": f"cost: {_failure(exc)}"}
    out["cost_s"] = time.perf_counter() - start
    return out


def accuracy_task(accuracy_fn, accelerator, settings) -> dict[str, Any]:
    """``{"accuracy": {...}, "accuracy_s": seconds}`` or ``{"error": reason, ...}``."""
    start = time.perf_counter()
    try:
        out: dict[str, Any] = {"accuracy": normalise(accuracy_fn(accelerator, settings))}
    except Exception as exc:
        out = {"error": f"accuracy: {_failure(exc)}"}
    out["accuracy_s"] = time.perf_counter() - start
    return out
