"""Spatial mapping: which loop dims unroll over the macro's columns (D1), rows (D2) and macros (D3).

An IMC array broadcasts each input along its row to every column, so a loop dim unrolled over the
columns that the *input* depends on (G for a depthwise conv, B, OX) needs its own rows for each
unrolled value: the used rows are the D2 product times that replication (a block-diagonal layout).
Unrollings need not divide the loop: the last temporal iteration then runs partly empty, which the
utilization reports.

Weight-diagonal mapping (the mapping file's ``weight_diagonal: true``; off by default, as in
ZigZag-IMC): with OX on the columns beside FX on the rows, the columns of a block read overlapping
input windows, so they can share rows along the diagonal: column ox holds the weight tile shifted
down by ox x stride rows. With Cu, FXu, FYu on the rows and OXu, OYu on the columns::

    rows = Cu x span(OXu, FXu) x span(OYu, FYu) x (the other input-relevant column unrollings: G, B)
    span(o, f) = |{i*stride + j*dilation : i < o, j < f}|,  = o + f - 1 at stride 1

(ZigZag's ``calculate_mapped_rows_when_diagonal_mapping_found`` uses o + f - 1 whatever the stride),
against Cu x FXu x FYu x OXu x OYu rows block-diagonally. The useful MACs per cycle do not change
(Ku x OXu x OYu x Cu x FXu x FYu): a column still sums Cu x FXu x FYu products; its other rows hold
zeros. What it costs is counted by ``dse.mapping.temporal``: every column stores its own copy of the
weight tile (the cells holding weights are the columns x the D2 product, so OXu x OYu copies are
written into the cells, from one read of the level above), and the zero cells sit in driven rows and
summed columns (the macro is priced at the used rows and columns). What it saves: rows, and input
traffic: every cycle each used row takes one input, and an input the overlapping windows of several
columns need is one row, where block-diagonally it is repeated in the rows of every column block
that needs it. ``spatial_utilization`` counts useful MACs; ``array_occupancy`` (used rows x columns
x macros over the array's) is reported beside it. The search (``candidates``) chooses the column and
row unrollings of the diagonal together, as the rows depend on both, and adds these mappings to the
plain ones; the mapper also searches the best plain ones, so the option never raises a layer's
objective.

Port bandwidth: no candidate is excluded for it (ZigZag caps the unrolling of a relevant dim by the
innermost memory's bandwidth, e.g. "K at D2 limited to 1 due to bandwidth of rf_2B"); it is charged
as stalls instead. Every move of data, including the array's own per-iteration traffic (one input
per used row read from the lowest input level, a partial sum per used column read from and written
to the lowest output level), takes cycles on the ports of its level (bits / (instances x word_bits x
ports)); the busiest level bounds the layer's latency and its excess over the compute cycles is
reported as stall cycles. So at equal compute the mapper prefers the unrolling that moves fewer
operands through a narrow port: an input level shared by the macros favours K over OX on D3, a
shared output level favours rows (reduction) over columns, and the diagonal feeds fewer inputs than
block-diagonal replication. Moves at one level are serialised (a conservative bound where a level
has separate read and write ports).
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


PAIRS = (("OX", "FX"), ("OY", "FY"))  # (output dim on the columns, its kernel dim on the rows)


@lru_cache(maxsize=4096)
def span(outputs: int, taps: int, stride: int, dilation: int) -> int:
    """Distinct input positions that ``outputs`` adjacent outputs of a ``taps``-tap window read."""
    if outputs == 1 or taps == 1:
        return outputs * taps
    return len({i * stride + j * dilation for i in range(outputs) for j in range(taps)})


@dataclass(frozen=True)
class SpatialMapping:
    """Unrollings per array dim, e.g. ``(("D1", (("K", 64),)), ("D2", (("C", 16), ("FX", 3))), ("D3", ()))``.

    ``diagonal`` = (stride_y, stride_x, dilation_y, dilation_x) when OX/OY on the columns share rows
    with FX/FY on the rows (a weight-diagonal layout), else None.
    """

    unrolling: tuple[tuple[str, tuple[tuple[str, int], ...]], ...]
    diagonal: tuple[int, int, int, int] | None = None

    @cached_property
    def _by_dim(self) -> dict[str, tuple[tuple[str, int], ...]]:
        return dict(self.unrolling)

    def on(self, array_dim: str) -> tuple[tuple[str, int], ...]:
        return self._by_dim.get(array_dim, ())

    def unroll(self, array_dim: str, dim: str) -> int:
        """How far ``dim`` is unrolled on ``array_dim``."""
        return product(s for d, s in self.on(array_dim) if d == dim)

    def used(self, array_dim: str) -> int:
        """Array positions the unrolling occupies along ``array_dim`` (rows include replication)."""
        if array_dim == "D2" and self.diagonal is not None:
            return self._diagonal_rows
        base = product(s for _, s in self.on(array_dim))
        if array_dim == "D2":
            base *= product(s for d, s in self.on("D1") if is_relevant("I", d))
        return base

    @cached_property
    def _diagonal_rows(self) -> int:
        assert self.diagonal is not None
        sy, sx, dy, dx = self.diagonal
        rows = product(s for d, s in self.on("D2") if d not in ("FX", "FY"))
        rows *= product(s for d, s in self.on("D1") if is_relevant("I", d) and d not in ("OX", "OY"))
        rows *= span(self.unroll("D1", "OX"), self.unroll("D2", "FX"), sx, dx)
        return rows * span(self.unroll("D1", "OY"), self.unroll("D2", "FY"), sy, dy)

    @property
    def weight_rows(self) -> int:
        """Rows of one column that hold weights: the D2 product (the rest of the used rows hold zeros)."""
        return product(s for _, s in self.on("D2"))

    def per_loop(self) -> dict[str, int]:
        """Total spatial unroll of each loop dim (over all array dims)."""
        out = dict.fromkeys(LOOP_DIMS, 1)
        for _, pairs in self.unrolling:
            for d, s in pairs:
                out[d] *= s
        return out

    def describe(self) -> str:
        text = "; ".join(f"{a}: " + " ".join(f"{d}{s}" for d, s in pairs) for a, pairs in self.unrolling if pairs)
        return text + " (diagonal)" if self.diagonal is not None else text


def make_mapping(unrolling: tuple[tuple[str, tuple[tuple[str, int], ...]], ...],
                 geometry: tuple[int, int, int, int] | None) -> SpatialMapping:
    """The mapping of ``unrolling``: weight-diagonal (``geometry`` = strides and dilations, y then x) where
    OX/OY on the columns meet FX/FY on the rows, else plain (each column block with rows of its own)."""
    plain = SpatialMapping(unrolling)
    if geometry is not None and any(plain.unroll("D1", o) > 1 and plain.unroll("D2", f) > 1 for o, f in PAIRS):
        return SpatialMapping(unrolling, geometry)
    return plain


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


@lru_cache(maxsize=4096)
def _smallest_unrolls(size: int, cap: int, divisors_only: bool) -> tuple[int, ...]:
    """The smallest unroll of a loop of ``size`` for each number of iterations it can leave, within ``cap``."""
    return tuple(u for u in _factors(size, cap, divisors_only) if ceil_div(size, ceil_div(size, u)) == u)


Option = tuple[tuple[str, int], ...]


@lru_cache(maxsize=4096)
def _diagonal_options(base_dims: tuple[str, ...], base_sizes: tuple[int, ...], row_dims: tuple[str, ...],
                      row_sizes: tuple[int, ...], row_fixed: Option | None, ox: int, oy: int, columns: int, rows: int,
                      geometry: tuple[int, int, int, int], divisors_only: bool) -> tuple[tuple[Option, Option], ...]:
    """Column and row unrollings chosen together for a weight-diagonal layout: the hinted column dims
    (``base_dims``) and OX, OY on the columns, the row dims with FX, FY sized by the diagonal span; the
    ``OPTIONS_PER_ARRAY_DIM`` that leave the fewest iterations (then use the fewest positions)."""
    sy, sx, dy, dx = geometry
    row_size = dict(zip(row_dims, row_sizes, strict=True))
    others = tuple(d for d in row_dims if d not in ("FX", "FY"))
    other_sizes = tuple(row_size[d] for d in others)
    fixed = dict(row_fixed or ())
    scored: dict[tuple[Option, Option], tuple[int, int]] = {}
    for u in _smallest_unrolls(ox, columns, divisors_only):
        for v in _smallest_unrolls(oy, columns // u, divisors_only):
            if u * v > rows:  # each column of a diagonal block needs its own input row at least
                break
            bases = _best_options(base_dims, base_sizes, columns // (u * v), divisors_only)
            if not any(is_relevant("I", d) for d in base_dims):
                bases = bases[:1]  # the most columns for them: they cost no rows
            for base in bases:
                base_left = base_used = 1
                replication = 1
                factor = dict(base)
                for d in set(base_dims):
                    base_left *= ceil_div(base_sizes[base_dims.index(d)], factor.get(d, 1))
                for d, f in base:
                    base_used *= f
                    if is_relevant("I", d):
                        replication *= f
                budget = rows // replication
                ext = ((("OX", u),) if u > 1 else ()) + ((("OY", v),) if v > 1 else ())
                left_ext = base_left * ceil_div(ox, u) * ceil_div(oy, v)
                columns_used = base_used * u * v
                if row_fixed is not None:
                    fx, fy = fixed.get("FX", 1), fixed.get("FY", 1)
                    other_used = product(f for d, f in row_fixed if d not in ("FX", "FY"))
                    used = other_used * span(u, fx, sx, dx) * span(v, fy, sy, dy)
                    if used <= budget:
                        scored[(base + ext, row_fixed)] = (left_ext, columns_used * used * replication)
                    continue
                for fx in _smallest_unrolls(row_size["FX"], budget, divisors_only) if "FX" in row_size else (1,):
                    for fy in _smallest_unrolls(row_size["FY"], budget, divisors_only) if "FY" in row_size else (1,):
                        taps = span(u, fx, sx, dx) * span(v, fy, sy, dy)
                        if taps > budget:
                            break
                        other = _best_options(others, other_sizes, budget // taps, divisors_only)[0]
                        unrolled = {**dict(other), "FX": fx, "FY": fy}
                        option = tuple((d, unrolled[d]) for d in row_dims if unrolled.get(d, 1) > 1)
                        left = left_ext
                        for d in row_dims:
                            left *= ceil_div(row_size[d], unrolled.get(d, 1))
                        used = product(f for _, f in other) * taps * replication
                        scored[(base + ext, option)] = (left, columns_used * used)
    if len(scored) > OPTIONS_PER_ARRAY_DIM:  # only the options up to the cut need the repr tie-break
        cut = heapq.nsmallest(OPTIONS_PER_ARRAY_DIM, scored.values())[-1]
        scored = {option: key for option, key in scored.items() if key <= cut}
    ranked = sorted(scored.items(), key=lambda item: (item[1], repr(item[0])))
    return tuple(option for option, _ in ranked[:OPTIONS_PER_ARRAY_DIM])


def candidates(
    layer: Layer,
    macro: Macro,
    fixed: dict[str, tuple[tuple[str, int], ...]] | None = None,
    hints: dict[str, tuple[str, ...]] | None = None,
    divisors_only: bool = False,
    weight_diagonal: bool = False,
) -> list[SpatialMapping]:
    """All spatial mappings within the fixed unrollings and hints that fit the array.

    With ``weight_diagonal``, also the mappings that add OX and OY to the columns with their rows shared
    along the diagonal (unless the columns are fixed); the column and row unrollings are then chosen
    together, since the rows they need depend on both.
    """
    fixed = fixed or {}
    hints = hints or DEFAULT_HINTS
    caps = capacities(macro)
    results: list[SpatialMapping] = []
    geometry = (*layer.stride, *layer.dilation) if weight_diagonal else None

    def clipped(array_dim: str, remaining: dict[str, int]) -> Option:
        return tuple((d, min(s, remaining[d])) for d, s in fixed[array_dim] if min(s, remaining[d]) > 1)

    def walk(i: int, remaining: dict[str, int], chosen: list[tuple[str, Option]]) -> None:
        if i == len(ARRAY):
            mapping = make_mapping(tuple(chosen), geometry)
            if all(mapping.used(a) <= caps[a] for a in ARRAY):
                results.append(mapping)
            return
        array_dim = ARRAY[i]
        if array_dim in fixed:
            options = [clipped(array_dim, remaining)]
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

    loops = layer.loops.as_dict()
    walk(0, loops, [])
    if geometry is not None and "D1" not in fixed and loops["OX"] * loops["OY"] > 1:
        base_dims = tuple(d for d in hints.get("D1", ()) if d not in ("OX", "OY"))
        row_dims = tuple(dict.fromkeys(hints.get("D2", ())))
        row_fixed = clipped("D2", loops) if "D2" in fixed else None
        for columns, rows in _diagonal_options(
                base_dims, tuple(loops[d] for d in base_dims), row_dims, tuple(loops[d] for d in row_dims),
                row_fixed, loops["OX"], loops["OY"], caps["D1"], caps["D2"], geometry, divisors_only):
            left = dict(loops)
            for d, s in columns + rows:
                left[d] = ceil_div(left[d], s)
            walk(2, left, [("D1", columns), ("D2", rows)])
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
