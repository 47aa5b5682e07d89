/* Bit-sliced CPU kernel of the bit-plane simulator, built and loaded by core_bitsliced.py, for AVX-512F/BW/DQ
   (16-lane vectors) or AVX2 + FMA (8-lane vectors): the compiler's target flags pick the vector layer below, and
   everything after it is written once. Both builds compute the same bits (the same operations in the same order,
   the 16-lane generator run as two 8-lane halves on AVX2), noise included when the byte stage (4.) is off.

   One call handles blocks of 512 consecutive rows (pixels) of one batch element. Per block:

   0. For a convolution the rows can be implicit (Params.nseg): each block's 512 rows are gathered from the padded
      channels-last image into scratch (a few segments per row), instead of reading an unfolded operand.
   1. The input codes are turned into bit planes *across rows*: plane (k, t) is one 512-bit vector
      whose bit p is bit t of x[p, k] (16 x 16 byte transposes in registers, then vptestmb, 64 rows per
      instruction; AVX2: a shift and vpmovmskb per 32). The planes are input-bit major (those of bit t
      together, 16 KB for 256 rows), so the lists of one input bit reuse them from L1; with GFNI the rows
      sit in the order its count transposes undo (gfni_row).
   2. A column sum of conversion (group g, weight bit i, input bit t, column n) is the number of
      ones, lane by lane, in the planes (k, t) of the rows k of group g whose weight bit i in
      column n is 1. The weights are fixed, so those rows are a list made once per call; the
      count of each of the 512 lanes is kept bit-sliced in carry-save form (Harley-Seal: 31
      full adders of vpternlogq per 32 planes, two instructions each), so one instruction adds
      about 512 / 2.1 one-bit products, against 512 / 7 for AND + nibble popcount. AVX2 has no
      ternary logic: five instructions per full adder on each 256-bit half. Per (group, column) the
      loop runs cycle by cycle, the cycle's input bits, then every weight bit's list on them.
   3. The counts are turned into integers (masked adds, 64 or 32 lanes at a time; AVX2: bytes
      expanded from the bits by a shuffle and a compare), combined into the input cycles' digits,
      and the ADC epilogue runs on 16 (AVX2: 8) lanes at a time: scale, noise (an
      exact inverse-CDF code from a 32-bit uniform, as core_kernels' table noise), clamp, round
      half to even, exact (hybrid) cycles, sign and shift-add, exact accumulation in float64.

   4. On AVX-512 VBMI CPUs the noisy single-bit cycles of narrow sums take the byte stage instead (below
      byte_thresholds): the code decided from the uniform's top byte(s) by 256-entry tables, 64 lanes per
      byte permute, summed in int16; the 1-2 % of lanes the tables leave undecided are packed (byte fields:
      8 cycle + chunk, lane, count, top bytes) and later take step 3's sampler with their top bits kept.
      With GFNI the counts become bytes by bit-matrix transposes.

   Noise-free results equal core_kernels' bit for bit: every sum before the final division is an
   exact integer in float32/float64, and the rounding steps are the same operations. Noisy codes
   have the same distribution (exact to 2^-32 per code) from another stream: xoshiro128++ in 16
   lanes, seeded per (batch element, block) from the caller's key, so results depend on the key
   and the block layout (512 rows from the start of each batch element), not on threads; and on
   whether the byte stage runs (VBMI: the same distribution, other bits).

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
#ifndef DEG               /* quantile polynomial degree: core_fused.QUANTILE_DEGREE, from the build's -DDEG */
#error "build with -DDEG=<core_fused.QUANTILE_DEGREE>"
#endif

#ifdef PROFILE  /* -DPROFILE: the stages stay separate functions, so perf can tell them apart */
#define STAGE __attribute__((noinline))
#else
#define STAGE
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__)
#define ISA_AVX512 1
#elif defined(__AVX2__) && defined(__FMA__)
#define ISA_AVX512 0
#else
#error "core_bitsliced.c needs -mavx512f -mavx512bw -mavx512dq or -mavx2 -mfma"
#endif

/* ------------------------------------------------------------------------------------------- */
/* the vector layer: W float/int32 lanes (vf, vi, lane masks vm), DW double lanes (vd), and one chunk
   (vp) of a 512-bit row plane; a plane is PCHUNKS chunks */

typedef unsigned vm;

#if ISA_AVX512
#define W 16
#define PCHUNKS 1
typedef __m512 vf;
typedef __m512i vi;
typedef __m512d vd;
typedef __m512i vp;
typedef __m512i Plane;

#define vi_set1 _mm512_set1_epi32
#define vi_add _mm512_add_epi32
#define vi_sub _mm512_sub_epi32
#define vi_xor _mm512_xor_si512
#define vi_andnot _mm512_andnot_si512
#define vi_slli _mm512_slli_epi32
#define vi_srli _mm512_srli_epi32
#define vi_srai _mm512_srai_epi32
#define vi_rol _mm512_rol_epi32
#define vi_min_epu32 _mm512_min_epu32
#define vi_loadu(ptr) _mm512_loadu_si512(ptr)
#define vi_storeu(ptr, a) _mm512_storeu_si512(ptr, a)
#define vi_ltu_mask _mm512_cmplt_epu32_mask
#define vi_u8(ptr) _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(ptr)))
#define vi_u16(ptr) _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(ptr)))
/* a & b | c */
#define vi_and_or(a, b, c) _mm512_ternarylogic_epi32(a, b, c, 0xEA)

#define vf_set1 _mm512_set1_ps
#define vf_zero _mm512_setzero_ps
#define vf_add _mm512_add_ps
#define vf_sub _mm512_sub_ps
#define vf_mul _mm512_mul_ps
#define vf_div _mm512_div_ps
#define vf_fma _mm512_fmadd_ps
#define vf_min _mm512_min_ps
#define vf_max _mm512_max_ps
#define vf_and _mm512_and_ps
#define vf_loadu _mm512_loadu_ps
#define vf_storeu _mm512_storeu_ps
#define vf_cvt _mm512_cvtepi32_ps
#define vf_cast _mm512_castsi512_ps
#define vi_cast _mm512_castps_si512
#define vf_rint(a) _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define vf_gt_mask(a, b) _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ)
#define vf_gather(idx, base) _mm512_i32gather_ps(idx, base, 4)

#define DW 8
#define vd_set1 _mm512_set1_pd
#define vd_loadu _mm512_loadu_pd
#define vd_storeu _mm512_storeu_pd
#define vd_add _mm512_add_pd
#define vd_mul _mm512_mul_pd
#define vd_of_floats(ptr) _mm512_cvtps_pd(_mm256_loadu_ps(ptr))
#define vd_of_i16(ptr) _mm512_cvtepi32_pd(_mm256_cvtepi16_epi32(_mm_loadu_si128((const __m128i *)(ptr))))

#define vp_load(ptr) _mm512_load_si512(ptr)
#define vp_zero _mm512_setzero_si512
#define vp_and _mm512_and_si512
#define vp_xor _mm512_xor_si512
#define vp_sum3(a, b, c) _mm512_ternarylogic_epi64(a, b, c, 0x96)
#define vp_majority(a, b, c) _mm512_ternarylogic_epi64(a, b, c, 0xE8)

#else /* AVX2 + FMA */
#define W 8
#define PCHUNKS 2
typedef __m256 vf;
typedef __m256i vi;
typedef __m256d vd;
typedef __m256i vp;
typedef struct { __m256i half[2]; } Plane;

#define vi_set1 _mm256_set1_epi32
#define vi_add _mm256_add_epi32
#define vi_sub _mm256_sub_epi32
#define vi_xor _mm256_xor_si256
#define vi_andnot _mm256_andnot_si256
#define vi_slli _mm256_slli_epi32
#define vi_srli _mm256_srli_epi32
#define vi_srai _mm256_srai_epi32
#define vi_rol(a, k) _mm256_or_si256(_mm256_slli_epi32(a, k), _mm256_srli_epi32(a, 32 - (k)))
#define vi_min_epu32 _mm256_min_epu32
#define vi_loadu(ptr) _mm256_loadu_si256((const __m256i *)(ptr))
#define vi_storeu(ptr, a) _mm256_storeu_si256((__m256i *)(ptr), a)
/* a < b for a below 2^31 (the folded uniforms): the signed compare */
#define vi_ltu_mask(a, b) ((vm)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpgt_epi32(b, a))))
#define vi_u8(ptr) _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(ptr)))
#define vi_u16(ptr) _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(ptr)))
#define vi_and_or(a, b, c) _mm256_or_si256(_mm256_and_si256(a, b), c)

#define vf_set1 _mm256_set1_ps
#define vf_zero _mm256_setzero_ps
#define vf_add _mm256_add_ps
#define vf_sub _mm256_sub_ps
#define vf_mul _mm256_mul_ps
#define vf_div _mm256_div_ps
#define vf_fma _mm256_fmadd_ps
#define vf_min _mm256_min_ps
#define vf_max _mm256_max_ps
#define vf_and _mm256_and_ps
#define vf_loadu _mm256_loadu_ps
#define vf_storeu _mm256_storeu_ps
#define vf_cvt _mm256_cvtepi32_ps
#define vf_cast _mm256_castsi256_ps
#define vi_cast _mm256_castps_si256
#define vf_rint(a) _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define vf_gt_mask(a, b) ((vm)_mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_GT_OQ)))
#define vf_gather(idx, base) _mm256_i32gather_ps(base, idx, 4)

#define DW 4
#define vd_set1 _mm256_set1_pd
#define vd_loadu _mm256_loadu_pd
#define vd_storeu _mm256_storeu_pd
#define vd_add _mm256_add_pd
#define vd_mul _mm256_mul_pd
#define vd_of_floats(ptr) _mm256_cvtps_pd(_mm_loadu_ps(ptr))
#define vd_of_i16(ptr) _mm256_cvtepi32_pd(_mm_cvtepi16_epi32(_mm_loadl_epi64((const __m128i *)(ptr))))

#define vp_load(ptr) _mm256_load_si256((const __m256i *)(ptr))
#define vp_zero _mm256_setzero_si256
#define vp_and _mm256_and_si256
#define vp_xor _mm256_xor_si256
#define vp_sum3(a, b, c) _mm256_xor_si256(_mm256_xor_si256(a, b), c)
#define vp_majority(a, b, c) \
    _mm256_or_si256(_mm256_and_si256(a, b), _mm256_and_si256(_mm256_xor_si256(a, b), c))
#endif

#define RNGS (16 / W)      /* the 16-lane generator as RNGS vectors of W lanes */

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
    /* byte-stage noise: per cycle j, tables of 256 bytes at btab + j * BYTE_STRIDE; cycles in bpath (bit j) have
       count tables (cim_byte_tables: the base and bm middle thresholds), cycles in upath shift tables
       (cim_shift_tables); the other noisy cycles take the quantile sampler */
    const uint8_t *btab;
    int bm;
    int bpath, upath;
    /* implicit rows (nseg > 0; a convolution's padded channels-last image, not unfolded): row r of x is zero but
       for the bytes at x + base(r) + seg[3 s] copied to columns seg[3 s + 1] .. + seg[3 s + 2], with
       base(r) = (r / rpi) ldi + (r % rpi / ow) ldy + (r % ow) ldw; each block's rows are gathered into scratch */
    int nseg;
    const int64_t *seg;
    int64_t ow, rpi, ldy, ldw, ldi;
} Params;

#define BYTE_THRESHOLDS 8                            /* most middle thresholds per count */
#define BYTE_STRIDE ((1 + BYTE_THRESHOLDS) * 256)    /* bytes of one cycle's tables */

/* ------------------------------------------------------------------------------------------- */
/* random numbers */

static inline uint64_t splitmix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* xoshiro128++ (Blackman, Vigna 2019) in 16 independent lanes: RNGS vectors of W lanes, lanes W h .. W h + W - 1
   in vector h, each advanced once per 16-lane draw */
typedef struct { vi s0, s1, s2, s3; } Rng;

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
    for (int h = 0; h < RNGS; h++) {
        r[h].s0 = vi_loadu(w[0] + W * h);
        r[h].s1 = vi_loadu(w[1] + W * h);
        r[h].s2 = vi_loadu(w[2] + W * h);
        r[h].s3 = vi_loadu(w[3] + W * h);
    }
}

static inline vi rng_next(Rng *r) {
    vi out = vi_add(vi_rol(vi_add(r->s0, r->s3), 7), r->s0);
    vi t = vi_slli(r->s1, 9);
    r->s2 = vi_xor(r->s2, r->s0);
    r->s3 = vi_xor(r->s3, r->s1);
    r->s1 = vi_xor(r->s1, r->s2);
    r->s0 = vi_xor(r->s0, r->s3);
    r->s2 = vi_xor(r->s2, t);
    r->s3 = vi_rol(r->s3, 11);
    return out;
}

/* z = Phi^-1((U + 1/2) / 2^32) for W uniforms: core_kernels._Quantile, the same operations and bits. The
   coefficients of the top 16 octaves sit in registers (AVX2: two of 8 per degree), the rest are gathered. */
typedef struct {
#if ISA_AVX512
    vf top[DEG + 1];
#else
    vf lo[DEG + 1], hi[DEG + 1];  /* octaves 16 .. 23 and 24 .. 31 */
#endif
    const float *coef;
} Quantile;

static void quantile_init(Quantile *q, const float *coef) {
    q->coef = coef;
#if ISA_AVX512
    for (int k = 0; k <= DEG; k++) q->top[k] = _mm512_loadu_ps(coef + 32 * k + 16);
#else
    for (int k = 0; k <= DEG; k++) {
        q->lo[k] = _mm256_loadu_ps(coef + 32 * k + 16);
        q->hi[k] = _mm256_loadu_ps(coef + 32 * k + 24);
    }
#endif
}

/* U or 2^32 - 1 - U, below 2^31 (the quantile's symmetric half) */
static inline vi fold(vi u) { return vi_xor(u, vi_srai(u, 31)); }

/* how the coefficients of folded uniforms are looked up: 0 registers, 1 registers of both halves (AVX2:
   some lane below octave 24, p < 2^-9), 2 gathers (some lane below octave 16, p < 2^-17) */
enum { FROM_TOP = 0, FROM_BOTH = 1, GATHER = 2 };

static inline int lookup_mode(vi qi) {
    if (vi_ltu_mask(qi, vi_set1(32768))) return GATHER;
#if ISA_AVX512
    return FROM_TOP;
#else
    return vi_ltu_mask(qi, vi_set1(1 << 23)) ? FROM_BOTH : FROM_TOP;
#endif
}

/* coefficient k of each lane's octave (top = octave - 16, 0 .. 15 unless gathering) */
static inline vf coefficient(const Quantile *q, int k, vi octave, vi top, int mode) {
    if (mode == GATHER) return vf_gather(octave, q->coef + 32 * k);
#if ISA_AVX512
    (void)octave;
    return _mm512_permutexvar_ps(top, q->top[k]);
#else
    vf hi = _mm256_permutevar8x32_ps(q->hi[k], top);
    if (mode == FROM_TOP) return hi;
    vf lo = _mm256_permutevar8x32_ps(q->lo[k], top);
    return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(top, 28)));  /* bit 3: the top half */
#endif
}

static inline vf quantile_folded(const Quantile *q, vi u, vi qi, int mode) {
    vf pf = vf_add(vf_cvt(qi), vf_set1(0.5f));
    pf = vf_min(pf, vf_set1(2147483520.0f));
    vi bits = vi_cast(pf);
    vi octave = vi_sub(vi_srli(bits, 23), vi_set1(126));
    vf m = vf_cast(vi_and_or(bits, vi_set1(0x7FFFFF), vi_set1(0x3F800000)));
    vf x = vf_fma(m, vf_set1(2.0f), vf_set1(-3.0f));
    vi top = vi_sub(octave, vi_set1(16));
    vf t = coefficient(q, DEG, octave, top, mode);
    _Pragma("GCC unroll 8")
    for (int k = DEG - 1; k >= 0; k--) t = vf_fma(t, x, coefficient(q, k, octave, top, mode));
    vi sign = vi_andnot(u, vi_set1((int)0x80000000u));
    return vf_cast(vi_xor(vi_cast(t), sign));
}

static inline vf quantile(const Quantile *q, vi u) {
    vi qi = fold(u);
    return quantile_folded(q, u, qi, lookup_mode(qi));
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

static const uint8_t zero_row[16];

/* 16 codes of row i from column k0 (the rows past the block's valid ones are zero_row) */
static inline __m128i row_codes(const uint8_t *const *row, int i, int64_t k0) {
    return _mm_loadu_si128((const __m128i *)(row[i] == zero_row ? zero_row : row[i] + k0));
}

/* Bit planes of 64 (AVX2: 32) rows x 16 columns of codes: vector i holds row i of each 16-row tile (16 bytes from
   each row pointer) in its 128-bit lanes; four rounds of byte interleaves within the lanes transpose every tile,
   so that vector j then holds column j of all the rows, and each bit t of its bytes is one word of plane (j, t). */
#if ISA_AVX512
#define TILE_ROWS 64
typedef __m512i Tile;
static inline Tile tile_load(const uint8_t *const row[TILE_ROWS], int i, int64_t k0) {
    Tile v = _mm512_castsi128_si512(row_codes(row, i, k0));
    v = _mm512_inserti32x4(v, row_codes(row, i + 16, k0), 1);
    v = _mm512_inserti32x4(v, row_codes(row, i + 32, k0), 2);
    return _mm512_inserti32x4(v, row_codes(row, i + 48, k0), 3);
}
#define tile_lo _mm512_unpacklo_epi8
#define tile_hi _mm512_unpackhi_epi8
typedef uint64_t TileWord;
/* bit p of the result: bit t of byte p */
static inline TileWord tile_bits(Tile v, int t) { return _mm512_test_epi8_mask(v, _mm512_set1_epi8((char)(1 << t))); }
#else
#define TILE_ROWS 32
typedef __m256i Tile;
static inline Tile tile_load(const uint8_t *const row[TILE_ROWS], int i, int64_t k0) {
    return _mm256_set_m128i(row_codes(row, i + 16, k0), row_codes(row, i, k0));
}
#define tile_lo _mm256_unpacklo_epi8
#define tile_hi _mm256_unpackhi_epi8
typedef uint32_t TileWord;
/* bit t of each byte to its sign bit (a 16-bit shift keeps the bytes apart) */
static inline TileWord tile_bits(Tile v, int t) { return (uint32_t)_mm256_movemask_epi8(_mm256_slli_epi16(v, 7 - t)); }
#endif
#define TILE_WORDS (LANES / TILE_ROWS)  /* words of TileWord per plane */

/* The row at bit b of the planes when planes_to_counts8_gfni turns them into counts: its in-lane unpacks leave
   plane byte 16 L + 2 v + k (bits 8 (16 L + 2 v + k) ..) at counts 8 (8 v + 2 L + k) .., so that byte holds those
   rows. */
static inline int64_t gfni_row(int64_t b) {
    const int64_t g = b >> 3, lane = g >> 4, v = (g >> 1) & 7, k = g & 1;
    return 8 * (8 * v + 2 * lane + k) + (b & 7);
}

/* the codes of rows [0, valid) of a block (x: rows of ldk bytes, kp used) -> planes (kp + 1) x bits x 512 bits:
   bit p of plane (k, t) is bit t of x[p, k]; plane kp and rows from valid on are zero */
STAGE static void make_planes(const uint8_t *x, int64_t ldk, int64_t kp, int64_t valid, int bits, int gfni,
                              Plane *planes) {
    const int64_t kfull = kp / 16 * 16;
    TileWord *words = (TileWord *)planes;  /* word c of plane (k, t): words[(t * (kp + 1) + k) * TILE_WORDS + c] */
    const uint8_t *row[LANES];
    for (int64_t b = 0; b < LANES; b++) {
        const int64_t r = gfni ? gfni_row(b) : b;
        row[b] = r < valid ? x + r * ldk : zero_row;
    }
    for (int64_t k0 = 0; k0 < kfull; k0 += 16) {  /* all words of 16 planes in turn */
        for (int c = 0; c < TILE_WORDS; c++) {
            const uint8_t *const *rc = row + c * TILE_ROWS;
            Tile a[16], b[16];
            _Pragma("GCC unroll 16")
            for (int i = 0; i < 16; i++) a[i] = tile_load(rc, i, k0);
            _Pragma("GCC unroll 4")
            for (int round = 0; round < 4; round++) {
                _Pragma("GCC unroll 8")
                for (int i = 0; i < 8; i++) {
                    b[2 * i] = tile_lo(a[i], a[i + 8]);
                    b[2 * i + 1] = tile_hi(a[i], a[i + 8]);
                }
                _Pragma("GCC unroll 16")
                for (int i = 0; i < 16; i++) a[i] = b[i];
            }
            TileWord *w = words + k0 * TILE_WORDS + c;
            _Pragma("GCC unroll 16")
            for (int j = 0; j < 16; j++)
                for (int t = 0; t < bits; t++) w[(t * (kp + 1) + j) * TILE_WORDS] = tile_bits(a[j], t);
        }
    }
    for (int64_t k = kfull; k < kp; k++) {  /* the last columns, byte by byte */
        for (int c = 0; c < TILE_WORDS; c++) {
            uint8_t col[TILE_ROWS] __attribute__((aligned(64)));
            for (int i = 0; i < TILE_ROWS; i++) {
                const uint8_t *r = row[c * TILE_ROWS + i];
                col[i] = r == zero_row ? 0 : r[k];
            }
            Tile v;
            memcpy(&v, col, sizeof v);
            for (int t = 0; t < bits; t++) words[(t * (kp + 1) + k) * TILE_WORDS + c] = tile_bits(v, t);
        }
    }
    for (int t = 0; t < bits; t++) memset(planes + t * (kp + 1) + kp, 0, sizeof(Plane));
}

#define CSA(h, l, a, b, c)                   \
    do {                                     \
        vp a_ = (a), b_ = (b), c_ = (c);     \
        l = vp_sum3(a_, b_, c_);             \
        h = vp_majority(a_, b_, c_);         \
    } while (0)

/* Lane counts of one chunk of the planes in list (byte offsets from base), bit-sliced into out[0], out[PCHUNKS],
   ... (np planes): Harley-Seal carry-save accumulation, 32 planes per step (the two sixteens of a step added into the
   sixteens by one more full adder, the thirty-twos rippled into out[5 ..)), a last 16-plane step where 16 are left. */
/* the planes l8[0 .. 7] added into ones .. fours; the eights they carry into e (twosA .. foursB: scratch) */
#define EIGHT(l8, e)                                                                             \
    do {                                                                                         \
        CSA(twosA, ones, ones, vp_load(base + (l8)[0]), vp_load(base + (l8)[1]));                \
        CSA(twosB, ones, ones, vp_load(base + (l8)[2]), vp_load(base + (l8)[3]));                \
        CSA(foursA, twos, twos, twosA, twosB);                                                   \
        CSA(twosA, ones, ones, vp_load(base + (l8)[4]), vp_load(base + (l8)[5]));                \
        CSA(twosB, ones, ones, vp_load(base + (l8)[6]), vp_load(base + (l8)[7]));                \
        CSA(foursB, twos, twos, twosA, twosB);                                                   \
        CSA(e, fours, fours, foursA, foursB);                                                    \
    } while (0)
/* the planes l16[0 .. 15] (a statement expression) added into ones .. eights; its value is the sixteens */
#define SIXTEEN(from)                                                                            \
    ({                                                                                           \
        const int32_t *l16 = (from);                                                             \
        vp twosA, twosB, foursA, foursB, eightsA, eightsB, sixteens_;                            \
        EIGHT(l16, eightsA);                                                                     \
        EIGHT(l16 + 8, eightsB);                                                                 \
        CSA(sixteens_, eights, eights, eightsA, eightsB);                                        \
        sixteens_;                                                                               \
    })
/* carry added into the bit-sliced counter hi[0 .. nh - 1] (half adders) */
#define RIPPLE(hi, nh, carry)                                                                    \
    do {                                                                                         \
        _Pragma("GCC unroll 8")                                                                  \
        for (int b = 0; b < (nh); b++) {                                                         \
            const vp nc = vp_and(hi[b], carry);                                                  \
            hi[b] = vp_xor(hi[b], carry);                                                        \
            carry = nc;                                                                          \
        }                                                                                        \
    } while (0)
#define COUNT_LIST(NAME, NP)                                                                     \
    STAGE static void NAME(const char *base, const int32_t *list, int64_t len, vp *out) {        \
        vp ones = vp_zero(), twos = ones, fours = ones, eights = ones, sixteens = ones;          \
        vp hi[NP - 5];                                                                           \
        for (int b = 0; b < NP - 5; b++) hi[b] = ones;                                           \
        int64_t s = 0;                                                                           \
        for (; s + 32 <= len; s += 32, list += 32) {                                             \
            const vp sA = SIXTEEN(list), sB = SIXTEEN(list + 16);                                \
            vp carry;                                                                            \
            CSA(carry, sixteens, sixteens, sA, sB);                                              \
            RIPPLE(hi, NP - 5, carry);                                                           \
        }                                                                                        \
        if (s < len) { /* 16 left */                                                             \
            vp carry = SIXTEEN(list);                                                            \
            const vp nc = vp_and(sixteens, carry);                                               \
            sixteens = vp_xor(sixteens, carry);                                                  \
            carry = nc;                                                                          \
            RIPPLE(hi, NP - 5, carry);                                                           \
        }                                                                                        \
        out[0] = ones;                                                                           \
        out[PCHUNKS] = twos;                                                                     \
        out[2 * PCHUNKS] = fours;                                                                \
        out[3 * PCHUNKS] = eights;                                                               \
        out[4 * PCHUNKS] = sixteens;                                                             \
        for (int b = 0; b < NP - 5; b++) out[(5 + b) * PCHUNKS] = hi[b];                         \
    }

COUNT_LIST(count_list8, 8)    /* sums up to 255: 8 planes */
COUNT_LIST(count_list9, 9)    /* sums up to 511 */

/* 8 bit-sliced planes -> 512 uint8 counts */
STAGE static void planes_to_counts8(const Plane *pl, uint8_t *cnt) {
#if ISA_AVX512  /* masked byte adds, 64 lanes each */
    const uint64_t *w = (const uint64_t *)pl;  /* plane p, lanes 64c .. 64c + 63: w[p * 8 + c] */
    for (int c = 0; c < LANES / 64; c++) {
        __m512i v = _mm512_setzero_si512();
        _Pragma("GCC unroll 8")
        for (int p = 0; p < 8; p++)
            v = _mm512_mask_add_epi8(v, _load_mask64((__mmask64 *)(w + p * 8 + c)), v, _mm512_set1_epi8((char)(1 << p)));
        _mm512_storeu_si512(cnt + 64 * c, v);
    }
#else  /* each 32-lane word's bits spread to bytes (byte j gets byte j / 8 of the word, then bit j % 8 tested) */
    const uint32_t *w = (const uint32_t *)pl;  /* plane p, lanes 32c .. 32c + 31: w[p * 16 + c] */
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                            2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i select = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    for (int c = 0; c < LANES / 32; c++) {
        __m256i v = _mm256_setzero_si256();
        _Pragma("GCC unroll 8")
        for (int p = 0; p < 8; p++) {
            __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)w[p * 16 + c]), spread);
            b = _mm256_cmpeq_epi8(_mm256_and_si256(b, select), select);
            v = _mm256_or_si256(v, _mm256_and_si256(b, _mm256_set1_epi8((char)(1 << p))));
        }
        _mm256_storeu_si256((__m256i *)(cnt + 32 * c), v);
    }
#endif
}

#if ISA_AVX512
/* planes_to_counts8 by byte interleaves and bit-matrix transposes (GFNI): three rounds of in-lane unpacks (bytes,
   words, dwords) gather, in each 128-bit lane of the 8 planes, byte j of every plane into one qword (plane p at byte
   7 - p): an 8 x 8 bit matrix whose transpose, gf2p8affineqb against the unit bytes, holds the counts of that byte's 8
   lanes. The unpacks keep the 128-bit lanes, so qword k of lane L of output v holds plane byte 16 L + 2 v + k; the
   rows were put there by make_planes (gfni_row), so that output v is the counts of rows 64 v .. 64 v + 63 in order.
   32 in-lane instructions per 512 lanes, against 128 mask loads and masked adds. */
__attribute__((target("gfni,avx512vbmi"))) STAGE static void planes_to_counts8_gfni(const Plane *pl, uint8_t *cnt) {
    __m512i a[8], b[8];
    for (int p = 0; p < 8; p++) a[p] = _mm512_load_si512(pl + 7 - p);  /* plane 7 first: the lowest byte */
    _Pragma("GCC unroll 4")
    for (int k = 0; k < 4; k++) {  /* bytes of planes (7 - 2k, 6 - 2k) */
        b[k] = _mm512_unpacklo_epi8(a[2 * k], a[2 * k + 1]);
        b[4 + k] = _mm512_unpackhi_epi8(a[2 * k], a[2 * k + 1]);
    }
    _Pragma("GCC unroll 2")
    for (int h = 0; h < 2; h++)  /* words of planes 7 .. 4 and of 3 .. 0 */
        _Pragma("GCC unroll 2")
        for (int k = 0; k < 2; k++) {
            a[4 * h + k] = _mm512_unpacklo_epi16(b[4 * h + 2 * k], b[4 * h + 2 * k + 1]);
            a[4 * h + 2 + k] = _mm512_unpackhi_epi16(b[4 * h + 2 * k], b[4 * h + 2 * k + 1]);
        }
    const __m512i unit = _mm512_set1_epi64((long long)0x8040201008040201ULL);
    _Pragma("GCC unroll 4")
    for (int k = 0; k < 4; k++) {  /* qwords of all 8 planes: outputs 2k and 2k + 1 */
        const __m512i lo = _mm512_unpacklo_epi32(a[2 * k], a[2 * k + 1]);
        const __m512i hi = _mm512_unpackhi_epi32(a[2 * k], a[2 * k + 1]);
        _mm512_storeu_si512(cnt + 64 * (2 * k), _mm512_gf2p8affine_epi64_epi8(unit, lo, 0));
        _mm512_storeu_si512(cnt + 64 * (2 * k + 1), _mm512_gf2p8affine_epi64_epi8(unit, hi, 0));
    }
}
#endif

/* 9 bit-sliced planes -> 512 uint16 counts */
STAGE static void planes_to_counts9(const Plane *pl, uint16_t *cnt) {
#if ISA_AVX512  /* masked word adds, 32 lanes each */
    const uint32_t *w = (const uint32_t *)pl;  /* plane p, lanes 32c .. 32c + 31: w[p * 16 + c] */
    for (int c = 0; c < LANES / 32; c++) {
        __m512i v = _mm512_setzero_si512();
        _Pragma("GCC unroll 9")
        for (int p = 0; p < 9; p++)
            v = _mm512_mask_add_epi16(v, _load_mask32((__mmask32 *)(w + p * 16 + c)), v, _mm512_set1_epi16((short)(1 << p)));
        _mm512_storeu_si512(cnt + 32 * c, v);
    }
#else  /* each 16-lane half-word's bits spread to words */
    const uint16_t *w = (const uint16_t *)pl;  /* plane p, lanes 16c .. 16c + 15: w[p * 32 + c] */
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                            1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m256i select = _mm256_setr_epi16(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
    for (int c = 0; c < LANES / 16; c++) {
        __m256i v = _mm256_setzero_si256();
        _Pragma("GCC unroll 9")
        for (int p = 0; p < 9; p++) {
            __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi16((short)w[p * 32 + c]), spread);
            b = _mm256_cmpeq_epi16(_mm256_and_si256(b, select), select);
            v = _mm256_or_si256(v, _mm256_and_si256(b, _mm256_set1_epi16((short)(1 << p))));
        }
        _mm256_storeu_si256((__m256i *)(cnt + 16 * c), v);
    }
#endif
}

/* ------------------------------------------------------------------------------------------- */
/* one block */

typedef struct {
    Plane *planes;                   /* bits x (kp + 1): input-bit major */
    uint8_t *cnt;                    /* one cycle's wb x width x 512 counts: uint8, or uint16 when wide */
    float *codes;                    /* nc x 512 */
    float *exact;                    /* nc x 512 */
    double *acc, *acc_exact;         /* 512 */
    void *pending;                   /* byte-stage noise: Pending (AVX-512 builds) */
    int16_t *icodes;                 /* nc x 512: the byte-stage cycles' codes (exact integers) */
    int gfni;                        /* the CPU has GFNI and VBMI: planes_to_counts8_gfni */
} Scratch;

/* the exact code of each flagged lane of vector v (core_kernels._near_code), added to codes as the difference to
   its fast code: u, s and the fast codes are the loop's, saved for the flagged vectors only */
static void fix_lanes(vm flag, const uint32_t *uv, const float *sv, const float *cv, const Params *p, int j, float w,
                      float *codes) {
    double sigma = p->fx[0], s_nl = p->fx[1], mpl = p->fx[2];
    for (int l = 0; l < W; l++) {
        if (!((flag >> l) & 1)) continue;
        double u64 = (double)sv[l] * p->ratio[j];
        double d = u64 * mpl + 1.0;
        double std = sqrt(sigma * sigma + s_nl * s_nl / (d > 1.0 ? d : 1.0));
        double c = exact_code(uv[l], u64, std, (double)cv[l], p->levels);
        codes[l] += ((float)c - cv[l]) * w;  /* exact: integers */
    }
}

/* column sums of W lanes of one cycle (from lane W v): its input bits' counts (rows 0 .. width - 1 of cnt), shifted,
   as float32 */
static inline vf lane_sums(const uint8_t *cnt, int width, int wide, int v) {
    if (!wide && width == 1) return vf_cvt(vi_u8(cnt + W * v));
    vi si = vi_set1(0);
    for (int b = 0; b < width; b++) {
        vi cb = wide ? vi_u16((const uint16_t *)cnt + b * LANES + W * v) : vi_u8(cnt + b * LANES + W * v);
        si = vi_add(si, vi_slli(cb, b));
    }
    return vf_cvt(si);
}

/* the loop over a block's vectors, specialised for single-bit cycles of narrow counts */
#define FOR_VECTORS(BODY)                                                   \
    do {                                                                    \
        if (!wide && width == 1) {                                          \
            for (int v = 0; v < LANES / W; v++) {                           \
                const vf s = lane_sums(cnt, 1, 0, v);                       \
                BODY                                                        \
            }                                                               \
        } else {                                                            \
            for (int v = 0; v < LANES / W; v++) {                           \
                const vf s = lane_sums(cnt, width, wide, v);                \
                BODY                                                        \
            }                                                               \
        }                                                                   \
    } while (0)

/* exact (digital) cycle: exact += s * w */
static inline void exact_lanes(const uint8_t *cnt, int width, int wide, vf w, float *exact) {
    FOR_VECTORS({
        vf e = vf_loadu(exact + W * v);
        vf_storeu(exact + W * v, vf_fma(s, w, e));  /* exact: integers below 2^24 */
    });
}

/* noise-free ADC: codes += rint(s * scale [/ den]) * w */
STAGE static void quantised_lanes(const uint8_t *cnt, int width, int wide, vf w, float scale, float den,
                                  int two_step, float *codes) {
    const vf vsc = vf_set1(scale), vdn = vf_set1(den);
    if (two_step) {
        FOR_VECTORS({
            vf r = vf_rint(vf_div(vf_mul(s, vsc), vdn));
            vf_storeu(codes + W * v, vf_fma(r, w, vf_loadu(codes + W * v)));
        });
    } else {
        FOR_VECTORS({
            vf r = vf_rint(vf_mul(s, vsc));
            vf_storeu(codes + W * v, vf_fma(r, w, vf_loadu(codes + W * v)));
        });
    }
}

#define UNROLL 4  /* vectors per step: a multiple of RNGS, so vector k draws from generator k % RNGS */

/* noisy ADC: codes += clamp(rint(s * sce + sigma * z)) * w, z the quantile of a fresh uniform; a code
   within the margin of a boundary (|y - rint(y)| > hm) is replaced by the exact thresholds' code */
STAGE static void noisy_lanes(const uint8_t *cnt, int width, int wide, float wt, float sce,
                              const Params *p, int j, const Quantile *q, Rng *rng, float *codes) {
    const vf w = vf_set1(wt), vsce = vf_set1(sce), vsig = vf_set1(p->fp[1]), vzero = vf_zero();
    const vf vlev = vf_set1(p->fp[0]), vhm = vf_set1(p->fp[5]);
    const vf absmask = vf_cast(vi_set1(0x7FFFFFFF));
    struct { uint32_t u[W]; float s[W], code[W]; vm flag; int v; } fixes[LANES / W];
    int nfix = 0;
    Rng st[RNGS];  /* in registers for the loop */
    for (int h = 0; h < RNGS; h++) st[h] = rng[h];
    for (int v = 0; v < LANES / W; v += UNROLL) {
        vi u[UNROLL];
        vf s[UNROLL], z[UNROLL], y[UNROLL], r[UNROLL], code[UNROLL];
        vm flag[UNROLL];
        _Pragma("GCC unroll 4")
        for (int k = 0; k < UNROLL; k++) u[k] = rng_next(&st[k % RNGS]);
        vi qi[UNROLL];
        _Pragma("GCC unroll 4")
        for (int k = 0; k < UNROLL; k++) qi[k] = fold(u[k]);
        vi qmin = qi[0];
        _Pragma("GCC unroll 4")
        for (int k = 1; k < UNROLL; k++) qmin = vi_min_epu32(qmin, qi[k]);
        int mode = lookup_mode(qmin);
        if (__builtin_expect(mode != FROM_TOP, 0)) {
            for (int k = 0; k < UNROLL; k++) z[k] = quantile_folded(q, u[k], qi[k], lookup_mode(qi[k]));
        } else {
            _Pragma("GCC unroll 4")
            for (int k = 0; k < UNROLL; k++) z[k] = quantile_folded(q, u[k], qi[k], FROM_TOP);
        }
        vm any = 0;
        _Pragma("GCC unroll 4")
        for (int k = 0; k < UNROLL; k++) {
            s[k] = lane_sums(cnt, width, wide, v + k);
            y[k] = vf_fma(vsig, z[k], vf_mul(s[k], vsce));  /* one rounding less than the margin allows */
            r[k] = vf_rint(y[k]);
            code[k] = vf_min(vf_max(r[k], vzero), vlev);
            flag[k] = vf_gt_mask(vf_and(vf_sub(y[k], r[k]), absmask), vhm);
            any |= flag[k];
            vf c = vf_loadu(codes + W * (v + k));
            vf_storeu(codes + W * (v + k), vf_fma(code[k], w, c));  /* exact: integers */
        }
        if (__builtin_expect(any != 0, 0)) {  /* saved for after the loop: no call with the loop's registers live */
            for (int k = 0; k < UNROLL; k++) {
                if (!flag[k]) continue;
                fixes[nfix].v = v + k;
                fixes[nfix].flag = flag[k];
                vi_storeu(fixes[nfix].u, u[k]);
                vf_storeu(fixes[nfix].s, s[k]);
                vf_storeu(fixes[nfix].code, code[k]);
                nfix++;
            }
        }
    }
    for (int f = 0; f < nfix; f++)
        fix_lanes(fixes[f].flag, fixes[f].u, fixes[f].s, fixes[f].code, p, j, wt, codes + W * fixes[f].v);
    for (int h = 0; h < RNGS; h++) rng[h] = st[h];
}

/* ------------------------------------------------------------------------------------------- */
/* byte-stage noise: the same exact inverse-CDF code, mostly decided from the uniform's top byte

   A noisy code is #{c in 1..L : U >= T_c(s)} for the thresholds T_c of the count s (code >= c iff
   (U + 1/2) / 2^32 >= Phi((c - 1/2 - u) / std), u = s L / FS; exact_code). With R = U >> 24 and
   a_c = floor(T_c / 2^24), U >= T_c holds for every U of top byte R > a_c and for none of top byte R < a_c, so the
   code is decided by R alone unless R = a_c for some c. Per cycle and count s (a byte: single-bit cycles of sums
   up to 255) the tables hold base(s) = #{c : a_c = 0} and the middle a_c (1 .. 254, at most BYTE_THRESHOLDS of
   them, padded with 255). For R in 1 .. 254 the code is base(s) + #{middle a_c < R}, decided unless R equals one
   of them; R = 0 and R = 255 are left undecided. The undecided lanes (about (middle + 2) / 256 of them) take
   the quantile sampler on U = R 2^24 + (24 fresh bits), which draws from the same distribution restricted to
   that top byte: every code keeps its exact probability. 64 lanes per instruction (AVX-512 VBMI byte permutes),
   one generator draw per 64 conversions. */

/* The threshold Phi(x) in the top b bits of U: #{r in 1 .. 2^b : p(r 2^(32 - b) - 1) < Phi(x)}, p(U) = (U + 1/2) / 2^32
   as exact_code. U >= T holds for every U whose top bits R exceed it, for none below it; R equal to it is undecided. */
static int32_t top_bits_threshold(double x, int b) {
    const int64_t top = (int64_t)1 << b;
    const uint32_t step = (uint32_t)(((uint64_t)1 << 32) >> b);
    if (x < -12.0) return 0;     /* Phi(x) < 2^-100, below every uniform */
    if (x > 12.0) return (int32_t)top;  /* Phi(x) = 1 to double precision: never reached */
    const double ph = phi(x);
    int64_t a = (int64_t)(ph * (double)top);
    if (a > top) a = top;
    while (a < top && ((double)((uint32_t)(a + 1) * step - 1u) + 0.5) * 0x1p-32 < ph) a++;
    while (a > 0 && ((double)((uint32_t)a * step - 1u) + 0.5) * 0x1p-32 >= ph) a--;
    return (int32_t)a;
}

/* the middle thresholds' top bytes of one count: returns base, writes the middle ones to mid (up to max, then
   -1: too many) */
static int byte_thresholds(const Params *p, int j, int s, uint8_t *mid, int max) {
    double u = (double)(float)s * p->ratio[j];
    double sigma = p->fx[0], s_nl = p->fx[1], mpl = p->fx[2];
    double d = u * mpl + 1.0;
    double std = sqrt(sigma * sigma + s_nl * s_nl / (d > 1.0 ? d : 1.0));  /* as fix_lanes */
    int base = 0, nm = 0;
    for (int c = 1; c <= (int)p->levels; c++) {
        double x = ((double)c - 0.5 - u) / std;
        const int a = (int)top_bits_threshold(x, 8);
        if (a == 0) {
            base++;
        } else if (a <= 254) {
            if (nm == max) return -1;
            mid[nm++] = (uint8_t)a;
        }
    }
    for (int k = nm; k < max; k++) mid[k] = 255;
    return base;
}

/* Cycle j's tables into out (BYTE_STRIDE bytes): base, then the middle thresholds k = 0 .. BYTE_THRESHOLDS - 1,
   256 counts each. Returns the most middle thresholds of a count, or -1 when a count has more than
   BYTE_THRESHOLDS (then the quantile sampler takes the cycle). */
int cim_byte_tables(const Params *p, int j, uint8_t *out) {
    if (p->levels > 255.0) return -1;  /* codes are bytes */
    int most = 0;
    for (int s = 0; s < 256; s++) {
        uint8_t mid[BYTE_THRESHOLDS];
        int base = byte_thresholds(p, j, s, mid, BYTE_THRESHOLDS);
        if (base < 0) return -1;
        out[s] = (uint8_t)base;
        for (int k = 0; k < BYTE_THRESHOLDS; k++) {
            out[256 * (1 + k) + s] = mid[k];
            if (mid[k] != 255 && k + 1 > most) most = k + 1;
        }
    }
    return most;
}

/* Shift tables: where u = s for every count (levels = full scale) and std does not depend on s, the code is
   clamp(s + d, 0, L) with d = max{d : U >= T(d)}, T(d) the threshold of P(d) = Phi((d - 1/2) / std) (d = c - u in
   exact_code's comparisons: the same doubles), a function of U alone. With R = U >> 16 and its bytes R1 (top), R2:
   a(d) = #{r in 1 .. 2^16 : p(r 2^16 - 1) < P(d)}, so U >= T(d) for R > a(d), not for R < a(d), undecided at R = a(d).
   For R1 in 1 .. 254: d = base(R1) + [R2 > a2(R1)], base(R1) = max{d : a(d) >> 8 < R1}, a2 the low byte of the one
   a(d) with top byte R1 (255 where none); undecided where R2 = a2(R1) (1/256 of the lanes with such an R1, and,
   harmlessly, of the others) and for R1 = 0 or 255: about 1.2 % of the lanes at 1 % noise and ADC 8. */
#define SHIFT_RANGE 127  /* |d| */

/* Cycle j's shift tables into out: base (signed bytes) at 0, a2 at 256. Returns 0, or -1 where they do not apply
   (u != s for some count, std depends on s, d beyond a signed byte, or two thresholds share a top byte). */
int cim_shift_tables(const Params *p, int j, uint8_t *out) {
    if (p->levels > 255.0 || p->fx[1] != 0.0) return -1;
    for (int s = 0; s < 256; s++)
        if ((double)(float)s * p->ratio[j] != (double)s) return -1;
    const double sigma = p->fx[0];
    const double std = sqrt(sigma * sigma + 0.0);  /* fix_lanes' std with s_nl = 0: the same bits for every count */
    int32_t a[2 * SHIFT_RANGE + 1];
    for (int d = -SHIFT_RANGE; d <= SHIFT_RANGE; d++) {
        double x = ((double)d - 0.5) / std;
        a[d + SHIFT_RANGE] = top_bits_threshold(x, 16);
    }
    if (a[0] >> 8 != 0 || a[2 * SHIFT_RANGE] >> 8 < 255) return -1;  /* d outside the range for some R1 */
    memset(out, 0, 256);
    memset(out + 256, 255, 256);
    for (int r1 = 1; r1 <= 254; r1++) {
        int base = -SHIFT_RANGE, at = 0;
        for (int d = -SHIFT_RANGE; d <= SHIFT_RANGE; d++) {
            int top = a[d + SHIFT_RANGE] >> 8;
            if (top < r1) base = d;
            else if (top == r1) at++, out[256 + r1] = (uint8_t)(a[d + SHIFT_RANGE] & 255);
        }
        if (at > 1) return -1;
        out[r1] = (uint8_t)(int8_t)base;
    }
    return 0;
}

#if ISA_AVX512
#define BYTES_TARGET __attribute__((target("avx512vbmi,avx512vbmi2")))

/* 64 lanes of a 256-byte table at the counts s (hi: the counts from 128 on; any_hi: some lane has one) */
BYTES_TARGET static inline __m512i lookup256(const uint8_t *tab, __m512i s, __mmask64 hi, int any_hi) {
    __m512i lo = _mm512_permutex2var_epi8(_mm512_loadu_si512(tab), s, _mm512_loadu_si512(tab + 64));
    if (!any_hi) return lo;
    __m512i up = _mm512_permutex2var_epi8(_mm512_loadu_si512(tab + 128), s, _mm512_loadu_si512(tab + 192));
    return _mm512_mask_blend_epi8(hi, lo, up);
}

/* The count tables' code of 64 lanes (counts s, top bytes r1): the base plus the m middle thresholds below r1; und
   gains the lanes whose r1 equals one of them. any_hi (a constant where it is called, so each case is one unrolled
   loop): some count is 128 or more, hi says which. */
BYTES_TARGET __attribute__((always_inline)) static inline __m512i count_code(const uint8_t *tab, __m512i s, __m512i r1,
                                                                            __mmask64 hi, const int any_hi,
                                                                            const int m, __mmask64 *dec) {
    const __m512i ones = _mm512_set1_epi8(-1);
    __m512i code = lookup256(tab, s, hi, any_hi);
    _Pragma("GCC unroll 8")
    for (int k = 0; k < m; k++) {
        const __m512i t = lookup256(tab + 256 * (1 + k), s, hi, any_hi);
        code = _mm512_mask_sub_epi8(code, _mm512_cmpgt_epu8_mask(r1, t), code, ones);
        *dec = _mm512_mask_cmpneq_epu8_mask(*dec, r1, t);
    }
    return code;
}

/* Undecided lanes of a group's byte-stage cycles, kept until the group's codes are summed: then their codes come
   from the quantile sampler in full vectors (a few per cent of the lanes, a few per call: one partial vector per
   call would cost as much as the byte stage itself). Packed by compresses in the vector loop: a log of whole
   chunks, expanded at the flush, was slower on Zen 4 (the compresses move to the flush, with the log's stores). */
#define PENDING (4 * LANES)
typedef struct {
    int n;
    uint8_t jc[PENDING + 64], lane[PENDING + 64];  /* cycle j and chunk c as 8 j + c, the lane within the chunk */
    uint8_t s[PENDING + 64], top[PENDING + 64], top2[PENDING + 64];  /* top2: shift cycles' R2 */
    float wt[PENDING + 64];
} Pending;

/* a packed field's first 16 bytes (narrow: half the store work of a full vector), or all 64 */
static inline void put_packed(void *dst, __m512i v, int narrow) {
    if (narrow)
        _mm_storeu_si128((__m128i *)dst, _mm512_castsi512_si128(v));
    else
        _mm512_storeu_si512(dst, v);
}

/* the undecided lanes und of chunk c (lanes 64 c ..) packed into pd from entry n, without branches (with_r2: the
   shift cycles' second bytes too); returns the new count */
__attribute__((target("avx512vbmi2"))) static inline int pend64(Pending *pd, int n, __mmask64 und, __m512i lanes,
                                                                __m512i jc, __m512i s, __m512i r1, __m512i r2,
                                                                int with_r2) {
    const int nall = __builtin_popcountll(und);
    const int narrow = __builtin_expect(nall <= 16, 1);  /* almost always: 16 bytes hold every packed field */
    put_packed(pd->lane + n, _mm512_maskz_compress_epi8(und, lanes), narrow);
    put_packed(pd->jc + n, jc, narrow);
    put_packed(pd->s + n, _mm512_maskz_compress_epi8(und, s), narrow);
    put_packed(pd->top + n, _mm512_maskz_compress_epi8(und, r1), narrow);
    if (with_r2) put_packed(pd->top2 + n, _mm512_maskz_compress_epi8(und, r2), narrow);
    return n + nall;
}

/* entries n0 .. n - 1 of pd came from weight bit i (weight wt; their cycle is in jc) */
static inline void pend_close(Pending *pd, int n0, int n, float wt) {
    for (int f = n0; f < n; f += 16) vf_storeu(pd->wt + f, vf_set1(wt));  /* the slack past n takes the overrun */
    pd->n = n;
}

/* the pending lanes' codes (noisy_lanes' quantile path on U = top 2^24 + 24 fresh bits, or top 2^24 + top2 2^16 +
   16 fresh bits for the shift cycles), added to icodes */
static void flush_pending(Pending *pd, const Params *p, const Quantile *q, Rng *rng, int16_t *icodes) {
    float sces[16] = {0};
    for (int j = 0; j < p->nc && j < 16; j++)
        sces[j] = p->den[0] > 0.0f ? p->scale[j] / p->den[j] : p->scale[j];
    const vf vsces = vf_loadu(sces), vsig = vf_set1(p->fp[1]), vzero = vf_zero();
    const vf vlev = vf_set1(p->fp[0]), vhm = vf_set1(p->fp[5]);
    const vf absmask = vf_cast(vi_set1(0x7FFFFFFF));
    Rng st = rng[0];
    for (int f = 0; f < pd->n; f += 16) {
        const int nv = pd->n - f < 16 ? pd->n - f : 16;
        const vi jcv = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(pd->jc + f))), jv = vi_srli(jcv, 3);
        const vi fresh = rng_next(&st);
        const vi hi = vi_slli(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(pd->top + f))), 24);
        const vi hi2 = vi_slli(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(pd->top2 + f))), 16);
        const __mmask16 shifted = _mm512_test_epi32_mask(_mm512_srlv_epi32(vi_set1(p->upath), jv), vi_set1(1));
        const vi u = _mm512_mask_blend_epi32(shifted, vi_add(hi, vi_srli(fresh, 8)),
                                             vi_add(vi_add(hi, hi2), vi_srli(fresh, 16)));
        const vf sv = vf_cvt(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(pd->s + f))));
        vf z = quantile(q, u);
        vf y = vf_fma(vsig, z, vf_mul(sv, _mm512_permutexvar_ps(jv, vsces)));
        vf r = vf_rint(y);
        float cv[16];
        vf_storeu(cv, vf_min(vf_max(r, vzero), vlev));
        vm flag = vf_gt_mask(vf_and(vf_sub(y, r), absmask), vhm) & ((1u << nv) - 1u);
        if (__builtin_expect(flag != 0, 0)) {  /* the exact thresholds, as fix_lanes */
            uint32_t uv[16];
            vi_storeu(uv, u);
            for (int l = 0; l < 16; l++) {
                if (!((flag >> l) & 1)) continue;
                int jl = pd->jc[f + l] >> 3;
                float one[1] = {0.0f}, s1 = (float)pd->s[f + l], c1 = cv[l];
                fix_lanes(1, uv + l, &s1, &c1, p, jl, 1.0f, one);
                cv[l] += one[0];
            }
        }
        int32_t iv[16];  /* the codes times +-2^i: exact integers */
        vi_storeu(iv, _mm512_cvttps_epi32(vf_mul(vf_loadu(cv), vf_loadu(pd->wt + f))));
        int32_t dst[16];  /* j * LANES + 64 c + lane */
        vi_storeu(dst, vi_add(vi_slli(jcv, 6), _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(pd->lane + f)))));
        for (int l = 0; l < nv; l++) icodes[dst[l]] += (int16_t)iv[l];
    }
    pd->n = 0;
    rng[0] = st;
}

/* icodes[0 .. 63] += code 2^i, or -= for the sign bit: exact, at most 255 (2^8 - 1) in magnitude over the weight
   bits (byte_tables: weight bits <= 8) */
BYTES_TARGET static inline void add_codes64(__m512i code, int i, int neg, int16_t *ic) {
    const __m512i lo = _mm512_slli_epi16(_mm512_cvtepu8_epi16(_mm512_castsi512_si256(code)), (unsigned)i);
    const __m512i hi = _mm512_slli_epi16(_mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(code, 1)), (unsigned)i);
    const __m512i a = _mm512_loadu_si512(ic), b = _mm512_loadu_si512(ic + 32);
    _mm512_storeu_si512(ic, neg ? _mm512_sub_epi16(a, lo) : _mm512_add_epi16(a, lo));
    _mm512_storeu_si512(ic + 32, neg ? _mm512_sub_epi16(b, hi) : _mm512_add_epi16(b, hi));
}

/* noisy ADC of a single-bit cycle j with narrow counts, weight bit i: icodes += code (+-2^i), the code from the
   count tables (cim_byte_tables) or, for the cycles in upath, the shift tables (cim_shift_tables: clamp(s + d, 0, L),
   d from the top 16 bits of the uniform); the undecided lanes go to pd (their codes added by flush_pending,
   before the group's codes are summed) */
BYTES_TARGET __attribute__((always_inline)) static inline void byte_lanes_of(const uint8_t *cnt, int i,
                                                                             const Params *p, int j, Rng *rng,
                                                                             Pending *pd, int16_t *icodes,
                                                                             const int shifted, const int m) {
    const uint8_t *tab = p->btab + (size_t)j * BYTE_STRIDE;
    const int neg = p->wts[i] < 0.0f;
    const __m512i ones = _mm512_set1_epi8(-1), zero = _mm512_setzero_si512(), bias = _mm512_set1_epi8((char)0x80);
    const __m512i below = _mm512_set1_epi8((char)254);
    const __m512i lmax = _mm512_set1_epi8((char)(uint8_t)p->levels);
    const int clamp_l = p->levels < 255.0;
    __m512i bt[4], at[4];  /* shift tables: base and a2, in registers */
    for (int k = 0; k < 4; k++) {
        bt[k] = shifted ? _mm512_loadu_si512(tab + 64 * k) : zero;
        at[k] = shifted ? _mm512_loadu_si512(tab + 256 + 64 * k) : zero;
    }
    uint8_t l8[64];
    for (int l = 0; l < 64; l++) l8[l] = (uint8_t)l;
    const __m512i lanes = _mm512_loadu_si512(l8);
    __m512i jc = _mm512_set1_epi8((char)(8 * j));  /* 8 j + c */
    Rng st = rng[0];
    const int n0 = pd->n;
    int n = n0;
    for (int c = 0; c < LANES / 64; c++) {
        const __m512i s = _mm512_loadu_si512(cnt + 64 * c);
        const __m512i r1 = rng_next(&st);
        __m512i code, r2 = zero;
        __mmask64 dec = _mm512_cmplt_epu8_mask(_mm512_add_epi8(r1, ones), below);  /* top byte 1 .. 254 */
        if (shifted) {
            r2 = rng_next(&st);
            const __mmask64 hi = _mm512_movepi8_mask(r1);
            const __m512i base = _mm512_mask_blend_epi8(hi, _mm512_permutex2var_epi8(bt[0], r1, bt[1]),
                                                        _mm512_permutex2var_epi8(bt[2], r1, bt[3]));
            const __m512i a2 = _mm512_mask_blend_epi8(hi, _mm512_permutex2var_epi8(at[0], r1, at[1]),
                                                      _mm512_permutex2var_epi8(at[2], r1, at[3]));
            const __m512i d = _mm512_mask_sub_epi8(base, _mm512_cmpgt_epu8_mask(r2, a2), base, ones);
            code = _mm512_xor_si512(_mm512_adds_epi8(_mm512_xor_si512(s, bias), d), bias);  /* clamp(s + d, 0, 255) */
            if (clamp_l) code = _mm512_min_epu8(code, lmax);
            dec = _mm512_mask_cmpneq_epu8_mask(dec, r2, a2);
        } else {
            const __mmask64 hi = _mm512_movepi8_mask(s);
            code = __builtin_expect(hi != 0, 0) ? count_code(tab, s, r1, hi, 1, m, &dec)
                                                : count_code(tab, s, r1, 0, 0, m, &dec);
        }
        add_codes64(_mm512_maskz_mov_epi8(dec, code), i, neg, icodes + 64 * c);
        n = pend64(pd, n, ~dec, lanes, jc, s, r1, r2, shifted);
        jc = _mm512_sub_epi8(jc, ones);
    }
    pend_close(pd, n0, n, p->wts[i]);
    rng[0] = st;
}

BYTES_TARGET STAGE static void byte_lanes(const uint8_t *cnt, int i, const Params *p, int j, Rng *rng,
                                          Pending *pd, int16_t *icodes) {
    if ((p->upath >> j) & 1) {  /* (specialised: no test in the loop, the thresholds' loop unrolled) */
        byte_lanes_of(cnt, i, p, j, rng, pd, icodes, 1, 0);
        return;
    }
    switch (p->bm) {
#define BYTE_CASE(M) case M: byte_lanes_of(cnt, i, p, j, rng, pd, icodes, 0, M); break;
        BYTE_CASE(0) BYTE_CASE(1) BYTE_CASE(2) BYTE_CASE(3) BYTE_CASE(4) BYTE_CASE(5) BYTE_CASE(6) BYTE_CASE(7)
        default: byte_lanes_of(cnt, i, p, j, rng, pd, icodes, 0, BYTE_THRESHOLDS); break;
#undef BYTE_CASE
    }
}
#endif

static void run_block(const uint8_t *x, int64_t ldx, int64_t rows_valid, const Params *p, const Quantile *q, Rng *rng,
                      Scratch *sc, float *out, int64_t ldo) {
    const int n = p->n, wb = p->wb, bits = p->bits, nc = p->nc, wide = p->wide;
    make_planes(x, ldx, p->kp, rows_valid, bits, sc->gfni && !wide, sc->planes);
    const int two_step = p->den[0] > 0.0f;
    const int bmask = p->bpath | p->upath;  /* the byte-stage cycles */
    const int bytes = ISA_AVX512 && !wide && bmask;  /* some cycle's codes in icodes */
    /* ints: every analog code is in icodes (no noise-free ADC, no quantile-sampler cycle) and each byte-stage
       cycle's level is +-2^k, k <= 7: then the group's codes are summed in int32 */
    int ints = bytes, ish[MAX_CYCLES] = {0}, ineg[MAX_CYCLES] = {0};
    for (int j = 0; j < nc && ints; j++) {
        const int inb = (bmask >> j) & 1;
        for (int i = 0; i < wb; i++) {
            const int kind = p->kinds[j * wb + i];
            if (kind == 1 || (kind == 2 && !inb)) ints = 0;
        }
        if (!inb) continue;
        int e;
        const double fr = frexp(fabs(p->lev[2 * j]), &e);  /* |lev| = fr 2^e, fr = 1/2 for a power of two */
        if (fr != 0.5 || e - 1 < 0 || e - 1 > 7) ints = 0;
        ish[j] = e - 1;
        ineg[j] = p->lev[2 * j] < 0.0;
    }
    (void)ish, (void)ineg;  /* (AVX2 builds: unused) */
    Plane pl[MAX_PLANES];
    for (int col = 0; col < n; col++) {
        memset(sc->acc, 0, LANES * sizeof(double));
        memset(sc->acc_exact, 0, LANES * sizeof(double));
        int any_exact_all = 0;
        for (int g = 0; g < p->groups; g++) {
            if (!ints) memset(sc->codes, 0, (size_t)nc * LANES * sizeof(float));
            memset(sc->exact, 0, (size_t)nc * LANES * sizeof(float));
            if (bytes) memset(sc->icodes, 0, (size_t)nc * LANES * sizeof(int16_t));
            for (int j = 0; j < nc; j++) {  /* the cycle's counts for every weight bit, input bit by input bit */
                const int shift = (int)p->cyc[2 * j], width = (int)p->cyc[2 * j + 1];
                for (int b = 0; b < width; b++) {
                    const char *base = (const char *)(sc->planes + (shift + b) * (p->kp + 1));
                    for (int i = 0; i < wb; i++) {
                        const int64_t qi = ((int64_t)g * n + col) * wb + i;
                        const int32_t *list = p->lists + p->offsets[qi];
                        const int64_t len = p->offsets[qi + 1] - p->offsets[qi];
                        for (int h = 0; h < PCHUNKS; h++) {
                            if (wide)
                                count_list9(base + h * sizeof(vp), list, len, (vp *)pl + h);
                            else
                                count_list8(base + h * sizeof(vp), list, len, (vp *)pl + h);
                        }
                        const int64_t at = ((int64_t)i * width + b) * LANES;  /* counts of (i, b) */
                        if (wide)
                            planes_to_counts9(pl, (uint16_t *)sc->cnt + at);
#if ISA_AVX512
                        else if (sc->gfni)
                            planes_to_counts8_gfni(pl, sc->cnt + at);
#endif
                        else
                            planes_to_counts8(pl, sc->cnt + at);
                    }
                }
                for (int i = 0; i < wb; i++) {
                    const int kind = p->kinds[j * wb + i];
                    const uint8_t *cnt = sc->cnt + (size_t)i * width * LANES * (wide ? 2 : 1);
                    const vf w = vf_set1(p->wts[i]);
                    if (kind == 0) {
                        any_exact_all = 1;
                        exact_lanes(cnt, width, wide, w, sc->exact + j * LANES);
                    } else if (kind == 1) {
                        quantised_lanes(cnt, width, wide, w, p->scale[j], p->den[j], two_step,
                                        sc->codes + j * LANES);
                    } else {
                        float sce = two_step ? p->scale[j] / p->den[j] : p->scale[j];
#if ISA_AVX512
                        if (!wide && width == 1 && ((bmask >> j) & 1)) {
                            Pending *pd = sc->pending;
                            if (pd->n > PENDING - LANES) flush_pending(pd, p, q, rng, sc->icodes);
                            byte_lanes(cnt, i, p, j, rng, pd, sc->icodes + j * LANES);
                            continue;
                        }
#endif
                        noisy_lanes(cnt, width, wide, p->wts[i], sce, p, j, q, rng, sc->codes + j * LANES);
                    }
                }
            }
#if ISA_AVX512
            if (((Pending *)sc->pending)->n) flush_pending(sc->pending, p, q, rng, sc->icodes);
            if (ints) {  /* the cycles' codes summed in int32 (exact: below 2^23), then once into acc */
                for (int v = 0; v < LANES / 16; v++) {
                    __m512i t = _mm512_setzero_si512();
                    for (int j = 0; j < nc; j++) {
                        if (!((bmask >> j) & 1)) continue;
                        const __m512i c = _mm512_slli_epi32(
                            _mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)(sc->icodes + j * LANES + 16 * v))),
                            (unsigned)ish[j]);
                        t = ineg[j] ? _mm512_sub_epi32(t, c) : _mm512_add_epi32(t, c);
                    }
                    double *a = sc->acc + 16 * v;
                    _mm512_storeu_pd(a, _mm512_add_pd(_mm512_loadu_pd(a), _mm512_cvtepi32_pd(_mm512_castsi512_si256(t))));
                    _mm512_storeu_pd(a + 8, _mm512_add_pd(_mm512_loadu_pd(a + 8),
                                                          _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(t, 1))));
                }
            }
#endif
            for (int j = 0; j < nc && !(ints && !any_exact_all); j++) {
                const vd l0 = vd_set1(p->lev[2 * j]), l1 = vd_set1(p->lev[2 * j + 1]);
                const float *codes = sc->codes + j * LANES, *exact = sc->exact + j * LANES;
                const int16_t *icodes = sc->icodes + j * LANES;
                const int with_i = bytes && ((bmask >> j) & 1);
                for (int v = 0; v < LANES / DW; v++) {
                    if (!ints) {
                        vd a = vd_loadu(sc->acc + DW * v), cv = vd_of_floats(codes + DW * v);
                        if (with_i) cv = vd_add(cv, vd_of_i16(icodes + DW * v));  /* exact: integers */
                        vd_storeu(sc->acc + DW * v, vd_add(a, vd_mul(cv, l0)));
                    }
                    if (any_exact_all) {
                        vd e = vd_loadu(sc->acc_exact + DW * v);
                        vd_storeu(sc->acc_exact + DW * v, vd_add(e, vd_mul(vd_of_floats(exact + DW * v), l1)));
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

/* rows [row, row + valid) of the implicit operand (Params: nseg > 0) into stage (rows of ld bytes) */
static void gather_rows(const uint8_t *x, int64_t row, int64_t valid, const Params *p, uint8_t *stage, int64_t ld) {
    for (int64_t r = 0; r < valid; r++) {
        const int64_t g = row + r, within = g % p->rpi;
        const uint8_t *base = x + g / p->rpi * p->ldi + within / p->ow * p->ldy + within % p->ow * p->ldw;
        uint8_t *dst = stage + r * ld;
        for (int s = 0; s < p->nseg; s++) memcpy(dst + p->seg[3 * s + 1], base + p->seg[3 * s], (size_t)p->seg[3 * s + 2]);
    }
}

/* Blocks [block_lo, block_hi) of one batch element: x (rows, ldx) uint8 codes (row-major, kp used), or with
   p->nseg > 0 the image the rows are gathered from, out (rows, ldo) float32; stream0: the first block's index
   within its batch element plus batch * 2^32 (the noise stream of block b is stream0 + b). Returns 0, or -1 when out of memory. */
int cim_bitsliced(const uint8_t *x, int64_t rows, int64_t block_lo, int64_t block_hi, uint64_t stream0,
                  const Params *p, float *out, int64_t ldo) {
    Scratch sc;
    size_t planes_bytes = (size_t)(p->kp + 1) * p->bits * sizeof(Plane);
    sc.planes = aligned_alloc(64, planes_bytes);
    sc.cnt = aligned_alloc(64, (size_t)p->wb * p->bits * LANES * sizeof(uint16_t));  /* weight x input bits */
    sc.codes = aligned_alloc(64, (size_t)MAX_CYCLES * LANES * sizeof(float));
    sc.exact = aligned_alloc(64, (size_t)MAX_CYCLES * LANES * sizeof(float));
    sc.acc = aligned_alloc(64, LANES * sizeof(double));
    sc.acc_exact = aligned_alloc(64, LANES * sizeof(double));
    sc.icodes = aligned_alloc(64, (size_t)MAX_CYCLES * LANES * sizeof(int16_t));
#if ISA_AVX512
    __builtin_cpu_init();
    const char *no_gfni = getenv("CIM_DSE_NO_GFNI");  /* "1": the masked byte adds (tests, A/B) */
    sc.gfni = __builtin_cpu_supports("gfni") && __builtin_cpu_supports("avx512vbmi") && !(no_gfni && no_gfni[0] == '1');
    sc.pending = malloc(sizeof(Pending));
    if (sc.pending) ((Pending *)sc.pending)->n = 0;
    const int no_pending = !sc.pending;
#else
    sc.gfni = 0;
    sc.pending = NULL;  /* no byte stage */
    const int no_pending = 0;
#endif
    const int64_t ldstage = (p->kp + 63) / 64 * 64;
    uint8_t *stage = p->nseg > 0 ? calloc((size_t)LANES * (size_t)ldstage, 1) : NULL;  /* columns no segment covers: 0 */
    int status = 0;
    if (!sc.planes || !sc.cnt || !sc.codes || !sc.exact || !sc.acc || !sc.acc_exact || no_pending || !sc.icodes
        || (p->nseg > 0 && !stage)
        || p->nc > MAX_CYCLES || p->bits > MAX_BITS) {
        status = -1;
    } else {
        Quantile q;
        quantile_init(&q, p->coef);
        for (int64_t b = block_lo; b < block_hi; b++) {
            Rng rng[RNGS];
            rng_seed(rng, p->key, stream0 + (uint64_t)b);
            int64_t row = b * LANES;
            int64_t valid = rows - row < LANES ? rows - row : LANES;
            if (stage) {
                gather_rows(x, row, valid, p, stage, ldstage);
                run_block(stage, ldstage, valid, p, &q, rng, &sc, out + row * ldo, ldo);
            } else {
                run_block(x + row * p->ldx, p->ldx, valid, p, &q, rng, &sc, out + row * ldo, ldo);
            }
        }
    }
    free(sc.planes);
    free(sc.cnt);
    free(sc.codes);
    free(sc.exact);
    free(sc.acc);
    free(sc.acc_exact);
    free(sc.icodes);
    free(sc.pending);
    free(stage);
    return status;
}

/* The kernel's row lists (core_bitsliced.row_lists): wk (keep, n) the weights' low wb bits; for list
   q = (g * n + col) * wb + i, the rows k < keep of group g (rows [g * group_rows, (g + 1) * group_rows)) whose bit i
   in column col is 1, ascending, as k * scale, padded with keep * scale to a multiple of 16 entries. With lists NULL
   only offsets (groups * n * wb + 1 entries: the lists' starts and the total) are computed; then the caller
   allocates offsets[last] entries and calls again. Two passes over wk, in its row-major order. Returns 0, or -1
   when out of memory. */
int cim_row_lists(const uint16_t *wk, int64_t keep, int64_t n, int wb, int64_t group_rows, int64_t groups,
                   int64_t scale, int64_t *offsets, int32_t *lists) {
    const int64_t nq = groups * n * wb;
    if (!lists) {
        memset(offsets, 0, (size_t)(nq + 1) * sizeof(int64_t));
        for (int64_t k = 0; k < keep; k++) {
            int64_t *count = offsets + 1 + (k / group_rows) * n * wb;  /* count of list q at offsets[q + 1] */
            for (int64_t col = 0; col < n; col++)
                for (int i = 0; i < wb; i++) count[col * wb + i] += (wk[k * n + col] >> i) & 1;
        }
        for (int64_t q = 0; q < nq; q++) offsets[q + 1] = offsets[q] + (offsets[q + 1] + 15) / 16 * 16;
        return 0;
    }
    int64_t *next = malloc((size_t)(nq ? nq : 1) * sizeof(int64_t));
    if (!next) return -1;
    memcpy(next, offsets, (size_t)nq * sizeof(int64_t));
    for (int64_t k = 0; k < keep; k++) {
        int64_t *at = next + (k / group_rows) * n * wb;
        for (int64_t col = 0; col < n; col++) {
            unsigned v = wk[k * n + col];
            for (int i = 0; i < wb; i++)
                if ((v >> i) & 1) lists[at[col * wb + i]++] = (int32_t)(k * scale);
        }
    }
    for (int64_t q = 0; q < nq; q++)
        for (int64_t e = next[q]; e < offsets[q + 1]; e++) lists[e] = (int32_t)(keep * scale);
    free(next);
    return 0;
}

/* whether this build and CPU run the byte-stage noise (AVX-512 VBMI) */
int cim_byte_noise(void) {
#if ISA_AVX512
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512vbmi2");
#else
    return 0;
#endif
}

/* the byte offset of row k's planes from those of row 0 (input bit t's planes are at t (kp + 1) planes): k times
   this, the scale of cim_row_lists */
int cim_row_scale(void) { return (int)sizeof(Plane); }

/* the vector width of this build (16 for AVX-512, 8 for AVX2), for the host's record */
int cim_lanes(void) { return W; }

/* the quantiles of n uniforms (n a multiple of 16), for tests: the same bits as core_kernels.quantiles */
void cim_quantiles(const uint32_t *u, int64_t n, const float *coef, float *out) {
    Quantile q;
    quantile_init(&q, coef);
    for (int64_t k = 0; k < n; k += W) vf_storeu(out + k, quantile(&q, vi_loadu(u + k)));
}

/* n uniforms of one block's stream, for tests of the generator (n a multiple of 16) */
void cim_uniforms(uint64_t key, uint64_t stream, int64_t n, uint32_t *out) {
    Rng r[RNGS];
    rng_seed(r, key, stream);
    for (int64_t k = 0; k < n; k += 16)
        for (int h = 0; h < RNGS; h++) vi_storeu(out + k + W * h, rng_next(&r[h]));
}
