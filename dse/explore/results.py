"""The tables of a run: one row per point (parameters, metrics, status, reason), the front, CSV text.

Status: ``ok``; ``infeasible`` (a constraint is missed: the `violated` column names it); ``failed``
(no result: the `error` column says why); ``pending`` (not finished yet: an interrupted run).
The front is computed over the ``ok`` points only.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from dse.explore.objectives import ACCURACY_METRICS, COST_METRICS, OBJECTIVES, violations
from dse.explore.pareto import non_dominated

LEAD = ("id", "status", "on_front", "violated", "error")
TIMES = ("cost_s", "accuracy_s")


def columns(param_names: Sequence[str], with_accuracy: bool) -> list[str]:
    metrics = list(COST_METRICS) + (list(ACCURACY_METRICS) if with_accuracy else [])
    return [*LEAD, *param_names, *metrics, *TIMES]


def make_row(point_id: str, params: dict[str, Any], rec: dict | None, *, done: bool, accuracy_key: str | None,
             constraints: object) -> dict[str, Any]:
    """A point's row; accuracy is shown only when it was computed under this run's key."""
    row: dict[str, Any] = {"id": point_id, **params, "on_front": False, "violated": "", "error": ""}
    if rec is None or not done:
        row["status"] = "pending"
        return row
    metrics = dict(rec.get("cost") or {})
    acc = rec.get("accuracy") or {}
    if acc and acc.get("key") == accuracy_key:
        metrics.update({k: v for k, v in acc.items() if k != "key"})
    row.update(metrics)
    row["cost_s"] = rec.get("cost_s")
    row["accuracy_s"] = rec.get("accuracy_s") if "accuracy" in metrics else None
    if rec.get("error"):
        row["status"], row["error"] = "failed", rec["error"]
        return row
    missed = violations(metrics, constraints)
    row["status"] = "infeasible" if missed else "ok"
    row["violated"] = "; ".join(m for m, _ in missed)
    return row


def mark_front(rows: list[dict[str, Any]], objectives: Sequence[str]) -> None:
    """Set ``on_front`` on the ok rows no other ok row dominates."""
    cols = [OBJECTIVES[o].column for o in objectives]
    ok = [r for r in rows if r["status"] == "ok" and all(_finite(r.get(c)) for c in cols)]
    for r in rows:
        r["on_front"] = False
    flags = non_dominated([[float(r[c]) for c in cols] for r in ok], [OBJECTIVES[o].direction for o in objectives])
    for r, flag in zip(ok, flags, strict=True):
        r["on_front"] = flag


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def to_csv(rows: Sequence[dict[str, Any]], cols: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(cols), extrasaction="ignore", restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue()


def parse_value(text: str) -> Any:
    """A CSV cell back as a number, bool, None (empty) or string."""
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_csv(text: str) -> list[dict[str, Any]]:
    return [{k: parse_value(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(text))]
