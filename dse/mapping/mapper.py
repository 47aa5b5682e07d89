"""The mapper: search spatial unrollings and temporal loop orders for the best mapping of a layer.

The objective is a function of the action counts handed in by the caller (the cost model prices
them), so the mapper knows nothing about energies. Spatial candidates come from the mapping file's
fixed unrollings and hints; the ``keep`` with the fewest temporal iterations are searched in full,
best first, skipping those whose lower bound cannot beat the best mapping found (with the mapping
file's ``weight_diagonal``, the ``keep`` best with it and the ``keep`` best without it, so the
option can only lower a layer's objective). For each spatial mapping, the
temporal loops are split into prime factors (so a memory level can hold part of a loop) and every
distinct order of the factors is tried, unless the mapping file fixes the order: all the orders of
a spatial mapping are counted and scored at once, as numpy arrays over the orders, with the same
arithmetic as one order at a time (so the same optimum, ties broken the same way). Results are
cached by layer shape, so the identical blocks of a network are solved once.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from dse.errors import InputError
from dse.hardware.schema import Accelerator
from dse.mapping import spatial as spatial_module
from dse.mapping.spatial import (
    DEFAULT_HINTS,
    SpatialMapping,
    best_candidates,
    candidates,
    capacities,
    temporal_sizes,
)
from dse.mapping.spec import ResolvedMapping
from dse.mapping.temporal import ActionCounter, ActionCounts, BatchCounts
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


@lru_cache(maxsize=64)
def _permutations(pattern: tuple[int, ...]) -> np.ndarray:
    """The distinct orders of a multiset of item codes (``pattern``, sorted, e.g. (0, 0, 1, 2)), one per row,
    in lexicographic order: equal factors of a dim are interchangeable."""
    if not pattern:
        return np.zeros((1, 0), dtype=np.int64)
    return np.array(sorted(set(itertools.permutations(pattern))), dtype=np.int64)


def order_table(sizes: dict[str, int], settings: SearchSettings) -> tuple[tuple[tuple[str, int], ...], np.ndarray]:
    """The searched temporal orders as the distinct loop factors and one row of indices into them per order
    (innermost first)."""
    factors = loop_factors(sizes, settings.lpf_limit)
    items = tuple(sorted(set(factors)))
    code = {item: i for i, item in enumerate(items)}
    return items, _permutations(tuple(code[f] for f in factors))


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
    items, perms = order_table(sizes, settings)
    return [tuple(items[i] for i in row) for row in perms.tolist()]


Batch = Callable[[BatchCounts], tuple[np.ndarray, ...]]


def _best_of_batch(keys: tuple[np.ndarray, ...], items: tuple[tuple[str, int], ...],
                   perms: np.ndarray) -> tuple[tuple[float, ...], tuple[tuple[str, int], ...]]:
    """The smallest objective over the rows of ``perms`` and its order; ties go to the smallest ``repr(order)``,
    as in the one-order-at-a-time search."""
    tied = np.ones(perms.shape[0], dtype=bool)
    best: list[float] = []
    for key in keys:
        key = np.broadcast_to(key, tied.shape)
        low = key[tied].min()
        tied &= key == low
        best.append(float(low))
    orders = [tuple(items[i] for i in perms[row]) for row in np.flatnonzero(tied)]
    return tuple(best), min(orders, key=repr)


def search(
    layer: Layer,
    acc: Accelerator,
    resolved: ResolvedMapping,
    objective: Callable[[ActionCounts], tuple[float, ...]],
    settings: SearchSettings = SearchSettings(),  # noqa: B008 - frozen
    source: str = "<mapping>",
    bound: Callable[[SpatialMapping, dict[str, int]], float] | None = None,
    batch: Batch | None = None,
) -> ActionCounts:
    """The mapping of ``layer`` with the smallest ``objective`` (a tuple: primary, tie-breaks).

    ``bound(spatial, temporal_sizes)`` is a lower bound on the objective's primary value for every
    order of a spatial mapping; spatial mappings that cannot win are skipped. ``batch``, the same
    objective on :class:`BatchCounts` (arrays over orders), scores all the orders of a spatial mapping at
    once; without it they are counted one by one.
    """
    hints = dict(DEFAULT_HINTS)
    if resolved.spatial_mapping_hint:
        hints.update(resolved.spatial_mapping_hint)
    keep = settings.keep_spatial
    spatial_all = candidates(layer, acc.macro, resolved.spatial_mapping, hints, settings.divisors_only,
                             resolved.weight_diagonal)
    searched = best_candidates(layer, acc.macro, spatial_all, keep)
    if resolved.weight_diagonal:  # also the mappings searched without the option: it can only lower the objective
        plain = candidates(layer, acc.macro, resolved.spatial_mapping, hints, settings.divisors_only)
        searched = best_candidates(layer, acc.macro, [*best_candidates(layer, acc.macro, plain, keep), *searched],
                                   2 * keep)
    if not spatial_all:
        caps = capacities(acc.macro)
        raise InputError(
            source, f"layer '{layer.name}'",
            f"no spatial mapping fits: the fixed unrollings {resolved.spatial_mapping} exceed the array "
            f"({caps['D1']} columns, {caps['D2']} rows, {caps['D3']} macros)",
        )
    best: tuple[tuple, ActionCounter, tuple[tuple[str, int], ...]] | None = None
    for spatial in searched:
        sizes = temporal_sizes(layer, spatial)
        if bound is not None and best is not None and best[0][0] < bound(spatial, sizes):
            continue  # no order of this spatial mapping can beat the best one found
        counter = ActionCounter(layer, acc, spatial, resolved.memory_operand_links)
        if batch is not None and not resolved.temporal_ordering:
            items, perms = order_table(sizes, settings)
            keys, order = _best_of_batch(batch(counter.count_many(items, perms)), items, perms)
            score = (*keys, spatial.describe(), repr(order))
            if best is None or score < best[0]:
                best = (score, counter, order)
            continue
        for order in _orders(sizes, resolved.temporal_ordering, settings):
            score = (*objective(counter.count(order)), spatial.describe(), repr(order))
            if best is None or score < best[0]:
                best = (score, counter, order)
    assert best is not None
    return best[1].count(best[2])


def shape_key(layer: Layer) -> tuple:
    """What the mapping of a layer depends on: everything but its name and tensor names."""
    return (layer.op, layer.loops, layer.precision, layer.stride, layer.dilation, layer.weight_constant)


_CACHE: dict[tuple, ActionCounts] = {}
_CACHE_LIMIT = 4096


def clear_caches() -> None:
    """Forget every solved layer and the memoised spatial options and loop orders (for cold timings)."""
    _CACHE.clear()
    _permutations.cache_clear()
    spatial_module._factors.cache_clear()
    spatial_module._best_options.cache_clear()
    spatial_module._diagonal_options.cache_clear()
    spatial_module.span.cache_clear()


def search_cached(layer: Layer, acc: Accelerator, resolved: ResolvedMapping,
                  objective: Callable[[ActionCounts], tuple[float, ...]], objective_key: object,
                  settings: SearchSettings = SearchSettings(), source: str = "<mapping>",  # noqa: B008
                  bound: Callable[[SpatialMapping, dict[str, int]], float] | None = None,
                  batch: Batch | None = None) -> ActionCounts:
    """``search``, solved once per layer shape, accelerator, constraints and objective.

    ``objective_key`` names the objective (e.g. ("latency", zigzag_compat)); the counts of a layer
    with the same shape are reused whatever its name.
    """
    key = (shape_key(layer), acc, repr((resolved.memory_operand_links, resolved.spatial_mapping,
                                        resolved.spatial_mapping_hint, resolved.temporal_ordering,
                                        resolved.weight_diagonal)),
           objective_key, settings)
    hit = _CACHE.get(key)
    if hit is None:
        if len(_CACHE) >= _CACHE_LIMIT:
            _CACHE.clear()
        hit = _CACHE[key] = search(layer, acc, resolved, objective, settings, source, bound, batch)
    return hit
