/* Bit-sliced CPU kernel of the bit-plane simulator (AVX-512F/BW/DQ), built and loaded by core_bitsliced.py.

   One call handles blocks of 512 consecutive rows (pixels) of one batch element. Per block:

   1. The input codes are turned into bit planes *across rows*: plane (k, t) is one 512-bit vector
      whose bit p is bit t of x[p, k] (vptestmb, 64 rows per instruction).
   2. A column sum of conversion (group g, weight bit i, input bit t, column n) is the number of
      ones, lane by lane, in the planes (k, t) of the rows k of group g whose weight bit i in
      column n is 1. The weights are fixed, so those rows are a list made once per call; the
      count of each of the 512 lanes is kept bit-sliced in carry-save form (Harley-Seal: 15
      full adders of vpternlogq per 16 planes, two instructions each), so one instruction adds
      about 512 / 2.4 one-bit products, against 512 / 7 for AND + nibble popcount.
   3. The counts are turned into integers (masked adds, 32 lanes at a time), combined into the
      input cycles' digits, and the ADC epilogue runs on 16 lanes at a time: scale, noise (an
      exact inverse-CDF code from a 32-bit uniform, as core_kernels' table noise), clamp, round
      half to even, exact (hybrid) cycles, sign and shift-add, exact accumulation in float64.

   Noise-free results equal core_kernels' bit for bit: every sum before the final division is an
   exact integer in float32/float64, and the rounding steps are the same operations. Noisy codes
   have the same distribution (exact to 2^-32 per code) from another stream: xoshiro128++ in 16
   lanes, seeded per (batch element, block) from the caller's key, so results depend on the key
   and the block layout (512 rows from the start of each batch element), not on threads.

   Compiled with -O2 -ffp-contract=off: the float operations happen as written (no fused
   multiply-adds except the explicit ones of the quantile polynomial). */

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LANES 512          /* rows per block */
#define WORDS 8            /* 64-bit words per 512-bit plane */
#define MAX_PLANES 9       /* count bits: column sums up to 511 */
#define MAX_BITS 8         /* input bits (codes are bytes) */
#define MAX_CYCLES 8
#define DEG 6              /* quantile polynomial degree (core_fused.QUANTILE_DEGREE) */

#ifdef PROFILE  /* -DPROFILE: the stages stay separate functions, so perf can tell them apart */
#define STAGE __attribute__((noinline))
#else
#define STAGE
#endif

typedef struct {
    /* shapes */
    int64_t kp;            /* rows of K used (the zero plane kp is added by the kernel) */
    int64_t ldx;           /* row stride of x in bytes */
    int n;                 /* output columns */
    int wb;                /* weight bits */
    int bits;              /* input bits */
    int groups;
    int nc;                /* input cycles */
    int wide;              /* column sums above 255 (up to 511): 9 count planes, uint16 counts */
    /* row lists: for (g, n, i), the byte offsets 64 * k * bits of the planes of the global rows k whose
       weight bit is 1, at [offsets[q], offsets[q + 1]) with q = (g * n + col) * wb + i, each list
       padded to a multiple of 16 with the zero row kp */
    const int32_t *lists;
    const int64_t *offsets;
    /* cycles: shift, width (nc x 2) */
    const int64_t *cyc;
    /* epilogue tables (core_fused.Tables) */
    const int8_t *kinds;   /* nc x wb: 0 exact, 1 ADC, 2 ADC + noise */
    const float *wts;      /* wb: +-2^i */
    const float *scale;    /* nc */
    const float *den;      /* nc */
    const double *lev;     /* nc x 2 */
    const float *fp;       /* levels, sigma, s_nl, rows / levels, 1, hm */
    const double *ratio;   /* nc */
    const double *fx;      /* sigma, s_nl, rows / levels (float64) */
    const float *coef;     /* (DEG + 1) x 32 */
    double rows_nominal;
    double levels;
    uint64_t key;
} Params;

/* ------------------------------------------------------------------------------------------- */
/* random numbers */

static inline uint64_t splitmix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

typedef struct { __m512i s0, s1, s2, s3; } Rng;

static void rng_seed(Rng *r, uint64_t key, uint64_t stream) {
    uint32_t w[4][16];
    uint64_t z = key + (stream + 1) * 0x9E3779B97F4A7C15ULL * 64;
    for (int j = 0; j < 4; j++)
        for (int l = 0; l < 16; l++) {
            z += 0x9E3779B97F4A7C15ULL;
            uint64_t h = splitmix64(z);
            w[j][l] = (uint32_t)(h >> 32);
        }
    for (int l = 0; l < 16; l++)
        if (!(w[0][l] | w[1][l] | w[2][l] | w[3][l])) w[0][l] = 1;  /* an all-zero state would stay zero */
    r->s0 = _mm512_loadu_si512(w[0]);
    r->s1 = _mm512_loadu_si512(w[1]);
    r->s2 = _mm512_loadu_si512(w[2]);
    r->s3 = _mm512_loadu_si512(w[3]);
}

/* xoshiro128++ (Blackman, Vigna 2019), 16 independent lanes */
static inline __m512i rng_next(Rng *r) {
    __m512i out = _mm512_add_epi32(_mm512_rol_epi32(_mm512_add_epi32(r->s0, r->s3), 7), r->s0);
    __m512i t = _mm512_slli_epi32(r->s1, 9);
    r->s2 = _mm512_xor_si512(r->s2, r->s0);
    r->s3 = _mm512_xor_si512(r->s3, r->s1);
    r->s1 = _mm512_xor_si512(r->s1, r->s2);
    r->s0 = _mm512_xor_si512(r->s0, r->s3);
    r->s2 = _mm512_xor_si512(r->s2, t);
    r->s3 = _mm512_rol_epi32(r->s3, 11);
    return out;
}

/* z = Phi^-1((U + 1/2) / 2^32) for 16 uniforms: core_kernels._Quantile, the same operations and bits */
typedef struct { __m512 top[DEG + 1]; const float *coef; } Quantile;

static void quantile_init(Quantile *q, const float *coef) {
    q->coef = coef;
    for (int k = 0; k <= DEG; k++) q->top[k] = _mm512_loadu_ps(coef + 32 * k + 16);
}

/* U or 2^32 - 1 - U, below 2^31 (the quantile's symmetric half) */
static inline __m512i fold(__m512i u) { return _mm512_xor_si512(u, _mm512_srai_epi32(u, 31)); }

/* lanes of folded uniforms whose octave is below the registers' 16 (p < 2^-17: gathered coefficients) */
static inline __mmask16 low_octave(__m512i qi) { return _mm512_cmplt_epu32_mask(qi, _mm512_set1_epi32(32768)); }

static inline __m512 quantile_folded(const Quantile *q, __m512i u, __m512i qi, int gather) {
    __m512 pf = _mm512_add_ps(_mm512_cvtepi32_ps(qi), _mm512_set1_ps(0.5f));
    pf = _mm512_min_ps(pf, _mm512_set1_ps(2147483520.0f));
    __m512i bits = _mm512_castps_si512(pf);
    __m512i octave = _mm512_sub_epi32(_mm512_srli_epi32(bits, 23), _mm512_set1_epi32(126));
    __m512 m = _mm512_castsi512_ps(_mm512_ternarylogic_epi32(bits, _mm512_set1_epi32(0x7FFFFF),
                                                             _mm512_set1_epi32(0x3F800000), 0xEA));  /* a & b | c */
    __m512 x = _mm512_fmadd_ps(m, _mm512_set1_ps(2.0f), _mm512_set1_ps(-3.0f));
    __m512 t;
    if (__builtin_expect(gather, 0)) {
        t = _mm512_i32gather_ps(octave, q->coef + 32 * DEG, 4);
        for (int k = DEG - 1; k >= 0; k--)
            t = _mm512_fmadd_ps(t, x, _mm512_i32gather_ps(octave, q->coef + 32 * k, 4));
    } else {
        __m512i top = _mm512_sub_epi32(octave, _mm512_set1_epi32(16));
        t = _mm512_permutexvar_ps(top, q->top[DEG]);
        _Pragma("GCC unroll 6")
        for (int k = DEG - 1; k >= 0; k--) t = _mm512_fmadd_ps(t, x, _mm512_permutexvar_ps(top, q->top[k]));
    }
    __m512i sign = _mm512_andnot_si512(u, _mm512_set1_epi32((int)0x80000000u));
    return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(t), sign));
}

static inline __m512 quantile(const Quantile *q, __m512i u) {
    __m512i qi = fold(u);
    return quantile_folded(q, u, qi, low_octave(qi) != 0);
}

static inline double phi(double x) { return 0.5 * erfc(-x * 0.7071067811865476); }

/* core_kernels.exact_code: the code of uniform uv by the exact thresholds, starting at guess */
static double exact_code(uint32_t uv, double u, double std, double guess, double levels) {
    double p = ((double)uv + 0.5) * 0x1p-32;
    double c = guess;
    while (c > 0.0 && p < phi((c - 0.5 - u) / std)) c -= 1.0;
    while (c < levels && p >= phi((c + 0.5 - u) / std)) c += 1.0;
    return c;
}

/* ------------------------------------------------------------------------------------------- */
/* column sums */

/* the codes of rows [0, valid) of a block (x: rows of ldk bytes, kp used) -> planes (kp + 1) x bits x 512 bits:
   bit p of plane (k, t) is bit t of x[p, k]; plane kp and rows from valid on are zero. xtb: kp x 512 scratch */
STAGE static void make_planes(const uint8_t *x, int64_t ldk, int64_t kp, int64_t valid, int bits, uint8_t *xtb,
                              __m512i *planes) {
    for (int64_t k0 = 0; k0 < kp; k0 += 64) {
        int64_t kn = kp - k0 < 64 ? kp - k0 : 64;
        for (int64_t r = 0; r < LANES; r++) {
            uint8_t *dst = xtb + k0 * LANES + r;
            if (r < valid) {
                const uint8_t *src = x + r * ldk + k0;
                for (int64_t k = 0; k < kn; k++) dst[k * LANES] = src[k];
            } else {
                for (int64_t k = 0; k < kn; k++) dst[k * LANES] = 0;
            }
        }
    }
    for (int64_t k = 0; k < kp; k++) {
        const uint8_t *src = xtb + k * LANES;
        uint64_t *dst = (uint64_t *)(planes + k * bits);
        for (int c = 0; c < WORDS; c++) {
            __m512i v = _mm512_loadu_si512(src + 64 * c);
            for (int t = 0; t < bits; t++)
                dst[t * WORDS + c] = _mm512_test_epi8_mask(v, _mm512_set1_epi8((char)(1 << t)));
        }
    }
    for (int t = 0; t < bits; t++) planes[kp * bits + t] = _mm512_setzero_si512();
}

#define CSA(h, l, a, b, c)                                  \
    do {                                                    \
        __m512i a_ = (a), b_ = (b), c_ = (c);               \
        l = _mm512_ternarylogic_epi64(a_, b_, c_, 0x96);    \
        h = _mm512_ternarylogic_epi64(a_, b_, c_, 0xE8);    \
    } while (0)

/* Lane counts of the planes in list (byte offsets from base), bit-sliced into out[0 .. np):
   Harley-Seal carry-save accumulation, 16 planes per step, the sixteens rippled into out[4 ..). */
#define P(j) _mm512_load_si512(base + list[j])
#define COUNT_LIST(NAME, NP)                                                                     \
    STAGE static void NAME(const char *base, const int32_t *list, int64_t len, __m512i *out) {    \
        __m512i ones = _mm512_setzero_si512(), twos = ones, fours = ones, eights = ones;         \
        __m512i hi[NP - 4];                                                                      \
        for (int b = 0; b < NP - 4; b++) hi[b] = ones;                                           \
        __m512i twosA, twosB, foursA, foursB, eightsA, eightsB, sixteens;                        \
        for (int64_t s = 0; s < len; s += 16, list += 16) {                                      \
            CSA(twosA, ones, ones, P(0), P(1));                                \
            CSA(twosB, ones, ones, P(2), P(3));                                \
            CSA(foursA, twos, twos, twosA, twosB);                                               \
            CSA(twosA, ones, ones, P(4), P(5));                                \
            CSA(twosB, ones, ones, P(6), P(7));                                \
            CSA(foursB, twos, twos, twosA, twosB);                                               \
            CSA(eightsA, fours, fours, foursA, foursB);                                          \
            CSA(twosA, ones, ones, P(8), P(9));                                \
            CSA(twosB, ones, ones, P(10), P(11));                              \
            CSA(foursA, twos, twos, twosA, twosB);                                               \
            CSA(twosA, ones, ones, P(12), P(13));                              \
            CSA(twosB, ones, ones, P(14), P(15));                              \
            CSA(foursB, twos, twos, twosA, twosB);                                               \
            CSA(eightsB, fours, fours, foursA, foursB);                                          \
            CSA(sixteens, eights, eights, eightsA, eightsB);                                     \
            __m512i carry = sixteens;                                                            \
            _Pragma("GCC unroll 8")                                                              \
            for (int b = 0; b < NP - 4; b++) {                                                   \
                __m512i nc = _mm512_and_si512(hi[b], carry);                                     \
                hi[b] = _mm512_xor_si512(hi[b], carry);                                          \
                carry = nc;                                                                      \
            }                                                                                    \
        }                                                                                        \
        out[0] = ones;                                                                           \
        out[1] = twos;                                                                           \
        out[2] = fours;                                                                          \
        out[3] = eights;                                                                         \
        for (int b = 0; b < NP - 4; b++) out[4 + b] = hi[b];                                     \
    }

COUNT_LIST(count_list8, 8)    /* sums up to 255: 8 planes */
COUNT_LIST(count_list9, 9)    /* sums up to 511 */

/* 8 bit-sliced planes -> 512 uint8 counts (masked byte adds, 64 lanes each) */
STAGE static void planes_to_counts8(const __m512i *pl, uint8_t *cnt) {
    const uint64_t *w = (const uint64_t *)pl;  /* plane p, lanes 64c .. 64c + 63: w[p * 8 + c] */
    for (int c = 0; c < LANES / 64; c++) {
        __m512i v = _mm512_setzero_si512();
        _Pragma("GCC unroll 8")
        for (int p = 0; p < 8; p++)
            v = _mm512_mask_add_epi8(v, _load_mask64((__mmask64 *)(w + p * 8 + c)), v, _mm512_set1_epi8((char)(1 << p)));
        _mm512_storeu_si512(cnt + 64 * c, v);
    }
}

/* 9 bit-sliced planes -> 512 uint16 counts (masked word adds, 32 lanes each) */
STAGE static void planes_to_counts9(const __m512i *pl, uint16_t *cnt) {
    const uint32_t *w = (const uint32_t *)pl;  /* plane p, lanes 32c .. 32c + 31: w[p * 16 + c] */
    for (int c = 0; c < LANES / 32; c++) {
        __m512i v = _mm512_setzero_si512();
        _Pragma("GCC unroll 9")
        for (int p = 0; p < 9; p++)
            v = _mm512_mask_add_epi16(v, _load_mask32((__mmask32 *)(w + p * 16 + c)), v, _mm512_set1_epi16((short)(1 << p)));
        _mm512_storeu_si512(cnt + 32 * c, v);
    }
}

/* ------------------------------------------------------------------------------------------- */
/* one block */

typedef struct {
    __m512i *planes;                 /* (kp + 1) x bits */
    uint8_t *xtb;                    /* kp x 512: the block's codes, transposed */
    uint8_t *cnt;                    /* bits x 512 counts: uint8, or uint16 when wide */
    float *codes;                    /* nc x 512 */
    float *exact;                    /* nc x 512 */
    double *acc, *acc_exact;         /* 512 */
} Scratch;

/* the lane's exact code for a conversion flagged near a code boundary (core_kernels._near_code) */
static void fix_lanes(__mmask16 flag, __m512i u, __m512 s, __m512 code, const Params *p, int j, float *delta) {
    uint32_t uv[16];
    float sv[16], cv[16];
    _mm512_storeu_si512(uv, u);
    _mm512_storeu_ps(sv, s);
    _mm512_storeu_ps(cv, code);
    double sigma = p->fx[0], s_nl = p->fx[1], mpl = p->fx[2];
    for (int l = 0; l < 16; l++) {
        delta[l] = 0.0f;
        if (!((flag >> l) & 1)) continue;
        double u64 = (double)sv[l] * p->ratio[j];
        double d = u64 * mpl + 1.0;
        double std = sqrt(sigma * sigma + s_nl * s_nl / (d > 1.0 ? d : 1.0));
        double c = exact_code(uv[l], u64, std, (double)cv[l], p->levels);
        delta[l] = (float)c - cv[l];
    }
}

/* column sums of 16 lanes of one cycle: its input bits' counts, shifted, as float32 */
static inline __m512 lane_sums(const uint8_t *cnt, int shift, int width, int wide, int v) {
    if (!wide && width == 1)
        return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(cnt + shift * LANES + 16 * v))));
    __m512i si = _mm512_setzero_si512();
    for (int b = 0; b < width; b++) {
        __m512i cb;
        if (wide)
            cb = _mm512_cvtepu16_epi32(
                _mm256_loadu_si256((const __m256i *)((const uint16_t *)cnt + (shift + b) * LANES + 16 * v)));
        else
            cb = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(cnt + (shift + b) * LANES + 16 * v)));
        si = _mm512_add_epi32(si, _mm512_slli_epi32(cb, b));
    }
    return _mm512_cvtepi32_ps(si);
}

/* the loop over a block's 32 vectors, specialised for single-bit cycles of narrow counts */
#define FOR_VECTORS(BODY)                                                   \
    do {                                                                    \
        if (!wide && width == 1) {                                          \
            for (int v = 0; v < LANES / 16; v++) {                          \
                const __m512 s = lane_sums(cnt, shift, 1, 0, v);            \
                BODY                                                        \
            }                                                               \
        } else {                                                            \
            for (int v = 0; v < LANES / 16; v++) {                          \
                const __m512 s = lane_sums(cnt, shift, width, wide, v);     \
                BODY                                                        \
            }                                                               \
        }                                                                   \
    } while (0)

/* exact (digital) cycle: exact += s * w */
static inline void exact_lanes(const uint8_t *cnt, int shift, int width, int wide, __m512 w, float *exact) {
    FOR_VECTORS({
        __m512 e = _mm512_loadu_ps(exact + 16 * v);
        _mm512_storeu_ps(exact + 16 * v, _mm512_fmadd_ps(s, w, e));  /* exact: integers below 2^24 */
    });
}

/* noise-free ADC: codes += rint(s * scale [/ den]) * w */
STAGE static void quantised_lanes(const uint8_t *cnt, int shift, int width, int wide, __m512 w, float scale,
                                  float den, int two_step, float *codes) {
    const __m512 vsc = _mm512_set1_ps(scale), vdn = _mm512_set1_ps(den);
    if (two_step) {
        FOR_VECTORS({
            __m512 r = _mm512_roundscale_ps(_mm512_div_ps(_mm512_mul_ps(s, vsc), vdn),
                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            _mm512_storeu_ps(codes + 16 * v, _mm512_fmadd_ps(r, w, _mm512_loadu_ps(codes + 16 * v)));
        });
    } else {
        FOR_VECTORS({
            __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(s, vsc), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            _mm512_storeu_ps(codes + 16 * v, _mm512_fmadd_ps(r, w, _mm512_loadu_ps(codes + 16 * v)));
        });
    }
}

#define UNROLL 4

/* noisy ADC: codes += clamp(rint(s * sce + sigma * z)) * w, z the quantile of a fresh uniform; a code
   within the margin of a boundary (|y - rint(y)| > hm) is replaced by the exact thresholds' code */
STAGE static void noisy_lanes(const uint8_t *cnt, int shift, int width, int wide, __m512 w, float sce,
                              const Params *p, int j, const Quantile *q, Rng *rng, float *codes) {
    const __m512 vsce = _mm512_set1_ps(sce), vsig = _mm512_set1_ps(p->fp[1]), vzero = _mm512_setzero_ps();
    const __m512 vlev = _mm512_set1_ps(p->fp[0]), vhm = _mm512_set1_ps(p->fp[5]);
    const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
    Rng st = *rng;  /* in registers for the loop */
    for (int v = 0; v < LANES / 16; v += UNROLL) {
        __m512i u[UNROLL];
        __m512 s[UNROLL], z[UNROLL], y[UNROLL], r[UNROLL], code[UNROLL];
        __mmask16 flag[UNROLL];
        _Pragma("GCC unroll 4")
        for (int k = 0; k < UNROLL; k++) u[k] = rng_next(&st);
        __m512i qi[UNROLL];
        _Pragma("GCC unroll 4")
        for (int k = 0; k < UNROLL; k++) qi[k] = fold(u[k]);
        __m512i qmin = qi[0];
        _Pragma("GCC unroll 4")
        for (int k = 1; k < UNROLL; k++) qmin = _mm512_min_epu32(qmin, qi[k]);
        if (__builtin_expect(low_octave(qmin) != 0, 0)) {
            for (int k = 0; k < UNROLL; k++) z[k] = quantile_folded(q, u[k], qi[k], low_octave(qi[k]) != 0);
        } else {
            _Pragma("GCC unroll 4")
            for (int k = 0; k < UNROLL; k++) z[k] = quantile_folded(q, u[k], qi[k], 0);
        }
        __mmask16 any = 0;
        _Pragma("GCC unroll 4")
        for (int k = 0; k < UNROLL; k++) {
            s[k] = lane_sums(cnt, shift, width, wide, v + k);
            y[k] = _mm512_fmadd_ps(vsig, z[k], _mm512_mul_ps(s[k], vsce));  /* one rounding less than the margin allows */
            r[k] = _mm512_roundscale_ps(y[k], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            code[k] = _mm512_min_ps(_mm512_max_ps(r[k], vzero), vlev);
            flag[k] = _mm512_cmp_ps_mask(_mm512_and_ps(_mm512_sub_ps(y[k], r[k]), absmask), vhm, _CMP_GT_OQ);
            any |= flag[k];
            __m512 c = _mm512_loadu_ps(codes + 16 * (v + k));
            _mm512_storeu_ps(codes + 16 * (v + k), _mm512_fmadd_ps(code[k], w, c));  /* exact: integers */
        }
        if (__builtin_expect(any != 0, 0)) {
            for (int k = 0; k < UNROLL; k++) {
                if (!flag[k]) continue;
                float delta[16];
                fix_lanes(flag[k], u[k], s[k], code[k], p, j, delta);
                __m512 c = _mm512_loadu_ps(codes + 16 * (v + k));
                _mm512_storeu_ps(codes + 16 * (v + k), _mm512_add_ps(c, _mm512_mul_ps(_mm512_loadu_ps(delta), w)));
            }
        }
    }
    *rng = st;
}

static void run_block(const uint8_t *x, int64_t rows_valid, const Params *p, const Quantile *q, Rng *rng,
                      Scratch *sc, float *out, int64_t ldo) {
    const int n = p->n, wb = p->wb, bits = p->bits, nc = p->nc, wide = p->wide;
    make_planes(x, p->ldx, p->kp, rows_valid, bits, sc->xtb, sc->planes);
    const int two_step = p->den[0] > 0.0f;
    __m512i pl[MAX_PLANES];
    for (int col = 0; col < n; col++) {
        memset(sc->acc, 0, LANES * sizeof(double));
        memset(sc->acc_exact, 0, LANES * sizeof(double));
        int any_exact_all = 0;
        for (int g = 0; g < p->groups; g++) {
            memset(sc->codes, 0, (size_t)nc * LANES * sizeof(float));
            memset(sc->exact, 0, (size_t)nc * LANES * sizeof(float));
            for (int i = 0; i < wb; i++) {
                int64_t qi = ((int64_t)g * n + col) * wb + i;
                const int32_t *list = p->lists + p->offsets[qi];
                int64_t len = p->offsets[qi + 1] - p->offsets[qi];
                for (int t = 0; t < bits; t++) {
                    if (wide) {
                        count_list9((const char *)(sc->planes + t), list, len, pl);
                        planes_to_counts9(pl, (uint16_t *)sc->cnt + t * LANES);
                    } else {
                        count_list8((const char *)(sc->planes + t), list, len, pl);
                        planes_to_counts8(pl, sc->cnt + t * LANES);
                    }
                }
                const __m512 w = _mm512_set1_ps(p->wts[i]);
                for (int j = 0; j < nc; j++) {
                    int kind = p->kinds[j * wb + i];
                    int shift = (int)p->cyc[2 * j], width = (int)p->cyc[2 * j + 1];
                    if (kind == 0) {
                        any_exact_all = 1;
                        exact_lanes(sc->cnt, shift, width, wide, w, sc->exact + j * LANES);
                    } else if (kind == 1) {
                        quantised_lanes(sc->cnt, shift, width, wide, w, p->scale[j], p->den[j], two_step,
                                        sc->codes + j * LANES);
                    } else {
                        noisy_lanes(sc->cnt, shift, width, wide, w, two_step ? p->scale[j] / p->den[j] : p->scale[j],
                                    p, j, q, rng, sc->codes + j * LANES);
                    }
                }
            }
            for (int j = 0; j < nc; j++) {
                const __m512d l0 = _mm512_set1_pd(p->lev[2 * j]), l1 = _mm512_set1_pd(p->lev[2 * j + 1]);
                const float *codes = sc->codes + j * LANES, *exact = sc->exact + j * LANES;
                for (int v = 0; v < LANES / 8; v++) {
                    __m512d a = _mm512_loadu_pd(sc->acc + 8 * v);
                    __m512d cd = _mm512_cvtps_pd(_mm256_loadu_ps(codes + 8 * v));
                    _mm512_storeu_pd(sc->acc + 8 * v, _mm512_add_pd(a, _mm512_mul_pd(cd, l0)));
                    if (any_exact_all) {
                        __m512d e = _mm512_loadu_pd(sc->acc_exact + 8 * v);
                        __m512d ed = _mm512_cvtps_pd(_mm256_loadu_ps(exact + 8 * v));
                        _mm512_storeu_pd(sc->acc_exact + 8 * v, _mm512_add_pd(e, _mm512_mul_pd(ed, l1)));
                    }
                }
            }
        }
        for (int64_t l = 0; l < rows_valid; l++)
            out[l * ldo + col] = (float)((sc->acc[l] * p->rows_nominal + sc->acc_exact[l] * p->levels) / p->levels);
    }
}

/* ------------------------------------------------------------------------------------------- */
/* entry point */

/* Blocks [block_lo, block_hi) of one batch element: x (rows, ldx) uint8 codes (row-major, kp used),
   out (rows, ldo) float32; stream0: the first block's index within its batch element plus
   batch * 2^32 (the noise stream of block b is stream0 + b). Returns 0, or -1 when out of memory. */
int cim_bitsliced(const uint8_t *x, int64_t rows, int64_t block_lo, int64_t block_hi, uint64_t stream0,
                  const Params *p, float *out, int64_t ldo) {
    Scratch sc;
    size_t planes_bytes = (size_t)(p->kp + 1) * p->bits * 64;
    sc.planes = aligned_alloc(64, planes_bytes);
    sc.xtb = aligned_alloc(64, (size_t)(p->kp + 64) * LANES);
    sc.cnt = aligned_alloc(64, (size_t)MAX_BITS * LANES * sizeof(uint16_t));
    sc.codes = aligned_alloc(64, (size_t)MAX_CYCLES * LANES * sizeof(float));
    sc.exact = aligned_alloc(64, (size_t)MAX_CYCLES * LANES * sizeof(float));
    sc.acc = aligned_alloc(64, LANES * sizeof(double));
    sc.acc_exact = aligned_alloc(64, LANES * sizeof(double));
    int status = 0;
    if (!sc.planes || !sc.xtb || !sc.cnt || !sc.codes || !sc.exact || !sc.acc || !sc.acc_exact || p->nc > MAX_CYCLES
        || p->bits > MAX_BITS) {
        status = -1;
    } else {
        Quantile q;
        quantile_init(&q, p->coef);
        for (int64_t b = block_lo; b < block_hi; b++) {
            Rng rng;
            rng_seed(&rng, p->key, stream0 + (uint64_t)b);
            int64_t row = b * LANES;
            int64_t valid = rows - row < LANES ? rows - row : LANES;
            run_block(x + row * p->ldx, valid, p, &q, &rng, &sc, out + row * ldo, ldo);
        }
    }
    free(sc.planes);
    free(sc.xtb);
    free(sc.cnt);
    free(sc.codes);
    free(sc.exact);
    free(sc.acc);
    free(sc.acc_exact);
    return status;
}

/* the quantiles of n uniforms (n a multiple of 16), for tests: the same bits as core_kernels.quantiles */
void cim_quantiles(const uint32_t *u, int64_t n, const float *coef, float *out) {
    Quantile q;
    quantile_init(&q, coef);
    for (int64_t k = 0; k < n; k += 16)
        _mm512_storeu_ps(out + k, quantile(&q, _mm512_loadu_si512(u + k)));
}

/* n uniforms of one block's stream, for tests of the generator (n a multiple of 16) */
void cim_uniforms(uint64_t key, uint64_t stream, int64_t n, uint32_t *out) {
    Rng r;
    rng_seed(&r, key, stream);
    for (int64_t k = 0; k < n; k += 16) _mm512_storeu_si512(out + k, rng_next(&r));
}
