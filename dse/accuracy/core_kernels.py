"""Numba kernels of the fused CPU path (imported only when numba is installed; see ``core_fused``).

One kernel call handles one M-chunk; ``prange`` runs over blocks of its rows, and for each row and
row group it (1) gets the integer column sum of every (input cycle, weight bit, output column)
conversion, either by AND + popcount of packed bit planes (:func:`fused_popcount`) or from the
packed fields of the bit-plane GEMM (:func:`fused_gemm`), into an L1-sized scratch, then (2) runs
the whole ADC epilogue on it (:func:`_epilogue`): scale to ADC codes, noise, clamp, round (half to
even), voting, hybrid (exact) cycles, sign and shift-add, and the exact accumulation over groups.
Only the (M, N) output is written to memory.

Noise: a counter-based generator, ``splitmix64(key + (counter + 1) * GAMMA)`` (the SplitMix64
sequence read at that position). The key comes from the caller's torch generator, so results depend
on the generator's state and on nothing else: not on threads, blocks or chunks. Two samplers
(``core_fused``, ``CIM_DSE_NOISE``):

- table (default): slot r (one noisy conversion per column) of (global row, group) takes the
  hashes ``counter = ((row * G + group) * S + r) * ceil(N / 2) + k``, k < ceil(N / 2), whose low
  and high halves are the 32-bit uniforms of columns 2k and 2k + 1; each code is the inverse CDF of
  its uniform (:func:`noise_rows`, :func:`exact_code`), exact to 2^-32 and independent of the fast
  quantiles' rounding: they only decide codes farther than their error bound from a code boundary,
  the thresholds decide the others.
- normal: normal pair ``h`` of (global row, group, column n) comes from ``counter = ((row * G +
  group) * H + h) * N + n``, turned into two N(0, 1) by Box-Muller with float32 log and sin/cos
  polynomials (Cephes, about 1 ulp).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from dse.accuracy.core_fused import QUANTILE_DEGREE

DEGREE = 4
"""The quantile degree compiled into these kernels, written here and not only imported: numba's on-disk cache is
invalidated by changes to this file alone, so a new ``core_fused.QUANTILE_DEGREE`` must come with an edit here
(checked below), or cached kernels would read a table of another shape."""
if DEGREE != QUANTILE_DEGREE:
    raise ImportError(f"core_kernels.DEGREE = {DEGREE} but core_fused.QUANTILE_DEGREE = {QUANTILE_DEGREE}: "
                      "set both (numba's cache follows this file)")

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
# table noise: each code by inverse-CDF sampling of one 32-bit uniform, exact to 2^-32 (core_fused)

_LANES = 16  # floats per vector of the intrinsics below (zmm)
_VI, _VF = ir.VectorType(ir.IntType(32), _LANES), ir.VectorType(ir.FloatType(), _LANES)


def _has_avx512(context) -> bool:  # type: ignore[no-untyped-def]
    """The target numba compiles for has AVX-512F (its features string, host features by default)."""
    features = getattr(context.codegen(), "_tm_features", "") or ""
    return "+avx512f" in features.split(",")


def _i64(value: int) -> ir.Constant:
    """An i64 constant of value mod 2^64 (written signed, as LLVM's parser wants)."""
    value %= 2**64
    return ir.Constant(ir.IntType(64), value - 2**64 if value >= 2**63 else value)


def _splat(value, t, lanes: int = _LANES):  # type: ignore[no-untyped-def]
    """A constant vector of ``lanes`` copies of value (type t)."""
    one = _i64(value) if t == ir.IntType(64) else ir.Constant(t, value)
    return ir.Constant(ir.VectorType(t, lanes), [one] * lanes)


class _Quantile:
    """LLVM IR of z = Phi^-1((U + 1/2) / 2^32) for 16 uint32 uniforms U at once, to QUANTILE_ERROR.

    z = -+t, t a degree-DEGREE polynomial (coef, ``core_fused.quantile_table``) in the
    mantissa of p = (q + 1/2) / 2^32, q = min(U, 2^32 - 1 - U), one polynomial per binary octave
    of p (32 octaves, down to 2^-33). With AVX-512 the coefficients of the top 16 octaves
    (p >= 2^-17) sit in registers and a lane's come from vpermps: this LLVM emits no gathers for
    Cascade Lake (it prefers none there), and gathers measured 8x slower than a permute on this
    machine. A vector with a lane in a lower octave (2^-16 of the lanes), and every vector without
    AVX-512, takes one scalar load per lane and coefficient instead. Both give the same bits.
    """

    def __init__(self, context, builder, coef, permute: bool | None):  # type: ignore[no-untyped-def]
        self.b = builder
        mod, i64 = builder.module, ir.IntType(64)
        self.fma = cgutils.get_or_insert_function(mod, ir.FunctionType(_VF, [_VF] * 3), "llvm.fma.v16f32")
        self.fmin = cgutils.get_or_insert_function(mod, ir.FunctionType(_VF, [_VF] * 2), "llvm.minnum.v16f32")
        self.any = cgutils.get_or_insert_function(
            mod, ir.FunctionType(ir.IntType(1), [ir.VectorType(ir.IntType(1), _LANES)]), "llvm.vector.reduce.or.v16i1")
        self.rows = [builder.gep(coef, [ir.Constant(i64, 32 * k)]) for k in range(DEGREE + 1)]
        self.permute = _has_avx512(context) if permute is None else permute
        if self.permute:  # octaves 16 .. 31 of every coefficient, loaded once before the caller's loop
            self.perm = cgutils.get_or_insert_function(mod, ir.FunctionType(_VF, [_VF, _VI]),
                                                       "llvm.x86.avx512.permvar.sf.512")
            self.tables = [builder.load(builder.bitcast(builder.gep(r, [ir.Constant(i64, 16)]), _VF.as_pointer()),
                                        align=4) for r in self.rows]
            self.slot = cgutils.alloca_once(builder, _VF)

    def _loaded(self, k: int, octave):  # type: ignore[no-untyped-def]
        """Coefficient k of every lane's octave, one scalar load each."""
        b, i32 = self.b, ir.IntType(32)
        out = ir.Constant(_VF, ir.Undefined)
        for lane in range(_LANES):
            at = b.zext(b.extract_element(octave, ir.Constant(i32, lane)), ir.IntType(64))
            out = b.insert_element(out, b.load(b.gep(self.rows[k], [at]), align=4), ir.Constant(i32, lane))
        return out

    def _poly(self, x, coefficient):  # type: ignore[no-untyped-def]
        """Horner's scheme with FMAs (Estrin's measured no faster and less accurate)."""
        t = coefficient(DEGREE)
        for k in range(DEGREE - 1, -1, -1):
            t = self.b.call(self.fma, [t, x, coefficient(k)])
        return t

    def __call__(self, u):  # type: ignore[no-untyped-def]
        """<16 x i32> uniforms -> <16 x float> quantiles."""
        b, i32, f32 = self.b, ir.IntType(32), ir.FloatType()
        q = b.xor(u, b.ashr(u, _splat(31, i32)))  # U or 2^32 - 1 - U, below 2^31
        pf = b.fadd(b.sitofp(q, _VF), _splat(0.5, f32))
        pf = b.call(self.fmin, [pf, _splat(2147483520.0, f32)])  # float(2^31 - 1) would round up to 2^31
        bits = b.bitcast(pf, _VI)
        octave = b.sub(b.lshr(bits, _splat(23, i32)), _splat(126, i32))  # 0 .. 31
        m = b.bitcast(b.or_(b.and_(bits, _splat(0x7FFFFF, i32)), _splat(0x3F800000, i32)), _VF)
        x = b.call(self.fma, [m, _splat(2.0, f32), _splat(-3.0, f32)])  # mantissa [1, 2) -> [-1, 1)
        if self.permute:
            top = b.sub(octave, _splat(16, i32))
            b.store(self._poly(x, lambda k: b.call(self.perm, [self.tables[k], top])), self.slot)
            with b.if_then(b.call(self.any, [b.icmp_signed("<", top, _splat(0, i32))]), likely=False):
                b.store(self._poly(x, lambda k: self._loaded(k, octave)), self.slot)
            t = b.load(self.slot)
        else:
            t = self._poly(x, lambda k: self._loaded(k, octave))
        sign = b.and_(b.not_(u), _splat(0x80000000, i32))  # U < 2^31: negative z
        return b.bitcast(b.xor(b.bitcast(t, _VI), sign), _VF)


def _is_array(t, dtype, ndim: int) -> bool:  # type: ignore[no-untyped-def]
    return isinstance(t, types.Array) and t.dtype == dtype and t.ndim == ndim and t.layout == "C"


def _quantiles_typer(permute: bool | None):  # type: ignore[no-untyped-def]
    def typer(typingctx, uw, coef, out):  # type: ignore[no-untyped-def]
        if not (_is_array(uw, types.uint32, 1) and _is_array(coef, types.float32, 2)
                and _is_array(out, types.float32, 1)):
            return None

        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            ua, ca, oa = (context.make_array(t)(context, builder, v) for t, v in zip(signature.args, args, strict=True))
            quantile = _Quantile(context, builder, ca.data, permute)
            steps = builder.udiv(builder.extract_value(ua.shape, 0), ir.Constant(ir.IntType(64), _LANES))
            src, dst = builder.bitcast(ua.data, _VI.as_pointer()), builder.bitcast(oa.data, _VF.as_pointer())
            with cgutils.for_range(builder, steps) as loop:
                u = builder.load(builder.gep(src, [loop.index]), align=4)
                builder.store(quantile(u), builder.gep(dst, [loop.index]), align=4)
            return context.get_dummy_value()

        return types.void(uw, coef, out), codegen

    return typer


quantiles = intrinsic(_quantiles_typer(None))
quantiles.__doc__ = """``quantiles(uw, coef, out)``: out[k] = Phi^-1((uw[k] + 1/2) / 2^32) (:class:`_Quantile`).

uw (L,) uint32 with L a multiple of 16, coef ``core_fused.quantile_table()``, out (L,) float32."""
quantiles_portable = intrinsic(_quantiles_typer(False))
quantiles_portable.__doc__ = """:func:`quantiles` with one scalar load per lane on every CPU (tests: same bits)."""


@intrinsic
def noise_rows(typingctx, key, c0, stride, coef, out):  # type: ignore[no-untyped-def]
    """``noise_rows(key, c0, stride, coef, out)``: out[r, l] = the quantile of uniform
    :func:`row_uniform` (key, c0 + r * stride, l), for a (R, L) float32 out, L a multiple of 16.

    Row r's hash k < L/2 is ``splitmix64(key + (c0 + r * stride + k) * GAMMA)`` (8 hashes per step
    in 64-bit lanes, the counter advanced by adding 8 GAMMA); its low half is lane 2k, its high half
    lane 2k + 1. Two passes per row, the uniforms through ``out``: a step's two 64-bit multiplies
    and its polynomial in separate loops let more steps overlap.
    """
    if not (key == types.uint64 and isinstance(c0, types.Integer) and isinstance(stride, types.Integer)
            and _is_array(coef, types.float32, 2) and _is_array(out, types.float32, 2)):
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        i64, i32 = ir.IntType(64), ir.IntType(32)
        v8, v8i = ir.VectorType(i64, 8), ir.VectorType(i32, 8)
        ca = context.make_array(signature.args[3])(context, builder, args[3])
        oa = context.make_array(signature.args[4])(context, builder, args[4])
        quantile = _Quantile(context, builder, ca.data, None)
        c0 = context.cast(builder, args[1], signature.args[1], types.uint64)
        stride = context.cast(builder, args[2], signature.args[2], types.uint64)
        gamma = int(GAMMA)

        def broadcast(value):  # type: ignore[no-untyped-def]
            one = builder.insert_element(ir.Constant(v8, ir.Undefined), value, ir.Constant(i32, 0))
            return builder.shuffle_vector(one, ir.Constant(v8, ir.Undefined), ir.Constant(v8i, [0] * 8))

        rows, lanes = builder.extract_value(oa.shape, 0), builder.extract_value(oa.shape, 1)
        steps = builder.udiv(lanes, ir.Constant(i64, _LANES))
        ones = ir.Constant(v8, [_i64(k * gamma) for k in range(8)])
        interleave = ir.Constant(_VI, [k // 2 + 8 * (k % 2) for k in range(_LANES)])  # lo0 hi0 lo1 hi1 ...
        with cgutils.for_range(builder, rows) as row:
            base = builder.gep(oa.data, [builder.mul(row.index, lanes)])
            ints, dst = builder.bitcast(base, _VI.as_pointer()), builder.bitcast(base, _VF.as_pointer())
            counter = builder.add(c0, builder.mul(row.index, stride))
            first = builder.add(broadcast(builder.add(args[0], builder.mul(counter, _i64(gamma)))), ones)
            with cgutils.for_range(builder, steps) as loop:
                z = builder.add(first, broadcast(builder.mul(loop.index, _i64(8 * gamma))))
                z = builder.mul(builder.xor(z, builder.lshr(z, _splat(30, i64, 8))), _splat(int(_MIX1), i64, 8))
                z = builder.mul(builder.xor(z, builder.lshr(z, _splat(27, i64, 8))), _splat(int(_MIX2), i64, 8))
                z = builder.xor(z, builder.lshr(z, _splat(31, i64, 8)))
                lo, hi = builder.trunc(z, v8i), builder.trunc(builder.lshr(z, _splat(32, i64, 8)), v8i)
                builder.store(builder.shuffle_vector(lo, hi, interleave), builder.gep(ints, [loop.index]), align=4)
            with cgutils.for_range(builder, steps) as loop:
                u = builder.load(builder.gep(ints, [loop.index]), align=4)
                builder.store(quantile(u), builder.gep(dst, [loop.index]), align=4)
        return context.get_dummy_value()

    return types.void(key, c0, stride, coef, out), codegen


@njit(inline="always")
def row_uniform(key: np.uint64, c0: int, lane: int) -> np.uint32:
    """Lane ``lane``'s uniform in :func:`noise_rows`: a half of ``splitmix64(key + (c0 + lane // 2) * GAMMA)``."""
    h = splitmix64(key + np.uint64(c0 + lane // 2) * GAMMA)
    return np.uint32(h >> np.uint64(32)) if lane % 2 else np.uint32(h & np.uint64(0xFFFFFFFF))


@njit(error_model="numpy", cache=True)
def quantile_values(uw: np.ndarray, coef: np.ndarray, portable: bool) -> np.ndarray:
    """The kernels' quantiles of the uniforms uw (any length; for tests and statistics)."""
    padded = np.zeros((uw.shape[0] + 15) // 16 * 16, np.uint32)
    padded[: uw.shape[0]] = uw
    out = np.empty(padded.shape[0], np.float32)
    if portable:
        quantiles_portable(padded, coef, out)
    else:
        quantiles(padded, coef, out)
    return out[: uw.shape[0]]


@njit(error_model="numpy", cache=True)
def row_values(key: np.uint64, c0: int, coef: np.ndarray, lanes: int) -> tuple[np.ndarray, np.ndarray]:
    """(uniforms, quantiles) of :func:`noise_rows` (key, c0) for ``lanes`` lanes (for tests)."""
    out = np.empty((1, (lanes + 15) // 16 * 16), np.float32)
    noise_rows(key, c0, 0, coef, out)
    uw = np.empty(lanes, np.uint32)
    for lane in range(lanes):
        uw[lane] = row_uniform(key, c0, lane)
    return uw, out[0, :lanes]


@njit(error_model="numpy")
def _phi(x: float) -> float:
    """Standard normal CDF in float64."""
    return 0.5 * math.erfc(-x * 0.7071067811865476)


@njit(error_model="numpy")
def exact_code(uv: np.uint32, u: float, std: float, guess: float, levels: float) -> float:
    """The code of uniform uv by the exact thresholds: the c in [0, L] with T(c) <= uv < T(c + 1).

    T(c) = 2^32 Phi((c - 0.5 - u) / std) - 0.5 (float64): code >= c iff u + std z >= c - 0.5 for
    z = Phi^-1((uv + 0.5) / 2^32), i.e. inverse-CDF sampling of the clamped, rounded u + std z,
    so code c has probability Phi((c + 0.5 - u)/std) - Phi((c - 0.5 - u)/std) (tails folded into
    0 and L) to 2^-32. Starts at guess and steps (one or two erfc near a code boundary).
    """
    p = (np.float64(uv) + 0.5) * 2.0**-32
    c = guess
    while c > 0.0 and p < _phi((c - 0.5 - u) / std):
        c -= 1.0
    while c < levels and p >= _phi((c + 0.5 - u) / std):
        c += 1.0
    return c


@njit(inline="always")
def _std64(u: float, fx: np.ndarray) -> float:
    """Noise std in LSB at exact level u, in float64 from the config's values fx (sigma, s_nl, rows / L)."""
    return math.sqrt(fx[0] * fx[0] + fx[1] * fx[1] / max(u * fx[2] + 1.0, 1.0))


# ----------------------------------------------------------------------------------------------
# the ADC epilogue of one (row, group)


@njit(inline="always")
def _epilogue(s: np.ndarray, z: np.ndarray, key: np.uint64, cb: int, hpr: int, kinds: np.ndarray,
              slots: np.ndarray, wts: np.ndarray, scale: np.ndarray, den: np.ndarray, lev: np.ndarray,
              fp: np.ndarray, ratio: np.ndarray, fx: np.ndarray, votes: int, codes: np.ndarray, exact: np.ndarray,
              vote: np.ndarray, dist: np.ndarray, acc: np.ndarray, acc_exact: np.ndarray) -> None:
    """Column sums s (C, W*N) of one group -> ADC codes, accumulated into acc (codes) and acc_exact (sums).

    kinds (C, W): 0 exact (digital), 1 ADC, 2 ADC + noise, 3 ADC + noise, voted; slots: the row of
    z (normals) of a noisy pair (``votes`` rows when voted). wts (W,): +-2^i; scale, den (C,):
    u = s * scale, or s * scale / den when den[0] > 0 (as the torch path: noise-free codes equal bit
    for bit). lev (C, 2) float64: per-cycle factors of codes and of exact sums. fp (work dtype):
    levels, noise std in LSB, nonlinear std in LSB at MAC 0, rows / levels, 1, and hm = 1/2 - margin.

    z (slots, >= N): row zr holds slot zr's normals (normal noise, hm = 1) or the quantiles of its
    uniforms (table noise, hm < 1/2: :func:`noise_rows`, hash counters from cb + zr * hpr + 1).
    Table noise: each z is within ``margin`` LSB of exact once scaled and added, and a conversion
    whose y = u + std z lies within that of a code boundary (|y - rint(y)| > hm, rare) gets its
    code from the exact thresholds instead (:func:`exact_code`, with u = s * ratio[j] and the std
    from fx in float64). dist (N,) is scratch for |y - rint(y)| (a flag array keeps the loops at
    full vector width; an integer count in them made LLVM pick 4 lanes).
    """
    nc, wb = kinds.shape
    n = acc.shape[0]
    levels, sigma, s_nl, mac_per_lsb, one, hm = fp[0], fp[1], fp[2], fp[3], fp[4], fp[5]
    zero = one - one
    sigma2, s_nl2 = sigma * sigma, s_nl * s_nl
    two_step = den[0] > zero
    check = hm < one  # table noise
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
                c0 = cb + zr * hpr + 1
                zv = z[zr]
                if s_nl > zero:
                    for col in range(n):
                        u = s[j, off + col] * sce
                        std = np.sqrt(sigma2 + s_nl2 / max(u * mac_per_lsb + one, one))
                        y = u + std * zv[col]
                        r = np.rint(y)
                        codes[col] += min(max(r, zero), levels) * w
                        dist[col] = abs(y - r)
                else:
                    for col in range(n):
                        y = s[j, off + col] * sce + sigma * zv[col]
                        r = np.rint(y)
                        codes[col] += min(max(r, zero), levels) * w
                        dist[col] = abs(y - r)
                if check and _above(dist, hm):
                    for col in range(n):
                        if dist[col] > hm:
                            c, fast = _near_code(s[j, off + col], sce, zv[col], key, c0, col, fp, ratio[j], fx)
                            codes[col] += (c - fast) * w
            else:
                for v in range(votes):
                    zr = slots[j, i] + v
                    c0 = cb + zr * hpr + 1
                    zv = z[zr]
                    for col in range(n):
                        u = s[j, off + col] * sce
                        std = np.sqrt(sigma2 + s_nl2 / max(u * mac_per_lsb + one, one))
                        y = u + std * zv[col]
                        r = np.rint(y)
                        vote[v, col] = min(max(r, zero), levels)
                        dist[col] = abs(y - r)
                    if check and _above(dist, hm):
                        for col in range(n):
                            if dist[col] > hm:
                                vote[v, col], _ = _near_code(s[j, off + col], sce, zv[col], key, c0, col, fp,
                                                             ratio[j], fx)
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
def _above(dist: np.ndarray, hm: float) -> bool:
    """Any dist[col] > hm (an OR over the row: vectorised, no early exit)."""
    hit = False
    for col in range(dist.shape[0]):
        hit |= dist[col] > hm
    return hit


@njit(error_model="numpy")
def _near_code(sv: float, sce: float, zv: float, key: np.uint64, c0: int, col: int, fp: np.ndarray, ratio: float,
               fx: np.ndarray) -> tuple[float, float]:
    """(exact code, fast code) of a conversion whose fast y = u + std z lies within the margin of a code boundary.

    Recomputes the fast code exactly as the epilogue's vector loop does (same operations, same
    rounding) and takes :func:`exact_code` of the lane's uniform (:func:`row_uniform`) from the
    float64 level u = s * ratio and std (fx); the caller swaps one for the other.
    """
    levels, sigma, s_nl, mac_per_lsb, one = fp[0], fp[1], fp[2], fp[3], fp[4]
    zero = one - one
    u = sv * sce
    if s_nl > zero:
        y = u + np.sqrt(sigma * sigma + s_nl * s_nl / max(u * mac_per_lsb + one, one)) * zv
    else:
        y = u + sigma * zv
    fast = min(max(np.rint(y), zero), levels)
    u64 = np.float64(sv) * ratio
    uv = row_uniform(key, c0, col)
    return exact_code(uv, u64, _std64(u64, fx), np.float64(fast), np.float64(levels)), fast


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
                   den: np.ndarray, lev: np.ndarray, fp: np.ndarray, ratio: np.ndarray, fx: np.ndarray,
                   coef: np.ndarray, table: bool, votes: int, key: np.uint64, rows_nominal: float, levels: float,
                   out: np.ndarray) -> None:
    """Column sums by AND + popcount of packed bit planes, then the epilogue; writes out (Bt, Mc, N).

    xq (Bt, Mc, NB, G, Wd * 8) uint64: the code bytes (byte plane p: bits 8p .. 8p + 7), each group
    padded to Wd words of 64 rows; wbits (Bt, G, Wd, W*N) uint64: bit r of word d is weight bit i of
    row 64 d + r, column n (index i*N + n). cyc (C, 2): shift and width of each input cycle (bit t
    counts 2^(t - shift) in its cycle). row0: global index of the chunk's first row (noise counters);
    rows_total: rows per batch. table: table noise (coef: :func:`quantiles`' table; fp[5] < 1/2),
    else Box-Muller normals drawn per (row, group) (:func:`_draw`). The other arguments:
    :func:`_epilogue`.
    """
    bt, mc = xq.shape[0], xq.shape[1]
    g_count, words, wn = wbits.shape[1], wbits.shape[2], wbits.shape[3]
    n = out.shape[2]
    nc = cyc.shape[0]
    pairs = 0 if table else (nslots + 1) // 2
    hpr = (n + 1) // 2  # table noise: hashes per slot row
    total = bt * mc
    for blk in prange((total + _BLOCK - 1) // _BLOCK):
        s = np.empty((nc, wn), fp.dtype)
        sacc = np.empty(wn, np.int64)
        xw = np.empty((bits, words), np.uint64)
        z = np.empty((nslots, (n + 15) // 16 * 16) if table else (2 * pairs, n), np.float32)
        codes = np.empty(n, fp.dtype)
        exact = np.empty(n, fp.dtype)
        vote = np.empty((votes + 2, n), fp.dtype)
        dist = np.empty(n, fp.dtype)
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
                cb = (grow * g_count + g) * nslots * hpr
                if table and nslots:
                    noise_rows(key, cb + 1, hpr, coef, z)
                elif pairs:
                    _draw(z, pairs, key, (grow * g_count + g) * pairs * n, n)
                _epilogue(s, z, key, cb, hpr, kinds, slots, wts, scale, den, lev, fp, ratio, fx, votes, codes, exact,
                          vote, dist, acc, acc_exact)
            _finish(acc, acc_exact, rows_nominal, levels, out, b, m)


@njit(parallel=True, fastmath=False, error_model="numpy", cache=True)
def fused_gemm(sums: np.ndarray, fields: int, field_bits: int, wb: int, row0: int, rows_total: int,
               kinds: np.ndarray, slots: np.ndarray, nslots: int, wts: np.ndarray, scale: np.ndarray,
               den: np.ndarray, lev: np.ndarray, fp: np.ndarray, ratio: np.ndarray, fx: np.ndarray,
               coef: np.ndarray, table: bool, votes: int, key: np.uint64, rows_nominal: float, levels: float,
               out: np.ndarray) -> None:
    """The epilogue on the bit-plane GEMM's packed column sums; writes out (Bt, Mc, N).

    sums (Bt, G, C, Mc, P*N) float: weight plane ``p * fields + f`` of column n in bits
    ``f * field_bits ..`` of the integer value at p*N + n (exact). Others: :func:`fused_popcount`.
    """
    bt, g_count, nc, mc = sums.shape[0], sums.shape[1], sums.shape[2], sums.shape[3]
    n = out.shape[2]
    packs = sums.shape[4] // n
    mask = (1 << field_bits) - 1
    pairs = 0 if table else (nslots + 1) // 2
    hpr = (n + 1) // 2  # table noise: hashes per slot row
    total = bt * mc
    for blk in prange((total + _BLOCK - 1) // _BLOCK):
        s = np.empty((nc, wb * n), fp.dtype)
        z = np.empty((nslots, (n + 15) // 16 * 16) if table else (2 * pairs, n), np.float32)
        codes = np.empty(n, fp.dtype)
        exact = np.empty(n, fp.dtype)
        vote = np.empty((votes + 2, n), fp.dtype)
        dist = np.empty(n, fp.dtype)
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
                cb = (grow * g_count + g) * nslots * hpr
                if table and nslots:
                    noise_rows(key, cb + 1, hpr, coef, z)
                elif pairs:
                    _draw(z, pairs, key, (grow * g_count + g) * pairs * n, n)
                _epilogue(s, z, key, cb, hpr, kinds, slots, wts, scale, den, lev, fp, ratio, fx, votes, codes, exact,
                          vote, dist, acc, acc_exact)
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
