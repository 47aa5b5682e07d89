"""Integer-domain core of the bit-wise SRAM compute-in-memory (CiM) accuracy simulator.

:func:`cim_matmul` returns what an analog CiM macro computes for ``x_codes @ w_codes``: the K axis is
cut into row groups of ``rows`` (one ADC conversion each), weights are stored as two's-complement
bit planes, inputs are applied ``input_bits_per_cycle`` bits at a time, and every (group, weight
bit, input cycle) column sum ``m`` is converted by an ADC:

    u    = m * L / FS                      L = 2^adc_bits - 1 codes, FS = (2^width - 1) * rows
    u    = clamp(u + s * n, 0, L)           n ~ N(0, 1); s = noise in LSB (only analog cycles)
    code = round(u)                         half to even
    p    = code * FS / L                    back to MAC counts

with ``s = L * sqrt((noise_sigma_pct/100)^2 + (nonlinear_sigma_pct/100)^2 / (m' + 1))`` (one normal
with the summed variance of ASiM's two independent terms; ``m' = u * rows / L`` as the reference
writes it), or ``noise_sigma_lsb`` in place of ``L * noise_sigma_pct/100``. The partial sums are
shifted by their significance, the weight sign plane (and the input sign bit of signed inputs)
negated, and summed digitally. Full scale is always the nominal ``rows``, also for a short group.
Facts: ``/work/shared/reference/cim-simulators.md`` section 2.1 (ASiM), section 8 (what to fix).

Cycles. Unsigned inputs: ``input_bits / input_bits_per_cycle`` cycles of ``e`` bits, LSB first.
Signed inputs (sign-magnitude codes in ``+-(2^(X-1)-1)``, simulated as ASiM does in two's
complement): the sign bit is a 1-bit cycle of its own (the top one, negated) and the ``X-1`` lower
bits are grouped ``e`` at a time, the top group taking the remainder; for ``e = 1`` this is plain
two's-complement bit-serial. A cycle of width ``w`` has full scale ``(2^w - 1) * rows``.
Hybrid levels and voting pick cycles by anti-diagonal of (weight bit i, cycle index j):
``i + j > W + C - 2 - levels`` (C = number of cycles), as ASiM does, also in bit-parallel mode.

Semantics, ``"asim"`` (the reference's section 2.1) versus ``"default"`` (the same physics with the
anchor's faults fixed):

- Row groups. ``default``: consecutive groups of ``rows`` over K; the last may be short and is kept.
  ``asim``: the same when ``kernel_area == 1`` (ASiM's Linear layers). With ``kernel_area = k*k``
  (the K axis is an unfolded k x k convolution, channel-major as ``F.unfold`` lays it out) a group
  holds ``floor(rows / k^2)`` whole channels, and only ``ceil(K / rows)`` groups are converted, as
  ASiM's conv does: when that is fewer than the channel chunks, the tail rows are silently dropped
  (ASiM's bug, e.g. rows 256, 3x3, 256 channels loses 4 channels). ``default`` ignores kernel_area.
- Hybrid (HCiM) cycles. ``default``: computed digitally, i.e. exact (no ADC, no noise).
  ``asim``: no noise, but still through the ADC clamp and rounding (exact only when L is a
  multiple of FS).
- Noise draws. ASiM draws two normals per analog cycle even at zero sigma; both semantics here
  draw one normal per noisy conversion and none when the noise is zero (same distribution,
  different random stream: results match ASiM in distribution, not bit for bit).
- Voting. ASiM's voting variant has no HCiM and no bit-parallel mode; here voting applies to the
  noisy (analog) cycles of the voted anti-diagonals in both semantics, whatever the encoding.
- ADC rounding is exact rational rounding of ``m * L / FS`` (half to even) in both semantics. ASiM
  rounds ``fp32(fp32(m / FS) * L)``, which can land on the other side of a half-integer only for
  exact ties with an inexact quotient (FS / gcd(L, FS) even and not a power of two) or when
  ``L * FS >= 2^22``; so never for rows 2^k, nor for rows 2^k - 1 at the usual ADC widths.

Exactness and speed (``core_planes``). Every conversion of every group comes from one batched GEMM
per M-chunk on bit planes, exact by construction: 0/1 weight planes packed into fp32 fields (up to
``24 // f`` planes per value, ``f`` bits per column sum; fp64 when fp32 matmuls may run at reduced
precision), or bf16 planes on CPUs with AMX while every sum is at most 256. The ADC epilogue works
on whole chunks, and the sums are reduced exactly (integers: fp32 below 2^24, fp64 across cycles and
groups, one final division by L), so noise-free results do not depend on how M is chunked or
batched. Noisy results depend on the generator's state and on the chunking (which numbers go where),
their statistics on neither. A noise-free lossless configuration is one integer-exact GEMM (fp32
when the weights bound every partial sum below 2^24, else int8 ``torch._int_mm`` on CPUs with VNNI or
AMX when the codes fit, else fp64). The float32 result holds the
exact value rounded once (exact integers below 2^24). Memory: a chunk's scratch is about
``core_planes.WORKSET_BYTES`` (at least ``MIN_CHUNK_ROWS`` rows of M) and never above
``memory_budget_bytes`` (except one row that alone exceeds it); weights, operands and output come on top.

Fused CPU path (``core_fused``). On CPU tensors the lossy path runs in kernels that do the whole
epilogue in one pass per output element, column sums included: a bit-sliced C kernel
(``core_bitsliced``, built on first use where a C compiler and AVX-512 or AVX2 are present) or numba kernels
(AND + popcount of packed bit planes, or the bit-plane GEMM with AMX); ``CIM_DSE_KERNEL=torch``
forces the torch path above (also used for CUDA tensors). Noise-free results are identical on every
path; noisy ones have the same distribution from each kernel's own random stream, which depends on
the generator's state only (not on M-chunking or threads).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Literal

import torch
from torch import Tensor

from dse.accuracy.conv_rows import ConvRows, explicit
from dse.accuracy.core_fused import kernel_for, simulate_fused
from dse.accuracy.core_planes import (
    FP32_EXACT,
    MIN_CHUNK_ROWS,
    check_integral,
    chunk_rows,
    matmul_precision_exact,
    simulate_planes,
)

Semantics = Literal["default", "asim"]
SEMANTICS: tuple[str, ...] = ("default", "asim")


@dataclass(frozen=True)
class CimConfig:
    """One layer's macro arithmetic, declarative and serialisable (units in the field comments)."""

    weight_bits: int = 8
    input_bits: int = 8
    signed_inputs: bool = False
    rows: int = 128  # rows summed per conversion (K split into consecutive groups of `rows`)
    adc_bits: int | None = None  # None = lossless (exact digital accumulation, no ADC)
    input_bits_per_cycle: int = 1  # bit-serial = 1; must divide input_bits
    noise_sigma_pct: float = 0.0  # analog noise, % of ADC full scale (as ASiM)
    noise_sigma_lsb: float | None = None  # alternative: noise in ADC LSB; if set, overrides noise_sigma_pct
    nonlinear_sigma_pct: float = 0.0  # % of full scale at MAC 0, falling as 1/sqrt(MAC + 1) (ASiM)
    hybrid_levels: int = 0  # most significant (weight bit, input cycle) anti-diagonals computed digitally
    votes: int = 1  # conversions per voted cycle; mode of the codes kept
    voting_levels: int = 0  # most significant anti-diagonals that are voted
    semantics: Semantics = "default"
    kernel_area: int = 1  # k*k of the conv whose unfolded K this is; only "asim" uses it (see module doc)
    memory_budget_bytes: int = 2**30  # cap on one M-chunk's intermediates; changes no noise-free result

    def __post_init__(self) -> None:
        _validate(self)

    def to_dict(self) -> dict:
        """Plain dict of every field (JSON/YAML-ready)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CimConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"CimConfig: unknown field(s) {', '.join(map(repr, unknown))} "
                             f"(known: {', '.join(sorted(known))})")
        return cls(**d)

    @property
    def cycles(self) -> tuple[Cycle, ...]:
        """Input cycles, least significant first (see the module docstring)."""
        return input_cycles(self.input_bits, self.input_bits_per_cycle, self.signed_inputs)

    @property
    def noise_lsb(self) -> float:
        """Std of the random (signal-independent) noise in ADC LSB; 0 without an ADC."""
        if self.adc_bits is None:
            return 0.0
        if self.noise_sigma_lsb is not None:
            return float(self.noise_sigma_lsb)
        return self.noise_sigma_pct / 100.0 * (2**self.adc_bits - 1)

    @property
    def noisy(self) -> bool:
        """True when analog conversions get random noise."""
        return self.adc_bits is not None and (self.noise_lsb > 0 or self.nonlinear_sigma_pct > 0)

    @property
    def lossless(self) -> bool:
        """True when the result is the exact integer matmul (no ADC loss, no noise, no dropped rows)."""
        dropping = self.semantics == "asim" and (self.rows // self.kernel_area) * self.kernel_area < self.rows
        return _exact_arithmetic(self) and not dropping


@dataclass(frozen=True)
class Cycle:
    """One input cycle: the digit ``(x >> shift) & (2^width - 1)``, negated for the sign bit."""

    shift: int
    width: int
    negative: bool = False


def input_cycles(input_bits: int, per_cycle: int, signed: bool) -> tuple[Cycle, ...]:
    """The input cycles of a code, least significant first (sign bit last and alone when signed)."""
    if not signed:
        return tuple(Cycle(s, per_cycle) for s in range(0, input_bits, per_cycle))
    low = input_bits - 1
    groups = tuple(Cycle(s, min(per_cycle, low - s)) for s in range(0, low, per_cycle))
    return (*groups, Cycle(low, 1, True))


def _validate(c: CimConfig) -> None:
    """Raise ValueError naming the first bad field."""

    def integer(name: str, lo: int, hi: int | None = None) -> None:
        v = getattr(c, name)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"CimConfig.{name} = {v!r}: must be an int")
        if v < lo or (hi is not None and v > hi):
            bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            raise ValueError(f"CimConfig.{name} = {v}: must be {bound}")

    def real(name: str) -> None:
        v = getattr(c, name)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            raise ValueError(f"CimConfig.{name} = {v!r}: must be a finite number >= 0")

    integer("weight_bits", 2, 16)
    integer("input_bits", 2 if c.signed_inputs else 1, 16)
    if not isinstance(c.signed_inputs, bool):
        raise ValueError(f"CimConfig.signed_inputs = {c.signed_inputs!r}: must be a bool")
    integer("rows", 1, 2**16)
    if c.adc_bits is not None:
        integer("adc_bits", 1, 16)
    integer("input_bits_per_cycle", 1, c.input_bits)
    if c.input_bits % c.input_bits_per_cycle:
        raise ValueError(f"CimConfig.input_bits_per_cycle = {c.input_bits_per_cycle}: must divide "
                         f"input_bits = {c.input_bits}")
    real("noise_sigma_pct")
    if c.noise_sigma_lsb is not None:
        real("noise_sigma_lsb")
    real("nonlinear_sigma_pct")
    if c.adc_bits is None:
        for name in ("noise_sigma_pct", "noise_sigma_lsb", "nonlinear_sigma_pct"):
            if getattr(c, name):
                raise ValueError(f"CimConfig.{name} = {getattr(c, name)}: analog noise needs an ADC "
                                 "(adc_bits is None: exact digital accumulation)")
    diagonals = c.weight_bits + len(c.cycles) - 1
    integer("hybrid_levels", 0, diagonals)
    integer("votes", 1)
    integer("voting_levels", 0, diagonals)
    if c.semantics not in SEMANTICS:
        raise ValueError(f"CimConfig.semantics = {c.semantics!r}: must be one of {', '.join(SEMANTICS)}")
    integer("kernel_area", 1, c.rows)
    integer("memory_budget_bytes", 1)


def _exact_arithmetic(c: CimConfig) -> bool:
    """No ADC loss and no noise on any cycle (rows dropped by asim grouping not considered)."""
    if c.adc_bits is None or (c.semantics == "default" and c.hybrid_levels == c.weight_bits + len(c.cycles) - 1):
        return True  # no ADC, or every cycle digital
    if c.noisy:
        return False
    levels = 2**c.adc_bits - 1
    return all(levels % ((2**cy.width - 1) * c.rows) == 0 for cy in c.cycles)


# ----------------------------------------------------------------------------------------------
# entry point


def cim_matmul(x_codes: Tensor | ConvRows, w_codes: Tensor, config: CimConfig,
               generator: torch.Generator | None = None) -> Tensor:
    """``x_codes @ w_codes`` as the CiM macro computes it: float32 ``(..., M, N)`` in the integer domain.

    ``x_codes`` (..., M, K): unsigned codes 0..2^X-1, or signed ones (two's-complement range) when
    ``config.signed_inputs``; ``w_codes`` (..., K, N): signed codes in the two's-complement range of
    ``weight_bits`` (the symmetric quantiser uses +-(2^(W-1)-1)). Either may be a float or integer
    tensor holding integers. Batch dims broadcast as in ``torch.matmul``. ``generator`` (on the
    operands' device) makes noisy results reproducible; noise-free results are deterministic.

    ``x_codes`` may also be a :class:`~dse.accuracy.conv_rows.ConvRows`, a convolution's rows (G, M, K) not
    unfolded; ``w_codes`` is then (K, N) or (G, K, N) and the result (G, M, N), the same bits as with the
    explicit operand ``x_codes.materialize()``.
    """
    if isinstance(x_codes, ConvRows):
        return _conv_rows_matmul(x_codes, w_codes, config, generator)
    _check_operands(x_codes, w_codes, config, generator)
    m, k = x_codes.shape[-2:]
    n = w_codes.shape[-1]
    batch = torch.broadcast_shapes(x_codes.shape[:-2], w_codes.shape[:-2])
    if 0 in (m, n, k, math.prod(batch)):
        return torch.zeros(*batch, m, n, device=x_codes.device)
    if math.prod(w_codes.shape[:-2]) == 1:  # one weight matrix: fold every x batch dim into M
        x3 = x_codes.expand(*batch, m, k).reshape(1, -1, k)
        w3 = w_codes.reshape(1, k, n)
    else:
        x3 = x_codes.expand(*batch, m, k).reshape(-1, m, k)
        w3 = w_codes.expand(*batch, k, n).reshape(-1, k, n)
    out = _simulate(x3, w3, config, generator)
    return out.reshape(*batch, m, n)


def _conv_rows_matmul(x: ConvRows, w: Tensor, c: CimConfig, generator: torch.Generator | None) -> Tensor:
    """cim_matmul of implicit convolution rows: one batch element per conv group."""
    _check_placement(x.device, w, c, generator, "ConvRows image")
    g, m, k = x.shape
    if w.dim() == 2:
        w = w.unsqueeze(0)
    if w.dim() != 3 or w.shape[0] not in (1, g) or w.shape[1] != k:
        raise ValueError(f"cim_matmul: w_codes {tuple(w.shape)} do not fit ConvRows {(g, m, k)}: expected "
                         f"(K, N) or (G, K, N) with K = {k}, G = {g}")
    if x.signed != c.signed_inputs:
        raise ValueError(f"cim_matmul: a {x.image.dtype} ConvRows image for signed_inputs={c.signed_inputs} "
                         f"(expected {'int8' if c.signed_inputs else 'uint8'})")
    _check_codes(x.image, w, c)
    w = w.expand(g, k, w.shape[-1])
    if 0 in (m, k, w.shape[-1]):
        return torch.zeros(g, m, w.shape[-1], device=w.device)
    return _simulate(x, w, c, generator)


def _check_operands(x: Tensor, w: Tensor, c: CimConfig, generator: torch.Generator | None) -> None:
    """Shapes, devices and code ranges, with errors a caller can act on."""
    if x.dim() < 2 or w.dim() < 2:
        raise ValueError(f"cim_matmul: x_codes {tuple(x.shape)} and w_codes {tuple(w.shape)} need >= 2 dims")
    if x.shape[-1] != w.shape[-2]:
        raise ValueError(f"cim_matmul: K mismatch, x_codes {tuple(x.shape)} @ w_codes {tuple(w.shape)}")
    _check_placement(x.device, w, c, generator, "x_codes")
    _check_codes(x, w, c)


def _check_placement(device: torch.device, w: Tensor, c: CimConfig, generator: torch.Generator | None,
                     what: str) -> None:
    """The config's type, and the operands and generator on one device (``what``: the x operand's name)."""
    if not isinstance(c, CimConfig):
        raise TypeError(f"config must be a CimConfig, not {type(c).__name__}")
    if device != w.device:
        raise ValueError(f"cim_matmul: {what} on {device}, w_codes on {w.device}")
    if generator is not None and c.noisy and torch.device(generator.device).type != device.type:
        raise ValueError(f"cim_matmul: generator on {generator.device}, operands on {device}")


def _check_codes(x: Tensor, w: Tensor, c: CimConfig) -> None:
    """Both operands hold codes in the configured ranges."""
    if x.is_complex() or w.is_complex() or x.dtype == torch.bool or w.dtype == torch.bool:
        raise ValueError("cim_matmul: codes must be real integer-valued tensors")
    xlo, xhi, wmax = code_ranges(c)
    wlo, whi = -wmax, wmax - 1
    for name, t, lo, hi in (("x_codes", x, xlo, xhi), ("w_codes", w, wlo, whi)):
        if t.numel() == 0:
            continue
        tmin, tmax = (float(v) for v in torch.aminmax(t))
        if not (lo <= tmin and tmax <= hi):  # also catches NaN
            raise ValueError(f"cim_matmul: {name} spans [{tmin}, {tmax}], outside [{lo}, {hi}] for "
                             f"{'weight' if name == 'w_codes' else 'input'}_bits="
                             f"{c.weight_bits if name == 'w_codes' else c.input_bits}"
                             f"{' signed' if name == 'x_codes' and c.signed_inputs else ''}")


@dataclass(frozen=True)
class RowGroups:
    """Row grouping of K: ``count`` groups of ``size`` rows; rows from ``keep`` on are not converted."""

    size: int
    count: int
    keep: int


def row_groups(k: int, config: CimConfig) -> RowGroups:
    """How K is cut into conversions (module docstring: default vs asim)."""
    count = max(1, math.ceil(k / config.rows))
    if config.semantics == "asim" and config.kernel_area > 1:
        if k % config.kernel_area:
            raise ValueError(f"cim_matmul: K = {k} is not a multiple of kernel_area = {config.kernel_area}")
        size = (config.rows // config.kernel_area) * config.kernel_area
        return RowGroups(size, count, min(k, count * size))
    return RowGroups(config.rows, count, k)


def _simulate(x: Tensor | ConvRows, w: Tensor, c: CimConfig, generator: torch.Generator | None) -> Tensor:
    """(Bt, M, K) @ (Bt, K, N) through the macro; float32 (Bt, M, N). Only the bit-sliced kernel reads ConvRows
    rows as they are; the other paths take the explicit operand."""
    groups = row_groups(x.shape[-1], c)
    if _exact_arithmetic(c):
        return _exact_matmul(explicit(x)[..., : groups.keep], w[:, : groups.keep], c)
    kernel = kernel_for(x.device)
    if kernel != "torch":
        out = simulate_fused(x, w, c, groups.size, groups.count, groups.keep, generator, kernel)
        if out is not None:
            return out
    return simulate_planes(explicit(x), w, c, groups.size, groups.count, groups.keep, generator)


# ----------------------------------------------------------------------------------------------
# exact path: one integer-exact GEMM


def code_ranges(c: CimConfig) -> tuple[int, int, int]:
    """(x min, x max, |w| max) the config allows."""
    if c.signed_inputs:
        return -(2 ** (c.input_bits - 1)), 2 ** (c.input_bits - 1) - 1, 2 ** (c.weight_bits - 1)
    return 0, 2**c.input_bits - 1, 2 ** (c.weight_bits - 1)


EXACT_CHUNK_BYTES = 4 * 2**20
"""fp32/fp64 operand bytes of M per exact-GEMM chunk on CPU: about an L2 cache (measured on 2-vCPU VMs: chunks of
1-2 k rows run the benchmark layer's GEMM 3x faster than one of 65 k rows, whose operand misses every cache)."""


def _int8_gemm_is_fast() -> bool:
    """``torch._int_mm`` has VNNI or AMX to run on (without them it is 10-40x slower than an fp32 GEMM)."""
    probes = ("_is_vnni_supported", "_is_amx_tile_supported")  # private torch.cpu helpers: absent in some versions
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def _exact_matmul(x: Tensor, w: Tensor, c: CimConfig) -> Tensor:
    """Exact integer ``x @ w`` as float32, one GEMM per M-chunk: fp32 when no partial sum can reach 2^24, else
    int8 on CPUs with VNNI or AMX when the codes fit, else fp64."""
    bt, m, k = x.shape
    n = w.shape[-1]
    out = torch.empty(bt, m, n, device=x.device)
    if k == 0:
        return out.zero_()
    xlo, xhi, wmax = code_ranges(c)
    xabs = max(abs(xlo), xhi)
    # every partial sum of column n, in any order, is at most xabs * sum_k |w[k, n]| in magnitude
    bound = xabs * float((w[:1] if w.stride(0) == 0 else w).abs().to(torch.float64).sum(-2).max())
    fp32 = bound < FP32_EXACT and matmul_precision_exact(x.device)
    offset = 0 if xhi <= 127 else 128
    int8 = (not fp32 and x.device.type == "cpu" and bt == 1 and xlo - offset >= -128 and xhi - offset <= 127
            and wmax <= 128 and k * 128 * 128 < 2**31 and bound < 2**31 and _int8_gemm_is_fast())
    if int8:
        w8 = w[0].to(torch.int8).contiguous()
        shift = (w8.to(torch.int32).sum(0) * offset) if offset else None
        rows = chunk_rows(m, k * (x.element_size() + 1) + n * 8, c.memory_budget_bytes)
        for s in range(0, m, rows):
            xc = x[0, s : s + rows]
            check_integral(xc)
            x8 = (xc ^ offset).view(torch.int8) if xc.dtype == torch.uint8 and offset else (xc - offset).to(torch.int8)
            acc = torch._int_mm(x8, w8)
            if shift is not None:
                acc += shift
            out[0, s : s + rows] = acc
        return out
    dtype = torch.float32 if fp32 else torch.float64
    wd = w.to(dtype)
    size = 4 if fp32 else 8
    rows = chunk_rows(m, bt * (k + n) * size, c.memory_budget_bytes)
    if x.device.type == "cpu":
        rows = min(rows, max(MIN_CHUNK_ROWS, EXACT_CHUNK_BYTES // (bt * k * size)))
    for s in range(0, m, rows):
        xc = x[:, s : s + rows]
        check_integral(xc)
        out[:, s : s + rows] = torch.matmul(xc.to(dtype), wd)
    return out
