"""The mapper: search spatial unrollings and temporal loop orders for the best mapping of a layer.

The objective is a function of the action counts handed in by the caller (the cost model prices
them), so the mapper knows nothing about energies. Spatial candidates come from the mapping file's
fixed unrollings and hints; the ``keep`` with the fewest temporal iterations are searched in full.
For each, the temporal loops are split into prime factors (so a memory level can hold part of a
loop) and every distinct order of the factors is tried, unless the mapping file fixes the order.
Results are cached by layer shape, so the identical blocks of a network are solved once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dse.errors import InputError
from dse.hardware.schema import Accelerator
from dse.mapping.spatial import (
    DEFAULT_HINTS,
    SpatialMapping,
    best_candidates,
    candidates,
    capacities,
    temporal_sizes,
)
from dse.mapping.spec import ResolvedMapping
from dse.mapping.temporal import ActionCounter, ActionCounts
from dse.workload.layer import Layer


@dataclass(frozen=True)
class SearchSettings:
    keep_spatial: int = 3  # spatial candidates searched in full
    lpf_limit: int = 6  # loop prime factors permuted (ZigZag's LOMA default): at most 6! = 720 orders
    divisors_only: bool = False  # unroll loops only by their divisors (ZigZag-IMC's spatial space)


def _prime_factors(n: int) -> list[int]:
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


def loop_factors(sizes: dict[str, int], limit: int) -> list[tuple[str, int]]:
    """Each temporal loop split into its prime factors, so a level can hold part of a loop; while there
    are more than ``limit`` factors, the two smallest of the dim with the most are merged (as LOMA does)."""
    factors = {d: _prime_factors(s) for d, s in sizes.items() if s > 1}
    while sum(len(f) for f in factors.values()) > max(limit, len(factors)):
        dim = max(factors, key=lambda d: (len(factors[d]), d))
        fs = sorted(factors[dim])
        factors[dim] = sorted([fs[0] * fs[1], *fs[2:]])
    return sorted(((d, f) for d, fs in factors.items() for f in fs), key=lambda x: (x[0], x[1]))


def _unique_permutations(items: list[tuple[str, int]]) -> list[tuple[tuple[str, int], ...]]:
    """Distinct orders of a multiset (equal factors of a dim are interchangeable)."""
    out: list[tuple[tuple[str, int], ...]] = []
    counts: dict[tuple[str, int], int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    keys = sorted(counts)
    current: list[tuple[str, int]] = []

    def walk() -> None:
        if len(current) == len(items):
            out.append(tuple(current))
            return
        for key in keys:
            if counts[key]:
                counts[key] -= 1
                current.append(key)
                walk()
                current.pop()
                counts[key] += 1

    walk()
    return out


def _orders(sizes: dict[str, int], fixed: tuple[tuple[str, int | str], ...] | None,
            settings: SearchSettings) -> list[tuple[tuple[str, int], ...]]:
    """Candidate temporal loop nests, innermost first."""
    if fixed:  # the mapping file's order: named loops innermost, '*' = the rest of that dim, others outside
        left = {d: s for d, s in sizes.items() if s > 1}
        head: list[tuple[str, int]] = []
        for d, s in fixed:
            if left.get(d, 1) <= 1:
                continue
            take = left[d] if s == "*" else min(int(s), left[d])
            head.append((d, take))
            left[d] = -(-left[d] // take)
        rest = [(d, s) for d, s in left.items() if s > 1]
        return [tuple(head + rest)]
    return _unique_permutations(loop_factors(sizes, settings.lpf_limit))


def search(
    layer: Layer,
    acc: Accelerator,
    resolved: ResolvedMapping,
    objective: Callable[[ActionCounts], tuple[float, ...]],
    settings: SearchSettings = SearchSettings(),  # noqa: B008 - frozen
    source: str = "<mapping>",
    bound: Callable[[SpatialMapping, dict[str, int]], float] | None = None,
) -> ActionCounts:
    """The mapping of ``layer`` with the smallest ``objective`` (a tuple: primary, tie-breaks).

    ``bound(spatial, temporal_sizes)`` is a lower bound on the objective's primary value for every
    order of a spatial mapping; spatial mappings that cannot win are skipped.
    """
    hints = dict(DEFAULT_HINTS)
    if resolved.spatial_mapping_hint:
        hints.update(resolved.spatial_mapping_hint)
    spatial_all = candidates(layer, acc.macro, resolved.spatial_mapping, hints, settings.divisors_only)
    if not spatial_all:
        caps = capacities(acc.macro)
        raise InputError(
            source, f"layer '{layer.name}'",
            f"no spatial mapping fits: the fixed unrollings {resolved.spatial_mapping} exceed the array "
            f"({caps['D1']} columns, {caps['D2']} rows, {caps['D3']} macros)",
        )
    best: tuple[tuple[float, ...], ActionCounts] | None = None
    for spatial in best_candidates(layer, acc.macro, spatial_all, settings.keep_spatial):
        sizes = temporal_sizes(layer, spatial)
        if bound is not None and best is not None and best[0][0] < bound(spatial, sizes):
            continue  # no order of this spatial mapping can beat the best one found
        counter = ActionCounter(layer, acc, spatial, resolved.memory_operand_links)
        for order in _orders(sizes, resolved.temporal_ordering, settings):
            counts = counter.count(order)
            score = (*objective(counts), spatial.describe(), repr(order))
            if best is None or score < best[0]:
                best = (score, counts)
    assert best is not None
    return best[1]


def shape_key(layer: Layer) -> tuple:
    """What the mapping of a layer depends on: everything but its name and tensor names."""
    return (layer.op, layer.loops, layer.precision, layer.stride, layer.dilation, layer.weight_constant)


_CACHE: dict[tuple, ActionCounts] = {}
_CACHE_LIMIT = 4096


def search_cached(layer: Layer, acc: Accelerator, resolved: ResolvedMapping,
                  objective: Callable[[ActionCounts], tuple[float, ...]], objective_key: object,
                  settings: SearchSettings = SearchSettings(), source: str = "<mapping>",  # noqa: B008
                  bound: Callable[[SpatialMapping, dict[str, int]], float] | None = None) -> ActionCounts:
    """``search``, solved once per layer shape, accelerator, constraints and objective.

    ``objective_key`` names the objective (e.g. ("latency", zigzag_compat)); the counts of a layer
    with the same shape are reused whatever its name.
    """
    key = (shape_key(layer), acc, repr((resolved.memory_operand_links, resolved.spatial_mapping,
                                        resolved.spatial_mapping_hint, resolved.temporal_ordering)),
           objective_key, settings)
    hit = _CACHE.get(key)
    if hit is None:
        if len(_CACHE) >= _CACHE_LIMIT:
            _CACHE.clear()
        hit = _CACHE[key] = search(layer, acc, resolved, objective, settings, source, bound)
    return hit
