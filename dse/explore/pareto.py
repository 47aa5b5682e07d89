"""Pareto fronts: the points no other point dominates, over 2 to 4 objectives with their directions.

Point a dominates b when a is at least as good as b in every objective and strictly better in one.
Ties and exact duplicates follow from that: two equal points do not dominate each other, so
duplicates are all on the front unless a third point dominates them (and then all are off it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def non_dominated(values: Sequence[Sequence[float]], directions: Sequence[str]) -> list[bool]:
    """For each row of ``values`` (one column per objective), whether no other row dominates it.

    ``directions`` holds "min" or "max" per column. Rows must be finite numbers.
    """
    if len(values) == 0:
        return []
    v = np.asarray(values, dtype=float)
    if v.ndim != 2 or v.shape[1] != len(directions):
        raise ValueError(f"values must be rows of {len(directions)} objectives")
    if not np.isfinite(v).all():
        raise ValueError("values must be finite")
    sign = np.array([1.0 if d == "min" else -1.0 for d in directions])
    v = v * sign  # everything minimised
    front = np.ones(len(v), dtype=bool)
    for i in range(len(v)):
        no_worse = (v <= v[i]).all(axis=1)
        better = (v < v[i]).any(axis=1)
        front[i] = not (no_worse & better).any()
    return front.tolist()
