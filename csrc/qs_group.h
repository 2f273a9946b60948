/*
 * qs_group.h -- the per-group math of fake quantization, shared by csrc/qs_quant.c and cuda/qs_quant.cu
 * (host+device): group statistics as integer reductions, a group's constants from its statistics, and the output of
 * one element. The two kernels differ only in how they split the work; every value they compute comes from here and
 * from qs_scalar.h, which is why their results are bit-identical.
 *
 * `fam` arguments are qs_family values; callers pass literals (C) or template constants (CUDA), so that each
 * instantiation folds to the code of one family.
 */
#ifndef QS_GROUP_H
#define QS_GROUP_H

#include <math.h>
#include <stdint.h>

#include "include/qsparse.h"
#include "qs_format_table.h"
#include "qs_scalar.h"

/* Group statistics as integer reductions, which compilers vectorize (float min/max reductions they may not,
   because of NaN and signed-zero rules), and which give the same result in any order:
   - symmetric INT and BFP need only max |x|: the largest magnitude bit pattern (|x| bits order like |x|), and a
     NaN or Inf shows as a pattern >= 0x7f800000;
   - asymmetric INT needs min and max: order-preserving int32 keys of the bit patterns (qs_order_key); +Inf and
     +NaN sort above every finite key, -Inf and -NaN below, so the extremes also reveal a non-finite value.
   QS_MASK_BEFORE reads masked positions as +0.0 (bit pattern 0). */
typedef struct qs_range {
    int32_t kmin, kmax; /* asym: order keys of min and max */
    uint32_t amax_bits; /* sym, bfp: max over |x| bit patterns */
} qs_range;

/* The integer order of the keys is the numeric order of the values (-0.0 just below +0.0); the map is an
   involution, so qs_key_value(qs_order_key(b)) == b. */
QS_HD int32_t qs_order_key(uint32_t b) { return (int32_t)(b ^ ((uint32_t)((int32_t)b >> 31) >> 1)); }
QS_HD float qs_key_value(int32_t k) { return qs_u2f((uint32_t)qs_order_key((uint32_t)k)); }
#define QS_KEY_POS_INF 0x7f800000            /* qs_order_key(+Inf) */
#define QS_KEY_NEG_INF ((int32_t)0x807fffff) /* qs_order_key(-Inf) */

/* The empty range: the identity of qs_range_merge. */
QS_HD qs_range qs_range_empty(void) {
    qs_range r;
    r.kmin = INT32_MAX;
    r.kmax = INT32_MIN;
    r.amax_bits = 0u;
    return r;
}

QS_HD void qs_range_merge(qs_range *into, qs_range r) {
    into->kmin = r.kmin < into->kmin ? r.kmin : into->kmin;
    into->kmax = r.kmax > into->kmax ? r.kmax : into->kmax;
    into->amax_bits = r.amax_bits > into->amax_bits ? r.amax_bits : into->amax_bits;
}

enum { QS_GP_QUANT = 0, QS_GP_ZERO = 1, QS_GP_NAN = 2 };

/* A group's constants. */
typedef struct qs_gparams {
    int32_t mode; /* QS_GP_QUANT; QS_GP_ZERO: the scale is 0, outputs are signed zeros; QS_GP_NAN: outputs NaN */
    float s;      /* INT: scale; BFP: interval */
    float z;      /* INT_ASYM: zero point; BFP: the clamp bound maxv */
    float r;      /* BFP: 1 / s, exact (s is a power of two) */
} qs_gparams;

/* RNE of a positive normal binary32 value to `mbits` mantissa bits (no overflow handling: callers clamp). */
QS_HD float qs_round_mantissa(float a, int32_t mbits) {
    const uint32_t b = qs_f2u(a), shift = (uint32_t)(23 - mbits);
    const uint32_t half = 1u << (shift - 1u), odd = (b >> shift) & 1u;
    return qs_u2f((b + half - 1u + odd) & ~((1u << shift) - 1u));
}

/* The tensor scale of QS_SCALE_MODE_E4M3 from the tensor's range: amax / (max_elem * 448); NaN when the tensor
   holds a NaN or Inf. */
QS_HD float qs_tensor_scale(const qs_kernel_traits *kt, qs_range r) {
    if (r.amax_bits >= QS_F32_INF_BITS) return qs_qnan();
    if (kt->fpq) return r.amax_bits == 0u ? 0.0f : kt->tdiv / qs_u2f(r.amax_bits); /* FP-Quant: 448 * 6 / amax */
    return qs_u2f(r.amax_bits) / kt->tdiv;
}

/* FP-Quant's E2M1 rounding: its thresholds (> 5: 6, > 3.5: 4, > 2.5: 3, > 1.75: 2, > 1.25: 1.5, > 0.75: 1,
   > 0.25: 0.5, else 0), so a tie goes toward zero, with the sign of y > 0 (+0 and NaN give -0). */
QS_HD float qs_fpq_e2m1(float y) {
    const float a = qs_abs(y);
    const float q = a > 5.0f ? 6.0f : a > 3.5f ? 4.0f : a > 2.5f ? 3.0f : a > 1.75f ? 2.0f
                  : a > 1.25f ? 1.5f : a > 0.75f ? 1.0f : a > 0.25f ? 0.5f : 0.0f;
    return y > 0.0f ? q : -q;
}

/* RNE of 0 <= v <= 448 to E4M3 (subnormals in steps of 2^-9; FP-Quant's .to(float8e4nv)). */
QS_HD float qs_e4m3_rne(float v) {
    return v >= 0.015625f ? qs_round_mantissa(v, 3) : qs_rint(v * 512.0f) * 0.001953125f;
}

/* NVFP4's scale of a block with finite max |x| amax (QS_SCALE_MODE_E4M3 with the tensor scale ts when
   `with_tensor`, else QS_SCALE_MODE_E4M3_BLOCK): bs = amax / max_elem (/ ts), clamped to [2^-6 (torchao's
   E4M3_EPS), 448] and rounded to E4M3; the scale is ts * bs (bs). Straight-line code: loops over blocks vectorize. */
QS_HD float qs_e4m3_block_scale(float amax, float max_elem, float ts, const int32_t with_tensor) {
    float bs = amax / max_elem;
    if (with_tensor) bs = bs / ts;
    bs = qs_round_mantissa(qs_clampf(bs, 0.015625f, 448.0f), 3);
    return with_tensor ? ts * bs : bs;
}

/* The E8M0 exponent e of a power-of-two scale 2^e (QS_SCALE_MODE_FLOOR, CEIL, EVEN, RCEIL) from a block's finite
   max |x| (bit pattern b); e > 127 means the block is NaN (E8M0 has no larger exponent). `mode` is kt->scale_mode,
   an argument so that a loop over blocks can take it as a literal (straight-line code but for the microxcaling
   profile's log2). */
QS_HD int32_t qs_pow2_scale_exp(const qs_kernel_traits *kt, uint32_t b, const int32_t mode) {
    const float amax = qs_u2f(b);
    int32_t e;
    if (mode == QS_SCALE_MODE_RCEIL) {
        /* descale = amax * (1 / max_elem), rounded up to a power of two; binary32 subnormals above 2^-127 go
           to 2^-126 */
        const uint32_t d = qs_f2u(amax * kt->rcp_max);
        const int32_t ex = (int32_t)(d >> 23), man = (int32_t)(d & 0x7fffffu);
        e = ex + (ex == 0 ? man > 0x400000 : man != 0) - 127;
    } else {
        /* EVEN rounds amax to the element's mantissa width first (a carry may reach the Inf exponent) */
        const uint32_t bb = mode == QS_SCALE_MODE_EVEN ? (b + kt->even_add) & 0x7f800000u : b;
        e = (int32_t)(bb >> 23) - 127; /* floor(log2 amax); -127 for zero and binary32 subnormals */
        if (mode == QS_SCALE_MODE_CEIL) e += (b & 0x7fffffu) != 0u;
        /* microxcaling: floor of torch.log2 in binary32, which rounds the log2 of a max just below 2^(e+1) up
           to e + 1 (zero and subnormal maxima end at the -127 clamp either way) */
        if (kt->log2_f32 && e > -127 && (float)log2((double)amax) >= (float)(e + 1)) e += 1;
        e -= kt->elem_emax;
        e = e < -127 ? -127 : e;
    }
    return e;
}

/* A QS_FAMILY_SCALED group's scale from its finite max |x| (bit pattern b), FORMATS.md sections 3-5 and torchao's
   to_mx / nvfp4_quantize: power-of-two exponents in integers with explicit clamps. */
QS_HD void qs_scaled_params(const qs_kernel_traits *kt, uint32_t b, qs_gparams *g) {
    const float amax = qs_u2f(b);
    const int32_t mode = kt->scale_mode;
    if (kt->fpq) {
        if (mode == QS_SCALE_MODE_FLOOR) {
            /* 2^(floor(log2 max(amax, 2^-126)) - 2) / 0.75: the block max lands in [3, 6) */
            const int32_t e = b < 0x00800000u ? -126 : (int32_t)(b >> 23) - 127;
            g->s = qs_exp2i(e - 2) / 0.75f;
        } else {
            /* S = e4m3(g * amax / 6), g = kt->tscale (0: an all-zero tensor; NaN: a NaN or Inf in it) */
            if (!(kt->tscale == kt->tscale)) {
                g->mode = QS_GP_NAN;
                return;
            }
            g->z = kt->tscale;
            g->s = kt->tscale == 0.0f ? 0.0f : qs_e4m3_rne(qs_clampf(kt->tscale * amax / 6.0f, 0.0f, 448.0f));
            /* S = 0 (a block tiny against the tensor): computed as FP-Quant does, x * g / 0 = +-Inf or NaN, q = +-6
               or -0, times 0: signed zeros (+0 gives -0). An all-zero tensor (g = 0) gives signed zeros (FP-Quant:
               0 / 0, NaN). */
            if (kt->tscale == 0.0f) g->mode = QS_GP_ZERO;
        }
        return;
    }
    if (mode == QS_SCALE_MODE_AMAX) {
        g->s = amax / kt->ft.max_normal;
        if (g->s == 0.0f) g->mode = QS_GP_ZERO;
    } else if (mode == QS_SCALE_MODE_E4M3 || mode == QS_SCALE_MODE_E4M3_BLOCK) {
        if (mode == QS_SCALE_MODE_E4M3) {
            if (!(kt->tscale == kt->tscale)) { /* the tensor holds a NaN or Inf */
                g->mode = QS_GP_NAN;
                return;
            }
            if (kt->tscale == 0.0f) { /* an all-zero tensor (torchao divides 0 by 0 here) */
                g->mode = QS_GP_ZERO;
                return;
            }
        }
        g->s = qs_e4m3_block_scale(amax, kt->ft.max_normal, kt->tscale, mode == QS_SCALE_MODE_E4M3);
        if (g->s == 0.0f) g->mode = QS_GP_ZERO; /* a subnormal tensor scale times a small block scale */
    } else {
        const int32_t e = qs_pow2_scale_exp(kt, b, mode);
        if (e > 127) { /* E8M0 has no larger exponent: the block is NaN */
            g->mode = QS_GP_NAN;
            return;
        }
        g->s = qs_exp2i(e);
        g->r = qs_exp2i(-e); /* exact: -127 <= -e <= 127 */
    }
}

/* The max |x| (bits) that the llm-mixed-q profile gives a block of zeros, from the tensor's blocks (block_log.py,
   block_minifloat.py, block_fp.py: `if torch.all(per_block_max == 0): per_block_max = ones_like(...) else:
   per_block_max[per_block_max == 0] = per_block_max[per_block_max != 0].min()`): min_nonzero is the smallest
   nonzero block max (bits), max_all the largest (bits; NaN above Inf). Every block zero: 1.0; a NaN block max:
   NaN (torch's min propagates it); else the smallest nonzero one. */
QS_HD uint32_t qs_lq_zero_bits(uint32_t min_nonzero, uint32_t max_all) {
    if (max_all == 0u) return 0x3f800000u;
    return max_all > QS_F32_INF_BITS ? QS_F32_QNAN_BITS : min_nonzero;
}

/* A QS_FAMILY_LLMQ block's bias (s) from its max |x| (bit pattern b; FORMATS.md sections 2 and 6), in binary32 as
   llm-mixed-q computes it: bl: clamp(top - ceil(log2 max), 0, 255); bmf: clamp(floor(log2 max), 0, 255); MSFP: the
   shared exponent clamp(ceil(log2 max), -127, 128). A block of zeros (log2 = -Inf) takes the clamp's end: bl 255,
   bmf 0, MSFP -127 (only bl's outputs depend on it: zeros become +2^-255, i.e. +0 in binary32), except under the
   llm-mixed-q profile, where it takes the source's replacement max kt->lq_zbits when set (qs_lq_zero_bits). A
   NaN or Inf makes a NaN block, except under the profile, where the source's arithmetic decides (an Inf gives bl
   bias 0, bmf bias 255; a NaN, or an MSFP exponent of 128, a NaN block). The profile on a half-precision input
   rounds the log2 to the dtype (kt->lq_half). Element rows: the row's bias. */
QS_HD void qs_llmq_params(const qs_kernel_traits *kt, uint32_t b, qs_gparams *g) {
    float l, bias;
    if (!kt->lq_block) {
        g->s = kt->lq_bias;
        return;
    }
    if (b == 0u && kt->lq_src && kt->lq_zbits != 0u) b = kt->lq_zbits;
    if (b > QS_F32_INF_BITS || (b == QS_F32_INF_BITS && !kt->lq_src)) {
        g->mode = QS_GP_NAN;
        return;
    }
    l = qs_lq_r(qs_log2f(qs_u2f(b)), kt->lq_half);
    if (kt->lq_kind == QS_LQ_LOG) bias = qs_clamp_nan(kt->lq_top - (-qs_floor(-l)), 0.0f, kt->lq_bmax);
    else if (kt->lq_kind == QS_LQ_IEEE) bias = qs_clamp_nan(qs_floor(l), 0.0f, kt->lq_bmax);
    else bias = qs_clamp_nan(-qs_floor(-l), -127.0f, 128.0f);
    if (kt->lq_kind == QS_LQ_MSFP && bias > 127.0f) g->mode = QS_GP_NAN; /* 2^128 = Inf: Inf * 0 */
    g->s = bias;
}

/* One element of a QS_FAMILY_LLMQ group with bias (MSFP: exponent) s. Default: the magnitude from the source's
   formula with x's sign (-0.0 kept), |x| <= 1e-8 (the source's isclose threshold) as a signed zero, for
   dmf/bmf/minifloat/MSFP; NaN stays NaN, Inf saturates (element rows). Profile (src): the source's blend, and on
   a half-precision input the source's arithmetic in that dtype (h). kind, src, h and t are kt's lq_kind, lq_src,
   lq_half and lq_t, as arguments so that a CPU loop can take them as literals, and the table as known (qs_llmq_elem
   takes them from kt). */
QS_HD float qs_llmq_elem_k(float v, const qs_gparams *g, const qs_kernel_traits *kt, const int32_t kind,
                           const int32_t src, const int32_t h, const uint32_t *t) {
    float q;
    if (kind == QS_LQ_FIXED) return qs_lq_fixed(v, g->s, kt->lq_top, kt->lq_scale); /* no blend in the source */
    if (kind == QS_LQ_LOG) return qs_lq_log(v, g->s, kt->lq_top, h, kt->lq_block, t);
    if (kind == QS_LQ_MSFP) q = qs_lq_msfp(v, g->s, kt->lq_scale, h);
    else q = qs_lq_mini(v, src ? qs_signf(qs_lq_r(v + qs_lq_r(1e-9f, h), h)) : 1.0f, g->s, kt->lq_top, kt->lq_scale,
                        kind == QS_LQ_IEEE, h, t);
    if (src) return qs_lq_blend(v, q, h);
    if (kind == QS_LQ_MSFP) q = qs_abs(q); /* the sign below */
    return qs_select(v != v, v, qs_copysign(qs_select(qs_abs(v) <= 1e-8f, 0.0f, q), v));
}

QS_HD float qs_llmq_elem(float v, const qs_gparams *g, const qs_kernel_traits *kt) {
    return qs_llmq_elem_k(v, g, kt, kt->lq_kind, kt->lq_src, kt->lq_half, kt->lq_t);
}

/* The group's constants from its range (FORMATS.md sections 1-5), in the sources' binary32 operation order. */
QS_HD qs_gparams qs_group_params(const qs_kernel_traits *kt, qs_range r, const int32_t fam) {
    qs_gparams g;
    const float amax = qs_u2f(r.amax_bits);
    g.mode = QS_GP_QUANT;
    g.s = 0.0f;
    g.z = 0.0f;
    g.r = 0.0f;
    if (fam == QS_FAMILY_LLMQ) {
        qs_llmq_params(kt, r.amax_bits, &g);
        return g;
    }
    if (fam == QS_FAMILY_INT_ASYM ? (r.kmax >= QS_KEY_POS_INF || r.kmin <= QS_KEY_NEG_INF)
                                  : r.amax_bits >= QS_F32_INF_BITS) {
        g.mode = QS_GP_NAN; /* a NaN or Inf in the group: no finite scale */
        return g;
    }
    if (fam == QS_FAMILY_INT_SYM || fam == QS_FAMILY_INT_FULL) { /* divisor qmax, or qmax + 0.5 */
        g.s = amax / kt->divisor;
        if (g.s == 0.0f) g.mode = QS_GP_ZERO;
    } else if (fam == QS_FAMILY_INT_ASYM) {
        /* GPTQ Quantizer(sym=False).find_params */
        const float vmin = qs_key_value(r.kmin), vmax = qs_key_value(r.kmax);
        float xmin = vmin < 0.0f ? vmin : 0.0f;
        float xmax = vmax > 0.0f ? vmax : 0.0f;
        if (xmin == 0.0f && xmax == 0.0f) {
            xmin = -1.0f;
            xmax = 1.0f;
        }
        g.s = (xmax - xmin) / kt->divisor;
        if (!qs_isfinite(g.s)) g.mode = QS_GP_NAN; /* the range overflows binary32 */
        else if (g.s == 0.0f) g.mode = QS_GP_ZERO;
        else g.z = qs_rint(-xmin / g.s);
    } else if (fam == QS_FAMILY_SCALED || fam == QS_FAMILY_SCALED_POW2 || fam == QS_FAMILY_SCALED_FPQ) {
        qs_scaled_params(kt, r.amax_bits, &g);
    } else if (fam == QS_FAMILY_BFP) {
        const int32_t e = qs_bfp_exponent(amax);
        g.s = qs_exp2i(e - kt->mbits);
        g.r = qs_exp2i(kt->mbits - e); /* e - mbits >= -26 - 15, so 2^(mbits - e) <= 2^41 */
        g.z = kt->qmax * g.s; /* = 2^e - interval, exact, and finite even for e = 128 */
    }
    return g;
}

/* Largest finite value of a storage dtype: integer grids clamp to it, so that the final rounding to float16 or
   bfloat16 cannot make an Inf (a product q * s may exceed the group's max, e.g. int4_full's -8 * amax / 7.5). */
QS_HD float qs_dtype_max(const int32_t dtype) {
    return dtype == 1 /* QS_DTYPE_F16 */ ? 65504.0f
           : dtype == 2 /* QS_DTYPE_BF16 */ ? qs_u2f(0x7f7f0000u) : qs_u2f(QS_F32_MAX_BITS);
}

/* The quantized value of one element v of a QS_GP_QUANT group (masking is the caller's). */
QS_HD float qs_quant_elem(float v, uint32_t u24, const qs_gparams *g, const qs_kernel_traits *kt, const int32_t fam,
                          const int32_t rounding, const float ymax) {
    if (fam == QS_FAMILY_INT_SYM) return qs_quant_int_sym(v, g->s, kt->qmax, kt->qmax, rounding, u24, ymax);
    if (fam == QS_FAMILY_INT_FULL) return qs_quant_int_sym(v, g->s, -kt->qmin, kt->qmax, rounding, u24, ymax);
    if (fam == QS_FAMILY_INT_ASYM) return qs_quant_int_asym(v, g->s, g->z, kt->qmax, rounding, u24, ymax);
    if (fam == QS_FAMILY_BFP) return qs_quant_bfp(v, g->s, g->r, g->z, rounding, u24);
    if (fam == QS_FAMILY_LLMQ) { /* log6 2^16 clamped in fp16, except in the source's own fp16 arithmetic (Inf) */
        const float y = qs_llmq_elem(v, g, kt);
        return kt->lq_half ? y : qs_clampf(y, -ymax, ymax);
    }
    if (fam == QS_FAMILY_SCALED_FPQ) { /* FP-Quant: mxfp4 q(x / s) * s; nvfp4 q(x * g / S) * S / g */
        /* (a block max above 2^127.7 gives 6 * 2^125 / 0.75 = 2^128: clamped, as integer grids are) */
        if (kt->scale_mode == QS_SCALE_MODE_FLOOR) return qs_clampf(qs_fpq_e2m1(v / g->s) * g->s, -ymax, ymax);
        return qs_clampf(qs_fpq_e2m1(v * g->z / g->s) * g->s / g->z, -ymax, ymax);
    }
    if (fam == QS_FAMILY_SCALED || fam == QS_FAMILY_SCALED_POW2) {
        /* v / s, one correctly rounded division (torchao's data_hp / scale); for a power-of-two s, v * (1 / s) with
           the exact reciprocal, the same bits (torchao's to_mx multiplies too) */
        const float q = qs_round_float(fam == QS_FAMILY_SCALED_POW2 ? v * g->r : v / g->s, &kt->ft, rounding, u24);
        return qs_clampf(q * g->s, -ymax, ymax);
    }
    return qs_round_float(v, &kt->ft, rounding, u24);
}

/* The output of a group that is not quantized (QS_GP_ZERO or QS_GP_NAN), before masking. */
QS_HD float qs_special_elem(float v, const qs_gparams *g) {
    return g->mode == QS_GP_NAN ? qs_qnan() : qs_copysign(0.0f, v);
}

#endif /* QS_GROUP_H */
