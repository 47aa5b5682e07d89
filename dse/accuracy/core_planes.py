"""Bit-plane path of the CiM simulator: one batched GEMM per M-chunk and a whole-chunk ADC epilogue.

Layout of one chunk (Bt batches, G row groups of ``gr`` rows, C input cycles, Mc rows of M, N columns):
the input digits ``A (Bt, G, C, Mc, gr)`` times the weight planes ``(Bt, G, gr, P*N)`` give the column
sums of every (group, cycle, weight bit) conversion at once. Each GEMM value holds F weight planes'
sums in f-bit fields (exact: the packed value stays below 2^24 in fp32, 2^53 in fp64), so a W-bit
weight costs ``P = ceil(W / F)`` GEMM columns instead of W. Fields of 8 bits are unpacked through a
byte view of the integer value into ``u (Bt, G, C, Mc, F, P, N)``: slot ``(f, p)`` holds weight plane
``p * F + f`` (planes from W on are all-zero padding), N innermost, so every epilogue pass, the noise
included, is contiguous. Nothing here loops over bits or groups; the Python loop is over M-chunks.
"""

from __future__ import annotations

import math
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from dse.accuracy.core import CimConfig

WORKSET_BYTES = 32 * 2**20
"""Scratch aimed at per M-chunk (cache and allocator friendly); ``memory_budget_bytes`` caps it."""
FP32_EXACT = 2**24
MIN_CHUNK_ROWS = 64
"""Fewest M rows per chunk while the budget allows (wide layers: GEMMs stay efficient)."""
PARALLEL_NORMAL_MIN = 2**20
"""Fewest elements for which CPU normals are drawn by several threads (torch's CPU generator is serial)."""
_POOL: dict[int, ThreadPoolExecutor] = {}


def matmul_precision_exact(device: torch.device) -> bool:
    """fp32 matmuls run in full fp32 (no TF32/bf16 shortcut a user may have switched on)."""
    if torch.get_float32_matmul_precision() != "highest":
        return False
    return not (device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32)


def normal_(t: Tensor, generator: torch.Generator | None) -> Tensor:
    """Fill contiguous t with N(0, 1) in place, reproducibly from ``generator``.

    On CPU, large fills are split over ``torch.get_num_threads()`` threads, each with its own
    generator seeded from ``generator``: the same seed gives the same numbers whatever the timing.
    """
    parts = torch.get_num_threads()
    if t.device.type != "cpu" or parts < 2 or t.numel() < PARALLEL_NORMAL_MIN:
        return t.normal_(generator=generator)
    pool = _POOL.get(parts) or _POOL.setdefault(parts, ThreadPoolExecutor(parts, thread_name_prefix="cim-normal"))
    seeds = torch.randint(0, 2**62, (parts,), generator=generator).tolist()
    flat = t.view(-1)
    step = math.ceil(flat.numel() / parts)

    def fill(k: int) -> None:
        flat[k * step : (k + 1) * step].normal_(generator=torch.Generator().manual_seed(seeds[k]))

    list(pool.map(fill, range(parts)))
    return t


def chunk_rows(total: int, row_bytes: int, budget: int) -> int:
    """M rows per chunk: about the working-set target, at least MIN_CHUNK_ROWS, never over the budget."""
    row_bytes = max(row_bytes, 1)
    cap = budget // row_bytes
    return max(1, min(total, cap, max(WORKSET_BYTES // row_bytes, MIN_CHUNK_ROWS)))


@dataclass(frozen=True)
class Engine:
    """How the bit-plane GEMM runs: its dtype, weight planes per value (fields) and bits per field."""

    dtype: torch.dtype
    fields: int
    field_bits: int

    @property
    def byte_view(self) -> bool:
        """Fields are whole bytes of the integer value: unpack by a free byte view."""
        return self.fields > 1 and self.field_bits == 8 and sys.byteorder == "little"


def choose_engine(device: torch.device, max_sum: int, weight_bits: int, noisy: bool) -> Engine:
    """Fastest exact bit-plane GEMM for this device and column-sum bound.

    bf16 on CPUs with AMX while every sum is <= 256 (bf16 holds integers exactly up to 256);
    otherwise fp32 with up to ``24 // f`` planes packed per value; fp64 (``53 // f``) when fp32
    matmuls may run at reduced precision or the fields do not fit in 24 bits. Of the packings that
    fit, noise-free runs take the fewest GEMM columns, noisy ones the fewest padding planes (every
    slot of the epilogue draws a normal, the dominant cost).
    """
    bits = max(1, max_sum.bit_length())
    if matmul_precision_exact(device):
        amx = device.type == "cpu" and getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        if amx and max_sum <= 256:
            return Engine(torch.bfloat16, 1, bits)
        dtype, most = torch.float32, 24 // bits
    else:
        dtype, most = torch.float64, 53 // bits
    if most < 1:
        dtype, most = torch.float64, 53 // bits
    if most < 1:
        raise ValueError(f"cim_matmul: column sums up to {max_sum} exceed exact float64")

    def cost(f: int) -> tuple[int, int]:
        packs = math.ceil(weight_bits / f)
        return (packs * f, packs) if noisy else (packs, packs * f)

    return Engine(dtype, min(range(1, most + 1), key=cost), bits)


@dataclass(frozen=True)
class Dims:
    """Static sizes of one call (see the module docstring)."""

    bt: int
    groups: int
    group_rows: int
    cycles: int
    n: int
    weight_bits: int
    packs: int
    fields: int

    @property
    def slots(self) -> int:
        """Weight-plane slots per conversion column (W real planes plus padding)."""
        return self.packs * self.fields


@dataclass(frozen=True)
class Tables:
    """Per (input cycle, weight plane) constants of the epilogue, laid out to broadcast over a chunk.

    Slot tables are (C, 1, S*N), matching u viewed as (Bt*G, C, Mc, S*N) with S = F*P slots, so that
    every broadcast is over whole contiguous rows; a scalar replaces a table where all entries agree.
    """

    scale: Tensor | float  # u = m * scale (L / FS for ADC pairs, 1 for exact pairs)
    scale_den: Tensor | None  # when fl(L / FS) is not exact enough: u = m * L / FS in two steps
    clamp_max: Tensor | float  # L for ADC slots, +inf for exact slots
    noise: Tensor  # (C, 1, S*N): 1 for slots that get one noisy conversion, else 0
    level1: Tensor  # (C, 1, S*N): +-2^i of ADC pairs, 0 elsewhere
    level1_exact: Tensor | None  # (C, 1, S*N): +-2^i of exact (digital) pairs, None when there are none
    level2: Tensor  # (C, 2) float64: 2^shift * (2^width - 1) * sign and 2^shift * sign per cycle
    voted: tuple[Tensor, Tensor, Tensor] | None  # (cycle, field, pack) of the voted pairs


def exact_ratio(levels: int, fs: int, dtype: torch.dtype) -> bool:
    """``round(fl(m * fl(L / FS)))`` equals exact half-even rounding of ``m * L / FS`` for m in 0..FS.

    True when L/FS is dyadic (exact in binary, and so is every product), or when no exact tie can
    occur (FS / gcd(L, FS) odd) and the product error stays below 1/(2 FS), the smallest distance
    of a non-tie to a half-integer.
    """
    den = fs // math.gcd(levels, fs)
    if den & (den - 1) == 0:
        return True
    mantissa = 24 if dtype == torch.float32 else 53
    return den % 2 == 1 and levels * fs < 2 ** (mantissa - 2)


def pair_tables(c: CimConfig, d: Dims, dtype: torch.dtype, device: torch.device) -> Tables:
    """Classify every (cycle, weight bit) pair: exact, ADC noise-free, ADC noisy, ADC voted."""
    nc, wb = d.cycles, d.weight_bits
    levels = 2**c.adc_bits - 1
    top = wb + nc - 2
    shape = (nc, d.fields, d.packs)
    num, den = torch.ones(shape, dtype=torch.float64), torch.ones(shape, dtype=torch.float64)
    clamp = torch.full(shape, math.inf, dtype=torch.float64)
    level1, level1_exact = torch.zeros(shape, dtype=torch.float64), torch.zeros(shape, dtype=torch.float64)
    noise = torch.zeros(shape, dtype=torch.float64)
    level2 = torch.zeros(nc, 2, dtype=torch.float64)
    voted: list[tuple[int, int, int]] = []
    ratios: set[tuple[int, int]] = set()
    for j, cy in enumerate(c.cycles):
        fs = (2**cy.width - 1) * c.rows
        sign = -1.0 if cy.negative else 1.0
        level2[j, 0] = 2.0**cy.shift * (2**cy.width - 1) * sign
        level2[j, 1] = 2.0**cy.shift * sign
        for i in range(wb):
            p, f = divmod(i, d.fields)
            digital = i + j > top - c.hybrid_levels
            weight = -(2.0**i) if i == wb - 1 else 2.0**i
            if digital and c.semantics == "default":  # computed digitally: exact
                level1_exact[j, f, p] = weight
                continue
            level1[j, f, p] = weight
            num[j, f, p], den[j, f, p], clamp[j, f, p] = levels, fs, levels
            ratios.add((levels, fs))
            if digital or not c.noisy:
                continue
            if c.votes > 1 and i + j > top - c.voting_levels:
                voted.append((j, f, p))
            else:
                noise[j, f, p] = 1.0
    exact_pairs = bool(level1_exact.any())

    def row(t: Tensor) -> Tensor:  # (C, F, P) -> (C, 1, S * N) in the work dtype
        return t.reshape(nc, 1, d.slots, 1).expand(nc, 1, d.slots, d.n).reshape(nc, 1, -1).to(device, dtype)

    scale: Tensor | float
    scale_den = None
    if not all(exact_ratio(lv, fs, dtype) for lv, fs in ratios):
        scale, scale_den = row(num), row(den)
    elif len(ratios) == 1 and not exact_pairs:
        scale = levels / next(iter(ratios))[1]
    else:
        scale = row(num / den)
    vt = None
    if voted:
        vt = tuple(torch.tensor([v[k] for v in voted], device=device) for k in range(3))
    return Tables(
        scale=scale, scale_den=scale_den, clamp_max=row(clamp) if exact_pairs else float(levels),
        noise=row(noise), level1=row(level1), level1_exact=row(level1_exact) if exact_pairs else None,
        level2=level2.to(device), voted=vt,  # type: ignore[arg-type]
    )


def weight_planes(w: Tensor, d: Dims, engine: Engine) -> Tensor:
    """Two's-complement 0/1 planes of w (Bt, keep, N), ``fields`` per value: (Bt, G, gr, P*N)."""
    kp = d.groups * d.group_rows
    itype = torch.int32 if engine.field_bits * engine.fields <= 31 else torch.int64
    wi = torch.zeros(d.bt, kp, d.n, dtype=itype, device=w.device)
    wi[:, : w.shape[1]] = w
    wi &= 2**d.weight_bits - 1
    bit = torch.arange(d.slots, device=w.device).reshape(d.packs, d.fields, 1)  # plane p*F + f
    planes = (wi.unsqueeze(-2).unsqueeze(-2) >> bit) & 1  # (Bt, kp, P, F, N)
    planes[..., bit.squeeze(-1) >= d.weight_bits, :] = 0
    weights = 2 ** (engine.field_bits * torch.arange(d.fields, device=w.device, dtype=itype))
    packed = (planes * weights.reshape(d.fields, 1)).sum(-2, dtype=itype)  # (Bt, kp, P, N), exact
    return packed.to(engine.dtype).reshape(d.bt, d.groups, d.group_rows, d.packs * d.n)


class Buffers:
    """Scratch tensors reused across M-chunks (no fresh page faults per chunk)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.flat: dict[str, Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        """A contiguous tensor of ``shape`` backed by the named buffer (grown when needed)."""
        size = math.prod(shape)
        buf = self.flat.get(name)
        if buf is None or buf.dtype != dtype or buf.numel() < size:
            buf = torch.empty(size, dtype=dtype, device=self.device)
            self.flat[name] = buf
        return buf[:size].view(shape)


def simulate_planes(x: Tensor, w: Tensor, c: CimConfig, group_rows: int, groups: int, keep: int,
                    generator: torch.Generator | None) -> Tensor:
    """(Bt, M, K) @ (Bt, K, N) through the macro, bit plane by bit plane, chunked over M; float32."""
    bt, m, _ = x.shape
    cycles = c.cycles
    max_width = max(cy.width for cy in cycles)
    max_sum = (2**max_width - 1) * group_rows
    engine = choose_engine(x.device, max_sum, c.weight_bits, c.noisy)
    packs = math.ceil(c.weight_bits / engine.fields)
    d = Dims(bt, groups, group_rows, len(cycles), w.shape[-1], c.weight_bits, packs, engine.fields)
    work = work_dtype(c, group_rows)
    tables = pair_tables(c, d, work, x.device)
    planes = weight_planes(w[:, :keep], d, engine)
    xdtype = torch.uint8 if c.input_bits <= 8 else torch.int32
    shifts = torch.tensor([cy.shift for cy in cycles], dtype=xdtype, device=x.device).reshape(1, 1, -1, 1, 1)
    masks = torch.tensor([2**cy.width - 1 for cy in cycles], dtype=xdtype, device=x.device).reshape(1, 1, -1, 1, 1)
    rows = chunk_rows(m, _row_bytes(c, d, engine, work, xdtype, tables), c.memory_budget_bytes)
    bufs = Buffers(x.device)
    out = torch.empty(bt, m, d.n, device=x.device)
    kp = groups * group_rows
    for s in range(0, m, rows):
        xc = x[:, s : s + rows, :keep]
        if xc.is_floating_point() and bool((xc != torch.trunc(xc)).any()):
            raise ValueError("cim_matmul: x_codes must hold integer codes")
        mc = xc.shape[1]
        xi = bufs.get("x", (bt, mc, kp), xdtype)
        if keep < kp:
            xi[..., keep:] = 0
        if c.signed_inputs:  # two's-complement low bits
            xi[..., :keep] = xc.to(torch.int32) & (2**c.input_bits - 1)
        else:
            xi[..., :keep] = xc
        out[:, s : s + mc] = _chunk(xi, planes, tables, c, d, engine, work, shifts, masks, bufs, generator)
    return out


def check_integral(t: Tensor, name: str = "x_codes") -> None:
    """Raise unless a float chunk holds integers (cheap: the caller's chunk, not the whole tensor)."""
    if t.is_floating_point() and t.numel() and bool((t != torch.trunc(t)).any()):
        raise ValueError(f"cim_matmul: {name} must hold integer codes")


def work_dtype(c: CimConfig, group_rows: int) -> torch.dtype:
    """Epilogue dtype: float32 while scaled sums are exact enough for half-even rounding and codes
    times plane weights stay exact integers, else float64 (shared with the fused kernels)."""
    max_width = max(cy.width for cy in c.cycles)
    max_sum = (2**max_width - 1) * group_rows
    levels = 2**c.adc_bits - 1
    fp32_ok = levels * (2**max_width - 1) * c.rows < 2**22 and max(levels, max_sum) * 2**c.weight_bits < FP32_EXACT
    return torch.float32 if fp32_ok else torch.float64


def column_sums(xi: Tensor, planes: Tensor, d: Dims, engine: Engine, shifts: Tensor, masks: Tensor,
                bufs: Buffers) -> Tensor:
    """One M-chunk's packed column sums (Bt, G, C*Mc, P*N): input digits times weight planes, one GEMM."""
    bt, mc, _ = xi.shape
    g, gr, nc = d.groups, d.group_rows, d.cycles
    xv = xi.view(bt, mc, g, gr).permute(0, 2, 1, 3).unsqueeze(2)  # (Bt, G, 1, Mc, gr)
    digits = bufs.get("digits", (bt, g, nc, mc, gr), xi.dtype)
    torch.bitwise_right_shift(xv, shifts, out=digits)
    digits.bitwise_and_(masks)
    a = bufs.get("a", (bt, g, nc * mc, gr), engine.dtype)
    a.view(digits.shape).copy_(digits)
    sums = bufs.get("sums", (bt, g, nc * mc, d.packs * d.n), engine.dtype)
    torch.matmul(a, planes, out=sums)
    return sums


def _row_bytes(c: CimConfig, d: Dims, engine: Engine, work: torch.dtype, xdtype: torch.dtype, t: Tables) -> int:
    """Bytes of scratch per row of M (all buffers of one chunk)."""
    es = torch.empty((), dtype=engine.dtype).element_size()
    ws = torch.empty((), dtype=work).element_size()
    xs = torch.empty((), dtype=xdtype).element_size()
    kp = d.groups * d.group_rows
    per_col = d.packs * (es + 8) + d.slots * ws * 3 + 2 * (ws + 8)
    voted = 0 if t.voted is None else len(t.voted[0]) * c.votes * ws * 5
    return d.bt * (kp * xs * (1 + d.cycles) + d.cycles * kp * es + d.groups * d.n * (d.cycles * per_col + voted))


def _chunk(xi: Tensor, planes: Tensor, t: Tables, c: CimConfig, d: Dims, engine: Engine, work: torch.dtype,
           shifts: Tensor, masks: Tensor, bufs: Buffers, generator: torch.Generator | None) -> Tensor:
    """One M-chunk: digits -> one batched GEMM -> column sums -> ADC epilogue -> exact reduction."""
    bt, mc, _ = xi.shape
    g, nc, n = d.groups, d.cycles, d.n
    sums = column_sums(xi, planes, d, engine, shifts, masks, bufs)
    u = bufs.get("u", (bt, g, nc, mc, d.fields, d.packs, n), work)
    _unpack(sums, u, engine, bufs)
    rows = u.view(bt * g, nc, mc, d.slots * n)  # tables broadcast over whole contiguous rows
    _adc(u, rows, t, c, bufs, generator)
    counts = None
    if t.level1_exact is not None:  # digital pairs' exact sums, before the codes overwrite them
        counts = _reduce(rows * t.level1_exact, t.level2[:, 1], d, mc)
    codes = _reduce(rows.mul_(t.level1), t.level2[:, 0], d, mc)
    levels = 2**c.adc_bits - 1
    if counts is None:
        return (codes * c.rows) / levels
    return (codes * c.rows + counts * levels) / levels  # one rounding of an exact integer ratio


def _reduce(weighted: Tensor, per_cycle: Tensor, d: Dims, mc: int) -> Tensor:
    """Sum weighted slots exactly: over planes in fp32 (integers < 2^24), over cycles and groups in fp64."""
    planes = weighted.view(d.bt, d.groups, d.cycles, mc, d.slots, d.n).sum(-2)
    return (planes.to(torch.float64) * per_cycle.reshape(-1, 1, 1)).sum((1, 2))


def _unpack(sums: Tensor, u: Tensor, engine: Engine, bufs: Buffers) -> None:
    """Packed column sums (Bt, G, C*Mc, P*N) -> u (Bt, G, C, Mc, F, P, N) in the work dtype."""
    bt, g, nc, mc, fields, packs, n = u.shape
    if fields == 1:
        u.copy_(sums.view(u.shape))
        return
    ints = bufs.get("ints", sums.shape, torch.int32 if engine.dtype == torch.float32 else torch.int64)
    ints.copy_(sums)
    if engine.byte_view:
        by = ints.view(torch.uint8).view(bt, g, nc, mc, packs, n, ints.element_size())
        u.copy_(by.permute(0, 1, 2, 3, 6, 4, 5)[:, :, :, :, :fields])
        return
    shift = engine.field_bits * torch.arange(fields, device=u.device, dtype=ints.dtype).reshape(fields, 1, 1)
    u.copy_((ints.view(bt, g, nc, mc, 1, packs, n) >> shift) & (2**engine.field_bits - 1))


def _adc(u: Tensor, rows: Tensor, t: Tables, c: CimConfig, bufs: Buffers, generator: torch.Generator | None) -> None:
    """In place: column sums -> ADC codes; exact pairs keep their sums. ``rows`` is u viewed (Bt*G, C, Mc, S*N)."""
    rows.mul_(t.scale)
    if t.scale_den is not None:
        rows.div_(t.scale_den)
    voted = None
    if t.voted is not None:
        cy, f, p = t.voted
        voted = _vote(u[:, :, cy, :, f, p], c, generator)  # (Pv, Bt, G, Mc, N)
    if c.noisy and bool(t.noise.any()):
        noise = normal_(bufs.get("noise", rows.shape, u.dtype), generator)
        if c.nonlinear_sigma_pct > 0:
            noise.mul_(_noise_std(bufs.get("std", rows.shape, u.dtype).copy_(rows), c))
            rows.addcmul_(noise, t.noise)
        else:
            rows.addcmul_(noise, t.noise * c.noise_lsb)
        if isinstance(t.clamp_max, float):
            rows.clamp_(0.0, t.clamp_max)
        else:
            rows.clamp_(min=torch.zeros_like(t.clamp_max), max=t.clamp_max)
    rows.round_()
    if voted is not None:
        cy, f, p = t.voted
        u[:, :, cy, :, f, p] = voted


def _noise_std(u: Tensor, c: CimConfig) -> Tensor | float:
    """Noise std in LSB, in place on u when the 1/sqrt(MAC + 1) term is on (MAC = u * rows / L)."""
    if c.nonlinear_sigma_pct == 0:
        return c.noise_lsb
    levels = 2**c.adc_bits - 1
    s_nl = c.nonlinear_sigma_pct / 100.0 * levels
    u.mul_(c.rows / levels).add_(1.0).clamp_(min=1.0).reciprocal_().mul_(s_nl**2).add_(c.noise_lsb**2).sqrt_()
    return u


def _vote(u0: Tensor, c: CimConfig, generator: torch.Generator | None) -> Tensor:
    """Codes of the voted pairs: ``votes`` noisy conversions each, the mode kept (ties: smallest code)."""
    levels = 2**c.adc_bits - 1
    reps = u0.unsqueeze(0).expand(c.votes, *u0.shape).clone()
    noise = normal_(torch.empty_like(reps), generator)
    noise.mul_(_noise_std(u0.clone(), c) if c.nonlinear_sigma_pct > 0 else c.noise_lsb)
    reps.add_(noise).clamp_(0, levels).round_()
    del noise
    return mode(reps, levels)


def mode(codes: Tensor, levels: int) -> Tensor:
    """Element-wise mode over dim 0 of integer codes in 0..levels; ties go to the smallest code.

    Votes are few, so this is V^2 whole-tensor compares and V maxima (an arg-reduction over a short
    outer dim is far slower in torch): the key ``count * (L + 1) + L - code`` is largest for the most
    frequent, then smallest, code, and gives the code back.
    """
    counts = torch.zeros_like(codes)
    for v in range(codes.shape[0]):
        counts += codes == codes[v]
    key = counts.mul_(levels + 1).sub_(codes).add_(levels)
    best = key[0]
    for v in range(1, codes.shape[0]):
        best = torch.maximum(best, key[v])
    return levels - torch.remainder(best, levels + 1)
