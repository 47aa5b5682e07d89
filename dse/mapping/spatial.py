"""Spatial mapping: which loop dims unroll over the macro's columns (D1), rows (D2) and macros (D3).

An IMC array broadcasts each input along its row to every column, so a loop dim unrolled over the
columns that the *input* depends on (G for a depthwise conv, OX for a diagonal mapping) needs its
own rows for each unrolled value: the used rows are the D2 product times that replication (a
block-diagonal layout). Unrollings need not divide the loop: the last temporal iteration then runs
partly empty, which the utilization reports.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property, lru_cache

from dse.hardware.schema import Macro
from dse.mapping.loops import ceil_div, is_relevant, product
from dse.workload.layer import LOOP_DIMS, Layer

ARRAY = ("D1", "D2", "D3")
OPTIONS_PER_ARRAY_DIM = 6  # unrollings kept per array dim, best first: bounds the search at 6^3
DEFAULT_HINTS: dict[str, tuple[str, ...]] = {"D1": ("K",), "D2": ("C", "FX", "FY"), "D3": ("K", "OX", "OY")}


@dataclass(frozen=True)
class SpatialMapping:
    """Unrollings per array dim, e.g. ``(("D1", (("K", 64),)), ("D2", (("C", 16), ("FX", 3))), ("D3", ()))``."""

    unrolling: tuple[tuple[str, tuple[tuple[str, int], ...]], ...]

    @cached_property
    def _by_dim(self) -> dict[str, tuple[tuple[str, int], ...]]:
        return dict(self.unrolling)

    def on(self, array_dim: str) -> tuple[tuple[str, int], ...]:
        return self._by_dim.get(array_dim, ())

    def used(self, array_dim: str) -> int:
        """Array positions the unrolling occupies along ``array_dim`` (rows include replication)."""
        base = product(s for _, s in self.on(array_dim))
        if array_dim == "D2":
            base *= product(s for d, s in self.on("D1") if is_relevant("I", d))
        return base

    def per_loop(self) -> dict[str, int]:
        """Total spatial unroll of each loop dim (over all array dims)."""
        out = dict.fromkeys(LOOP_DIMS, 1)
        for _, pairs in self.unrolling:
            for d, s in pairs:
                out[d] *= s
        return out

    def describe(self) -> str:
        return "; ".join(f"{a}: " + " ".join(f"{d}{s}" for d, s in pairs) for a, pairs in self.unrolling if pairs)


def capacities(macro: Macro) -> dict[str, int]:
    return {"D1": macro.columns, "D2": macro.rows_per_conversion, "D3": macro.count}


@lru_cache(maxsize=4096)
def _factors(size: int, cap: int, divisors_only: bool = False) -> tuple[int, ...]:
    """Useful unroll factors of a loop of ``size`` on at most ``cap`` positions.

    Its divisors; the values cap // j, which leave room for j-fold unrolling of the next dims
    (C = 14 beside FX = FY = 3 on 128 rows); and each balanced split ceil(size / t). ZigZag-IMC
    unrolls by divisors only (``divisors_only``).
    """
    if cap < 1:
        return (1,)
    top = min(size, cap)
    found = {u for u in range(1, math.isqrt(size) + 1) if size % u == 0}
    found.update(size // u for u in list(found))
    if divisors_only:
        return tuple(sorted(u for u in found if u <= top))
    j = 1
    while j <= cap:  # the distinct values of cap // j, O(sqrt(cap)) of them
        found.add(cap // j)
        j = cap // (cap // j) + 1
    found.update(ceil_div(size, ceil_div(size, u)) for u in list(found) if 1 <= u <= top)
    return tuple(sorted(u for u in found if 1 <= u <= top))


def _assignments(dims: tuple[str, ...], remaining: dict[str, int], cap: int,
                 divisors_only: bool = False) -> Iterator[tuple[tuple[str, int], ...]]:
    """Every unrolling of ``dims`` (each by a useful factor) whose product fits ``cap``."""
    if not dims:
        yield ()
        return
    first, rest = dims[0], dims[1:]
    for u in _factors(remaining[first], cap, divisors_only):
        head = ((first, u),) if u > 1 else ()
        for tail in _assignments(rest, remaining, cap // u, divisors_only):
            yield head + tail


@lru_cache(maxsize=4096)
def _best_options(dims: tuple[str, ...], remaining: tuple[int, ...], cap: int,
                  divisors_only: bool) -> tuple[tuple[tuple[str, int], ...], ...]:
    """The unrollings of one array dim that leave the fewest iterations of its dims (then use the
    fewest positions), at most ``OPTIONS_PER_ARRAY_DIM`` of them; ``remaining`` holds the sizes of ``dims``."""
    sizes = dict(zip(dims, remaining, strict=True))
    unique = set(_assignments(dims, sizes, cap, divisors_only))
    distinct = set(dims)
    scored = []
    for option in unique:
        factor = dict(option)
        left = used = 1
        for d in distinct:
            left *= ceil_div(sizes[d], factor.get(d, 1))
        for u in factor.values():
            used *= u
        scored.append(((left, used), option))
    if len(scored) > OPTIONS_PER_ARRAY_DIM:  # only the options up to the cut need the repr tie-break
        cut = heapq.nsmallest(OPTIONS_PER_ARRAY_DIM, (key for key, _ in scored))[-1]
        scored = [item for item in scored if item[0] <= cut]
    scored.sort(key=lambda item: (item[0], repr(item[1])))
    return tuple(option for _, option in scored[:OPTIONS_PER_ARRAY_DIM])


def candidates(
    layer: Layer,
    macro: Macro,
    fixed: dict[str, tuple[tuple[str, int], ...]] | None = None,
    hints: dict[str, tuple[str, ...]] | None = None,
    divisors_only: bool = False,
) -> list[SpatialMapping]:
    """All spatial mappings within the fixed unrollings and hints that fit the array."""
    fixed = fixed or {}
    hints = hints or DEFAULT_HINTS
    caps = capacities(macro)
    results: list[SpatialMapping] = []

    def walk(i: int, remaining: dict[str, int], chosen: list[tuple[str, tuple[tuple[str, int], ...]]]) -> None:
        if i == len(ARRAY):
            mapping = SpatialMapping(tuple(chosen))
            if all(mapping.used(a) <= caps[a] for a in ARRAY):
                results.append(mapping)
            return
        array_dim = ARRAY[i]
        if array_dim in fixed:
            options = [tuple((d, min(s, remaining[d])) for d, s in fixed[array_dim] if min(s, remaining[d]) > 1)]
        else:
            cap = caps[array_dim]
            if array_dim == "D2":  # rows replicated for input-relevant dims on the columns
                cap //= product(s for d, s in dict(chosen).get("D1", ()) if is_relevant("I", d))
            dims = tuple(hints.get(array_dim, ()))
            options = list(_best_options(dims, tuple(remaining[d] for d in dims), cap, divisors_only))
        for option in options:
            left = dict(remaining)
            for d, s in option:
                left[d] = ceil_div(left[d], s)
            walk(i + 1, left, [*chosen, (array_dim, option)])

    walk(0, layer.loops.as_dict(), [])
    return results


def temporal_sizes(layer: Layer, spatial: SpatialMapping) -> dict[str, int]:
    """Loop sizes left for the temporal loops after the spatial unrolling (ceil division)."""
    unroll = spatial.per_loop()
    return {d: ceil_div(layer.loops[d], unroll[d]) for d in LOOP_DIMS}


def best_candidates(layer: Layer, macro: Macro, maps: list[SpatialMapping], keep: int) -> list[SpatialMapping]:
    """The ``keep`` mappings with the fewest temporal iterations (then the fewest positions used)."""

    def key(m: SpatialMapping) -> tuple[int, int, str]:
        iterations = product(temporal_sizes(layer, m).values())
        return iterations, product(m.used(a) for a in ARRAY), m.describe()

    unique = {m.describe(): m for m in maps}
    return sorted(unique.values(), key=key)[:keep]
