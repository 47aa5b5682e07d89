"""Temporal mapping: a loop order over the memory levels, and the actions it implies.

Given a spatial mapping and an order of the remaining (temporal) loops, innermost first, every
operand's loops are allocated bottom-up to its memory levels: a level keeps the largest innermost
tile that fits its capacity (``uneven`` allocation: each operand cuts the nest where its own levels
fill). A level is refilled once per iteration of the loops above its tile, except for a run of
loops directly above the tile that the operand does not depend on: the tile stays (stationarity).
Weights always sit lowest in the macro's cells: with one weight per cell group, only loops the
weights do not depend on (B, OX, OY) can turn inside the cells, which is what weight-stationary
means.

The spatial mapping fixes each level's instances and the tile each one serves (its served array
dims' unrollings). Two rules follow the array's layout (``dse.mapping.spatial``): an input level
that serves the columns but not the rows (a register per row) holds that row's one input, since the
columns' input-relevant unrollings (G, B, OX, block-diagonal or weight-diagonal) already have rows
of their own; and the cells count the ones holding weights, columns x the D2 product, so a weight
tile replicated over OX (or B) columns is written once per column, from one read above. Every
iteration the array reads one input per used row from the lowest input level and reads and writes
a partial sum per used column at the lowest output level; those bits, like every move between
levels, take port cycles (bits / (instances x word_bits x ports)), and the busiest level bounds the
latency: the stall cycles are its excess over the compute cycles.

The result is an :class:`ActionCounts`: accesses per memory level and operand, weights written into
the cells, macro activations, cycles. It is the seam to the cost model, which prices the actions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from dse.hardware.schema import Accelerator
from dse.mapping.loops import RELEVANT, product, window
from dse.mapping.spatial import ARRAY, SpatialMapping, capacities
from dse.workload.layer import LOOP_DIMS, Layer

CELLS = "cells"


@dataclass(frozen=True)
class LevelTraffic:
    """Bits read from and written into one memory level for one layer operand."""

    level: str
    operand: str  # W, I or O
    read_bits: float
    write_bits: float
    instances: int


@dataclass(frozen=True)
class ActionCounts:
    """What one layer does on the hardware under one mapping (no energies: those are the cost model's)."""

    macs: int
    spatial: SpatialMapping
    order: tuple[tuple[str, int], ...]  # temporal loops, innermost first
    allocation: dict[str, tuple[tuple[str, int], ...]]  # operand -> (level, loops it holds) lowest first
    temporal_iterations: int
    cycles_per_mac: int
    rows_mapped: int  # per macro
    columns_mapped: int  # per macro
    macros_used: int
    activations: float  # full-MAC macro activations (ZigZag's A)
    weights_written: float
    precharges: float  # cell-group precharges (cells_per_group > 1)
    traffic: tuple[LevelTraffic, ...]
    compute_cycles: int
    stall_cycles: float
    weight_load_cycles: float
    transfer_cycles: dict[str, float] = field(default_factory=dict)  # per memory level, all operands
    peak_macs_per_iteration: int = 1  # the array's MACs per temporal iteration at full use

    @property
    def latency_cycles(self) -> float:
        return self.compute_cycles + self.stall_cycles + self.weight_load_cycles

    @property
    def spatial_utilization(self) -> float:
        """Useful MACs per cycle over the array's peak (rows x columns x macros), averaged over the layer."""
        return self.macs / (self.temporal_iterations * self.peak_macs_per_iteration)

    @property
    def array_occupancy(self) -> float:
        """Array positions the mapping occupies (used rows x columns x macros) over the array's: above the
        utilization where rows hold zero weights (block-diagonal and diagonal layouts) or loops do not divide."""
        return self.rows_mapped * self.columns_mapped * self.macros_used / self.peak_macs_per_iteration


class BatchTraffic(NamedTuple):
    """:class:`LevelTraffic` for many orders: bits as arrays over the orders."""

    level: str
    operand: str
    read_bits: np.ndarray
    write_bits: np.ndarray


@dataclass(frozen=True)
class BatchCounts:
    """The counts that depend on the loop order, for many orders of one spatial mapping: arrays over the
    orders, computed with the same arithmetic (and so the same values) as :meth:`ActionCounter.count`."""

    traffic: tuple[BatchTraffic, ...]
    latency_cycles: np.ndarray
    weights_written: np.ndarray
    precharges: np.ndarray
    activations: float
    cycles_per_mac: int
    rows_mapped: int
    columns_mapped: int


@dataclass(frozen=True)
class _Level:
    name: str
    capacity_bits: float  # per instance
    served: frozenset[str]
    read_bits_per_cycle: float  # per instance
    write_bits_per_cycle: float
    shared_port: bool


def operand_levels(acc: Accelerator, links: dict[str, str]) -> dict[str, list[_Level]]:
    """The memory levels of each layer operand, lowest first; the weights start in the cells."""
    macro = acc.macro
    out: dict[str, list[_Level]] = {"W": [_Level(CELLS, macro.cells_per_group * macro.weight_bits, frozenset(),
                                                 macro.weight_bits, macro.weight_bits, True)]}
    out.setdefault("I", [])
    out.setdefault("O", [])
    for mem in acc.memories:
        for operand in ("W", "I", "O"):
            if links[operand] in mem.operands:
                capacity = mem.size_bits / (2 if mem.double_buffered else 1)
                ports = mem.ports
                rw = ports.read_write
                out[operand].append(_Level(
                    mem.name, capacity, frozenset(mem.served_dimensions),
                    (ports.read + rw) * mem.word_bits, (ports.write + rw) * mem.word_bits,
                    shared_port=ports.read == 0 or ports.write == 0,
                ))
    return out


def port_cycles(level: _Level, read_bits: float | np.ndarray, write_bits: float | np.ndarray,
                instances: int) -> float | np.ndarray:
    """Cycles the ports of each of ``instances`` copies of ``level`` need to move these bits (on floats or arrays)."""
    if level.shared_port:
        return (read_bits + write_bits) / (instances * level.read_bits_per_cycle)
    return np.maximum(read_bits / (instances * level.read_bits_per_cycle),
                      write_bits / (instances * level.write_bits_per_cycle))


def psum_bits(layer: Layer) -> int:
    """Partial sums are kept at twice the input precision (ZigZag-IMC's convention)."""
    return 2 * layer.precision.I


DIM_INDEX = {d: i for i, d in enumerate(LOOP_DIMS)}
_B, _K, _C, _OY, _OX, _FY, _FX, _G = range(8)
_RELEVANT_IDX = {op: frozenset(DIM_INDEX[d] for d in dims) for op, dims in RELEVANT.items()}
_RELEVANT_MASK = {op: np.array([i in dims for i in range(8)]) for op, dims in _RELEVANT_IDX.items()}


class _Footprint:
    """Footprints on 8-vectors of loop sizes (indexed as LOOP_DIMS): the hot path of the search."""

    def __init__(self, layer: Layer):
        self.sy, self.sx = layer.stride
        self.dy, self.dx = layer.dilation
        self.full_y, self.full_x = layer.input_size

    def __call__(self, operand: str, t: list[int]) -> int:
        if operand == "W":
            return t[_G] * t[_K] * t[_C] * t[_FY] * t[_FX]
        if operand == "O":
            return t[_B] * t[_G] * t[_K] * t[_OY] * t[_OX]
        return t[_B] * t[_G] * t[_C] * window(t[_OY], t[_FY], self.sy, self.dy, self.full_y) * window(
            t[_OX], t[_FX], self.sx, self.dx, self.full_x)


    def many(self, operand: str, cum: np.ndarray, base: tuple[int, ...]) -> np.ndarray:
        """``__call__`` on the tiles ``base * cum``, ``cum`` holding one array of sizes per dim (first axis)."""
        dims = (_G, _K, _C, _FY, _FX) if operand == "W" else (_B, _G, _K, _OY, _OX) if operand == "O" else (_B, _G, _C)
        out = cum[dims[0]] * base[dims[0]]
        for d in dims[1:]:
            out = out * (cum[d] * base[d])
        if operand != "I":
            return out
        rows = _windows(cum[_OY] * base[_OY], cum[_FY] * base[_FY], self.sy, self.dy, self.full_y)
        return out * rows * _windows(cum[_OX] * base[_OX], cum[_FX] * base[_FX], self.sx, self.dx, self.full_x)


def _windows(out: np.ndarray, kernel: np.ndarray, stride: int, dilation: int, full: int) -> np.ndarray:
    """``window`` on arrays."""
    reach = (kernel - 1) * dilation + 1
    return np.where(reach < stride, np.minimum(out * reach, full), np.minimum((out - 1) * stride + reach, full))


@dataclass(frozen=True)
class _Chain:
    """One operand's levels with what is fixed for a spatial mapping: served tile and instance count."""

    levels: tuple[_Level, ...]
    base: tuple[tuple[int, ...], ...]  # spatial tile each level's instance covers, as 8-vectors
    instances: tuple[int, ...]


class ActionCounter:
    """Counts the actions of one layer under one spatial mapping, for any temporal loop order."""

    def __init__(self, layer: Layer, acc: Accelerator, spatial: SpatialMapping, links: dict[str, str]):
        self.layer, self.acc, self.spatial = layer, acc, spatial
        self.fp = _Footprint(layer)
        self.bits = {"W": layer.precision.W, "I": layer.precision.I, "O": psum_bits(layer)}
        self.chains: dict[str, _Chain] = {}
        for operand, levels in operand_levels(acc, links).items():
            if not levels:
                continue
            bases, counts = [], []
            for level in levels:
                vec = [1] * 8
                for array_dim in ARRAY:
                    # an input level per row (serving the columns, not the rows) holds that row's one input:
                    # the columns' input-relevant unrollings are already rows of their own
                    if array_dim in level.served and not (operand == "I" and array_dim == "D1"
                                                          and "D2" not in level.served):
                        for d, s in spatial.on(array_dim):
                            vec[DIM_INDEX[d]] *= s
                bases.append(tuple(vec))
                if level.name == CELLS:  # the cells holding weights: each column's D2 product
                    counts.append(spatial.used("D1") * spatial.weight_rows * spatial.used("D3"))
                else:
                    counts.append(product(spatial.used(a) for a in ARRAY if a not in level.served))
            self.chains[operand] = _Chain(tuple(levels), tuple(bases), tuple(counts))
        caps = capacities(acc.macro)
        self.peak = caps["D1"] * caps["D2"] * caps["D3"]
        self.d1_d2 = product(s for a in ("D1", "D2") for _, s in spatial.on(a))
        self.used = tuple(spatial.used(a) for a in ARRAY)

    def count(self, order: tuple[tuple[str, int], ...]) -> ActionCounts:
        """Allocate ``order`` (temporal loops, innermost first) to every operand's levels and count the actions."""
        layer, macro, fp, bits = self.layer, self.acc.macro, self.fp, self.bits
        idx = [DIM_INDEX[d] for d, _ in order]
        sizes = [s for _, s in order]
        n = len(order)
        total = product(sizes)
        # suffix products: iterations of the loops above position b
        above = [1] * (n + 1)
        for b in range(n - 1, -1, -1):
            above[b] = above[b + 1] * sizes[b]
        traffic: list[LevelTraffic] = []
        allocation: dict[str, tuple[tuple[str, int], ...]] = {}
        transfer: dict[str, float] = {}
        weight_load = 0.0
        cells_boundary = 0

        for operand, chain in self.chains.items():
            relevant = _RELEVANT_IDX[operand]
            word = bits[operand]
            levels = chain.levels
            # bottom-up allocation: each level keeps the largest innermost tile that fits
            bounds: list[int] = []
            b = 0
            for j, level in enumerate(levels):
                if j == len(levels) - 1:
                    b = n
                else:
                    tile = list(chain.base[j])
                    for k in range(b):
                        tile[idx[k]] *= sizes[k]
                    while b < n:
                        tile[idx[b]] *= sizes[b]
                        if fp(operand, tile) * word > level.capacity_bits:
                            break
                        b += 1
                bounds.append(b)
            allocation[operand] = tuple((lvl.name, bnd) for lvl, bnd in zip(levels, bounds, strict=True))
            if operand == "W":
                cells_boundary = bounds[0]

            for j in range(len(levels) - 1):
                lower, upper = levels[j], levels[j + 1]
                bj = bounds[j]
                run = 1
                for k in range(bj, n):
                    if idx[k] in relevant:
                        break
                    run *= sizes[k]
                fills = above[bj] / run
                lower_tile, upper_tile = list(chain.base[j]), list(chain.base[j + 1])
                for k in range(bj):
                    lower_tile[idx[k]] *= sizes[k]
                    upper_tile[idx[k]] *= sizes[k]
                n_lower, n_upper = chain.instances[j], chain.instances[j + 1]
                if operand == "O":
                    distinct = product(sizes[k] for k in range(bj, n) if idx[k] in relevant)
                    per_transfer = fp("O", lower_tile) * n_lower
                    final = distinct * per_transfer * layer.precision.O
                    partial = (fills - distinct) * per_transfer * word
                    up, down = final + partial, partial
                    traffic.append(LevelTraffic(upper.name, "O", down, up, n_upper))
                    traffic.append(LevelTraffic(lower.name, "O", up, down, n_lower))
                    moved = ((upper, down, up, n_upper), (lower, up, down, n_lower))
                else:
                    read_upper = fills * fp(operand, upper_tile) * n_upper * word
                    write_lower = fills * fp(operand, lower_tile) * n_lower * word
                    traffic.append(LevelTraffic(upper.name, operand, read_upper, 0.0, n_upper))
                    traffic.append(LevelTraffic(lower.name, operand, 0.0, write_lower, n_lower))
                    moved = ((upper, read_upper, 0.0, n_upper), (lower, 0.0, write_lower, n_lower))
                for level, rd, wr, count in moved:
                    if level.name == CELLS:
                        continue
                    if level.shared_port:
                        cycles = (rd + wr) / (count * level.read_bits_per_cycle)
                    else:
                        cycles = max(rd / (count * level.read_bits_per_cycle),
                                     wr / (count * level.write_bits_per_cycle))
                    if operand == "W":
                        weight_load = max(weight_load, cycles)
                    transfer[level.name] = transfer.get(level.name, 0.0) + cycles

            # the array reads inputs from the lowest input level and writes partial sums into the lowest output
            # level, every iteration: through that level's ports too
            lowest = levels[0]
            if operand in ("I", "O") and lowest.name != CELLS:
                per_iteration = fp(operand, list(chain.base[0])) * chain.instances[0] * word
                moved_bits = total * per_iteration
                written_bits = moved_bits if operand == "O" else 0.0
                traffic.append(LevelTraffic(lowest.name, operand, moved_bits, written_bits, chain.instances[0]))
                feed = float(port_cycles(lowest, moved_bits, written_bits, chain.instances[0]))
                transfer[lowest.name] = transfer.get(lowest.name, 0.0) + feed

        compute = total * macro.cycles_per_mac
        # A level's ports serve all the operands it holds: the busiest level bounds the layer. Weights
        # for the next tile can be written behind the computation only where cell groups hold more
        # than one weight; otherwise the macro waits for them.
        if macro.cells_per_group > 1:
            weight_load = 0.0
        busiest = max(transfer.values(), default=0.0)
        latency = max(compute + weight_load, busiest)
        w_inner = product(sizes[k] for k in range(cells_boundary) if idx[k] not in _RELEVANT_IDX["W"])
        written = sum(t.write_bits for t in traffic if t.level == CELLS) / layer.precision.W
        d1, d2, d3 = self.used
        return ActionCounts(
            macs=layer.macs,
            spatial=self.spatial,
            order=order,
            allocation=allocation,
            temporal_iterations=total,
            cycles_per_mac=macro.cycles_per_mac,
            rows_mapped=d2,
            columns_mapped=d1,
            macros_used=d3,
            activations=layer.macs / self.d1_d2,
            weights_written=written,
            precharges=(total / max(1, w_inner)) * d1 * d2 * d3 if macro.cells_per_group > 1 else 0.0,
            traffic=tuple(traffic),
            compute_cycles=compute,
            stall_cycles=latency - compute - weight_load,
            weight_load_cycles=weight_load,
            transfer_cycles=transfer,
            peak_macs_per_iteration=self.peak,
        )


    def count_many(self, items: tuple[tuple[str, int], ...], perms: np.ndarray) -> BatchCounts:
        """:meth:`count` for every order ``tuple(items[i] for i in row)``, ``row`` a row of ``perms``.

        The same allocation and traffic rules, step for step, on arrays over the orders: the costs are
        identical to :meth:`count`'s, so the search can score all the orders of a spatial mapping at once.
        """
        layer, macro, fp, bits = self.layer, self.acc.macro, self.fp, self.bits
        count, n = perms.shape
        rows = np.arange(count)
        idx = np.array([DIM_INDEX[d] for d, _ in items], dtype=np.int64)[perms]
        sizes = np.array([s for _, s in items], dtype=np.int64)[perms]
        total = product(items[i][1] for i in perms[0].tolist())
        # cum[d, :, p]: the size of dim d in the loops below position p; above[:, b]: iterations above b
        cum = np.ones((8, count, n + 1), dtype=np.int64)
        above = np.ones((count, n + 1), dtype=np.int64)
        for p in range(n):
            cum[:, :, p + 1] = cum[:, :, p]
            cum[idx[:, p], rows, p + 1] *= sizes[:, p]
            above[:, n - 1 - p] = above[:, n - p] * sizes[:, n - 1 - p]
        positions = np.arange(n)
        traffic: list[BatchTraffic] = []
        transfer: dict[str, np.ndarray] = {}
        weight_load: np.ndarray | float = 0.0
        cells_boundary = np.zeros(count, dtype=np.int64)
        w_irrelevant_below = np.ones((count, n + 1), dtype=np.int64)

        for operand, chain in self.chains.items():
            relevant = _RELEVANT_MASK[operand][idx]
            word = bits[operand]
            levels = chain.levels
            fps = [fp.many(operand, cum, base) for base in chain.base]
            bounds: list[np.ndarray] = []
            b = np.zeros(count, dtype=np.int64)
            for j, level in enumerate(levels):
                if j == len(levels) - 1 or n == 0:
                    b = np.full(count, n, dtype=np.int64)
                else:  # the first loop at or above b whose addition overflows the level
                    over = (fps[j][:, 1:] * word > level.capacity_bits) & (positions >= b[:, None])
                    b = np.where(over.any(axis=1), over.argmax(axis=1), n)
                bounds.append(b)
            # products of the loops from position k up: the irrelevant run directly above k, the relevant ones
            run_from = np.ones((count, n + 1), dtype=np.int64)
            relevant_from = np.ones((count, n + 1), dtype=np.int64)
            for k in range(n - 1, -1, -1):
                run_from[:, k] = np.where(relevant[:, k], 1, sizes[:, k] * run_from[:, k + 1])
                relevant_from[:, k] = np.where(relevant[:, k], sizes[:, k] * relevant_from[:, k + 1],
                                               relevant_from[:, k + 1])
            if operand == "W":
                cells_boundary = bounds[0]
                for k in range(n):
                    w_irrelevant_below[:, k + 1] = np.where(relevant[:, k], w_irrelevant_below[:, k],
                                                            w_irrelevant_below[:, k] * sizes[:, k])

            for j in range(len(levels) - 1):
                lower, upper = levels[j], levels[j + 1]
                bj = bounds[j]
                fills = above[rows, bj] / run_from[rows, bj]
                n_lower, n_upper = chain.instances[j], chain.instances[j + 1]
                if operand == "O":
                    distinct = relevant_from[rows, bj]
                    per_transfer = fps[j][rows, bj] * n_lower
                    final = distinct * per_transfer * layer.precision.O
                    partial = (fills - distinct) * per_transfer * word
                    up, down = final + partial, partial
                    traffic.append(BatchTraffic(upper.name, "O", down, up))
                    traffic.append(BatchTraffic(lower.name, "O", up, down))
                    moved = ((upper, down, up, n_upper), (lower, up, down, n_lower))
                else:
                    read_upper = fills * fps[j + 1][rows, bj] * n_upper * word
                    write_lower = fills * fps[j][rows, bj] * n_lower * word
                    zero = np.zeros(count)
                    traffic.append(BatchTraffic(upper.name, operand, read_upper, zero))
                    traffic.append(BatchTraffic(lower.name, operand, zero, write_lower))
                    moved = ((upper, read_upper, zero, n_upper), (lower, zero, write_lower, n_lower))
                for level, rd, wr, instances in moved:
                    if level.name == CELLS:
                        continue
                    if level.shared_port:
                        cycles = (rd + wr) / (instances * level.read_bits_per_cycle)
                    else:
                        cycles = np.maximum(rd / (instances * level.read_bits_per_cycle),
                                            wr / (instances * level.write_bits_per_cycle))
                    if operand == "W":
                        weight_load = np.maximum(weight_load, cycles)
                    transfer[level.name] = transfer.get(level.name, 0.0) + cycles

            lowest = levels[0]
            if operand in ("I", "O") and lowest.name != CELLS:
                per_iteration = fp(operand, list(chain.base[0])) * chain.instances[0] * word
                moved_bits = np.full(count, float(total * per_iteration))
                written_bits = moved_bits if operand == "O" else np.zeros(count)
                traffic.append(BatchTraffic(lowest.name, operand, moved_bits, written_bits))
                feed = port_cycles(lowest, moved_bits, written_bits, chain.instances[0])
                transfer[lowest.name] = transfer.get(lowest.name, 0.0) + feed

        compute = total * macro.cycles_per_mac
        if macro.cells_per_group > 1:
            weight_load = 0.0
        busiest = np.maximum.reduce(list(transfer.values())) if transfer else 0.0
        latency = np.maximum(compute + weight_load, busiest)
        stall = latency - compute - weight_load
        written: np.ndarray | int = 0
        for level_name, _, _, wr in traffic:
            if level_name == CELLS:
                written = written + wr
        d1, d2, d3 = self.used
        if macro.cells_per_group > 1:
            w_inner = np.maximum(1, w_irrelevant_below[rows, cells_boundary])
            precharges = (total / w_inner) * d1 * d2 * d3
        else:
            precharges = np.zeros(count)
        return BatchCounts(
            traffic=tuple(traffic),
            latency_cycles=np.broadcast_to(compute + stall + weight_load, (count,)),
            weights_written=np.broadcast_to(written / layer.precision.W, (count,)),
            precharges=precharges,
            activations=layer.macs / self.d1_d2,
            cycles_per_mac=macro.cycles_per_mac,
            rows_mapped=d2,
            columns_mapped=d1,
        )
