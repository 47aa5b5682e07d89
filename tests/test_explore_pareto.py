"""Pareto extraction against brute force, with ties, duplicates and mixed directions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dse.explore.pareto import non_dominated


def brute_force(points: list[tuple[float, ...]], directions: list[str]) -> list[bool]:
    def better_or_equal(a: float, b: float, d: str) -> bool:
        return a <= b if d == "min" else a >= b

    def strictly_better(a: float, b: float, d: str) -> bool:
        return a < b if d == "min" else a > b

    def dominates(p, q) -> bool:
        return (all(better_or_equal(a, b, d) for a, b, d in zip(p, q, directions, strict=True))
                and any(strictly_better(a, b, d) for a, b, d in zip(p, q, directions, strict=True)))

    return [not any(dominates(q, p) for j, q in enumerate(points) if j != i) for i, p in enumerate(points)]


@st.composite
def point_sets(draw):
    m = draw(st.integers(2, 4))
    directions = draw(st.lists(st.sampled_from(["min", "max"]), min_size=m, max_size=m))
    # few distinct values: ties and exact duplicates are common
    value = st.one_of(st.integers(0, 3).map(float), st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False))
    points = draw(st.lists(st.tuples(*[value] * m), max_size=40))
    return points, directions


@settings(max_examples=300, deadline=None)
@given(point_sets())
def test_matches_brute_force(case):
    points, directions = case
    assert non_dominated(points, directions) == brute_force(points, directions)


def test_duplicates_are_all_on_the_front_unless_dominated():
    assert non_dominated([(1, 2), (1, 2), (2, 1)], ["min", "min"]) == [True, True, True]
    assert non_dominated([(1, 2), (1, 2), (0, 2)], ["min", "min"]) == [False, False, True]


def test_ties_in_one_objective():
    # equal energy, better accuracy dominates; equal in all but one is enough
    assert non_dominated([(5.0, 0.9), (5.0, 0.8), (4.0, 0.5)], ["min", "max"]) == [True, False, True]


def test_empty_and_bad_input():
    assert non_dominated([], ["min", "min"]) == []
    with pytest.raises(ValueError):
        non_dominated([(1.0, float("nan"))], ["min", "min"])
    with pytest.raises(ValueError):
        non_dominated([(1.0, 2.0, 3.0)], ["min", "min"])
