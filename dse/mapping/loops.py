"""Loop tiles and operand footprints: how much of W, I and O a set of loop sizes touches.

A tile is a mapping loop dim -> size. The weight and output footprints are products of their
relevant dims; the input footprint follows the sliding window, IY = (OY-1)*sy + (FY-1)*dy + 1,
so overlapping windows are counted once.
"""

from __future__ import annotations

import math

from dse.workload.layer import INPUT_DIMS, OUTPUT_DIMS, WEIGHT_DIMS, Layer

RELEVANT: dict[str, frozenset[str]] = {"W": WEIGHT_DIMS, "I": INPUT_DIMS, "O": OUTPUT_DIMS}
REDUCTION_DIMS = frozenset({"C", "FY", "FX"})  # summed into one output


def footprint(layer: Layer, operand: str, tile: dict[str, int]) -> int:
    """Elements of ``operand`` touched by a tile of the layer's loops (missing dims count 1)."""
    t = {d: tile.get(d, 1) for d in ("B", "K", "C", "OY", "OX", "FY", "FX", "G")}
    if operand == "W":
        return t["G"] * t["K"] * t["C"] * t["FY"] * t["FX"]
    if operand == "O":
        return t["B"] * t["G"] * t["K"] * t["OY"] * t["OX"]
    sy, sx = layer.stride
    dy, dx = layer.dilation
    iy = (t["OY"] - 1) * sy + (t["FY"] - 1) * dy + 1
    ix = (t["OX"] - 1) * sx + (t["FX"] - 1) * dx + 1
    # a window cannot reach past the layer's own input (padding included)
    full_y, full_x = layer.input_size
    return t["B"] * t["G"] * t["C"] * min(iy, full_y) * min(ix, full_x)


def is_relevant(operand: str, dim: str) -> bool:
    return dim in RELEVANT[operand]


def merge(*tiles: dict[str, int]) -> dict[str, int]:
    """The product of tiles dim by dim."""
    out: dict[str, int] = {}
    for tile in tiles:
        for d, s in tile.items():
            out[d] = out.get(d, 1) * s
    return out


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def product(values) -> int:
    return math.prod(values)
