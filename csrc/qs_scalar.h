/*
 * qs_scalar.h -- the scalar format math of qsparse, shared by the CPU library (csrc/) and the CUDA library (cuda/).
 *
 * Everything here is a pure function of its arguments, marked host+device under nvcc, so that CPU and GPU results
 * are bit-identical. Arithmetic is IEEE binary32 with round-to-nearest-even and no contraction (the build passes
 * -ffp-contract=off / --fmad=false; no fast-math anywhere): each line below is one correctly rounded operation, in
 * the order FORMATS.md and the cited sources write them. Exponent arithmetic is integer arithmetic on bit patterns
 * with explicit clamps.
 *
 * Invariants the kernels rely on:
 *   - qs_round_float() maps any binary32 value onto the grid of a QS_FAMILY_FLOAT format exactly (no double
 *     rounding), for every exponent range including the target's subnormals and binary32 subnormal inputs.
 *   - Group quantizers take a finite group (the caller turns a group with NaN or Inf into NaN outputs first).
 *   - The stochastic stream is a pure function of (seed, element index): qs_rand24().
 */
#ifndef QS_SCALAR_H
#define QS_SCALAR_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define QS_HD static __host__ __device__ __forceinline__
#elif defined(__GNUC__)
/* always inlined: the kernels' loops must see straight-line code to vectorize */
#define QS_HD static inline __attribute__((always_inline))
#else
#define QS_HD static inline
#endif

#if defined(__cplusplus)
#define QS_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define QS_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

QS_STATIC_ASSERT(sizeof(float) == 4, "binary32 float required");

/* ---- bit casts ------------------------------------------------------------------------------------------------ */

QS_HD uint32_t qs_f2u(float f) {
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
#endif
}

QS_HD float qs_u2f(uint32_t u) {
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
#endif
}

#define QS_F32_SIGN 0x80000000u
#define QS_F32_INF_BITS 0x7f800000u
#define QS_F32_QNAN_BITS 0x7fc00000u
#define QS_F32_MAX_BITS 0x7f7fffffu

QS_HD float qs_qnan(void) { return qs_u2f(QS_F32_QNAN_BITS); }
QS_HD int qs_isnan(float x) { return (qs_f2u(x) & ~QS_F32_SIGN) > QS_F32_INF_BITS; }
/* Not NaN and not +-Inf. */
QS_HD int qs_isfinite(float x) { return (qs_f2u(x) & QS_F32_INF_BITS) != QS_F32_INF_BITS; }
QS_HD float qs_abs(float x) { return qs_u2f(qs_f2u(x) & ~QS_F32_SIGN); }
QS_HD float qs_copysign(float mag, float sgn) {
    return qs_u2f((qs_f2u(mag) & ~QS_F32_SIGN) | (qs_f2u(sgn) & QS_F32_SIGN));
}

/* cond ? a : b, as a bit blend on the host: a ternary whose arm is arithmetic gets that arithmetic sunk into a
   branch, which GCC then cannot if-convert (FP operations may trap), and the loop stays scalar. */
QS_HD float qs_select(int cond, float a, float b) {
#if defined(__CUDA_ARCH__)
    return cond ? a : b;
#else
    uint32_t m = 0u - (uint32_t)(cond != 0);
    return qs_u2f((qs_f2u(a) & m) | (qs_f2u(b) & ~m));
#endif
}

/* 2^k as a binary32 for -149 <= k <= 127 (subnormal powers included), built from bits. */
QS_HD float qs_exp2i(int32_t k) {
    if (k >= -126) return qs_u2f((uint32_t)(k + 127) << 23);
    return qs_u2f(1u << (uint32_t)(k + 149));
}

/* The same for bit patterns. */
QS_HD uint32_t qs_selectu(int cond, uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
    return cond ? a : b;
#else
    const uint32_t m = 0u - (uint32_t)(cond != 0);
    return (a & m) | (b & ~m);
#endif
}

/* ---- rounding to integers ------------------------------------------------------------------------------------- */

/* Round half to even. For |v| < 2^23 adding and subtracting 2^23 rounds at the units place (binary32 has a unit
   ulp in [2^23, 2^24)); larger magnitudes, Inf and NaN are already integral. The sign of zero is kept. */
QS_HD float qs_rint(float v) {
#if defined(__CUDA_ARCH__)
    return rintf(v);
#else
    const float two23 = 8388608.0f;
    float a = qs_abs(v);
    float r = (a + two23) - two23;
    return qs_select(a < two23, qs_copysign(r, v), v);
#endif
}

QS_HD float qs_floor(float v) {
    float r = qs_rint(v);
    return r - qs_select(r > v, 1.0f, 0.0f);
}

/* ---- the stochastic rounding stream --------------------------------------------------------------------------- */

/* The murmur3 32-bit finalizer: a bijection with full avalanche. */
QS_HD uint32_t qs_mix32(uint32_t h) {
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

typedef struct qs_rng {
    uint32_t k0, k1;
} qs_rng;

QS_HD qs_rng qs_rng_make(uint64_t seed) {
    qs_rng r;
    r.k0 = qs_mix32((uint32_t)seed ^ 0x9e3779b9u);
    r.k1 = qs_mix32((uint32_t)(seed >> 32) ^ r.k0 ^ 0x7f4a7c15u);
    return r;
}

/* 24 random bits for element `index` (row * cols + col of the logical tensor): u = qs_rand24() * 2^-24 in [0,1).
   Split in two so that loops can hoist the high half's key (it changes once every 2^32 elements). */
QS_HD uint32_t qs_rand_key_hi(qs_rng r, uint32_t index_hi) { return qs_mix32(index_hi ^ r.k1); }
QS_HD uint32_t qs_rand24_lo(qs_rng r, uint32_t key_hi, uint32_t index_lo) {
    return qs_mix32(qs_mix32(index_lo ^ key_hi) ^ r.k0) >> 8;
}
QS_HD uint32_t qs_rand24(qs_rng r, uint64_t index) {
    return qs_rand24_lo(r, qs_rand_key_hi(r, (uint32_t)(index >> 32)), (uint32_t)index);
}

QS_HD float qs_u24_to_unit(uint32_t u24) { return (float)u24 * 5.9604644775390625e-08f; /* 2^-24 */ }

/* Stochastic rounding as FORMATS.md writes it, floor(v + u), evaluated exactly (u = u24 * 2^-24 in [0, 1)):
   it rounds up iff frac(v) + u >= 1. Each comparison below is exact in binary32: for v >= 0, frac = v - floor(v)
   is exact (Sterbenz) and so is 1 - u; for v < 0, frac may not be exact (v = -2^-30 gives 1 - 2^-30), but its
   complement (floor(v) + 1) - v is. An integral v (frac 0) never moves. A zero result keeps v's sign, as round
   to nearest even does (round(-0.3) = -0.0). */
QS_HD float qs_round_stochastic(float v, uint32_t u24) {
    const float u = qs_u24_to_unit(u24);
    const float f = qs_floor(v);
    const float frac = v - f;
    const float gap = (f + 1.0f) - v;
    const int nonneg = v >= 0.0f, up_pos = frac >= 1.0f - u, up_neg = u >= gap; /* all evaluated: no branch */
    const int up = (v != f) & ((nonneg & up_pos) | ((1 - nonneg) & up_neg));
    const float q = qs_select(up, f + 1.0f, f);
    return qs_select(q == 0.0f, qs_copysign(0.0f, v), q);
}

/* sign(v) * floor(|v| + 0.5) with the sum rounded to binary32, as microxcaling computes it (so 0.5 - 2^-25 goes to
   1, where exact arithmetic would give 0; every larger |v| < 2^23 is exact). */
QS_HD float qs_round_half_away(float v) { return qs_copysign(qs_floor(qs_abs(v) + 0.5f), v); }

/* Nearest, a tie to the lower value (BitMoD's `x <= mid` thresholds), exactly: v - rint(v) is exact (Sterbenz), and
   it is -0.5 exactly when rint went up from a tie. A zero keeps v's sign. */
QS_HD float qs_round_ties_lower(float v) {
    const float r = qs_rint(v);
    return r - qs_select(v - r == -0.5f, 1.0f, 0.0f);
}

/* The same for a magnitude a >= 0 of a value of sign `neg`: a tie goes to the smaller magnitude for a positive
   value and to the larger one for a negative value. */
QS_HD float qs_round_ties_lower_mag(float a, uint32_t neg) {
    const float r = qs_rint(a), t = a - r;
    return r + qs_select(neg != 0u, qs_select(t == 0.5f, 1.0f, 0.0f), qs_select(t == -0.5f, -1.0f, 0.0f));
}

/* `rounding` is qs_rounding. Every rounding is computed and one selected (qs_select): with `rounding` known only
   at run time, a conditional expression that skips the others is control flow, which GCC if-converts only into
   AVX-512's masked instructions (-ftrapping-math: it may not execute a floating point operation the program
   skips), so the loops around it ran scalar with a branch per element. With a literal `rounding` the others are
   dead code. */
QS_HD float qs_round_int(float v, int32_t rounding, uint32_t u24) {
    const float sto = qs_round_stochastic(v, u24), away = qs_round_half_away(v), lower = qs_round_ties_lower(v);
    const float rne = qs_rint(v);
    return qs_select(rounding == 1, sto, qs_select(rounding == 2, away, qs_select(rounding == 3, lower, rne)));
}

/* qs_round_int of a magnitude a >= 0 of a value of sign `neg` (elements rounded on magnitudes). */
QS_HD float qs_round_mag(float a, uint32_t neg, int32_t rounding, uint32_t u24) {
    const float lower = qs_round_ties_lower_mag(a, neg), other = qs_round_int(a, rounding, u24);
    return qs_select(rounding == 3, lower, other);
}

/* ---- storage dtypes ------------------------------------------------------------------------------------------- */

QS_HD float qs_bf16_to_f32(uint16_t h) { return qs_u2f((uint32_t)h << 16); }

/* Round to nearest even; NaN stays NaN (quiet bit forced so that truncation cannot make it Inf). */
QS_HD uint16_t qs_f32_to_bf16(float f) {
    uint32_t u = qs_f2u(f);
    uint32_t nan = (uint32_t)((u >> 16) | 0x0040u);
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    return (uint16_t)((u & ~QS_F32_SIGN) > QS_F32_INF_BITS ? nan : r);
}

/* The same for a value known not to be NaN (results of the integer and block formats). */
QS_HD uint16_t qs_f32_to_bf16_notnan(float f) {
    uint32_t u = qs_f2u(f);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* Exact. Every case is computed and one selected with integer selects (straight-line code, vectorizable). */
QS_HD float qs_f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1fu;
    const uint32_t m = h & 0x3ffu;
    const uint32_t special = QS_F32_INF_BITS | (m << 13);             /* Inf, NaN (payload kept) */
    const uint32_t sub = qs_f2u((float)(int32_t)m * 5.9604644775390625e-08f); /* zero or subnormal: m * 2^-24 */
    const uint32_t normal = ((e + 112u) << 23) | (m << 13);
    return qs_u2f(sign | qs_selectu(e == 0x1fu, special, qs_selectu(e == 0u, sub, normal)));
}

/* Round to nearest even with IEEE overflow to Inf; NaN stays NaN. */
/* Every case is computed and one selected (straight-line code, vectorizable):
   - NaN: quiet, top payload bits kept;
   - |f| >= 2^-14, the normal range of fp16: rebias the exponent (127 -> 15) and round away 13 mantissa bits; a
     carry moves into the exponent, and an exponent that reaches 31 is Inf (so is an Inf input);
   - below: the integer multiple of 2^-24, rounded half to even (2^24 * |f| is exact); m == 0x400 is exactly the
     smallest normal, whose encoding this is. The scaled value is zeroed outside this range before the conversion
     to an integer, which must not see a value out of range. */
QS_HD uint16_t qs_f32_to_f16(float f) {
    const uint32_t u = qs_f2u(f);
    const uint32_t sign = (u >> 16) & 0x8000u;
    const uint32_t a = u & ~QS_F32_SIGN;
    const uint32_t nan = 0x7e00u | ((a >> 13) & 0x3ffu);
    uint32_t r = a - 0x38000000u; /* (127 - 15) << 23; wraps below the normal range, where r is not used */
    r += 0xfffu + ((r >> 13) & 1u);
    r >>= 13;
    r = qs_selectu((r >= 0x7c00u) | (a >= QS_F32_INF_BITS), 0x7c00u, r);
    const int normal = a >= 0x38800000u;
    const uint32_t m = (uint32_t)(int32_t)qs_rint(qs_select(normal, 0.0f, qs_u2f(a) * 16777216.0f)); /* <= 0x400 */
    return (uint16_t)(sign | qs_selectu(a > QS_F32_INF_BITS, nan, qs_selectu(normal, r, m)));
}

/* v rounded to the nearest binary16 value, as a binary32: qs_f16_to_f32(qs_f32_to_f16(v)) (ties to even, overflow
   to Inf, NaN quiet with its top payload bits) without the encoding (the bitmod profile rounds each input, quotient
   and output so). In binary16's normal range the 13 low mantissa bits are rounded away in the integer bits (a carry
   moves into the exponent; 65520 and above reach 2^16, taken as Inf); below 2^-14, |v| + 0.5 rounds |v| to the
   nearest even multiple of 0.5's spacing, 2^-24, and subtracting 0.5 is exact. tests/c/test_rounding.c holds the
   two forms equal. */
QS_HD float qs_f16r(float v) {
    const uint32_t u = qs_f2u(v);
    const uint32_t sign = u & QS_F32_SIGN;
    const uint32_t a = u ^ sign;
    const uint32_t r = (a + 0xfffu + ((a >> 13) & 1u)) & ~0x1fffu; /* a <= 0x7fffffff: no wrap */
    const uint32_t normal = qs_selectu(r > 0x477fe000u, QS_F32_INF_BITS, r); /* 65504, binary16's max */
    const uint32_t sub = qs_f2u((qs_u2f(a) + 0.5f) - 0.5f);
    const uint32_t nan = (a | 0x00400000u) & ~0x1fffu;
    return qs_u2f(sign | qs_selectu(a > QS_F32_INF_BITS, nan, qs_selectu(a >= 0x38800000u, normal, sub)));
}

QS_HD float qs_load(const void *p, int64_t i, int32_t dtype) {
    if (dtype == 0) return ((const float *)p)[i];
    if (dtype == 1) return qs_f16_to_f32(((const uint16_t *)p)[i]);
    return qs_bf16_to_f32(((const uint16_t *)p)[i]);
}

QS_HD void qs_store(void *p, int64_t i, int32_t dtype, float v) {
    if (dtype == 0) ((float *)p)[i] = v;
    else if (dtype == 1) ((uint16_t *)p)[i] = qs_f32_to_f16(v);
    else ((uint16_t *)p)[i] = qs_f32_to_bf16(v);
}

/* qs_store of a value that is not NaN. */
QS_HD void qs_store_notnan(void *p, int64_t i, int32_t dtype, float v) {
    if (dtype == 2) ((uint16_t *)p)[i] = qs_f32_to_bf16_notnan(v);
    else qs_store(p, i, dtype, v);
}

/* ---- element-wise floating point formats ---------------------------------------------------------------------- */

/* What the rounding of one QS_FAMILY_FLOAT format needs, derived once per call from its table row. */
typedef struct qs_ftraits {
    uint32_t shift;           /* 23 - mbits: binary32 mantissa bits dropped in the target's normal range */
    float drop_unit;          /* 2^-shift: the dropped bits as a fraction of one unit */
    uint32_t min_normal_bits; /* binary32 bits of 2^emin */
    float sub_quantum_x64;    /* 2^(emin - mbits + 64): the grid spacing below 2^emin, times 2^64 (see below) */
    float sub_inv_x64;        /* 2^(mbits - emin - 64): its reciprocal, exact */
    float max_normal;         /* largest finite magnitude */
    float overflow;           /* what overflow and Inf become: max_normal (saturating), Inf, or NaN (no Inf) */
    uint32_t odd_unit;        /* 1 when the format has no mantissa bits (every significand is 1, odd), else 0 */
} qs_ftraits;

/* Binary32 bits of 2^top, top = floor(log2 max_normal) + 1: the binade above the format's largest. */
QS_HD uint32_t qs_ftraits_top_bits(const qs_ftraits *t) {
    return (qs_f2u(t->max_normal) & QS_F32_INF_BITS) + 0x00800000u;
}

/* Whether qs_round_float_small applies: 2^(top + shift) is a finite binary32 value (every format of up to 8 bits,
   and float16; not bfloat16, 2^(128 + 16)). */
QS_HD int32_t qs_ftraits_small(const qs_ftraits *t) {
    return (int32_t)(qs_ftraits_top_bits(t) >> 23) - 127 + (int32_t)t->shift <= 127;
}

/* Rounding modes below QS_ROUND_RNE_SMALL are qs_rounding values; this one is internal to the kernels: RNE computed
   by qs_round_float_small, for formats where qs_ftraits_small holds. */
#define QS_ROUND_RNE_SMALL 16
/* The same on a quotient (qs_round_float_small_t's quot). */
#define QS_ROUND_RNE_QUOT 17

/* qs_round_float with RNE, the same bits, for a format whose exponent range is small enough (qs_ftraits_small:
   every format of up to 8 bits, and float16): the processor's own RNE does the rounding. With e the binade of |x|
   clamped to [emin, top], c = 2^(e + shift) has its ulp at the format's spacing in that binade (2^(e - mbits),
   below 2^emin the subnormal spacing), so |x| + c rounds |x| to that spacing, ties to even (c is an even multiple
   of it), and subtracting c is exact. A carry into the next binade is its grid value; |x| >= 2^(top+1) rounds to a
   value above max_normal (top caps e only so that c stays finite); an Inf stays Inf. Overflow, Inf and NaN are then
   selected as qs_round_float does. 13 operations per element instead of 27 (loops hoist top). `quot`: a literal,
   1 where x is the result of an arithmetic operation (the scaled families' quotient x / s or product x * (1 / s)):
   a NaN there is quiet, (|x| + c) - c passes it through unchanged (x86 and ARM return a quiet NaN operand as it
   is), and the NaN select is dropped. Same bits; GCC kept that select's operand by computing x again, a second
   division per element for NVFP4. */
QS_HD float qs_round_float_small_t(float x, const qs_ftraits *t, const int32_t quot) {
    const uint32_t u = qs_f2u(x);
    const uint32_t sign = u & QS_F32_SIGN;
    const uint32_t a = u & ~QS_F32_SIGN;
    const uint32_t top = qs_ftraits_top_bits(t);
    uint32_t e = a & QS_F32_INF_BITS;
    e = e < t->min_normal_bits ? t->min_normal_bits : e;
    e = e > top ? top : e;
    const float c = qs_u2f(e + (t->shift << 23));
    float r = (qs_u2f(a) + c) - c;
    r = qs_select(r > t->max_normal, t->overflow, r);
    if (!quot) r = qs_select(a > QS_F32_INF_BITS, qs_u2f(a), r);
    return qs_u2f(sign | qs_f2u(r));
}

QS_HD float qs_round_float_small(float x, const qs_ftraits *t) { return qs_round_float_small_t(x, t, 0); }

/* x rounded onto the format's grid. `rounding` is qs_rounding, u24 the element's random bits (stochastic only).
   Normal range: drop `shift` mantissa bits of |x| and round up by one unit when RNE (or the stochastic draw)
   says so; the carry may move into the exponent, which is exactly the next binade's grid. Below 2^emin the grid is
   uniform with spacing q = 2^(emin - mbits); q itself is a binary32 subnormal for bf16, so |x| / q is computed
   as (|x| * 2^64) * (2^64 q)^-1 and the product back as (k * q * 2^64) * 2^-64, which keeps denormal operands
   (slow on x86) off the common path. Multiplying by the exact reciprocal of a power of two is the division, bit
   for bit (both are the correctly rounded value of the same real number), and far cheaper on both processors. Overflow is decided after rounding, as IEEE
   does: a value that rounds above max_normal saturates, or becomes Inf (NaN for formats without Inf); an Inf
   input does the same; a NaN input is returned as is. Both ranges are computed and one is selected, so that the
   function is straight-line code (vectorizable); the unused path may overflow harmlessly. */
QS_HD float qs_round_float(float x, const qs_ftraits *t, int32_t rounding, uint32_t u24) {
    if (rounding == QS_ROUND_RNE_SMALL) return qs_round_float_small(x, t);
    if (rounding == QS_ROUND_RNE_QUOT) return qs_round_float_small_t(x, t, 1);
    const uint32_t u = qs_f2u(x);
    const uint32_t sign = u & QS_F32_SIGN;
    const uint32_t a = u & ~QS_F32_SIGN;
    const float over = t->overflow;
    /* subnormal range of the target */
    const float two64 = 18446744073709551616.0f, two_m64 = 5.42101086242752217e-20f;
    const float rs = (qs_round_mag((qs_u2f(a) * two64) * t->sub_inv_x64, sign, rounding, u24) * t->sub_quantum_x64) *
                     two_m64;
    /* normal range: integer rounding of the bit pattern */
    const uint32_t low_mask = (1u << t->shift) - 1u;
    const uint32_t dropped = a & low_mask;
    const uint32_t half = 1u << (t->shift - 1u);
    /* a tie goes to the even significand in units of the spacing (what round(|x| / 2^(e - mbits)) gives, as the
       sources compute it): its last bit is bit `shift` of |x|, except with no mantissa bits (shift 23), where the
       significand is 1, odd, and a tie rounds up */
    const uint32_t odd = (t->odd_unit | (a >> t->shift)) & 1u; /* (a comparison here would stop vectorization) */
    const uint32_t up_rne = (dropped > half) | ((dropped == half) & odd);
    /* floor(v + u) on v = |x| / spacing >= 0: up iff frac >= 1 - u, frac = dropped * 2^-shift (both exact) */
    const uint32_t up_sto = (float)dropped * t->drop_unit >= 1.0f - qs_u24_to_unit(u24);
    /* half away: a tie goes up in magnitude; ties lower: up in magnitude for a negative value only */
    const uint32_t up_away = dropped >= half;
    const uint32_t up_lower = (dropped > half) | ((dropped == half) & (sign >> 31));
    const uint32_t up = qs_selectu(rounding == 1, up_sto,
                                   qs_selectu(rounding == 2, up_away, qs_selectu(rounding == 3, up_lower, up_rne))) &
                        1u;
    const float rn = qs_u2f((a & ~low_mask) + (up << t->shift));
    float r = qs_select(a < t->min_normal_bits, rs, rn);
    r = qs_select(r > t->max_normal, over, r);
    r = qs_select(a == QS_F32_INF_BITS, over, r);
    r = qs_select(a > QS_F32_INF_BITS, qs_u2f(a), r);
    return qs_u2f(sign | qs_f2u(r));
}

/* ---- integer grids with a per-group scale --------------------------------------------------------------------- */

QS_HD float qs_clampf(float v, float lo, float hi) { return qs_select(v < lo, lo, qs_select(v > hi, hi, v)); }

/* Round half to even of 0 <= a < 2^23 (no sign handling needed: the callers clamp first). */
QS_HD float qs_rint_nonneg(float a) {
#if defined(__CUDA_ARCH__)
    return rintf(a);
#else
    const float two23 = 8388608.0f;
    return (a + two23) - two23;
#endif
}

/* Integer grids have no Inf: their results are clamped to +-ymax, the largest finite value of the storage dtype
   (qs_group.h: qs_dtype_max); only a group max within a few ulps of ymax can get there. */

/* Symmetric (int{b}, int{b}_full): y = s * clamp(round(x / s), qmin, qmax), qmin = -qneg. The caller handles
   s == 0. For RNE this is evaluated on magnitudes, which gives the same bits: RNE is odd-symmetric, clamping to
   integer bounds commutes with rounding, and y takes x's sign (a zero result keeps it, as round(-0.3) = -0.0). */
/* (These and qs_quant_bfp compute both roundings and select one, as qs_round_int does: straight-line code
   also when `rounding` is known only at run time.) */
QS_HD float qs_quant_int_sym(float x, float s, float qneg, float qpos, int32_t rounding, uint32_t u24, float ymax) {
    /* not RNE: stochastic, half away, ties lower on the signed value */
    const float q = qs_clampf(qs_round_int(x / s, rounding, u24), -qneg, qpos);
    const float other = qs_clampf(q * s, -ymax, ymax);
    /* RNE, on the magnitude */
    const float bound = qs_select(qs_f2u(x) >> 31, qneg, qpos);
    const float a = qs_abs(x) / s;
    const float y = qs_rint_nonneg(a < bound ? a : bound) * s;
    return qs_select(rounding != 0, other, qs_copysign(y < ymax ? y : ymax, x));
}

/* Asymmetric (GPTQ Quantizer, sym=False): y = s * (clamp(round(x / s) + z, 0, maxq) - z), z an integer in
   [0, maxq]. Clamping x / s to [-z, maxq - z] before rounding is the same clamp (integer bounds), and keeps the
   value small enough for the add-and-subtract rounding; a zero result is +0.0 either way ((-0 + z) - z = +0). */
QS_HD float qs_quant_int_asym(float x, float s, float z, float maxq, int32_t rounding, uint32_t u24, float ymax) {
    /* not RNE */
    const float q = qs_clampf(qs_round_int(x / s, rounding, u24) + z, 0.0f, maxq);
    const float other = qs_clampf(s * (q - z), -ymax, ymax);
    /* RNE: (q + z) - z is q exactly for these small integers, so it is left out; the zero it gives is +0.0, as
       GPTQ's form gives ((+-0 + z) - z = +0). */
    const float magic = 12582912.0f; /* 1.5 * 2^23: rounds any |v| < 2^22 to an integer, half to even */
    const float v = qs_clampf(x / s, -z, maxq - z);
    return qs_select(rounding != 0, other, qs_clampf(s * ((v + magic) - magic), -ymax, ymax));
}

/* HBFP block: y = clamp(round(x / interval) * interval, -maxv, maxv); x / interval is exact (power of two) and at
   most 2^mbits in magnitude. It is computed as x * inv, inv = 1 / interval (a power of two, exact): the same bits
   as the division. RNE on magnitudes, as above. */
QS_HD float qs_quant_bfp(float x, float interval, float inv, float maxv, int32_t rounding, uint32_t u24) {
    const float other = qs_clampf(qs_round_int(x * inv, rounding, u24) * interval, -maxv, maxv); /* not RNE */
    const float y = qs_rint_nonneg(qs_abs(x) * inv) * interval;
    return qs_select(rounding != 0, other, qs_copysign(y < maxv ? y : maxv, x));
}

/* The HBFP shared exponent of a block with finite maximum magnitude amax: e = ceil(log2(amax + 1e-8)), the sum
   rounded to binary32 as HBFP computes it and the logarithm taken exactly from the bits. The result lies in
   [-26, 128] because amax + 1e-8 >= 1e-8. */
QS_HD int32_t qs_bfp_exponent(float amax) {
    float m = amax + 1e-8f;
    uint32_t b = qs_f2u(m);
    int32_t e = (int32_t)((b >> 23) & 0xffu) - 127;
    return e + ((b & 0x7fffffu) != 0u ? 1 : 0);
}

/* ---- llm-mixed-q's exponent-first quantizers (FORMATS.md sections 2, 3 and 6) ---------------------------------- */

/* Every one takes the exponent of |x| from a binary32 log2 first, then the mantissa, as the source does in torch
   float32 (ChengZhang-98/llm-mixed-q: quantizers/log.py, minifloat.py, block_fp.py). Each line below is one binary32
   operation in the source's order; log2 is the correctly rounded binary32 log2, computed as the double log2 rounded
   to binary32 (the source's torch.log2 agrees wherever its own result is correctly rounded). Exponents stay floats
   until clamped, so that NaN and +-Inf flow through the clamps as in torch. */

/* 2^k in binary32 for a float k that is an integer, NaN or +-Inf: 0 below -149, Inf above 127, NaN for NaN.
   Every case computed and one selected, as in the helpers below (a comparison evaluated only on one side of a
   branch keeps the loop scalar: it may raise an FP exception, so the compiler cannot make it unconditional). */
QS_HD float qs_pow2f(float k) {
    const int32_t i = (int32_t)qs_select(k == k, qs_clampf(k, -150.0f, 128.0f), 0.0f);
    const uint32_t normal = (uint32_t)(i + 127) << 23; /* i = 128: Inf; i < -126 takes `sub` */
    const uint32_t sub = qs_selectu(i >= -149, 1u << ((uint32_t)(i + 149) & 31u), 0u);
    return qs_select(k == k, qs_u2f(qs_selectu(i >= -126, normal, sub)), k);
}

QS_HD float qs_log2f(float v) { return (float)log2((double)v); }

/* torch.clamp with float bounds: NaN stays NaN (both comparisons are false). */
QS_HD float qs_clamp_nan(float v, float lo, float hi) { return qs_clampf(v, lo, hi); }

/* torch.sign: -1, 0 or +1; 0 for NaN. */
QS_HD float qs_signf(float v) { return qs_select(v > 0.0f, 1.0f, qs_select(v < 0.0f, -1.0f, 0.0f)); }

/* Which quantizer (qs_kernel_traits.lq_kind). */
enum { QS_LQ_IEEE = 0, QS_LQ_DENORM = 1, QS_LQ_LOG = 2, QS_LQ_MSFP = 3, QS_LQ_FIXED = 4 };

/* Fixed point (llm-mixed-q's integer_quantizer, signed): clamp(round(x * 2^f), -(top + 1), top) / 2^f, with s = 2^f
   and inv = 2^-f. Every step is exact in binary32 for the table's widths and fraction widths (the product by a
   power of two, the integer, the product back), so the bits equal the source's on binary32 inputs and, after the
   final rounding to the storage dtype, on binary16 and bfloat16 ones. NaN stays NaN (torch.clamp propagates it),
   +-Inf clamps to the grid's ends, -0.0 and small negative values give -0.0 (torch.round keeps the sign). */
QS_HD float qs_lq_fixed(float x, float s, float top, float inv) {
    return qs_clamp_nan(qs_rint(x * s), -top - 1.0f, top) * inv;
}

/* The llm-mixed-q profile on a binary16 / bfloat16 input (qs_kernel_traits.lq_half = h): the source's torch ops
   run in the input's dtype, each computed in binary32 (torch's opmath) and its result rounded to the dtype; a
   Python scalar operand (1e-9, 0.1 * 2^-b, 1e-8) is a CPU scalar that TensorIterator first casts to the dtype, so
   it is rounded too (double -> binary32 -> dtype). h == 0: binary32, the identity. Below, R(.) marks each such
   rounding; with h == 0 the functions are the binary32 formulas. */
QS_HD float qs_lq_r(float v, int32_t h) {
    if (h == 1) return qs_f16r(v);
    if (h == 2) return qs_bf16_to_f32(qs_f32_to_bf16(v));
    return v;
}

/* How a rounded log2 becomes an exponent (qs_lq_ilog2): floor (minifloat_ieee), ceil (denormalized minifloats),
   round half even (log). */
enum { QS_LQ_FLOOR = 0, QS_LQ_CEIL = 1, QS_LQ_RINT = 2 };
/* Entries of a qs_lq_ilog2 table: one per binade of the non-negative binary32 values, 2^-149 .. 2^127. */
#define QS_LQ_TABLE 278
/* 2^64: a binary32 subnormal times this is exact and normal (how the table holds the subnormal binades). */
#define QS_LQ_SUB_SCALE 18446744073709551616.0f

/* The exponent op of a quantizer kind's elements, or -1 for the kinds without a log2 per element (MSFP: the
   block's exponent; fixed point). */
QS_HD int32_t qs_lq_kind_op(int32_t kind) {
    return kind == QS_LQ_IEEE ? QS_LQ_FLOOR : kind == QS_LQ_DENORM ? QS_LQ_CEIL : kind == QS_LQ_LOG ? QS_LQ_RINT : -1;
}

QS_HD float qs_lq_iround(float l, int32_t op) {
    return op == QS_LQ_FLOOR ? qs_floor(l) : op == QS_LQ_CEIL ? -qs_floor(-l) : qs_rint(l);
}

/* op(R(log2 u)) for u >= 0 or NaN, with R the rounding to the input's dtype (qs_lq_r). log2 in double rounded to
   binary32 (qs_log2f) is monotone on binary32 inputs, and so is the whole map; on the binade 2^e <= u < 2^(e+1)
   it takes only the values e and e + 1 (both exact in binary16 and bfloat16), and e + 1 from a threshold on. `t`
   (CPU only; NULL: libm) holds these thresholds, t[k] for the binade e = k - 149 as the bits of u, subnormals as the
   bits of u * 2^64 (exact), so that the exponent is a table lookup and a comparison: no call in the element loop,
   which then vectorizes. +-0, +Inf and NaN give -Inf, +Inf and the quiet NaN (the quiet bit set, payload kept) as
   log2 does; negative numbers are outside the domain (the callers pass |x| + c), though the table is read in
   bounds for any u. */
QS_HD float qs_lq_ilog2(float u, int32_t op, int32_t h, const uint32_t *t) {
#if !defined(__CUDA_ARCH__)
    if (t != NULL) {
        const uint32_t b = qs_f2u(u), a = b & ~QS_F32_SIGN; /* (a: the index stays in the table for any u) */
        const int32_t sub = a < 0x00800000u;
        const uint32_t bs = qs_selectu(sub, qs_f2u(qs_u2f(a) * QS_LQ_SUB_SCALE), a);
        const int32_t k = (int32_t)(bs >> 23) + 22 - 64 * sub; /* floor(log2 u) + 149; negative for u = 0 */
        const int32_t up = bs >= t[k & ~(k >> 31)]; /* (k < 0: t[0], any entry; the result is -Inf) */
        /* below 1 the log2 is negative: a zero exponent there is -0, as the libm form gives it */
        const float e = qs_select(k < 149, -(float)(149 - k - up), (float)(k - 149 + up));
        const uint32_t special = qs_selectu(a == 0u, QS_F32_SIGN | QS_F32_INF_BITS,
                                            b | qs_selectu(a > QS_F32_INF_BITS, 0x00400000u, 0u));
        return qs_lq_iround(qs_lq_r(qs_select(a == 0u || b >= QS_F32_INF_BITS, qs_u2f(special), e), h), op);
    }
#else
    (void)t;
#endif
    return qs_lq_iround(qs_lq_r(qs_log2f(u), h), op);
}

/* qs_lq_ilog2's thresholds for (op, h) into t[QS_LQ_TABLE]: per binade, the first u whose libm result is e + 1,
   by bisection on the bits of u (the result is monotone in u); a binade without one gets the next binade's first
   value. 23 log2 calls per binade. */
QS_HD void qs_lq_table_make(int32_t op, int32_t h, uint32_t *t) {
    int32_t k;
    for (k = 0; k < QS_LQ_TABLE - 1; k++) {
        const int32_t sub = k < 23; /* subnormal binades: bits 2^k .. 2^(k+1) - 1 */
        uint32_t lo = sub ? 1u << k : (uint32_t)(k - 22) << 23;
        uint32_t hi = sub ? 1u << (k + 1) : (uint32_t)(k - 21) << 23;
        const float up = (float)(k - 148);
        while (lo < hi) {
            const uint32_t mid = lo + (hi - lo) / 2u;
            if (qs_lq_ilog2(qs_u2f(mid), op, h, NULL) >= up) hi = mid;
            else lo = mid + 1u;
        }
        t[k] = sub ? qs_f2u(qs_u2f(lo) * QS_LQ_SUB_SCALE) : lo; /* as qs_lq_ilog2 compares */
    }
    t[QS_LQ_TABLE - 1] = 0u; /* +Inf and NaN: not read for the result */
}

/* Base-2 log (log{w}, bl{w}), bias b, exponent codes 0..top: c = 0.1 * 2^-b, e = clamp(round(log2(|x| + c)),
   -b, top - b), x_hat = sign(x + c) * 2^e. 0 is not representable: x == -c gives 0, every other x a power of two.
   Half precision (h): element rows take c as a Python scalar, R(0.1 * 2^-b) (log.py's min_pos is a float), block
   rows as a tensor of the dtype, R(R(2^-b) * R(0.1)) (block_log.py's bias is a tensor). */
QS_HD float qs_lq_log(float x, float b, float top, int32_t h, int32_t block, const uint32_t *t) {
    const float c = !h ? qs_pow2f(-b) * 0.1f
                       : qs_select(block, qs_lq_r(qs_lq_r(qs_pow2f(-b), h) * qs_lq_r(0.1f, h), h),
                                   qs_lq_r(qs_pow2f(-b) * 0.1f, h));
    const float sign = qs_signf(qs_lq_r(x + c, h));
    const float v = qs_lq_r(qs_abs(x) + c, h);
    const float e = qs_clamp_nan(qs_lq_ilog2(v, QS_LQ_RINT, h, t), -b, top - b);
    return sign * qs_lq_r(qs_pow2f(e), h);
}

/* The magnitude of a minifloat element of llm-mixed-q with bias b, exponent codes 0..top and M mantissa bits:
   DENORM (no implicit bit): e = clamp(ceil(log2(|x| + 1e-9)), -b, top - b), mi = clamp(round(|x| / 2^e * 2^M),
   0, 2^M - 1), 2^e * mi / 2^M; IEEE (implicit bit, minifloat_ieee): e = clamp(floor(log2(|x| + 1e-9)), -b,
   top - b); e == -b is the subnormal binade, mi = clamp(round(|x| / 2^e * 2^M / 2), 0, 2^M - 1), 2^e * mi / 2^M * 2;
   otherwise mi = clamp(round(|x| / 2^e * 2^M - 2^M), 0, 2^M - 1), 2^e * (1 + mi / 2^M): a mantissa that rounds up
   to 2 is clamped, never carried. `sign` multiplies 2^e first, as the source writes sign * 2^e * mantissa. h: each
   operation rounded to the input's dtype (qs_lq_r). */
QS_HD float qs_lq_mini(float x, float sign, float b, float top, float S, int32_t ieee, int32_t h,
                       const uint32_t *t) {
    const float v = qs_abs(x);
    const float l = qs_lq_ilog2(qs_lq_r(v + qs_lq_r(1e-9f, h), h), ieee ? QS_LQ_FLOOR : QS_LQ_CEIL, h, t);
    const float e = qs_clamp_nan(l, -b, top - b);
    const float p = qs_lq_r(qs_pow2f(e), h);
    const float mant = qs_lq_r(v / p, h);
    const float ms = qs_lq_r(mant * S, h);
    float m;
    if (!ieee) {
        m = qs_lq_r(qs_clamp_nan(qs_rint(ms), 0.0f, S - 1.0f) / S, h);
    } else { /* both mantissas, one selected (straight-line code, vectorizable) */
        const float sub =
            qs_lq_r(qs_lq_r(qs_clamp_nan(qs_rint(qs_lq_r(ms / 2.0f, h)), 0.0f, S - 1.0f) / S, h) * 2.0f, h);
        const float nrm = qs_lq_r(1.0f + qs_lq_r(qs_clamp_nan(qs_rint(qs_lq_r(ms - S, h)), 0.0f, S - 1.0f) / S, h), h);
        m = qs_select(e == -b, sub, nrm);
    }
    return qs_lq_r(qs_lq_r(sign * p, h) * m, h);
}

/* MSFP (llm-mixed-q's block_fp), shared exponent E = clamp(ceil(log2 max_blk), -127, 128) of the block: mi =
   clamp(round((|x| + 1e-9) / 2^E * 2^M), 0, 2^M - 1), x_hat = sign(x + 1e-9) * 2^E * mi / 2^M (E = 128 gives
   2^E = Inf and a NaN block, as in the source; in binary16, every E >= 16 does). h: rounded to the dtype. */
QS_HD float qs_lq_msfp(float x, float E, float S, int32_t h) {
    const float p = qs_lq_r(qs_pow2f(E), h);
    const float mant = qs_lq_r(qs_lq_r(qs_abs(x) + qs_lq_r(1e-9f, h), h) / p, h);
    const float sign = qs_signf(qs_lq_r(x + qs_lq_r(1e-9f, h), h));
    return qs_lq_r(qs_lq_r(sign * p, h) * qs_lq_r(qs_clamp_nan(qs_rint(qs_lq_r(mant * S, h)), 0.0f, S - 1.0f) / S, h),
                   h);
}

/* The source's output blend (~isclose(x, 0)) * q + isclose(x, 0) * x, isclose: |x| <= atol with atol the binary32
   1e-8 rounded to the dtype (torch.isclose computes atol + rtol * |0| in x's dtype: 0 in binary16, where only +-0
   is close): values that small pass through, -0.0 becomes +0.0 (+0 + -0), and Inf becomes NaN (0 * Inf). */
QS_HD float qs_lq_blend(float x, float q, int32_t h) {
    const float close = qs_select(qs_abs(x) <= qs_lq_r(1e-8f, h), 1.0f, 0.0f);
    return (1.0f - close) * q + close * x;
}

/* ---- N:M ranking ---------------------------------------------------------------------------------------------- */

/* A key whose unsigned order is the score order used by masks: -0.0 == +0.0, NaN above +Inf. Negative values
   flip all bits, non-negative ones the sign bit; written with integer selects only (vectorizable). */
QS_HD uint32_t qs_score_key(float s) {
    const uint32_t u = qs_f2u(s);
    const uint32_t a = u & ~QS_F32_SIGN;
    uint32_t key = u ^ ((uint32_t)((int32_t)u >> 31) | QS_F32_SIGN);
    key = a == 0u ? QS_F32_SIGN : key;
    return a > QS_F32_INF_BITS ? 0xffffffffu : key;
}

/* A key for |w| with the same properties (NaN largest): the magnitude bits are already ordered. */
QS_HD uint32_t qs_magnitude_key(float w) {
    const uint32_t a = qs_f2u(w) & ~QS_F32_SIGN;
    return a > QS_F32_INF_BITS ? 0xffffffffu : a;
}

#endif /* QS_SCALAR_H */
