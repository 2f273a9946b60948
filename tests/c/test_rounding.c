/*
 * test_rounding.c -- the kernels' two RNE roundings onto a minifloat grid agree bit for bit.
 *
 * csrc/qs_scalar.h rounds onto an element grid in two ways: qs_round_float (integer arithmetic on the bit pattern,
 * every rounding mode) and, for RNE on formats with a small exponent range, qs_round_float_small (the processor's
 * own rounding of |x| + 2^(e + shift)). The kernels use the second on their common path. This test runs both on
 * every FLOAT / SCALED row for which the second applies, saturating and not, over inputs chosen to hit every case:
 * for each sign and binary32 exponent, every kept mantissa pattern of the target (up to 2^10) with the dropped bits
 * at 0, 1, just below, at and above the half, and all ones; the target's subnormal ties and their neighbours; zeros,
 * binary32 subnormals, max_normal neighbours, Inf and NaNs (quiet and signaling, with payloads); and 2^20
 * pseudo-random patterns. The Python suite checks the kernels against the float64 reference; this one pins the two
 * C paths to each other on far more inputs than a tensor test holds.
 *
 * It also holds qs_f16r (a value rounded to binary16, as a binary32) equal to the encoding and decoding it replaces,
 * qs_f16_to_f32(qs_f32_to_f16(x)), on every sign, exponent and kept 10-bit mantissa with the 13 dropped bits at 0, 1,
 * just below, at and above the half, and all ones; every binary32 below 2^-13 with its low 8 bits at 0x00, 0x7f,
 * 0x80, 0x81; and 2^22 pseudo-random patterns. (All 2^32 patterns agree: a 40-second loop, too long for the
 * sanitized build.)
 *
 * Prints one line per failure (the first 40) and a summary; exits 1 on any failure.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "qs_format_table.h"
#include "qs_scalar.h"

static long g_checks, g_failures;

static void check_one(const qs_format_info *f, int32_t sat, const qs_ftraits *t, uint32_t bits) {
    const float x = qs_u2f(bits);
    const uint32_t want = qs_f2u(qs_round_float(x, t, QS_ROUND_RNE, 0u));
    const uint32_t got = qs_f2u(qs_round_float_small(x, t));
    g_checks++;
    if (want != got && ++g_failures <= 40)
        fprintf(stderr, "FAIL %s saturate=%d: x = 0x%08x (%.9g): qs_round_float 0x%08x, qs_round_float_small 0x%08x\n",
                f->name, sat, bits, (double)x, want, got);
}

static void check_format(const qs_format_info *f, int32_t sat) {
    qs_ftraits t;
    uint32_t s, e, m, k, state = 0x12345678u;
    int32_t j;
    qs_ftraits_make(f, sat, &t);
    if (!qs_ftraits_small(&t)) return;
    {
        const uint32_t shift = t.shift, half = 1u << (shift - 1u), full = (1u << shift) - 1u;
        const uint32_t lows[] = {0u, 1u, half - 1u, half, half + 1u, full};
        const uint32_t kept = 1u << (23u - shift);
        for (s = 0; s < 2; s++)
            for (e = 0; e < 256; e++)
                for (m = 0; m < kept; m++)
                    for (k = 0; k < sizeof lows / sizeof lows[0]; k++)
                        check_one(f, sat, &t, (s << 31) | (e << 23) | (m << shift) | lows[k]);
    }
    {
        /* the subnormal grid's ties j * q / 2 and their binary32 neighbours, up to twice 2^emin */
        const float q_half = qs_u2f(t.min_normal_bits) * qs_u2f(qs_f2u(1.0f) - ((23u - t.shift) << 23)) * 0.5f;
        for (j = 0; j <= (int32_t)(4u << (23u - t.shift)); j++) {
            const uint32_t b = qs_f2u((float)j * q_half);
            check_one(f, sat, &t, b);
            check_one(f, sat, &t, b + 1u);
            if (b > 0u) check_one(f, sat, &t, b - 1u);
            check_one(f, sat, &t, b | QS_F32_SIGN);
        }
    }
    {
        const uint32_t mx = qs_f2u(t.max_normal);
        const uint32_t specials[] = {0u, 1u, 0x007fffffu, 0x00800000u, mx - 1u, mx, mx + 1u, 0x7f7fffffu,
                                     QS_F32_INF_BITS, 0x7f800001u, 0x7fc00000u, 0x7fc00123u, 0x7fbfffffu, 0x7fffffffu};
        for (k = 0; k < sizeof specials / sizeof specials[0]; k++) {
            check_one(f, sat, &t, specials[k]);
            check_one(f, sat, &t, specials[k] | QS_F32_SIGN);
        }
    }
    for (j = 0; j < (1 << 20); j++) {
        state = state * 1664525u + 1013904223u; /* an LCG; its high bits vary most, so mix them down */
        check_one(f, sat, &t, state ^ (state >> 15));
    }
}

static void check_f16r(uint32_t bits) {
    const float x = qs_u2f(bits);
    const uint32_t want = qs_f2u(qs_f16_to_f32(qs_f32_to_f16(x)));
    const uint32_t got = qs_f2u(qs_f16r(x));
    g_checks++;
    if (want != got && ++g_failures <= 40)
        fprintf(stderr, "FAIL qs_f16r: x = 0x%08x (%.9g): decoded encoding 0x%08x, qs_f16r 0x%08x\n", bits, (double)x,
                want, got);
}

static void check_f16r_all(void) {
    const uint32_t lows[] = {0u, 1u, 0xfffu, 0x1000u, 0x1001u, 0x1fffu};
    uint32_t hi, k, b, state = 0x9e3779b9u;
    int32_t j;
    for (hi = 0; hi < (1u << 19); hi++) /* sign, exponent, the 10 mantissa bits binary16 keeps */
        for (k = 0; k < sizeof lows / sizeof lows[0]; k++) check_f16r((hi << 13) | lows[k]);
    for (b = 0; b < 0x39000000u; b += 0x100u) /* binary16's subnormals and its first binade */
        for (k = 0; k < 4; k++) {
            const uint32_t low = k == 0 ? 0u : 0x7eu + k;
            check_f16r(b | low);
            check_f16r(b | low | QS_F32_SIGN);
        }
    for (j = 0; j < (1 << 22); j++) {
        state = state * 1664525u + 1013904223u;
        check_f16r(state ^ (state >> 15));
    }
}

int main(void) {
    int32_t id, formats = 0, sat;
    check_f16r_all();
    for (id = 0; id < QS_FORMAT_COUNT; id++) {
        qs_format_info f;
        qs_ftraits t;
        if (qs_format_fill(id, &f) != QS_OK) continue;
        if (f.family != QS_FAMILY_FLOAT && f.family != QS_FAMILY_SCALED) continue;
        qs_ftraits_make(&f, 1, &t);
        if (!qs_ftraits_small(&t)) continue;
        formats++;
        for (sat = 0; sat < 2; sat++) check_format(&f, sat);
    }
    if (formats < 30) {
        fprintf(stderr, "FAIL only %d formats have the small rounding; expected every minifloat row\n", formats);
        g_failures++;
    }
    printf("test_rounding: %d formats, %ld checks, %ld failures\n", formats, g_checks, g_failures);
    return g_failures ? 1 : 0;
}
