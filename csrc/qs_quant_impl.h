/*
 * qs_quant_impl.h -- the CPU fake-quantization kernels, instantiated once per format family by
 * qs_quant_int_sym.c, qs_quant_int_full.c, qs_quant_int_asym.c, qs_quant_bfp.c, qs_quant_float.c,
 * qs_quant_scaled.c, qs_quant_scaled_pow2.c, qs_quant_scaled_fpq.c and qs_quant_llmq.c; the lookup grids have their
 * own kernel (qs_quant_lut.c); the entry point and the per-tensor statistics are in qs_quant.c. See qs_quant.c for
 * the conventions.
 */
#ifndef QS_QUANT_IMPL_H
#define QS_QUANT_IMPL_H

#include <math.h>
#include <stdlib.h>

#include "include/qsparse.h"
#include "qs_cpu.h"
#include "qs_format_table.h"
#include "qs_group.h"
#include "qs_qparams.h"
#include "qs_scalar.h"
#include "qs_validate.h"

#define QS_SPAN ((int64_t)1 << 16) /* elements per work chunk */

typedef struct qs_job {
    const qs_kernel_traits *kt;
    int32_t dtype, mask_mode;
    int64_t rows, cols, group, units_per_row;
    const char *x;
    char *y;
    const uint8_t *mask;
    int64_t x_stride, y_stride, m_stride; /* x/y in bytes, mask in elements */
    qs_rng rng;
    const qs_lut_traits *lut; /* QS_FAMILY_LUT: the grids */
    uint8_t *choice;          /* QS_FAMILY_LUT: each group's grid (qs_group_choice_cpu), else NULL */
    int64_t c_stride;
    int32_t *qp_out;          /* each group's record (qs_quant_qparams_cpu), else NULL */
    const int32_t *qp_in;     /* records to quantize with instead of fitting (qs_fake_quant_qparams_cpu), else NULL */
    int64_t qp_stride;
} qs_job;

static inline size_t qs_esize(int32_t dtype) { return dtype == QS_DTYPE_F32 ? 4u : 2u; }

/* ---- statistics ------------------------------------------------------------------------------------------------- */

/* `minmax`: the family needs min and max (asym), else max |x| only. */
QS_ALWAYS_INLINE void range_scan(const void *xr, const uint8_t *mr, int64_t c0, int64_t n, qs_range *out,
                                 const int32_t minmax, const int32_t masked, const int32_t dt) {
    int64_t i;
    if (minmax) {
        int32_t kmin = out->kmin, kmax = out->kmax;
        for (i = 0; i < n; i++) {
            uint32_t b = qs_f2u(qs_load(xr, c0 + i, dt));
            int32_t k;
            if (masked) b = mr[c0 + i] ? b : 0u;
            k = qs_order_key(b);
            kmin = k < kmin ? k : kmin;
            kmax = k > kmax ? k : kmax;
        }
        out->kmin = kmin;
        out->kmax = kmax;
    } else if (dt == QS_DTYPE_BF16) {
        /* bfloat16 is binary32's top half: the max of the 16-bit magnitudes, widened once (twice the lanes) */
        const uint16_t *xh = (const uint16_t *)xr;
        uint16_t amax = 0u;
        for (i = 0; i < n; i++) {
            uint16_t b = (uint16_t)(xh[c0 + i] & 0x7fffu);
            if (masked) b = mr[c0 + i] ? b : (uint16_t)0u;
            amax = b > amax ? b : amax;
        }
        out->amax_bits = (uint32_t)amax << 16 > out->amax_bits ? (uint32_t)amax << 16 : out->amax_bits;
    } else {
        uint32_t amax = out->amax_bits;
        for (i = 0; i < n; i++) {
            uint32_t b = qs_f2u(qs_load(xr, c0 + i, dt)) & ~QS_F32_SIGN;
            if (masked) b = mr[c0 + i] ? b : 0u;
            amax = b > amax ? b : amax;
        }
        out->amax_bits = amax;
    }
}

/* ---- quantization of one span of a row ------------------------------------------------------------------------ */

/* y[j] of a QS_GP_QUANT group (u24: the element's random bits, stochastic rounding only). */
QS_ALWAYS_INLINE void span_elem(const void *xr, void *yr, const uint8_t *mr, int64_t j, uint32_t u24,
                                const qs_gparams *g, const qs_kernel_traits *kt, const int32_t fam,
                                const int32_t rounding, const int32_t mm, const int32_t dt) {
    float v = qs_load(xr, j, dt);
    float y;
    if (mm == QS_MASK_BEFORE) v = qs_select(mr[j], v, 0.0f);
    y = qs_quant_elem(v, u24, g, kt, fam, rounding, qs_dtype_max(dt));
    if (mm != QS_MASK_NONE) y = qs_select(mr[j], y, 0.0f);
    if (fam == QS_FAMILY_FLOAT || fam == QS_FAMILY_LLMQ) qs_store(yr, j, dt, y); /* may be NaN */
    else qs_store_notnan(yr, j, dt, y); /* integer and block grids give finite values */
}

/* QS_FAMILY_LLMQ without a mask: y[c0 .. c0+n) of a QS_GP_QUANT group with the quantizer's kind and profile as
   literals (qs_quant_elem's LLMQ case: the profile computes in a half-precision input's dtype, h, and then does
   not clamp); with the exponent table t (qs_lq_ilog2) the loop is straight-line. */
QS_ALWAYS_INLINE void llmq_elems(const void *xr, void *restrict yr, int64_t c0, int64_t n, const qs_gparams *g,
                                 const qs_kernel_traits *kt, const int32_t kind, const int32_t src, const int32_t dt,
                                 const uint32_t *restrict t) {
    const int32_t h = src && kind != QS_LQ_FIXED && dt != QS_DTYPE_F32 ? dt : 0;
    const float ymax = qs_dtype_max(dt);
    int64_t i;
    for (i = 0; i < n; i++) {
        const float y = qs_llmq_elem_k(qs_load(xr, c0 + i, dt), g, kt, kind, src, h, t);
        qs_store(yr, c0 + i, dt, h ? y : qs_clampf(y, -ymax, ymax));
    }
}

/* Whether llmq_span wrote the span: with the table, or for a kind without a log2 per element (MSFP, fixed point).
   Otherwise (a small tensor: no table) apply_span's loop runs qs_quant_elem, with libm's log2: one generic loop
   instead of a specialized one per kind, which would only add compile time to a path that stays scalar. */
QS_ALWAYS_INLINE int32_t llmq_loop(const void *xr, void *yr, int64_t c0, int64_t n, const qs_gparams *g,
                                   const qs_kernel_traits *kt, const int32_t kind, const int32_t src,
                                   const int32_t dt) {
    const uint32_t *t = kt->lq_t;
    if (qs_lq_kind_op(kind) < 0) llmq_elems(xr, yr, c0, n, g, kt, kind, src, dt, NULL);
    else if (t != NULL) llmq_elems(xr, yr, c0, n, g, kt, kind, src, dt, t); /* known there: no libm call */
    else return 0;
    return 1;
}

QS_ALWAYS_INLINE int32_t llmq_span(const void *xr, void *yr, int64_t c0, int64_t n, const qs_gparams *g,
                                   const qs_kernel_traits *kt, const int32_t dt) {
#define QS_LQ_CASE(KIND)                                                                                     \
    if (kt->lq_kind == KIND)                                                                                 \
        return kt->lq_src ? llmq_loop(xr, yr, c0, n, g, kt, KIND, 1, dt) : llmq_loop(xr, yr, c0, n, g, kt, KIND, 0, dt);
    QS_LQ_CASE(QS_LQ_IEEE)
    QS_LQ_CASE(QS_LQ_DENORM)
    QS_LQ_CASE(QS_LQ_LOG)
    QS_LQ_CASE(QS_LQ_MSFP)
    QS_LQ_CASE(QS_LQ_FIXED)
#undef QS_LQ_CASE
    return 0;
}

/* y[c0 .. c0+n) of one row. mm: qs_mask_mode; every argument from `fam` on is a literal at the call site, so
   each instantiation is one straight-line, vectorizable loop. */
QS_ALWAYS_INLINE void apply_span(const qs_job *jb, const qs_gparams *gp, int64_t row, int64_t c0, int64_t n,
                                 const int32_t fam, const int32_t rnd, const int32_t mm, const int32_t dt) {
    const qs_kernel_traits kt = *jb->kt;
    const qs_gparams g = *gp;
    const void *xr = jb->x + row * jb->x_stride;
    void *yr = jb->y + row * jb->y_stride;
    const uint8_t *mr = mm != QS_MASK_NONE ? jb->mask + row * jb->m_stride : NULL;
    const uint64_t base = (uint64_t)row * (uint64_t)jb->cols + (uint64_t)c0;
    const qs_rng rng = jb->rng;
    int64_t i;

    if (g.mode != QS_GP_QUANT) {
        for (i = 0; i < n; i++) {
            float v = qs_load(xr, c0 + i, dt);
            float y = qs_special_elem(v, &g);
            if (mm != QS_MASK_NONE) y = mr[c0 + i] ? y : 0.0f;
            qs_store(yr, c0 + i, dt, y);
        }
        return;
    }
#ifdef QS_LLMQ_SPANS /* qs_quant_llmq.c, the one file with QS_FAMILY_LLMQ units: the others skip these loops */
    if (fam == QS_FAMILY_LLMQ && mm == QS_MASK_NONE && llmq_span(xr, yr, c0, n, &g, &kt, dt)) return;
#endif
    /* rnd: 0 RNE (a literal), 1 the call's other rounding mode; only stochastic rounding draws random bits */
    /* (& 3: a qs_rounding, so that the compiler drops qs_round_float's QS_ROUND_RNE_SMALL case from these loops) */
    const int32_t rounding = rnd ? (kt.rounding & 3) : QS_ROUND_RNE;
    const int32_t sto = rnd && kt.rounding == QS_ROUND_STOCHASTIC;
    /* RNE onto a minifloat grid by the processor's rounding (qs_round_float_small), the same bits: the scaled
       families always take it (qs_run_rnd sends a format too wide for it down the rnd path), element-wise formats
       when they allow it (not bfloat16) */
    if (!rnd && (fam == QS_FAMILY_SCALED || fam == QS_FAMILY_SCALED_POW2 ||
                 (fam == QS_FAMILY_FLOAT && qs_ftraits_small(&kt.ft)))) {
        const int32_t rne = fam == QS_FAMILY_FLOAT ? QS_ROUND_RNE_SMALL : QS_ROUND_RNE_QUOT;
        for (i = 0; i < n; i++) span_elem(xr, yr, mr, c0 + i, 0u, &g, &kt, fam, rne, mm, dt);
        return;
    }
    for (i = 0; i < n;) {
        /* stochastic: pieces within which the element index's high 32 bits, and so their key, are constant */
        const uint64_t idx = base + (uint64_t)i;
        const uint32_t key_hi = sto ? qs_rand_key_hi(rng, (uint32_t)(idx >> 32)) : 0u;
        const uint32_t lo = (uint32_t)idx;
        const uint64_t room = ((uint64_t)1 << 32) - lo;
        const int64_t i0 = i, end = !sto || (uint64_t)(n - i) <= room ? n : i + (int64_t)room;
        for (; i < end; i++) {
            /* the bits masked, not drawn conditionally: GCC sinks their conversion to float into such a branch,
               which is then control flow that keeps the loop scalar. (A second loop without the draw, for the
               other roundings, was 1.4x as fast for them and made the build 1.4x as long.) */
            const uint32_t u24 = qs_rand24_lo(rng, key_hi, lo + (uint32_t)(i - i0)) & (0u - (uint32_t)sto);
            span_elem(xr, yr, mr, c0 + i, u24, &g, &kt, fam, rounding, mm, dt);
        }
    }
}

/* ---- workers ------------------------------------------------------------------------------------------------- */

/* A unit's row, first column and length. Walking units in order needs no division per unit (small groups would
   feel one): unit_first divides once, unit_next steps. */
typedef struct qs_unit {
    int64_t row, c0, n;
} qs_unit;

QS_ALWAYS_INLINE void unit_len(const qs_job *jb, qs_unit *c) {
    c->n = jb->cols - c->c0 < jb->group ? jb->cols - c->c0 : jb->group;
}

QS_ALWAYS_INLINE qs_unit unit_first(const qs_job *jb, int64_t u) {
    qs_unit c;
    c.row = u / jb->units_per_row;
    c.c0 = (u % jb->units_per_row) * jb->group;
    unit_len(jb, &c);
    return c;
}

QS_ALWAYS_INLINE void unit_next(const qs_job *jb, qs_unit *c) {
    c->c0 += jb->group;
    if (c->c0 >= jb->cols) {
        c->row++;
        c->c0 = 0;
    }
    unit_len(jb, c);
}

/* QS_OBSERVER_MSE (qsparse.h, qs_observer): the group constants of candidate i, the range shrunk by
   p = 1 - i / grid in binary32 (GPTQ's p * xmin, p * xmax). Out of line: not on the common path. */
static qs_gparams mse_candidate(const qs_kernel_traits *kt, qs_range r, int32_t i, int32_t fam) {
    const float p = (float)(1.0 - (double)i / kt->mse_grid);
    if (fam == QS_FAMILY_INT_ASYM) {
        r.kmin = qs_order_key(qs_f2u(p * qs_key_value(r.kmin)));
        r.kmax = qs_order_key(qs_f2u(p * qs_key_value(r.kmax)));
    } else {
        r.amax_bits = qs_f2u(p * qs_u2f(r.amax_bits));
    }
    switch (fam) { /* literal families for the inlined group math */
    case QS_FAMILY_INT_SYM: return qs_group_params(kt, r, QS_FAMILY_INT_SYM);
    case QS_FAMILY_INT_FULL: return qs_group_params(kt, r, QS_FAMILY_INT_FULL);
    case QS_FAMILY_INT_ASYM: return qs_group_params(kt, r, QS_FAMILY_INT_ASYM);
    case QS_FAMILY_SCALED_FPQ: return qs_group_params(kt, r, QS_FAMILY_SCALED_FPQ);
    default: return qs_group_params(kt, r, QS_FAMILY_SCALED);
    }
}

/* sum over one span of |q(x) - x|^norm in double, RNE (masked-before positions read as 0). */
static double mse_error(const qs_job *jb, const qs_gparams *g, int64_t row, int64_t c0, int64_t n, int32_t fam,
                        int32_t dt) {
    const qs_kernel_traits *kt = jb->kt;
    const void *xr = jb->x + row * jb->x_stride;
    const uint8_t *mr = jb->mask_mode == QS_MASK_BEFORE ? jb->mask + row * jb->m_stride : NULL;
    const float ymax = qs_dtype_max(dt);
    const int32_t square = kt->mse_norm == 2.0;
    double err = 0.0;
    int64_t j;
    for (j = 0; j < n; j++) {
        float v = qs_load(xr, c0 + j, dt);
        float y;
        double d;
        if (mr != NULL && !mr[c0 + j]) v = 0.0f;
        switch (fam) {
        case QS_FAMILY_INT_SYM: y = qs_quant_elem(v, 0u, g, kt, QS_FAMILY_INT_SYM, QS_ROUND_RNE, ymax); break;
        case QS_FAMILY_INT_FULL: y = qs_quant_elem(v, 0u, g, kt, QS_FAMILY_INT_FULL, QS_ROUND_RNE, ymax); break;
        case QS_FAMILY_INT_ASYM: y = qs_quant_elem(v, 0u, g, kt, QS_FAMILY_INT_ASYM, QS_ROUND_RNE, ymax); break;
        case QS_FAMILY_SCALED_FPQ: y = qs_quant_elem(v, 0u, g, kt, QS_FAMILY_SCALED_FPQ, QS_ROUND_RNE, ymax); break;
        default: y = qs_quant_elem(v, 0u, g, kt, QS_FAMILY_SCALED, QS_ROUND_RNE, ymax); break;
        }
        d = fabs((double)y - (double)v);
        err += square ? d * d : pow(d, kt->mse_norm);
    }
    return err;
}

/* The best candidate for the spans [units u0, u1) of a job taken together (one group, or the whole tensor):
   the first i with the smallest error; `g` (the min/max constants) when no candidate has a nonzero scale. */
static qs_gparams mse_search(const qs_job *jb, qs_range r, qs_gparams g, int64_t row, int64_t c0, int64_t n,
                             int32_t whole_tensor, int32_t fam, int32_t dt) {
    double best = HUGE_VAL;
    int32_t i;
    for (i = 0; i < jb->kt->mse_count; i++) {
        const qs_gparams gi = mse_candidate(jb->kt, r, i, fam);
        double err = 0.0;
        if (gi.mode != QS_GP_QUANT) continue; /* a range shrunk to a zero scale */
        if (whole_tensor) {
            int64_t rr;
            for (rr = 0; rr < jb->rows; rr++) err += mse_error(jb, &gi, rr, 0, jb->cols, fam, dt);
        } else {
            err = mse_error(jb, &gi, row, c0, n, fam, dt);
        }
        if (err < best) {
            best = err;
            g = gi;
        }
    }
    return g;
}

/* A group's statistics (into *r) and its min/max constants. */
QS_ALWAYS_INLINE qs_gparams fit_group(const qs_job *jb, int64_t row, int64_t c0, int64_t n, qs_range *r,
                                      const int32_t fam, const int32_t mm, const int32_t dt) {
    range_scan(jb->x + row * jb->x_stride, mm == QS_MASK_BEFORE ? jb->mask + row * jb->m_stride : NULL, c0, n, r,
               fam == QS_FAMILY_INT_ASYM, mm == QS_MASK_BEFORE, dt);
    return qs_group_params(jb->kt, *r, fam);
}

/* One group: its statistics, its constants, its outputs. n is a literal on the path of common group sizes. */
QS_ALWAYS_INLINE void quantize_group(const qs_job *jb, int64_t row, int64_t c0, int64_t n, const int32_t fam,
                                     const int32_t rnd, const int32_t mm, const int32_t dt) {
    qs_range r = qs_range_empty();
    qs_gparams g;
    if (jb->qp_in != NULL) { /* the group's record instead of its statistics */
        g = qs_qp_gparams(jb->qp_in + row * jb->qp_stride + QS_QPARAM_WORDS * (c0 / jb->group));
        apply_span(jb, &g, row, c0, n, fam, rnd, mm, dt);
        return;
    }
    g = fit_group(jb, row, c0, n, &r, fam, mm, dt);
    if (fam != QS_FAMILY_BFP && fam != QS_FAMILY_FLOAT && fam != QS_FAMILY_SCALED_POW2 && fam != QS_FAMILY_LLMQ &&
        jb->kt->observer &&
        g.mode == QS_GP_QUANT)
        g = mse_search(jb, r, g, row, c0, n, 0, fam, dt);
    if (jb->qp_out != NULL) {
        qs_qp_store_g(jb->qp_out + row * jb->qp_stride + QS_QPARAM_WORDS * (c0 / jb->group), &g);
        return;
    }
    apply_span(jb, &g, row, c0, n, fam, rnd, mm, dt);
}

#define QS_BATCH 64 /* small groups whose constants are computed together (units_t) */

/* The scales s and modes of nb groups of QS_FAMILY_SCALED (not FP-Quant's) or QS_FAMILY_SCALED_POW2 (and its
   exact reciprocals r; QS_FAMILY_SCALED leaves r as it is) from their max |x| bits: qs_scaled_params of each, in
   loops over the groups that vectorize (the tests on the tensor scale are the same for every group and come first;
   the power-of-two exponent takes the scale mode as a literal). A group that is not quantized gets s = 1 (and r = 1):
   batch_apply_scaled computes its outputs as if it were, and then replaces them. Returns the number of such
   groups. */
QS_ALWAYS_INLINE int32_t scaled_batch(const qs_kernel_traits *kt, const uint32_t *amax, float *s, float *r,
                                      int32_t *mode, int32_t nb, const int32_t fam) {
    const float mx = kt->ft.max_normal, ts = kt->tscale;
    const int32_t sm = kt->scale_mode;
    int32_t b, special = 0;
    if (fam == QS_FAMILY_SCALED_POW2) {
        int32_t e[QS_BATCH];
#define QS_POW2_EXP(SM) for (b = 0; b < nb; b++) e[b] = qs_pow2_scale_exp(kt, amax[b], SM)
        if (kt->log2_f32) QS_POW2_EXP(sm); /* a libm call per group: scalar either way */
        else if (sm == QS_SCALE_MODE_RCEIL) QS_POW2_EXP(QS_SCALE_MODE_RCEIL);
        else if (sm == QS_SCALE_MODE_EVEN) QS_POW2_EXP(QS_SCALE_MODE_EVEN);
        else if (sm == QS_SCALE_MODE_CEIL) QS_POW2_EXP(QS_SCALE_MODE_CEIL);
        else QS_POW2_EXP(QS_SCALE_MODE_FLOOR);
#undef QS_POW2_EXP
        for (b = 0; b < nb; b++) mode[b] = amax[b] >= QS_F32_INF_BITS || e[b] > 127 ? QS_GP_NAN : QS_GP_QUANT;
        for (b = 0; b < nb; b++) {
            const int32_t k = mode[b] == QS_GP_QUANT ? e[b] : 0;
            s[b] = qs_exp2i(k);
            r[b] = qs_exp2i(-k); /* exact: -127 <= -k <= 127 */
        }
        for (b = 0; b < nb; b++) special += mode[b] != QS_GP_QUANT;
        return special;
    }
    if (sm == QS_SCALE_MODE_E4M3 && !(ts == ts && ts != 0.0f)) { /* a NaN or Inf in the tensor; all zeros */
        for (b = 0; b < nb; b++) {
            mode[b] = amax[b] >= QS_F32_INF_BITS || ts != ts ? QS_GP_NAN : QS_GP_ZERO;
            s[b] = 1.0f;
        }
        return nb;
    }
    if (sm == QS_SCALE_MODE_AMAX)
        for (b = 0; b < nb; b++) s[b] = qs_u2f(amax[b]) / mx;
    else if (sm == QS_SCALE_MODE_E4M3)
        for (b = 0; b < nb; b++) s[b] = qs_e4m3_block_scale(qs_u2f(amax[b]), mx, ts, 1);
    else
        for (b = 0; b < nb; b++) s[b] = qs_e4m3_block_scale(qs_u2f(amax[b]), mx, ts, 0);
    /* (three loops: GCC vectorizes each, and kept the three in one as a scalar loop with branches) */
    for (b = 0; b < nb; b++) mode[b] = amax[b] >= QS_F32_INF_BITS ? QS_GP_NAN : s[b] == 0.0f ? QS_GP_ZERO : QS_GP_QUANT;
    for (b = 0; b < nb; b++) s[b] = mode[b] == QS_GP_QUANT ? s[b] : 1.0f;
    for (b = 0; b < nb; b++) special += mode[b] != QS_GP_QUANT;
    return special; /* r: unused (QS_FAMILY_SCALED divides) */
}

/* v's bits in dtype dt (qs_store's conversion; nan: a literal, 0 when v is not NaN), widened to 32 bits, and
   their store: a loop that computes in 32-bit lanes only is vectorized at the width of float32's (a 16-bit store
   in the same loop made GCC split each 16-element vector of a half-precision group in two). */
QS_ALWAYS_INLINE uint32_t qs_dtype_bits(float v, const int32_t dt, const int32_t nan) {
    if (dt == QS_DTYPE_F32) return qs_f2u(v);
    if (dt == QS_DTYPE_F16) return qs_f32_to_f16(v);
    return nan ? qs_f32_to_bf16(v) : qs_f32_to_bf16_notnan(v);
}

QS_ALWAYS_INLINE void qs_store_bits(void *p, int64_t i, const int32_t dt, uint32_t bits) {
    if (dt == QS_DTYPE_F32) ((uint32_t *)p)[i] = bits;
    else ((uint16_t *)p)[i] = (uint16_t)bits;
}

/* Whether consecutive groups of n elements are consecutive in memory across rows as well (x and y row-major without
   padding, rows of whole groups): runs of groups may then cross rows; otherwise a run ends with its row. */
static inline int32_t qs_runs_cross_rows(const qs_job *jb, int64_t n, int32_t dt) {
    const int64_t es = (int64_t)qs_esize(dt);
    return jb->x_stride == jb->cols * es && jb->y_stride == jb->cols * es && jb->cols % n == 0;
}

/* RNE outputs of nb FP-Quant groups (QS_FAMILY_SCALED_FPQ) of gc (<= 32) elements, consecutive in memory from unit
   *c1, with their constants gb: apply_span's work without its per-group set-up (a row's pointers, the traits, the
   rounding chosen), which for groups of 16 was a third of NVFP4's instructions. A group's elements are all loaded
   before any is stored, so that y == x (in place) needs no overlap check in the loop. */
QS_ALWAYS_INLINE void batch_apply(const qs_job *jb, const qs_unit *c1, const qs_gparams *gb, int32_t nb,
                                  const int32_t fam, const int32_t dt, const int64_t gc) {
    const qs_kernel_traits kt = *jb->kt;
    const float ymax = qs_dtype_max(dt);
    const int64_t es = (int64_t)qs_esize(dt);
    const int32_t rne = QS_ROUND_RNE; /* FP-Quant's rounding is its own (qs_fpq_e2m1) */
    const char *xp = jb->x + c1->row * jb->x_stride + c1->c0 * es;
    char *yp = jb->y + c1->row * jb->y_stride + c1->c0 * es;
    int32_t b;
    for (b = 0; b < nb; b++, xp += gc * es, yp += gc * es) {
        const qs_gparams g = gb[b];
        float v[32];
        uint32_t o[32];
        int64_t j;
        for (j = 0; j < gc; j++) v[j] = qs_load(xp, j, dt);
        if (g.mode == QS_GP_QUANT && dt == QS_DTYPE_F32) { /* 32-bit lanes throughout: no staging */
            for (j = 0; j < gc; j++) qs_store(yp, j, dt, qs_quant_elem(v[j], 0u, &g, &kt, fam, rne, ymax));
            continue;
        }
        if (g.mode == QS_GP_QUANT)
            for (j = 0; j < gc; j++) o[j] = qs_dtype_bits(qs_quant_elem(v[j], 0u, &g, &kt, fam, rne, ymax), dt, 0);
        else
            for (j = 0; j < gc; j++) o[j] = qs_dtype_bits(qs_special_elem(v[j], &g), dt, 1);
        for (j = 0; j < gc; j++) qs_store_bits(yp, j, dt, o[j]);
    }
}

/* The same for QS_FAMILY_SCALED and QS_FAMILY_SCALED_POW2 groups with the scales sb, reciprocals rb and modes mb
   of scaled_batch: every group is computed as a quantized one, in a loop without a branch per group (with one, GCC
   had set up the loop's constants again in each group's branch: a tenth of MX's instructions), and then the
   `special` groups that are not quantized are replaced. Their outputs have the signs of their inputs (s = r = 1:
   the rounding and the product keep the sign), so a zero group keeps only its sign bits and a NaN group becomes the
   quiet NaN, without reading x again (y may be x). */
QS_ALWAYS_INLINE void batch_apply_scaled(const qs_job *jb, const qs_unit *c1, const float *sb, const float *rb,
                                         const int32_t *mb, int32_t nb, int32_t special, const int32_t fam,
                                         const int32_t dt, const int64_t gc) {
    const qs_kernel_traits kt = *jb->kt;
    const float ymax = qs_dtype_max(dt);
    const int64_t es = (int64_t)qs_esize(dt);
    const char *xp = jb->x + c1->row * jb->x_stride + c1->c0 * es;
    char *const y0 = jb->y + c1->row * jb->y_stride + c1->c0 * es;
    char *yp = y0;
    int32_t b;
    for (b = 0; b < nb; b++, xp += gc * es, yp += gc * es) {
        qs_gparams g;
        float v[32];
        uint32_t o[32];
        int64_t j;
        g.mode = QS_GP_QUANT;
        g.s = sb[b];
        g.r = fam == QS_FAMILY_SCALED_POW2 ? rb[b] : 0.0f; /* QS_FAMILY_SCALED divides */
        g.z = 0.0f;
        for (j = 0; j < gc; j++) v[j] = qs_load(xp, j, dt);
        if (dt == QS_DTYPE_F32) {
            for (j = 0; j < gc; j++) qs_store(yp, j, dt, qs_quant_elem(v[j], 0u, &g, &kt, fam, QS_ROUND_RNE_QUOT, ymax));
        } else {
            for (j = 0; j < gc; j++)
                o[j] = qs_dtype_bits(qs_quant_elem(v[j], 0u, &g, &kt, fam, QS_ROUND_RNE_QUOT, ymax), dt, 0);
            for (j = 0; j < gc; j++) qs_store_bits(yp, j, dt, o[j]);
        }
    }
    if (special) {
        const uint32_t nan = qs_dtype_bits(qs_qnan(), dt, 1);
        const uint32_t sign = dt == QS_DTYPE_F32 ? QS_F32_SIGN : 0x8000u;
        for (b = 0, yp = y0; b < nb; b++, yp += gc * es) {
            int64_t j;
            if (mb[b] == QS_GP_QUANT) continue;
            for (j = 0; j < gc; j++) {
                const uint32_t y = dt == QS_DTYPE_F32 ? ((const uint32_t *)yp)[j] : ((const uint16_t *)yp)[j];
                qs_store_bits(yp, j, dt, mb[b] == QS_GP_NAN ? nan : y & sign);
            }
        }
    }
}

/* Units [u0, u1). With `fixed` (per-tensor calls and element-wise formats) units are plain spans of a row that
   all use *fixed; otherwise each unit is a group with its own statistics. */
QS_ALWAYS_INLINE void units_t(const qs_job *jb, int64_t u0, int64_t u1, const qs_gparams *fixed, const int32_t fam,
                              const int32_t rnd, const int32_t mm, const int32_t dt, const int64_t gc) {
    qs_unit c = unit_first(jb, u0);
    int64_t u;
    /* Small groups of the scaled families, whose constants cost divisions and a rounding of the scale (a literal
       size <= 32: NVFP4, amax-scaled minifloats; no mask, observer or records): the statistics and constants of up
       to QS_BATCH groups first, then their outputs, so that the scalar work of consecutive groups overlaps instead
       of waiting between element loops. The same operations per group. (NVFP4, 1M elements, 1 thread: float32
       1.69 -> 1.51 ms, bfloat16 2.52 -> 1.76 ms; INT groups of 32, whose scale is one division, ran 9% slower.)
       QS_FAMILY_SCALED takes the batch's max |x| first and its scales in one loop across the groups (scaled_batch),
       which vectorizes: nvfp4 float32 0.88 -> 0.61 ms, bfloat16 1.08 -> 0.84 ms. */
    if ((fam == QS_FAMILY_SCALED || fam == QS_FAMILY_SCALED_FPQ || fam == QS_FAMILY_SCALED_POW2) && gc && gc <= 32 &&
        !fixed && mm == QS_MASK_NONE && jb->qp_in == NULL && jb->qp_out == NULL && !jb->kt->observer) {
        const int32_t flat = qs_runs_cross_rows(jb, gc, dt);
        const int64_t es = (int64_t)qs_esize(dt);
        qs_gparams gb[QS_BATCH];
        uint32_t ab[QS_BATCH];
        float sb[QS_BATCH], rb[QS_BATCH];
        int32_t mb[QS_BATCH];
        /* FP-Quant's groups take qs_group_params one by one; the others their max |x| here, their constants in
           scaled_batch */
        const int32_t amax_only = fam != QS_FAMILY_SCALED_FPQ;
        while (u0 < u1) {
            /* the batch: up to QS_BATCH whole groups from c, consecutive in memory (within c's row unless runs
               may cross rows), counted at once rather than walked group by group */
            const qs_unit c1 = c;
            const int64_t whole = flat ? u1 - u0 : (jb->cols - c.c0) / gc;
            const int64_t m = u1 - u0 < QS_BATCH ? u1 - u0 : QS_BATCH;
            const int32_t nb = (int32_t)(whole < m ? whole : m);
            const char *xb = jb->x + c1.row * jb->x_stride + c1.c0 * es;
            int32_t b;
            if (nb == 0) { /* a shorter last group of a row */
                quantize_group(jb, c.row, c.c0, c.n, fam, rnd, mm, dt);
                u0++;
                unit_next(jb, &c);
                continue;
            }
            for (b = 0; b < nb; b++) {
                qs_range r = qs_range_empty();
                range_scan(xb + b * gc * es, NULL, 0, gc, &r, 0, 0, dt);
                if (amax_only) ab[b] = r.amax_bits;
                else gb[b] = qs_group_params(jb->kt, r, fam);
            }
            if (amax_only) {
                const int32_t special = scaled_batch(jb->kt, ab, sb, rb, mb, nb, fam);
                if (!rnd) batch_apply_scaled(jb, &c1, sb, rb, mb, nb, special, fam, dt, gc);
                for (b = 0; b < nb && rnd; b++) {
                    gb[b].mode = mb[b];
                    gb[b].s = sb[b];
                    gb[b].r = fam == QS_FAMILY_SCALED_POW2 ? rb[b] : 0.0f;
                    gb[b].z = 0.0f;
                }
            } else if (!rnd) {
                batch_apply(jb, &c1, gb, nb, fam, dt, gc);
            }
            for (b = 0; b < nb && rnd; b++) { /* the call's other rounding: group by group */
                const int64_t k = c1.c0 + b * gc; /* within c1's row, or past it when runs cross rows */
                apply_span(jb, &gb[b], c1.row + k / jb->cols, k % jb->cols, gc, fam, rnd, mm, dt);
            }
            u0 += nb;
            if (u0 < u1) c = unit_first(jb, u0);
        }
        return;
    }
    for (u = u0; u < u1; u++, unit_next(jb, &c)) {
        if (gc && c.n == gc) quantize_group(jb, c.row, c.c0, gc, fam, rnd, mm, dt); /* constant trip counts */
        else if (fixed) apply_span(jb, fixed, c.row, c.c0, c.n, fam, rnd, mm, dt);
        else quantize_group(jb, c.row, c.c0, c.n, fam, rnd, mm, dt);
    }
}


/* Whether units run with rnd = 1 (the rounding at run time): a rounding other than RNE, or a scaled family's
   element grid too wide for qs_round_float_small (whose RNE the rnd = 0 path assumes). */
static inline int32_t qs_run_rnd(const qs_kernel_traits *kt) {
    return kt->rounding != QS_ROUND_RNE ||
           ((kt->family == QS_FAMILY_SCALED || kt->family == QS_FAMILY_SCALED_POW2) && !qs_ftraits_small(&kt->ft));
}

/* CALL(ARG, dtype literal) for the job's dtype. */
#define QS_RUN_DT(CALL, ARG)                                            \
    switch (jb->dtype) {                                               \
    case QS_DTYPE_F32: CALL(ARG, QS_DTYPE_F32); break;                 \
    case QS_DTYPE_F16: CALL(ARG, QS_DTYPE_F16); break;                 \
    default: CALL(ARG, QS_DTYPE_BF16); break;                          \
    }
#define QS_CALL_DT(CALL, DT) CALL(DT)
/* QS_DISPATCH_DT(CALL): CALL(dtype literal) for the job's dtype. */
#define QS_DISPATCH_DT(CALL) QS_RUN_DT(QS_CALL_DT, CALL)
/* One instantiation per dtype: rounding, mask mode and group size at run time. */
#define QS_UNITS_LEAN(FAM, DT) units_t(jb, u0, u1, fixed, FAM, qs_run_rnd(jb->kt), jb->mask_mode, DT, 0)

/* One function per family, each defined in its own translation unit (qs_quant_<family>.c), so that the build
   compiles them in parallel. Per dtype, each instantiation of units_t is a function of its own (with its SIMD
   clones), picked by a plain function: the compiler's dataflow passes grow faster than the function they work
   on, and one function per dtype that inlined all of them took 1.5x-1.7x as long to compile (qs_quant_int_sym.c,
   the scaled families). The instantiations: RNE
   without a mask (_n0: the group size at run time, and the spans of per-tensor and element-wise calls; _n16 ..
   _n128: the common group sizes as literals), RNE with either mask mode (_b, _a), and the call's rounding
   (rnd = 1) with each mask mode (_rn, _rb, _ra). */
#define QS_UNITS_FN(NAME, FAM, RND, MM, DT, GC)                                                      \
    static QS_CLONES QS_NOINLINE void NAME(const qs_job *jb, int64_t u0, int64_t u1,                 \
                                           const qs_gparams *fixed) {                                \
        units_t(jb, u0, u1, fixed, FAM, RND, MM, DT, GC);                                            \
    }
#define QS_UNITS_FNS_SPAN(NAME, FAM, DT)                                                             \
    QS_UNITS_FN(NAME##_n0, FAM, 0, QS_MASK_NONE, DT, 0)                                              \
    QS_UNITS_FN(NAME##_b, FAM, 0, QS_MASK_BEFORE, DT, 0)                                             \
    QS_UNITS_FN(NAME##_a, FAM, 0, QS_MASK_AFTER, DT, 0)                                              \
    QS_UNITS_FN(NAME##_rn, FAM, 1, QS_MASK_NONE, DT, 0)                                              \
    QS_UNITS_FN(NAME##_rb, FAM, 1, QS_MASK_BEFORE, DT, 0)                                            \
    QS_UNITS_FN(NAME##_ra, FAM, 1, QS_MASK_AFTER, DT, 0)
/* NAME: the instantiation of the job's rounding and mask mode; RNE_NONE: the function for RNE without a mask. */
#define QS_UNITS_PICK(NAME, RNE_NONE)                                                                \
    static void NAME(const qs_job *jb, int64_t u0, int64_t u1, const qs_gparams *fixed) {            \
        const int32_t mm = jb->mask_mode;                                                             \
        if (qs_run_rnd(jb->kt))                                                                       \
            (mm == QS_MASK_NONE ? NAME##_rn : mm == QS_MASK_BEFORE ? NAME##_rb : NAME##_ra)(jb, u0, u1, fixed); \
        else if (mm != QS_MASK_NONE)                                                                  \
            (mm == QS_MASK_BEFORE ? NAME##_b : NAME##_a)(jb, u0, u1, fixed);                         \
        else                                                                                          \
            RNE_NONE(jb, u0, u1, fixed);                                                              \
    }
#ifdef QS_LEAN
#define QS_DEFINE_RUN_DT(NAME, FAM, DT)                                                              \
    static void NAME(const qs_job *jb, int64_t u0, int64_t u1, const qs_gparams *fixed) {            \
        QS_UNITS_LEAN(FAM, DT);                                                                       \
    }
#define QS_DEFINE_RUN_SPAN_DT QS_DEFINE_RUN_DT
#else
#define QS_DEFINE_RUN_DT(NAME, FAM, DT)                                                              \
    QS_UNITS_FNS_SPAN(NAME, FAM, DT)                                                                 \
    QS_UNITS_FN(NAME##_n16, FAM, 0, QS_MASK_NONE, DT, 16)                                            \
    QS_UNITS_FN(NAME##_n32, FAM, 0, QS_MASK_NONE, DT, 32)                                            \
    QS_UNITS_FN(NAME##_n64, FAM, 0, QS_MASK_NONE, DT, 64)                                            \
    QS_UNITS_FN(NAME##_n128, FAM, 0, QS_MASK_NONE, DT, 128)                                          \
    static void NAME##_n(const qs_job *jb, int64_t u0, int64_t u1, const qs_gparams *fixed) {        \
        const int64_t gs = fixed ? 0 : jb->group;                                                     \
        (gs == 16 ? NAME##_n16 : gs == 32 ? NAME##_n32 : gs == 64 ? NAME##_n64 : gs == 128 ? NAME##_n128 \
                  : NAME##_n0)(jb, u0, u1, fixed);                                                    \
    }                                                                                                 \
    QS_UNITS_PICK(NAME, NAME##_n)
/* An element-wise family: its units are always spans (`fixed`), no group-size literals. */
#define QS_DEFINE_RUN_SPAN_DT(NAME, FAM, DT) QS_UNITS_FNS_SPAN(NAME, FAM, DT) QS_UNITS_PICK(NAME, NAME##_n0)
#endif
/* NAME(job, u0, u1, fixed), the family's kernel, dispatching on dtype to DEF's per-dtype functions. */
#define QS_DEFINE_RUN_WITH(DEF, NAME, FAM)                                                           \
    DEF(NAME##_f32, FAM, QS_DTYPE_F32)                                                               \
    DEF(NAME##_f16, FAM, QS_DTYPE_F16)                                                               \
    DEF(NAME##_bf16, FAM, QS_DTYPE_BF16)                                                             \
    void NAME(const qs_job *jb, int64_t u0, int64_t u1, const qs_gparams *fixed) {                    \
        switch (jb->dtype) {                                                                          \
        case QS_DTYPE_F32: NAME##_f32(jb, u0, u1, fixed); break;                                      \
        case QS_DTYPE_F16: NAME##_f16(jb, u0, u1, fixed); break;                                      \
        default: NAME##_bf16(jb, u0, u1, fixed); break;                                               \
        }                                                                                             \
    }
#define QS_DEFINE_RUN(NAME, FAM) QS_DEFINE_RUN_WITH(QS_DEFINE_RUN_DT, NAME, FAM)
#define QS_DEFINE_RUN_ELEMENTWISE(NAME, FAM) QS_DEFINE_RUN_WITH(QS_DEFINE_RUN_SPAN_DT, NAME, FAM)
/* The same with one instantiation per dtype (rounding, mask mode and group size at run time), for a family whose
   loops take their literals from the job themselves (QS_FAMILY_LLMQ: llmq_span). */
#define QS_DEFINE_RUN_LEAN_DT(NAME, FAM, DT)                                                         \
    static QS_CLONES QS_NOINLINE void NAME(const qs_job *jb, int64_t u0, int64_t u1,                 \
                                           const qs_gparams *fixed) {                                \
        QS_UNITS_LEAN(FAM, DT);                                                                       \
    }
#define QS_DEFINE_RUN_LEAN(NAME, FAM) QS_DEFINE_RUN_WITH(QS_DEFINE_RUN_LEAN_DT, NAME, FAM)

/* The family kernels: units [u0, u1) of a job (qs_quant_<family>.c). */
void qs_run_int_sym(const qs_job *jb, int64_t u0, int64_t u1, const qs_gparams *fixed);
void qs_run_int_full(const qs_job *jb, int64_t u0, int64_t u1, const qs_gparams *fixed);
void qs_run_int_asym(const qs_job *jb, int64_t u0, int64_t u1, const qs_gparams *fixed);
void qs_run_bfp(const qs_job *jb, int64_t u0, int64_t u1, const qs_gparams *fixed);
void qs_run_float(const qs_job *jb, int64_t u0, int64_t u1, const qs_gparams *fixed);
void qs_run_scaled(const qs_job *jb, int64_t u0, int64_t u1, const qs_gparams *fixed);
void qs_run_scaled_pow2(const qs_job *jb, int64_t u0, int64_t u1, const qs_gparams *fixed);
void qs_run_scaled_fpq(const qs_job *jb, int64_t u0, int64_t u1, const qs_gparams *fixed);
void qs_run_llmq(const qs_job *jb, int64_t u0, int64_t u1, const qs_gparams *fixed);
void qs_run_lut(const qs_job *jb, int64_t u0, int64_t u1);

#endif /* QS_QUANT_IMPL_H */
