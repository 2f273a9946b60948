/*
 * test_lq_log2.c -- the llm-mixed-q quantizers' element exponents from a threshold table agree with libm.
 *
 * qs_lq_ilog2(u, op, h, t) is op(R_h(log2 u)): floor, ceil or round half even of the binary32 log2 of u, rounded to
 * binary16 or bfloat16 first when the llm-mixed-q profile computes in the input's dtype (h). With t = NULL it calls
 * libm; with the table of qs_lq_table_make it compares u with one threshold per binade, so that the kernels' element
 * loops have no call and vectorize (the kernels take the table on tensors of 16,384 elements or more). This test runs
 * both for every (op, h) over: each binade's first and last values and the threshold with four neighbours each
 * side, the binary32 subnormals' binades, zeros, Inf and NaNs (quiet and signaling, with payloads), and 2^20
 * pseudo-random non-negative patterns. (All 2^31 non-negative patterns and the NaNs agreed when the table was
 * written; that run takes minutes per (op, h), too long for CI.)
 *
 * Prints one line per failure (the first 40) and a summary; exits 1 on any failure.
 */
#include <stdint.h>
#include <stdio.h>

#include "qs_scalar.h"

static long g_checks, g_failures;

static void check_one(int32_t op, int32_t h, const uint32_t *t, uint32_t bits) {
    const float u = qs_u2f(bits);
    const uint32_t want = qs_f2u(qs_lq_ilog2(u, op, h, NULL));
    const uint32_t got = qs_f2u(qs_lq_ilog2(u, op, h, t));
    g_checks++;
    if (want != got && ++g_failures <= 40)
        fprintf(stderr, "FAIL op %d h %d: u = 0x%08x (%.9g): libm 0x%08x, table 0x%08x\n", op, h, bits, (double)u, want,
                got);
}

int main(void) {
    static const uint32_t specials[] = {0u, QS_F32_SIGN, 1u, 0x007fffffu, 0x00800000u, 0x3f800000u, 0x7f7fffffu,
                                        QS_F32_INF_BITS, 0x7f800001u, 0x7fa00001u, 0x7fc00000u, 0x7fc00123u,
                                        0x7fffffffu, 0xffc00000u, 0xff800001u};
    int32_t op, h, k, d;
    uint32_t t[QS_LQ_TABLE], state = 0x2468aceu, j;
    for (op = QS_LQ_FLOOR; op <= QS_LQ_RINT; op++)
        for (h = 0; h <= 2; h++) {
            qs_lq_table_make(op, h, t);
            for (k = 0; k < QS_LQ_TABLE - 1; k++) {
                const uint32_t lo = k < 23 ? 1u << k : (uint32_t)(k - 22) << 23;
                const uint32_t hi = k < 23 ? 1u << (k + 1) : (uint32_t)(k - 21) << 23;
                /* the threshold back in bits of u (subnormal binades hold it as the bits of u * 2^64) */
                const uint32_t th = k < 23 ? qs_f2u(qs_u2f(t[k]) * 5.42101086242752217e-20f) : t[k];
                for (d = -4; d <= 4; d++) {
                    const uint32_t b = th + (uint32_t)d;
                    if (b >= lo && b < hi) check_one(op, h, t, b);
                }
                for (d = 0; d < 4; d++) {
                    check_one(op, h, t, lo + (uint32_t)d);
                    check_one(op, h, t, hi - 1u - (uint32_t)d);
                }
            }
            for (j = 0; j < sizeof specials / sizeof specials[0]; j++) check_one(op, h, t, specials[j]);
            for (j = 0; j < (1u << 20); j++) {
                state = state * 1664525u + 1013904223u; /* an LCG; its high bits vary most, so mix them down */
                check_one(op, h, t, (state ^ (state >> 15)) & ~QS_F32_SIGN);
            }
        }
    printf("test_lq_log2: %ld checks, %ld failures\n", g_checks, g_failures);
    return g_failures ? 1 : 0;
}
