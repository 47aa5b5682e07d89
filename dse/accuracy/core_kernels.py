"""Numba kernels of the fused CPU path (imported only when numba is installed; see ``core_fused``).

One kernel call handles one M-chunk; ``prange`` runs over blocks of its rows, and for each row and
row group it (1) gets the integer column sum of every (input cycle, weight bit, output column)
conversion, either by AND + popcount of packed bit planes (:func:`fused_popcount`) or from the
packed fields of the bit-plane GEMM (:func:`fused_gemm`), into an L1-sized scratch, then (2) runs
the whole ADC epilogue on it (:func:`_epilogue`): scale to ADC codes, noise, clamp, round (half to
even), voting, hybrid (exact) cycles, sign and shift-add, and the exact accumulation over groups.
Only the (M, N) output is written to memory.

Noise: a counter-based generator. Normal pair ``h`` of (global row, group, column n) comes from
``splitmix64(key + (counter + 1) * GAMMA)`` with ``counter = ((row * G + group) * H + h) * N + n``
(the SplitMix64 sequence read at that position), turned into two N(0, 1) by Box-Muller with float32
log and sin/cos polynomials (Cephes, about 1 ulp). The key comes from the caller's torch generator,
so results depend on the generator's state and on nothing else: not on threads, blocks or chunks.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

# ----------------------------------------------------------------------------------------------
# LLVM intrinsics numba does not expose


@intrinsic
def popcount64(typingctx, x):  # type: ignore[no-untyped-def]
    """Number of set bits of a uint64 (llvm.ctpop: POPCNT, or vectorised nibble look-ups)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.ctpop(args[0])

    return sig, codegen


@intrinsic
def f32_bits(typingctx, x):  # type: ignore[no-untyped-def]
    """The IEEE bits of a float32 as uint32."""
    sig = types.uint32(types.float32)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], context.get_value_type(types.uint32))

    return sig, codegen


@intrinsic
def bits_f32(typingctx, x):  # type: ignore[no-untyped-def]
    """The float32 with the given IEEE bits."""
    sig = types.float32(types.uint32)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], context.get_value_type(types.float32))

    return sig, codegen


@intrinsic
def fma32(typingctx, a, b, c):  # type: ignore[no-untyped-def]
    """``a * b + c`` rounded once (llvm.fma: IEEE fused multiply-add, deterministic)."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.fma(args[0], args[1], args[2])

    return sig, codegen


# ----------------------------------------------------------------------------------------------
# random numbers

GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_F32 = np.float32


@njit(inline="always")
def splitmix64(z: np.uint64) -> np.uint64:
    """SplitMix64's output function (Steele, Lea, Flood 2014)."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(inline="always")
def log_f32(x: np.float32) -> np.float32:
    """Natural log of a positive normal float32 (Cephes logf: exponent split, degree-9 polynomial)."""
    b = f32_bits(x)
    e = _F32(np.int32(b >> np.uint32(23))) - _F32(126.0)
    m = bits_f32((b & np.uint32(0x7FFFFF)) | np.uint32(0x3F000000))  # [0.5, 1)
    small = _F32(m < _F32(0.70710677))
    e = e - small
    x = m + m * small - _F32(1.0)  # exact: [sqrt(1/2) - 1, sqrt(2) - 1)
    z = x * x
    y = _F32(7.0376836292e-2)
    y = fma32(y, x, _F32(-1.1514610310e-1))
    y = fma32(y, x, _F32(1.1676998740e-1))
    y = fma32(y, x, _F32(-1.2420140846e-1))
    y = fma32(y, x, _F32(1.4249322787e-1))
    y = fma32(y, x, _F32(-1.6668057665e-1))
    y = fma32(y, x, _F32(2.0000714765e-1))
    y = fma32(y, x, _F32(-2.4999993993e-1))
    y = fma32(y, x, _F32(3.3333331174e-1))
    y = y * x * z
    y = fma32(e, _F32(-2.12194440e-4), y)
    y = fma32(_F32(-0.5), z, y)
    return fma32(e, _F32(0.693359375), x + y)


@njit(inline="always")
def box_muller(h: np.uint64) -> tuple[np.float32, np.float32]:
    """Two independent N(0, 1) from 64 random bits (32 for the radius, 2 + 24 for the angle)."""
    hi = np.uint32(h >> np.uint64(32))
    lo = np.uint32(h & np.uint64(0xFFFFFFFF))
    u1 = (_F32(hi) + _F32(0.5)) * _F32(2.0**-32)  # (0, 1]: radius tail to 6.7 sigma
    r = np.sqrt(max(_F32(-2.0) * log_f32(u1), _F32(0.0)))
    quadrant = lo >> np.uint32(30)
    f = _F32((lo >> np.uint32(6)) & np.uint32(0xFFFFFF)) * _F32(2.0**-24) - _F32(0.5)
    x = f * _F32(1.5707963267948966)  # [-pi/4, pi/4); angle = quadrant * pi/2 + x
    z = x * x
    s = fma32(fma32(fma32(_F32(-1.9515295891e-4), z, _F32(8.3321608736e-3)), z, _F32(-1.6666654611e-1)) * z, x, x)
    c = fma32(fma32(fma32(_F32(2.443315711809948e-5), z, _F32(-1.388731625493765e-3)), z,
                    _F32(4.166664568298827e-2)) * z, z, fma32(_F32(-0.5), z, _F32(1.0)))
    # rotate (c, s) by the quadrant: 0 (c, s), 1 (-s, c), 2 (-c, -s), 3 (s, -c); bit selects, no branch
    swap = np.uint32(0) - (quadrant & np.uint32(1))
    cb, sb = f32_bits(c), f32_bits(s)
    first = (cb & ~swap) | (sb & swap)
    second = (sb & ~swap) | (cb & swap)
    first ^= (((quadrant + np.uint32(1)) >> np.uint32(1)) & np.uint32(1)) << np.uint32(31)
    second ^= (quadrant >> np.uint32(1)) << np.uint32(31)
    return r * bits_f32(first), r * bits_f32(second)


@njit(error_model="numpy", cache=True)
def normals(key: np.uint64, start: int, pairs: int) -> np.ndarray:
    """``2 * pairs`` normals of counters ``start ..``: what the kernels draw (for tests and statistics)."""
    out = np.empty(2 * pairs, np.float32)
    for k in range(pairs):
        z0, z1 = box_muller(splitmix64(key + np.uint64(start + k + 1) * GAMMA))
        out[2 * k] = z0
        out[2 * k + 1] = z1
    return out



@njit(inline="always")
def _draw(z: np.ndarray, pairs: int, key: np.uint64, base: int, n: int) -> None:
    """Normals of one (row, group): pair h of column col (z[2h, col], z[2h+1, col]) is counter ``base + h*n + col``."""
    for h in range(pairs):
        c0 = base + h * n + 1
        for col in range(n):
            a, b = box_muller(splitmix64(key + np.uint64(c0 + col) * GAMMA))
            z[2 * h, col] = a
            z[2 * h + 1, col] = b


# ----------------------------------------------------------------------------------------------
# the ADC epilogue of one (row, group)


@njit(inline="always")
def _epilogue(s: np.ndarray, z: np.ndarray, kinds: np.ndarray, slots: np.ndarray, wts: np.ndarray,
              scale: np.ndarray, den: np.ndarray, lev: np.ndarray, fp: np.ndarray, votes: int, codes: np.ndarray,
              exact: np.ndarray, vote: np.ndarray, acc: np.ndarray, acc_exact: np.ndarray) -> None:
    """Column sums s (C, W*N) of one group -> ADC codes, accumulated into acc (codes) and acc_exact (sums).

    kinds (C, W): 0 exact (digital), 1 ADC, 2 ADC + noise, 3 ADC + noise, voted; slots: the row of
    z (normals) of a noisy pair (``votes`` rows when voted). wts (W,): +-2^i; scale, den (C,):
    u = s * scale, or s * scale / den when den[0] > 0 (as the torch path: noise-free codes equal bit
    for bit). lev (C, 2) float64: per-cycle factors of codes and of exact sums. fp (work dtype):
    levels, noise std in LSB, nonlinear std in LSB at MAC 0, rows / levels, 1.
    """
    nc, wb = kinds.shape
    n = acc.shape[0]
    levels, sigma, s_nl, mac_per_lsb, one = fp[0], fp[1], fp[2], fp[3], fp[4]
    zero = one - one
    sigma2, s_nl2 = sigma * sigma, s_nl * s_nl
    two_step = den[0] > zero
    for j in range(nc):
        sc, dn = scale[j], den[j]
        sce = sc / dn if two_step else sc  # noisy pairs: one multiply (their codes are random anyway)
        for col in range(n):
            codes[col] = zero
        any_exact = False
        for i in range(wb):
            kind = kinds[j, i]
            w = wts[i]
            off = i * n
            if kind == 0:
                if not any_exact:
                    for col in range(n):
                        exact[col] = zero
                    any_exact = True
                for col in range(n):
                    exact[col] += s[j, off + col] * w
            elif kind == 1:
                if two_step:
                    for col in range(n):
                        codes[col] += np.rint(s[j, off + col] * sc / dn) * w
                else:
                    for col in range(n):
                        codes[col] += np.rint(s[j, off + col] * sc) * w
            elif kind == 2:
                zr = slots[j, i]
                if s_nl > zero:
                    for col in range(n):
                        u = s[j, off + col] * sce
                        std = np.sqrt(sigma2 + s_nl2 / max(u * mac_per_lsb + one, one))
                        codes[col] += np.rint(min(max(u + std * z[zr, col], zero), levels)) * w
                else:
                    for col in range(n):
                        u = s[j, off + col] * sce + sigma * z[zr, col]
                        codes[col] += np.rint(min(max(u, zero), levels)) * w
            else:
                for v in range(votes):
                    zr = slots[j, i] + v
                    for col in range(n):
                        u = s[j, off + col] * sce
                        std = np.sqrt(sigma2 + s_nl2 / max(u * mac_per_lsb + one, one))
                        vote[v, col] = np.rint(min(max(u + std * z[zr, col], zero), levels))
                _mode(vote, votes, levels, one)
                for col in range(n):
                    codes[col] += vote[votes, col] * w
        l0 = lev[j, 0]
        for col in range(n):
            acc[col] += np.float64(codes[col]) * l0
        if any_exact:
            l1 = lev[j, 1]
            for col in range(n):
                acc_exact[col] += np.float64(exact[col]) * l1


@njit(inline="always")
def _mode(vote: np.ndarray, votes: int, levels: float, one: float) -> None:
    """vote[votes] = the mode of the codes vote[:votes] per column (ties: the smallest code).

    The mode maximises ``count * (L + 1) + L - code``; that key modulo (L + 1) is ``L - code``.
    vote[votes + 1] is scratch.
    """
    n = vote.shape[1]
    zero = one - one
    for col in range(n):
        vote[votes, col] = zero - one
    for a in range(votes):
        for col in range(n):
            vote[votes + 1, col] = zero
        for b in range(votes):
            for col in range(n):
                vote[votes + 1, col] += one if vote[a, col] == vote[b, col] else zero
        for col in range(n):
            vote[votes, col] = max(vote[votes, col], vote[votes + 1, col] * (levels + one) + levels - vote[a, col])
    for col in range(n):
        vote[votes, col] = levels - vote[votes, col] % (levels + one)


@njit(inline="always")
def _finish(acc: np.ndarray, acc_exact: np.ndarray, rows: float, levels: float, out: np.ndarray, b: int,
            m: int) -> None:
    """out[b, m] = (codes * rows + sums * L) / L in float64, rounded once to float32 (as the torch path)."""
    for col in range(out.shape[2]):
        out[b, m, col] = (acc[col] * rows + acc_exact[col] * levels) / levels


# ----------------------------------------------------------------------------------------------
# kernels

_BLOCK = 16  # rows per prange step (scratch allocated per step)
_LSB8 = np.uint64(0x0101010101010101)
_GATHER8 = np.uint64(0x0102040810204080)


@njit(parallel=True, fastmath=False, error_model="numpy", cache=True)
def fused_popcount(xq: np.ndarray, wbits: np.ndarray, bits: int, cyc: np.ndarray, row0: int, rows_total: int,
                   kinds: np.ndarray, slots: np.ndarray, nslots: int, wts: np.ndarray, scale: np.ndarray,
                   den: np.ndarray, lev: np.ndarray, fp: np.ndarray, votes: int, key: np.uint64,
                   rows_nominal: float, levels: float, out: np.ndarray) -> None:
    """Column sums by AND + popcount of packed bit planes, then the epilogue; writes out (Bt, Mc, N).

    xq (Bt, Mc, NB, G, Wd * 8) uint64: the code bytes (byte plane p: bits 8p .. 8p + 7), each group
    padded to Wd words of 64 rows; wbits (Bt, G, Wd, W*N) uint64: bit r of word d is weight bit i of
    row 64 d + r, column n (index i*N + n). cyc (C, 2): shift and width of each input cycle (bit t
    counts 2^(t - shift) in its cycle). row0: global index of the chunk's first row (noise counters);
    rows_total: rows per batch. The other arguments: :func:`_epilogue`.
    """
    bt, mc = xq.shape[0], xq.shape[1]
    g_count, words, wn = wbits.shape[1], wbits.shape[2], wbits.shape[3]
    n = out.shape[2]
    nc = cyc.shape[0]
    pairs = (nslots + 1) // 2
    total = bt * mc
    for blk in prange((total + _BLOCK - 1) // _BLOCK):
        s = np.empty((nc, wn), fp.dtype)
        sacc = np.empty(wn, np.int64)
        xw = np.empty((bits, words), np.uint64)
        z = np.empty((2 * pairs, n), np.float32)
        codes = np.empty(n, fp.dtype)
        exact = np.empty(n, fp.dtype)
        vote = np.empty((votes + 2, n), fp.dtype)
        acc = np.empty(n, np.float64)
        acc_exact = np.empty(n, np.float64)
        for r in range(blk * _BLOCK, min(total, (blk + 1) * _BLOCK)):
            b, m = r // mc, r % mc
            acc[:] = 0.0
            acc_exact[:] = 0.0
            grow = b * rows_total + row0 + m
            for g in range(g_count):
                # pack: bit t of the 64 codes of word d -> xw[t, d], 8 codes per multiply
                for t in range(bits):
                    sh = np.uint64(t % 8)
                    for d in range(words):
                        word = np.uint64(0)
                        for c in range(8):
                            v = xq[b, m, t // 8, g, d * 8 + c]
                            word |= ((((v >> sh) & _LSB8) * _GATHER8) >> np.uint64(56)) << np.uint64(8 * c)
                        xw[t, d] = word
                for j in range(nc):  # cycle j: sum over its bits t of 2^(t - shift) * popcount
                    sacc[:] = 0
                    for t in range(cyc[j, 0], cyc[j, 0] + cyc[j, 1]):
                        k = t - cyc[j, 0]
                        for d in range(words):
                            a = xw[t, d]
                            if a == 0:
                                continue
                            for q in range(wn):
                                sacc[q] += np.int64(popcount64(a & wbits[b, g, d, q])) << k
                    for q in range(wn):
                        s[j, q] = sacc[q]  # exact integers into the work dtype
                if nslots:
                    _draw(z, pairs, key, (grow * g_count + g) * pairs * n, n)
                _epilogue(s, z, kinds, slots, wts, scale, den, lev, fp, votes, codes, exact, vote, acc, acc_exact)
            _finish(acc, acc_exact, rows_nominal, levels, out, b, m)


@njit(parallel=True, fastmath=False, error_model="numpy", cache=True)
def fused_gemm(sums: np.ndarray, fields: int, field_bits: int, wb: int, row0: int, rows_total: int,
               kinds: np.ndarray, slots: np.ndarray, nslots: int, wts: np.ndarray, scale: np.ndarray,
               den: np.ndarray, lev: np.ndarray, fp: np.ndarray, votes: int, key: np.uint64,
               rows_nominal: float, levels: float, out: np.ndarray) -> None:
    """The epilogue on the bit-plane GEMM's packed column sums; writes out (Bt, Mc, N).

    sums (Bt, G, C, Mc, P*N) float: weight plane ``p * fields + f`` of column n in bits
    ``f * field_bits ..`` of the integer value at p*N + n (exact). Others: :func:`fused_popcount`.
    """
    bt, g_count, nc, mc = sums.shape[0], sums.shape[1], sums.shape[2], sums.shape[3]
    n = out.shape[2]
    packs = sums.shape[4] // n
    mask = (1 << field_bits) - 1
    pairs = (nslots + 1) // 2
    total = bt * mc
    for blk in prange((total + _BLOCK - 1) // _BLOCK):
        s = np.empty((nc, wb * n), fp.dtype)
        z = np.empty((2 * pairs, n), np.float32)
        codes = np.empty(n, fp.dtype)
        exact = np.empty(n, fp.dtype)
        vote = np.empty((votes + 2, n), fp.dtype)
        acc = np.empty(n, np.float64)
        acc_exact = np.empty(n, np.float64)
        for r in range(blk * _BLOCK, min(total, (blk + 1) * _BLOCK)):
            b, m = r // mc, r % mc
            acc[:] = 0.0
            acc_exact[:] = 0.0
            grow = b * rows_total + row0 + m
            for g in range(g_count):
                for j in range(nc):
                    for p in range(packs):
                        for f in range(min(fields, wb - p * fields)):
                            off, sh = (p * fields + f) * n, f * field_bits
                            for col in range(n):
                                s[j, off + col] = (np.int64(sums[b, g, j, m, p * n + col]) >> sh) & mask
                if nslots:
                    _draw(z, pairs, key, (grow * g_count + g) * pairs * n, n)
                _epilogue(s, z, kinds, slots, wts, scale, den, lev, fp, votes, codes, exact, vote, acc, acc_exact)
            _finish(acc, acc_exact, rows_nominal, levels, out, b, m)


@njit(parallel=True, fastmath=False, error_model="numpy", cache=True)
def pack_weights(w: np.ndarray, weight_bits: int, out: np.ndarray) -> None:
    """w (Bt, G, Wd*64, N) two's-complement codes -> out (Bt, G, Wd, W*N).

    Bit r of out[b, g, d, i*N + n] is bit i of w[b, g, 64 d + r, n].
    """
    bt, g_count, words, wn = out.shape
    n = w.shape[3]
    for bg in prange(bt * g_count):
        b, g = bg // g_count, bg % g_count
        for d in range(words):
            for q in range(wn):
                out[b, g, d, q] = 0
            for r in range(64):
                for i in range(weight_bits):
                    for col in range(n):
                        out[b, g, d, i * n + col] |= np.uint64((w[b, g, d * 64 + r, col] >> i) & 1) << np.uint64(r)
