"""Search strategies: the whole grid, or optuna's NSGA-II under a budget of distinct points.

NSGA-II asks a generation (``population`` points) at a time, the points are evaluated together
(through the store, so stored points cost nothing), and the results are told back in the order asked.
The sampler is seeded, and what it is told depends only on the stored results, so rerunning the
same command replays the same trials and resumes exactly where an interrupted run stopped.
Failed points are told as failed trials; infeasible ones as complete trials with their constraint
violations, which NSGA-II ranks behind every feasible point.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from dse.explore.objectives import CONSTRAINTS, OBJECTIVES
from dse.explore.paths import ACCELERATOR
from dse.explore.points import Point, grid, grid_size, make_point
from dse.explore.space import Space


def grid_points(space: Space) -> list[Point]:
    return list(grid(space))


def _constraints(trial) -> list[float]:
    return trial.user_attrs["constraints"]


def nsga2_points(space: Space, *, budget: int, population: int, seed: int,
                 evaluate: Callable[[list[Point]], dict[str, dict]],
                 metrics_of: Callable[[Point, dict], dict | None]) -> tuple[list[Point], list[str]]:
    """Distinct points in the order NSGA-II proposed them, and notes.

    ``evaluate(points)`` returns each point's record by id; ``metrics_of(point, record)`` gives the
    point's metrics, None when it failed.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    active = [f for f in CONSTRAINTS if getattr(space.spec.constraints, f) is not None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.NSGAIISampler(population_size=population, seed=seed,
                                                constraints_func=_constraints if active else None)
    directions = ["minimize" if OBJECTIVES[o].direction == "min" else "maximize" for o in space.objectives]
    study = optuna.create_study(directions=directions, sampler=sampler)
    target = min(budget, grid_size(space, limit=budget))
    order: list[Point] = []
    seen: set[str] = set()
    asked = 0
    max_trials = 20 * budget + population
    while len(seen) < target and asked < max_trials:
        trials = [study.ask() for _ in range(population)]
        asked += len(trials)
        points = [_suggest(space, t) for t in trials]
        generation: dict[str, Point] = {}
        for p in points:
            if p.id not in seen and len(seen) < target:
                seen.add(p.id)
                order.append(p)
            if p.id in seen:
                generation.setdefault(p.id, p)
        records = evaluate(list(generation.values()))  # repeats of earlier points come from the store
        for trial, point in zip(trials, points, strict=True):
            rec = records.get(point.id)
            metrics = metrics_of(point, rec) if rec is not None else None
            if metrics is None:  # failed, or over the budget
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            trial.set_user_attr("point", point.id)
            if active:
                trial.set_user_attr("constraints", [_violation(metrics, f, space) for f in active])
            study.tell(trial, [_value(metrics, o) for o in space.objectives])
    notes = []
    if len(seen) < target:
        notes.append(f"NSGA-II proposed {len(seen)} distinct points in {asked} trials (budget {budget})")
    return order, notes


def _suggest(space: Space, trial) -> Point:
    """Every parameter is suggested in every trial (a fixed search space for NSGA-II's crossover);
    the ones that do not apply to the design are then dropped."""
    params: dict[str, Any] = {ACCELERATOR: trial.suggest_categorical(ACCELERATOR, [b.name for b in space.bases])}
    for p in space.params:
        params[p.path] = trial.suggest_categorical(p.path, list(p.values))
    return make_point(space, params)


def _value(metrics: dict, objective: str) -> float:
    o = OBJECTIVES[objective]
    value = metrics.get(o.column)
    if value is None:  # accuracy not simulated: the point already misses a cost constraint
        return 0.0 if o.direction == "max" else float("inf")
    return float(value)


def _violation(metrics: dict, field: str, space: Space) -> float:
    metric, kind = CONSTRAINTS[field]
    limit = getattr(space.spec.constraints, field)
    value = metrics.get(metric)
    if value is None:
        return 0.0
    over = value - limit if kind == "max" else limit - value
    return over / abs(limit)
