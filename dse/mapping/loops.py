"""Small helpers on loop dims: which operand depends on which dim, and input windows.

The weight and output footprints of a tile are products of their relevant dims; the input
footprint follows the sliding window (``window``), so overlapping windows are counted once and
the gaps a strided window skips are not counted at all.
"""

from __future__ import annotations

import math

from dse.workload.layer import INPUT_DIMS, OUTPUT_DIMS, WEIGHT_DIMS

RELEVANT: dict[str, frozenset[str]] = {"W": WEIGHT_DIMS, "I": INPUT_DIMS, "O": OUTPUT_DIMS}


def is_relevant(operand: str, dim: str) -> bool:
    return dim in RELEVANT[operand]


def window(out: int, kernel: int, stride: int, dilation: int, full: int) -> int:
    """Input rows (or columns) that ``out`` outputs of a ``kernel``-tap window touch.

    Overlapping or touching windows cover their whole span; windows narrower than the stride
    (a strided 1x1 conv) leave gaps that are never read. Never more than the padded input.
    """
    reach = (kernel - 1) * dilation + 1
    if reach < stride:
        return min(out * reach, full)
    return min((out - 1) * stride + reach, full)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def product(values) -> int:
    return math.prod(values)
