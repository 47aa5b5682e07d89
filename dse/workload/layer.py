"""Domain objects of a workload: loop sizes, operand precisions, compute layers, other ops.

Loop dimensions follow the ZigZag convention, with H and W kept straight:

    O[B][G][K][OY][OX] += W[G][K][C][FY][FX] * I[B][G][C][IY][IX]
    IY = sy*OY + dy*FY - pad,  IX = sx*OX + dx*FX - pad

B batch, G groups (weights differ per group), K output channels per group, C input channels
per group, OY/OX output rows/columns (height/width), FY/FX kernel rows/columns.
A (M x C) @ (C x N) product maps to B=M (2-D) or OX=M with leading dims in B or G (3-D, 4-D),
C=C, K=N; see ``dse.workload.onnx_loader``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Literal

LOOP_DIMS: tuple[str, ...] = ("B", "K", "C", "OY", "OX", "FY", "FX", "G")
"""The eight loop dimensions of a compute layer, in table order."""

LayerOp = Literal["conv", "dwconv", "gemm", "matmul"]
COMPUTE_OPS: tuple[str, ...] = ("conv", "dwconv", "gemm", "matmul")

# Which loop dims each operand depends on ("relevant" in ZigZag terms); OY/OX reach the
# input only through the sliding window together with FY/FX.
WEIGHT_DIMS: frozenset[str] = frozenset({"G", "K", "C", "FY", "FX"})
OUTPUT_DIMS: frozenset[str] = frozenset({"B", "G", "K", "OY", "OX"})
INPUT_DIMS: frozenset[str] = frozenset({"B", "G", "C", "OY", "OX", "FY", "FX"})


@dataclass(frozen=True)
class Loops:
    """Sizes of the eight loop dimensions of a layer (all >= 1)."""

    B: int = 1
    K: int = 1
    C: int = 1
    OY: int = 1
    OX: int = 1
    FY: int = 1
    FX: int = 1
    G: int = 1

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"loop size {f.name} = {value!r}: must be a positive integer")

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def __getitem__(self, dim: str) -> int:
        if dim not in LOOP_DIMS:
            raise KeyError(dim)
        return getattr(self, dim)

    @property
    def macs(self) -> int:
        return self.B * self.K * self.C * self.OY * self.OX * self.FY * self.FX * self.G


@dataclass(frozen=True)
class Precision:
    """Operand precisions in bits: weight (stored operand), input, final output."""

    W: int = 8
    I: int = 8  # noqa: E741 - the operand's conventional name
    O: int = 8  # noqa: E741

    def __post_init__(self) -> None:
        for name in ("W", "I", "O"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 64:
                raise ValueError(f"precision {name} = {value!r}: must be an integer number of bits in 1..64")

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Layer:
    """A compute layer: a conv, depthwise conv, Gemm or MatMul node with its loop nest.

    ``weight_constant`` is False for activation x activation products (attention QK^T and
    AV): the stored operand (``weight``, the second MatMul input) is then written into the
    macro at run time rather than once.
    """

    name: str
    op: LayerOp
    onnx_op: str
    loops: Loops
    precision: Precision = field(default_factory=Precision)
    stride: tuple[int, int] = (1, 1)  # (y, x)
    dilation: tuple[int, int] = (1, 1)  # (y, x)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)  # (top, left, bottom, right)
    weight_constant: bool = True
    input: str = ""  # tensor name of the streamed operand I
    weight: str = ""  # tensor name of the stored operand W
    output: str = ""  # tensor name of the result O
    has_bias: bool = False

    @property
    def macs(self) -> int:
        return self.loops.macs

    @property
    def weight_count(self) -> int:
        """Elements of the stored operand (per inference)."""
        lp = self.loops
        return lp.G * lp.K * lp.C * lp.FY * lp.FX

    @property
    def input_size(self) -> tuple[int, int]:
        """(IY, IX): input rows and columns the window sweeps, padding included."""
        lp = self.loops
        sy, sx = self.stride
        dy, dx = self.dilation
        return ((lp.OY - 1) * sy + (lp.FY - 1) * dy + 1, (lp.OX - 1) * sx + (lp.FX - 1) * dx + 1)

    @property
    def is_compute(self) -> bool:
        return True


@dataclass(frozen=True)
class OtherOp:
    """A non-compute ONNX node (Relu, Add, pooling, reshapes...): zero cost, kept for the graph edges."""

    name: str
    onnx_op: str
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()

    @property
    def macs(self) -> int:
        return 0

    @property
    def is_compute(self) -> bool:
        return False
