"""PAC: PACiM's probabilistic approximate computation of a bit-serial matmul, vectorised over every output.

A W-bit x X-bit dot product over K rows is a sum of W*X bit-plane cycles, cycle (i, j) being
``a_i b_j popcount(w_i AND x_j)`` with ``w_i``, ``x_j`` the 0/1 planes and ``a_i``, ``b_j`` their place values.
PAC with operand ``p`` computes the p x p most significant cycles exactly (i >= W-p, j >= X-p: the
digital adder trees, or the macro's own arithmetic) and replaces every other cycle by the expectation of
the AND-popcount of two independent planes with the same numbers of ones:

    cycle(i, j) ~= a_i b_j popcount(w_i) popcount(x_j) / N         N = the receptive field (fan-in)

The weight popcounts are per output column (computed offline in hardware), the input popcounts per output
pixel (PACiM's on-die sparsity encoder). Facts: ``/work/shared/reference/cim-simulators.md`` section 2.3.

Vectorised. The exact block is one integer matmul of the p-bit MSB codes ``x >> (X-p)`` and ``w >> (W-p)``
(through :func:`~dse.accuracy.core.cim_matmul`); the approximated cycles factorise into per-plane popcount
vectors, ``cx (M, X) @ G (X, W) @ cw^T (W, N) / N`` with ``G[j, i] = b_j a_i`` off the exact block: a tiny
matmul. There is no loop over pixels, batch or cycles; any batch size works (the anchor needs batch 1 and
loops over every output pixel).

Plane representation. Two's-complement weights (the symmetric quantiser's codes, ``signed_weights=True``)
have plane values ``2^i`` and ``-2^(W-1)`` for the sign plane; offset-coded UINT weights (the asymmetric
quantiser, PACiM's own framework) are plain binary. Signed inputs are two's complement as in the core. The
sign plane is the most significant one, so it is always exact for p >= 1; with p equal to both bit widths
every cycle is exact and PAC equals the exact product.

Dynamic configuration (PACiM, ``dynamic=True``). Per output pixel a speculation of its salience is read
off the input popcounts, ``S = sum_j |b_j| popcount(x_j) * reference_window / N`` (the window's activation
sum rescaled to the anchor's 64x3x3 = 576-row window), and the lowest anti-diagonals of the exact block move
to PAC: ``S > th2`` none (p^2 exact cycles), ``th1 < S <= th2`` one (i' + j' = 0 of the block), ``th0 < S
<= th1`` two, ``S <= th0`` three; for p = 4 that is 16/15/13/10 exact cycles, the anchor's. Other p keep
the same rule, at most 2p - 2 diagonals dropped so the top cycle stays exact. The anchor applies it to
convolutions only; here any matmul (a Linear row is one "pixel").

Exact cycles on an analog macro (``config.adc_bits`` set): the p x p cycles run through the macro's own
arithmetic (same rows, ADC, noise, hybrid and voting levels counted from the top) on the p-bit MSB codes;
this needs two's-complement weights and an ``input_bits_per_cycle`` dividing p. Dynamic mode needs exact
(lossless) cycles: moving a diagonal per pixel out of a noisy block is not defined by the anchor.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from dse.accuracy.core import CimConfig, cim_matmul

DEFAULT_THRESHOLDS: tuple[float, float, float] = (7000.0, 10000.0, 13000.0)
REFERENCE_WINDOW = 64 * 3 * 3
"""Rows of the window the anchor's thresholds are set for (64 channels, 3x3 kernel)."""
MAX_DROPPED = 3
CHUNK_ELEMENTS = 1 << 24
"""Elements of x per chunk of the bit-plane work (popcounts, dynamic diagonals): about 64 MiB of int32."""


@dataclass(frozen=True)
class PacConfig:
    """PAC of one layer: ``operand`` p (exact p x p MSB cycles) and the optional dynamic configuration."""

    operand: int
    dynamic: bool = False
    thresholds: tuple[float, float, float] = DEFAULT_THRESHOLDS  # th0 < th1 < th2, speculation units
    reference_window: int = REFERENCE_WINDOW  # rows the thresholds are set for; S is rescaled to it

    def __post_init__(self) -> None:
        if isinstance(self.operand, bool) or not isinstance(self.operand, int) or self.operand < 1:
            raise ValueError(f"PacConfig.operand = {self.operand!r}: must be an int >= 1")
        if not isinstance(self.dynamic, bool):
            raise ValueError(f"PacConfig.dynamic = {self.dynamic!r}: must be a bool")
        th = tuple(self.thresholds)
        numbers = all(isinstance(t, int | float) and not isinstance(t, bool) and math.isfinite(t) for t in th)
        if len(th) != 3 or not numbers or list(th) != sorted(th):
            raise ValueError(f"PacConfig.thresholds = {self.thresholds!r}: expected three ascending numbers "
                             "(th0, th1, th2)")
        object.__setattr__(self, "thresholds", tuple(float(t) for t in th))
        if isinstance(self.reference_window, bool) or not isinstance(self.reference_window, int) \
                or self.reference_window < 1:
            raise ValueError(f"PacConfig.reference_window = {self.reference_window!r}: must be an int >= 1")

    def to_dict(self) -> dict:
        """Plain dict (JSON/YAML-ready)."""
        d = asdict(self)
        d["thresholds"] = list(self.thresholds)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PacConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"PacConfig: unknown field(s) {', '.join(map(repr, unknown))}")
        return cls(**{**d, "thresholds": tuple(d.get("thresholds", DEFAULT_THRESHOLDS))})

    @property
    def max_dropped(self) -> int:
        """Most anti-diagonals of the exact block the dynamic mode moves to PAC (3, fewer for p < 3)."""
        return min(MAX_DROPPED, 2 * self.operand - 2)

    def exact_cycles(self, dropped: int = 0) -> int:
        """Exact cycles when the lowest ``dropped`` anti-diagonals of the p x p block are approximated."""
        p = self.operand
        return sum(1 for i in range(p) for j in range(p) if i + j >= dropped)


class PacResult(NamedTuple):
    """``out`` (..., M, N) float32 in the integer domain; ``exact_cycles`` (..., M) per output pixel."""

    out: Tensor
    exact_cycles: Tensor


def plane_values(bits: int, signed: bool) -> list[int]:
    """Place value of each bit plane, least significant first (two's complement: the top one negative)."""
    values = [2**i for i in range(bits)]
    if signed:
        values[-1] = -values[-1]
    return values


def popcounts(codes: Tensor, bits: int, dim: int = -1) -> Tensor:
    """Ones of every bit plane along ``dim`` (two's-complement bits for negative codes): float64, ``bits`` last.

    One ``embedding_bag`` over a value -> bits table sums the planes of a whole chunk at once.
    """
    moved = codes.movedim(dim, -1)
    lead, k = moved.shape[:-1], moved.shape[-1]
    flat = moved.reshape(-1, k)
    table = ((torch.arange(2**bits, device=codes.device).unsqueeze(-1) >> torch.arange(bits, device=codes.device))
             & 1).to(torch.float32)
    out = torch.empty(flat.shape[0], bits, dtype=torch.float64, device=codes.device)
    rows = max(1, CHUNK_ELEMENTS // max(k, 1))
    for s in range(0, flat.shape[0], rows):
        index = flat[s : s + rows].to(torch.int32) & (2**bits - 1)  # two's complement bits of negative codes
        out[s : s + rows] = F.embedding_bag(index, table, mode="sum").to(torch.float64)
    return out.reshape(*lead, bits)


def speculation(cx: Tensor, input_bits: int, signed: bool, fan_in: int, reference_window: int) -> Tensor:
    """PACiM's salience estimate per row: ``sum_j |b_j| popcount(x_j)``, rescaled to ``reference_window`` rows."""
    weights = torch.tensor([abs(v) for v in plane_values(input_bits, signed)], dtype=torch.float64,
                           device=cx.device)
    return (cx @ weights) * (reference_window / fan_in)


def dropped_diagonals(s: Tensor, pac: PacConfig) -> Tensor:
    """Anti-diagonals of the exact block moved to PAC per row (int64): 0 above th2 .. 3 at or below th0."""
    dropped = sum((s <= t).to(torch.int64) for t in pac.thresholds)
    return dropped.clamp(max=pac.max_dropped)


def pac_matmul(x_codes: Tensor, w_codes: Tensor, pac: PacConfig, config: CimConfig, *, fan_in: int | None = None,
               signed_weights: bool = True, generator: torch.Generator | None = None) -> PacResult:
    """``x_codes @ w_codes`` with PAC: exact p x p MSB cycles, popcount products for the others.

    ``x_codes`` (..., M, K) and ``w_codes`` (..., K, N) as for :func:`~dse.accuracy.core.cim_matmul` (batch
    dims broadcast); ``w_codes`` are unsigned 0..2^W-1 when ``signed_weights`` is False (offset-coded UINT).
    ``config`` gives the bit widths, input signedness and the arithmetic of the exact cycles. ``fan_in`` is
    the receptive field N the popcount product divides by (default K; rows of zero padding add no ones).
    """
    w_bits, x_bits, p = config.weight_bits, config.input_bits, pac.operand
    if p > min(w_bits, x_bits):
        raise ValueError(f"pac_matmul: operand p = {p} must be <= min(weight_bits, input_bits) = "
                         f"{min(w_bits, x_bits)}")
    if x_codes.dim() < 2 or w_codes.dim() < 2 or x_codes.shape[-1] != w_codes.shape[-2]:
        raise ValueError(f"pac_matmul: cannot multiply x_codes {tuple(x_codes.shape)} by w_codes "
                         f"{tuple(w_codes.shape)}")
    k = x_codes.shape[-1]
    fan_in = k if fan_in is None else fan_in
    if fan_in < 1:
        raise ValueError(f"pac_matmul: fan_in = {fan_in}: must be >= 1")
    _check_range(x_codes, "x_codes", x_bits, config.signed_inputs)
    _check_range(w_codes, "w_codes", w_bits, signed_weights)
    if pac.dynamic and not config.lossless:
        raise ValueError("pac_matmul: dynamic PAC needs exact cycles (a digital macro, adc_bits None); "
                         "use static PAC on an analog macro")
    shift_w, shift_x = w_bits - p, x_bits - p
    a = plane_values(w_bits, signed_weights)
    b = plane_values(x_bits, config.signed_inputs)

    exact = _msb_block(x_codes, w_codes, p, shift_x, shift_w, config, signed_weights, generator).double()
    exact = exact * float(2 ** (shift_w + shift_x))
    cx = popcounts(x_codes, x_bits, dim=-1)  # (..., M, X)
    cw = popcounts(w_codes, w_bits, dim=-2)  # (..., N, W)
    approx_mask = [[not (i >= shift_w and j >= shift_x) for i in range(w_bits)] for j in range(x_bits)]
    out = exact + _popcount_product(cx, cw, a, b, approx_mask, fan_in)

    lead = torch.broadcast_shapes(x_codes.shape[:-2], w_codes.shape[:-2])
    rows = cx.shape[:-1]
    if not pac.dynamic:
        cycles = torch.full(rows, float(pac.exact_cycles(0)), device=x_codes.device)
        return PacResult(out.float(), cycles.expand(*lead, rows[-1]))
    s = speculation(cx, x_bits, config.signed_inputs, fan_in, pac.reference_window)
    dropped = dropped_diagonals(s, pac)
    diagonals = [d for d in range(pac.max_dropped) if bool((dropped > d).any())]
    cells = {d: [(shift_w + i, shift_x + d - i) for i in range(p) if 0 <= d - i < p] for d in diagonals}
    exact_diagonals = _diagonals_exact(x_codes, w_codes, [cells[d] for d in diagonals], a, b,
                                       _int_dtype(x_bits, config.signed_inputs))
    for d, exact_d in zip(diagonals, exact_diagonals, strict=True):
        in_diagonal = [[(i, j) in cells[d] for i in range(w_bits)] for j in range(x_bits)]
        moved = _popcount_product(cx, cw, a, b, in_diagonal, fan_in) - exact_d
        out = out + moved * (dropped > d).unsqueeze(-1)
    table = torch.tensor([float(pac.exact_cycles(d)) for d in range(pac.max_dropped + 1)], device=x_codes.device)
    return PacResult(out.float(), table[dropped].expand(*lead, rows[-1]))


def _check_range(t: Tensor, name: str, bits: int, signed: bool) -> None:
    """Raise unless every code fits ``bits`` (two's complement when signed) and is an integer."""
    if t.numel() == 0:
        return
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    tmin, tmax = (float(v) for v in torch.aminmax(t))
    if not (lo <= tmin and tmax <= hi):
        raise ValueError(f"pac_matmul: {name} spans [{tmin}, {tmax}], outside [{lo}, {hi}] for {bits} bits "
                         f"{'signed' if signed else 'unsigned'}")
    if t.is_floating_point() and bool((t != torch.trunc(t)).any()):
        raise ValueError(f"pac_matmul: {name} must hold integer codes")


def _msb_block(x: Tensor, w: Tensor, p: int, shift_x: int, shift_w: int, config: CimConfig, signed_weights: bool,
               generator: torch.Generator | None) -> Tensor:
    """The p x p most significant cycles: the p-bit MSB codes through the macro (exact when lossless)."""
    x_hi = torch.div(x, 2**shift_x, rounding_mode="floor")  # arithmetic shift, also for negative codes
    w_hi = torch.div(w, 2**shift_w, rounding_mode="floor")
    if config.lossless:
        exact = CimConfig(weight_bits=max(2, p + (0 if signed_weights else 1)),
                          input_bits=max(p, 2 if config.signed_inputs else 1), signed_inputs=config.signed_inputs,
                          rows=config.rows, adc_bits=None, memory_budget_bytes=config.memory_budget_bytes)
        return cim_matmul(x_hi, w_hi, exact)
    if not signed_weights:
        raise ValueError("pac_matmul: offset-coded (unsigned) weights need exact cycles: the analog core stores "
                         "two's-complement weight planes")
    e = config.input_bits_per_cycle
    cycles = math.ceil((p - 1) / e) + 1 if config.signed_inputs else math.ceil(p / e)
    diagonals = p + cycles - 1
    try:
        reduced = replace(config, weight_bits=p, input_bits=p, hybrid_levels=min(config.hybrid_levels, diagonals),
                          voting_levels=min(config.voting_levels, diagonals))
    except ValueError as err:
        raise ValueError(f"pac_matmul: the exact p x p cycles on this analog macro: {err}") from None
    return cim_matmul(x_hi, w_hi, reduced, generator=generator)


def _popcount_product(cx: Tensor, cw: Tensor, a: list[int], b: list[int], mask: list[list[bool]],
                      fan_in: int) -> Tensor:
    """``sum over the masked (i, j) of a_i b_j cx_j cw_i / N`` for every (row, column): float64 (..., M, N)."""
    g = torch.tensor([[b[j] * a[i] if mask[j][i] else 0.0 for i in range(len(a))] for j in range(len(b))],
                     dtype=torch.float64, device=cx.device)
    return (cx @ (g / fan_in)) @ cw.transpose(-1, -2)


def _diagonals_exact(x: Tensor, w: Tensor, diagonals: list[list[tuple[int, int]]], a: list[int],
                     b: list[int], x_dtype: torch.dtype) -> list[Tensor]:
    """The exact sum of each anti-diagonal's cycles ``(weight bit, input bit)``, float64 (..., M, N) each.

    The cycles of one anti-diagonal share a place value: their signed 0/1 plane products are summed in
    float32 (exact: at most 3 K < 2^24) and scaled once. Rows go in chunks; each input plane is cut once.
    """
    if not diagonals:
        return []
    lead = torch.broadcast_shapes(x.shape[:-2], w.shape[:-2])
    m, k = x.shape[-2:]
    w_int = w.to(torch.int32)
    w_planes = {i: ((w_int >> i) & 1).to(torch.float32) for i in {i for cells in diagonals for i, _ in cells}}
    x_bits = sorted({j for cells in diagonals for _, j in cells})
    outs = [torch.empty(*lead, m, w.shape[-1], dtype=torch.float64, device=x.device) for _ in diagonals]
    rows = max(1, CHUNK_ELEMENTS // max(k * len(x_bits) * max(1, math.prod(x.shape[:-2])), 1))
    for s in range(0, m, rows):
        chunk = x[..., s : s + rows, :].to(x_dtype)
        planes = {j: ((chunk >> j) & 1).to(torch.float32) for j in x_bits}
        for out, cells in zip(outs, diagonals, strict=True):
            acc = torch.zeros(out[..., s : s + rows, :].shape, device=x.device)
            for i, j in cells:
                acc.add_(torch.matmul(planes[j], w_planes[i]), alpha=1.0 if a[i] * b[j] > 0 else -1.0)
            out[..., s : s + rows, :] = acc
    return [out * float(abs(a[cells[0][0]] * b[cells[0][1]])) for out, cells in zip(outs, diagonals, strict=True)]


def _int_dtype(bits: int, signed: bool) -> torch.dtype:
    """The narrowest integer dtype holding the codes (fast bit-plane cuts)."""
    if bits <= 8:
        return torch.int8 if signed else torch.uint8
    return torch.int16 if bits <= (16 if signed else 15) else torch.int32
