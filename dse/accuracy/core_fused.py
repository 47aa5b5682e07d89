"""Fused CPU path of the bit-plane simulator: native and numba kernels instead of whole-tensor torch passes.

:func:`simulate_fused` computes what ``core_planes.simulate_planes`` computes (bit for bit without
noise; the same distribution with noise, from a different random stream), with one pass per output
element: the ADC epilogue (scale, noise, clamp, round, votes, hybrid cycles, shift-add, sum over
groups) runs on an L1-sized scratch, and only the (M, N) output reaches memory. Column sums come
from one of three kernels:

- ``"bitsliced"`` (``core_bitsliced``, C with AVX-512 or AVX2, built on first use by the system
  compiler): lane-wise carry-save counting of bit planes taken across 512 rows at once, then the
  epilogue in 16- or 8-lane vectors (both builds give the same bits); it covers every
  configuration but votes, the nonlinear noise term, Box-Muller noise, more than 8 input bits or 511
  rows per group, which go to ``"popcount"``;
- ``"popcount"`` (numba, ``core_kernels``): AND + popcount of packed bit planes in the same kernel;
- ``"gemm"`` (numba): the torch bit-plane GEMM's packed sums of one M-chunk, then the kernel.

The numba kernels compile on first use and are cached by numba (``cache=True``: about 10-20 s per
kernel and dtype once per machine, then ~1 s to load).

Which path runs (:func:`kernel_for`): environment variable ``CIM_DSE_KERNEL`` = ``auto`` (default),
``torch`` (always the torch epilogue), ``popcount``, ``gemm`` or ``bitsliced``; ``auto`` takes
``gemm`` on CPUs with AMX (bf16 GEMM far faster than popcounts), else ``bitsliced`` where it builds
(x86-64 with AVX-512 or AVX2 + FMA, and a C compiler) for products of at least ``core_bitsliced.MIN_ROWS`` rows per
batch element, else ``popcount``, and the torch path for CUDA tensors or when neither native code nor
numba is available. ``bitsliced`` asked for by name runs at any size.

Noise: one 64-bit key per call is drawn from the caller's generator (``torch.randint``); every
random number is a pure function of (key, global row, group, column, conversion), so results do not
depend on threads, blocks or M-chunking (see ``core_kernels``). Environment variable
``CIM_DSE_NOISE`` (:func:`noise_for`) picks how a noisy conversion's code is drawn:

- ``table`` (default): exact inverse-CDF sampling of the code from one 32-bit uniform U per
  conversion: code >= c iff U >= T(c) = 2^32 Phi((c - 1/2 - u) / std) - 1/2, so code c has the
  probability Phi((c + 1/2 - u)/std) - Phi((c - 1/2 - u)/std) (tails folded into 0 and L) to 2^-32,
  for any u and std (the nonlinear std included). The fast way to those comparisons is
  u + std * Phi^-1((U + 1/2) / 2^32) from a per-octave polynomial table (:func:`quantile_table`,
  error below :data:`QUANTILE_ERROR`); within ``margin`` of a code boundary (about 1e-4 of the
  conversions) the kernel compares U with the thresholds themselves in float64. No transcendental
  function per conversion and no table per column sum, so nothing falls back on size.
- ``normal``: a float32 Box-Muller normal per conversion, scaled, added, clamped and rounded (the
  distribution to float32 accuracy of its log and sin/cos; 3-4x slower to draw).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from dse.accuracy import core_bitsliced, core_planes
from dse.accuracy.conv_rows import ConvRows, explicit
from dse.accuracy.core_planes import (
    Buffers,
    Dims,
    check_integral,
    chunk_rows,
    column_sums,
    exact_ratio,
    weight_planes,
    work_dtype,
)

if TYPE_CHECKING:
    from dse.accuracy.core import CimConfig

KERNELS = ("auto", "torch", "popcount", "gemm", "bitsliced")
ENV = "CIM_DSE_KERNEL"
NOISES = ("table", "normal")
NOISE_ENV = "CIM_DSE_NOISE"
QUANTILE_DEGREE = 4
"""Degree of the per-octave polynomials of :func:`quantile_table`."""
QUANTILE_ERROR = 5e-5
"""Bound on |z - Phi^-1((U + 1/2) / 2^32)| of the kernels' quantiles (measured: 3.2e-5 at most, over all 2^32 U).

Degree 4 rather than 6: the codes are exact either way (the margin grows with this bound, and conversions within it
take the exact thresholds), and two fewer coefficient permutes and FMAs per vector of uniforms made the bit-sliced
kernel's noisy conversions faster on a Zen 4 VM, while degree 3 lost more to the exact checks than it saved.
``benchmarks/quantile_error.py`` measures the bound."""
Z_MAX = 6.4
"""Bound on |z| of the quantiles (Phi^-1(2^-33) = -6.34)."""


@cache
def kernels() -> ModuleType | None:
    """The numba kernel module, or None when numba is missing or broken."""
    try:
        from dse.accuracy import core_kernels
    except Exception:  # ImportError, or numba failing to initialise on this platform
        return None
    return core_kernels


def _choice() -> str:
    """The kernel CIM_DSE_KERNEL asks for."""
    choice = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if choice not in KERNELS:
        raise ValueError(f"{ENV}={choice!r}: must be one of {', '.join(KERNELS)}")
    return choice


def kernel_for(device: torch.device) -> str:
    """``torch``, ``popcount``, ``gemm`` or ``bitsliced``: the path for operands on ``device`` (module docstring)."""
    choice = _choice()
    if choice == "torch" or device.type != "cpu":
        return "torch"
    numba = kernels() is not None
    if choice == "auto":
        amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        if numba and amx and torch.get_float32_matmul_precision() == "highest":
            return "gemm"
        choice = "bitsliced"
    if choice == "bitsliced" and core_bitsliced.library() is not None:
        return "bitsliced"
    return ("popcount" if choice == "bitsliced" else choice) if numba else "torch"


def simulator_kernel() -> str:
    """What ``auto`` runs for large CPU products here, with what it falls back on (recorded with results: the
    kernels draw the same noise distribution from different streams)."""
    choice = kernel_for(torch.device("cpu"))
    if choice == "bitsliced":
        return "bitsliced" + ("+popcount" if kernels() is not None else "+torch")
    return choice


def noise_for() -> str:
    """``table`` or ``normal``: how the fused kernels draw noisy codes (module docstring)."""
    choice = os.environ.get(NOISE_ENV, "table").strip().lower() or "table"
    if choice not in NOISES:
        raise ValueError(f"{NOISE_ENV}={choice!r}: must be one of {', '.join(NOISES)}")
    return choice


@cache
def quantile_table() -> np.ndarray:
    """(QUANTILE_DEGREE + 1, 32) float32: coefficient k of x^k for each octave of the kernels' quantiles.

    Octave o holds p = (q + 1/2) / 2^32 in [2^(o-33), 2^(o-32)), q = min(U, 2^32 - 1 - U), written
    p = m 2^(o-33) with m in [1, 2) and x = 2m - 3; the polynomial is the degree-QUANTILE_DEGREE truncation of a
    degree-24 Chebyshev interpolant of -Phi^-1(p) in x (near minimax), evaluated with float32 FMAs.
    """
    coef = np.zeros((QUANTILE_DEGREE + 1, 32))
    for o in range(32):

        def t(x: np.ndarray, o: int = o) -> np.ndarray:
            p = torch.from_numpy((x + 3.0) / 2.0 * 2.0 ** (o - 33))
            return -torch.special.ndtri(p).numpy()

        cheb = np.polynomial.chebyshev.chebinterpolate(t, 24)[: QUANTILE_DEGREE + 1]
        coef[:, o] = np.polynomial.chebyshev.cheb2poly(cheb)
    return coef.astype(np.float32)


class Tables:
    """Per (input cycle, weight bit) constants of the kernels' epilogue (see ``core_kernels._epilogue``)."""

    def __init__(self, c: CimConfig, work: torch.dtype, noise: str = "table"):
        cycles = c.cycles
        nc, wb = len(cycles), c.weight_bits
        levels = 2**c.adc_bits - 1
        top = wb + nc - 2
        wd = np.float32 if work == torch.float32 else np.float64
        self.kinds = np.zeros((nc, wb), np.int8)
        self.slots = np.zeros((nc, wb), np.int64)
        self.scale = np.zeros(nc, wd)
        self.den = np.zeros(nc, wd)
        self.lev = np.zeros((nc, 2), np.float64)
        self.ratio = np.zeros(nc, np.float64)  # exact-ish levels / FS per cycle (float64: table noise's thresholds)
        self.wts = np.array([-(2.0**i) if i == wb - 1 else 2.0**i for i in range(wb)], wd)
        self.votes = c.votes
        nslots = 0
        ratios = set()
        for j, cy in enumerate(cycles):
            fs = (2**cy.width - 1) * c.rows
            ratios.add(fs)
            sign = -1.0 if cy.negative else 1.0
            self.lev[j] = (2.0**cy.shift * (2**cy.width - 1) * sign, 2.0**cy.shift * sign)
            self.scale[j], self.den[j] = levels / fs, fs
            self.ratio[j] = levels / fs
            for i in range(wb):
                digital = i + j > top - c.hybrid_levels
                if digital and c.semantics == "default":
                    continue  # kind 0: exact
                if digital or not c.noisy:
                    self.kinds[j, i] = 1
                elif c.votes > 1 and i + j > top - c.voting_levels:
                    self.kinds[j, i], self.slots[j, i] = 3, nslots
                    nslots += c.votes
                else:
                    self.kinds[j, i], self.slots[j, i] = 2, nslots
                    nslots += 1
        if not all(exact_ratio(levels, fs, work) for fs in ratios):  # two steps, as the torch path
            self.scale[:] = levels
        else:
            self.den[:] = 0
        self.nslots = nslots
        s_nl = c.nonlinear_sigma_pct / 100.0 * levels
        self.margin = noise_margin(levels, c.noise_lsb, s_nl, wd)
        self.table = noise == "table" and self.margin < 0.25
        hm = wd(0.5 - self.margin)
        if hm > 0.5 - self.margin:  # round down: no conversion within the margin escapes the check
            hm = np.nextafter(hm, wd(0))
        self.fp = np.array([levels, c.noise_lsb, s_nl, c.rows / levels, 1.0, hm if self.table else 1.0], wd)
        self.fx = np.array([c.noise_lsb, s_nl, c.rows / levels], np.float64)
        self.coef = quantile_table()
        self.levels, self.rows = float(levels), float(c.rows)

    def args(self) -> tuple:
        """The kernels' table arguments, in order (between the operands and key, rows, levels, out)."""
        return (self.kinds, self.slots, self.nslots, self.wts, self.scale, self.den, self.lev, self.fp, self.ratio,
                self.fx, self.coef, self.table, self.votes)


def noise_margin(levels: int, sigma: float, s_nl: float, work: type) -> float:
    """Distance in LSB from a code boundary beyond which a table-noise code needs no exact check.

    Bounds |y - y*| between the kernel's y = fl(fl(s * sce) + fl(std z)) (work dtype, unit roundoff
    eps) and the exact u* + std* Phi^-1((U + 1/2) / 2^32), with u* <= L and |z| <= Z_MAX: 2 eps L
    for u (sce and the product rounded), std QUANTILE_ERROR for z, (1 + 16) eps std Z_MAX for the
    product and the std's own rounding, eps (L + std Z_MAX) for the sum.
    """
    eps = 2.0**-24 if work == np.float32 else 2.0**-53
    std_max = math.hypot(sigma, s_nl)
    return std_max * QUANTILE_ERROR + eps * (3 * levels + 18 * Z_MAX * std_max)


def _key(tables: Tables, generator: torch.Generator | None) -> np.uint64:
    """The call's noise key (one draw from the generator; none when nothing is noisy)."""
    if not tables.nslots:
        return np.uint64(0)
    return np.uint64(int(torch.randint(0, 2**63 - 1, (1,), generator=generator).item()))


@contextlib.contextmanager
def _threads() -> Iterator[None]:
    """Run numba's kernels on as many threads as torch uses (results do not depend on it), and leave torch's
    count as it was: numba's OpenMP layer raises it to NUMBA_NUM_THREADS when its pool starts, which would
    oversubscribe a process that asked torch for fewer threads (one per worker of a process pool)."""
    import numba

    before = torch.get_num_threads()
    numba.set_num_threads(max(1, min(before, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def simulate_fused(x: Tensor | ConvRows, w: Tensor, c: CimConfig, group_rows: int, groups: int, keep: int,
                   generator: torch.Generator | None, kernel: str) -> Tensor | None:
    """(Bt, M, K) @ (Bt, K, N) through the macro with the native or numba kernels; float32 (Bt, M, N).

    None when the bit-sliced kernel does not cover the configuration and numba is missing (the
    caller then takes the torch path)."""
    assert kernel in ("popcount", "gemm", "bitsliced")
    tables = Tables(c, work_dtype(c, group_rows), noise_for())
    if kernel == "bitsliced":
        small = x.shape[1] < core_bitsliced.MIN_ROWS and _choice() == "auto" and kernels() is not None
        if core_bitsliced.covers(c, group_rows, tables, keep) and not small:
            return core_bitsliced.simulate(x, w, c, group_rows, groups, keep, tables, _key(tables, generator))
        kernel = "popcount"
    mod = kernels()
    if mod is None:
        return None
    x = explicit(x)
    key = _key(tables, generator)
    with _threads():
        if kernel == "popcount":
            return _popcount(mod, x, w, c, group_rows, groups, keep, tables, key)
        return _gemm(mod, x, w, c, group_rows, groups, keep, tables, key)


def _popcount(mod: ModuleType, x: Tensor, w: Tensor, c: CimConfig, group_rows: int, groups: int, keep: int,
              tables: Tables, key: np.uint64) -> Tensor:
    """Fully fused: packed bit planes, AND + popcount, epilogue; the x bytes of one chunk as scratch."""
    bt, m, _ = x.shape
    n = w.shape[-1]
    words = math.ceil(group_rows / 64)
    padded = words * 64
    wpad = torch.zeros(bt, groups, padded, n, dtype=torch.int64)
    wk = w[:, :keep].to(torch.int64) & (2**c.weight_bits - 1)
    for g in range(groups):
        lo, hi = g * group_rows, min(keep, (g + 1) * group_rows)
        if hi > lo:
            wpad[:, g, : hi - lo] = wk[:, lo:hi]
    wbits = np.empty((bt, groups, words, c.weight_bits * n), np.uint64)
    mod.pack_weights(wpad.numpy(), c.weight_bits, wbits)
    del wpad, wk
    planes = math.ceil(c.input_bits / 8)
    cyc = np.array([(cy.shift, cy.width) for cy in c.cycles], np.int64)
    row_bytes = bt * (planes * groups * padded + keep * (x.element_size() + 4) + n * 4)
    rows = chunk_rows(m, row_bytes, c.memory_budget_bytes)
    out = torch.empty(bt, m, n)
    for s in range(0, m, rows):
        xc = x[:, s : s + rows, :keep]
        check_integral(xc)
        mc = xc.shape[1]
        xb = torch.zeros(bt, mc, planes, groups, padded, dtype=torch.uint8)
        if planes == 1 and not c.signed_inputs:
            parts = [xc]
        else:
            xi = xc.to(torch.int32) & (2**c.input_bits - 1)  # two's-complement low bits
            parts = [(xi >> (8 * p)) & 255 for p in range(planes)]
        for p, part in enumerate(parts):
            for g in range(groups):
                lo, hi = g * group_rows, min(keep, (g + 1) * group_rows)
                if hi > lo:
                    xb[:, :, p, g, : hi - lo] = part[:, :, lo:hi]
        xq = xb.numpy().view(np.uint64)
        part = np.empty((bt, mc, n), np.float32)  # C-contiguous: one compiled layout
        mod.fused_popcount(xq, wbits, c.input_bits, cyc, s, m, *tables.args(), key, tables.rows, tables.levels, part)
        out[:, s : s + mc] = torch.from_numpy(part)
    return out


def _gemm(mod: ModuleType, x: Tensor, w: Tensor, c: CimConfig, group_rows: int, groups: int, keep: int,
          tables: Tables, key: np.uint64) -> Tensor:
    """The torch bit-plane GEMM per M-chunk, then the fused epilogue on its packed sums."""
    bt, m, _ = x.shape
    cycles = c.cycles
    max_sum = (2 ** max(cy.width for cy in cycles) - 1) * group_rows
    engine = core_planes.choose_engine(x.device, max_sum, c.weight_bits, False)  # padding planes cost no normals here
    packs = math.ceil(c.weight_bits / engine.fields)
    d = Dims(bt, groups, group_rows, len(cycles), w.shape[-1], c.weight_bits, packs, engine.fields)
    planes = weight_planes(w[:, :keep], d, engine)
    xdtype = torch.uint8 if c.input_bits <= 8 else torch.int32
    shifts = torch.tensor([cy.shift for cy in cycles], dtype=xdtype).reshape(1, 1, -1, 1, 1)
    masks = torch.tensor([2**cy.width - 1 for cy in cycles], dtype=xdtype).reshape(1, 1, -1, 1, 1)
    es = torch.empty((), dtype=engine.dtype).element_size()
    kp = groups * group_rows
    xs = torch.empty((), dtype=xdtype).element_size()
    row_bytes = bt * (kp * xs * (1 + d.cycles) + d.cycles * kp * es + groups * d.cycles * packs * d.n * es)
    rows = chunk_rows(m, row_bytes, c.memory_budget_bytes)
    bufs = Buffers(x.device)
    out = torch.empty(bt, m, d.n)
    for s in range(0, m, rows):
        xc = x[:, s : s + rows, :keep]
        check_integral(xc)
        mc = xc.shape[1]
        xi = bufs.get("x", (bt, mc, kp), xdtype)
        if keep < kp:
            xi[..., keep:] = 0
        xi[..., :keep] = (xc.to(torch.int32) & (2**c.input_bits - 1)) if c.signed_inputs else xc
        sums = column_sums(xi, planes, d, engine, shifts, masks, bufs)
        sn = sums.float() if engine.dtype == torch.bfloat16 else sums  # numpy has no bfloat16
        view = sn.numpy().reshape(bt, groups, d.cycles, mc, packs * d.n)
        part = np.empty((bt, mc, d.n), np.float32)
        mod.fused_gemm(view, engine.fields, engine.field_bits, c.weight_bits, s, m, *tables.args(), key,
                       tables.rows, tables.levels, part)
        out[:, s : s + mc] = torch.from_numpy(part)
    return out
