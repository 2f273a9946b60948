/*
 * qs_quant.c -- CPU fake quantization: y = dequantize(quantize(x)) in groups along each row.
 *
 * x, y: rows x cols, row strides x_stride / y_stride (elements), dtype f32 | f16 | bf16, computed in binary32.
 * mask: rows x cols uint8 (0 = pruned), row stride mask_stride, used per qs_mask_mode.
 *
 * A "unit" is one group: (row, k) covers columns [k*G, min((k+1)*G, cols)) for group size G (a partial last group
 * is a group of its own), a whole row for QS_GROUP_ROW, the whole tensor for QS_GROUP_TENSOR. Each unit is read
 * twice: once for its statistics (min, max, any NaN/Inf), once to quantize. Units are independent, so any split
 * across threads gives the same bits; the per-tensor statistics are min/max reductions, also order-free.
 *
 * Group policy (FORMATS.md sections 1-2, RELIABILITY.md items 5-7):
 *   - a group holding NaN or +-Inf (after masking) outputs NaN at every unmasked position: its scale is not finite;
 *   - int{b}_asym: a group whose range xmax - xmin overflows binary32 is treated the same way;
 *   - a group whose scale is 0 (all zeros, or a max so small that amax / qmax underflows) outputs signed zeros;
 *   - masked positions output +0.0 in every case.
 */
#include <stdlib.h>

#include "include/qsparse.h"
#include "qs_cpu.h"
#include "qs_format_table.h"
#include "qs_scalar.h"
#include "qs_validate.h"

#define QS_SPAN ((int64_t)1 << 16) /* elements per work chunk */

/* Group statistics as integer reductions, which compilers vectorize (float min/max reductions they may not,
   because of NaN and signed-zero rules):
   - symmetric INT and BFP need only max |x|: the largest magnitude bit pattern (|x| bits order like |x|), and a
     NaN or Inf shows as a pattern >= 0x7f800000;
   - asymmetric INT needs min and max: order-preserving int32 keys of the bit patterns (qs_order_key); +Inf and
     +NaN sort above every finite key, -Inf and -NaN below, so the extremes also reveal a non-finite value. */
typedef struct qs_range {
    int32_t kmin, kmax; /* asym: order keys of min and max */
    uint32_t amax_bits; /* sym, bfp: max over |x| bit patterns */
} qs_range;

QS_ALWAYS_INLINE int32_t qs_order_key(uint32_t b) { return (int32_t)(b ^ ((uint32_t)((int32_t)b >> 31) >> 1)); }
QS_ALWAYS_INLINE float qs_key_value(int32_t k) { return qs_u2f((uint32_t)qs_order_key((uint32_t)k)); }

static const qs_range qs_range_empty = {INT32_MAX, INT32_MIN, 0u};
#define QS_KEY_POS_INF 0x7f800000          /* qs_order_key(+Inf) */
#define QS_KEY_NEG_INF ((int32_t)0x807fffff) /* qs_order_key(-Inf) */

enum { QS_GP_QUANT = 0, QS_GP_ZERO = 1, QS_GP_NAN = 2 };

/* Per-group constants. */
typedef struct qs_gparams {
    int32_t mode; /* QS_GP_* */
    float s;      /* INT: scale; BFP: interval */
    float z;      /* INT_ASYM: zero point; BFP: the clamp bound maxv */
} qs_gparams;

typedef struct qs_job {
    const qs_kernel_traits *kt;
    int32_t dtype, mask_mode;
    int64_t rows, cols, group, units_per_row;
    const char *x;
    char *y;
    const uint8_t *mask;
    int64_t x_stride, y_stride, m_stride; /* x/y in bytes, mask in elements */
    qs_rng rng;
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

QS_ALWAYS_INLINE void range_merge(qs_range *into, qs_range r) {
    into->kmin = r.kmin < into->kmin ? r.kmin : into->kmin;
    into->kmax = r.kmax > into->kmax ? r.kmax : into->kmax;
    into->amax_bits = r.amax_bits > into->amax_bits ? r.amax_bits : into->amax_bits;
}

/* The group's constants from its range (FORMATS.md sections 1-2), family a literal at the call site. */
QS_ALWAYS_INLINE qs_gparams group_params(const qs_kernel_traits *kt, qs_range r, const int32_t fam) {
    qs_gparams g = {QS_GP_QUANT, 0.0f, 0.0f};
    float amax = qs_u2f(r.amax_bits);
    if (fam == QS_FAMILY_INT_ASYM ? (r.kmax >= QS_KEY_POS_INF || r.kmin <= QS_KEY_NEG_INF)
                                  : r.amax_bits >= QS_F32_INF_BITS) {
        g.mode = QS_GP_NAN;
        return g;
    }
    if (fam == QS_FAMILY_INT_SYM || fam == QS_FAMILY_INT_FULL) { /* divisor qmax, or qmax + 0.5 */
        g.s = amax / kt->divisor;
        if (g.s == 0.0f) g.mode = QS_GP_ZERO;
    } else if (fam == QS_FAMILY_INT_ASYM) {
        /* GPTQ Quantizer(sym=False).find_params, in its binary32 operation order */
        float vmin = qs_key_value(r.kmin), vmax = qs_key_value(r.kmax);
        float xmin = vmin < 0.0f ? vmin : 0.0f;
        float xmax = vmax > 0.0f ? vmax : 0.0f;
        if (xmin == 0.0f && xmax == 0.0f) {
            xmin = -1.0f;
            xmax = 1.0f;
        }
        g.s = (xmax - xmin) / kt->divisor;
        if (!qs_isfinite(g.s)) g.mode = QS_GP_NAN;
        else if (g.s == 0.0f) g.mode = QS_GP_ZERO;
        else g.z = qs_rint(-xmin / g.s);
    } else if (fam == QS_FAMILY_BFP) {
        int32_t e = qs_bfp_exponent(amax);
        g.s = qs_exp2i(e - kt->mbits);
        g.z = kt->qmax * g.s; /* = 2^e - interval, exact, and finite even for e = 128 */
    }
    return g;
}

/* ---- quantization of one span of a row ------------------------------------------------------------------------ */

QS_ALWAYS_INLINE float quant_elem(float v, uint32_t u24, const qs_gparams *g, const qs_kernel_traits *kt,
                                  const int32_t fam, const int32_t rnd) {
    if (fam == QS_FAMILY_INT_SYM) return qs_quant_int_sym(v, g->s, kt->qmax, kt->qmax, rnd, u24);
    if (fam == QS_FAMILY_INT_FULL) return qs_quant_int_sym(v, g->s, -kt->qmin, kt->qmax, rnd, u24);
    if (fam == QS_FAMILY_INT_ASYM) return qs_quant_int_asym(v, g->s, g->z, kt->qmax, rnd, u24);
    if (fam == QS_FAMILY_BFP) return qs_quant_bfp(v, g->s, g->z, rnd, u24);
    return qs_round_float(v, &kt->ft, rnd, u24);
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
            float y = g.mode == QS_GP_NAN ? qs_qnan() : qs_copysign(0.0f, v);
            if (mm != QS_MASK_NONE) y = mr[c0 + i] ? y : 0.0f;
            qs_store(yr, c0 + i, dt, y);
        }
        return;
    }
    for (i = 0; i < n; i++) {
        float v = qs_load(xr, c0 + i, dt);
        uint32_t u24 = rnd ? qs_rand24(rng, base + (uint64_t)i) : 0u;
        float y;
        if (mm == QS_MASK_BEFORE) v = qs_select(mr[c0 + i], v, 0.0f);
        y = quant_elem(v, u24, &g, &kt, fam, rnd);
        if (mm != QS_MASK_NONE) y = qs_select(mr[c0 + i], y, 0.0f);
        if (fam == QS_FAMILY_FLOAT) qs_store(yr, c0 + i, dt, y);
        else qs_store_notnan(yr, c0 + i, dt, y); /* integer and block grids give finite values */
    }
}

/* ---- workers ------------------------------------------------------------------------------------------------- */

/* Units [u0, u1). With `fixed` (per-tensor calls and element-wise formats) units are plain spans of a row that
   all use *fixed; otherwise each unit is a group with its own statistics. */
QS_ALWAYS_INLINE void units_t(const qs_job *jb, int64_t u0, int64_t u1, const qs_gparams *fixed, const int32_t fam,
                              const int32_t rnd, const int32_t mm, const int32_t dt, const int64_t gc) {
    int64_t u;
    for (u = u0; u < u1; u++) {
        int64_t row = u / jb->units_per_row;
        int64_t c0 = (u % jb->units_per_row) * jb->group;
        int64_t n = jb->cols - c0 < jb->group ? jb->cols - c0 : jb->group;
        if (gc && n == gc) {
            /* a full group of a common size: constant trip counts, unrolled without remainder loops */
            qs_range r = qs_range_empty;
            qs_gparams g;
            range_scan(jb->x + row * jb->x_stride, jb->mask + row * jb->m_stride, c0, gc, &r,
                       fam == QS_FAMILY_INT_ASYM, mm == QS_MASK_BEFORE, dt);
            g = group_params(jb->kt, r, fam);
            apply_span(jb, &g, row, c0, gc, fam, rnd, mm, dt);
        } else if (fixed) {
            apply_span(jb, fixed, row, c0, n, fam, rnd, mm, dt);
        } else {
            qs_range r = qs_range_empty;
            qs_gparams g;
            range_scan(jb->x + row * jb->x_stride, jb->mask + row * jb->m_stride, c0, n, &r,
                       fam == QS_FAMILY_INT_ASYM, mm == QS_MASK_BEFORE, dt);
            g = group_params(jb->kt, r, fam);
            apply_span(jb, &g, row, c0, n, fam, rnd, mm, dt);
        }
    }
}

#define QS_DISPATCH_DT(CALL_WITH_DT)                                  \
    switch (jb->dtype) {                                              \
    case QS_DTYPE_F32: CALL_WITH_DT(QS_DTYPE_F32); break;              \
    case QS_DTYPE_F16: CALL_WITH_DT(QS_DTYPE_F16); break;              \
    default: CALL_WITH_DT(QS_DTYPE_BF16); break;                       \
    }

#define QS_UNITS(FAM, RND, MM, DT) units_t(jb, u0, u1, fixed, FAM, RND, MM, DT, 0)
/* The common case (RNE, no mask, groups of 16..128) gets group sizes as constants. */
#define QS_UNITS_FAST(FAM, DT)                                                                     \
    do {                                                                                           \
        if (fixed) units_t(jb, u0, u1, fixed, FAM, 0, QS_MASK_NONE, DT, 0);                        \
        else if (jb->group == 16) units_t(jb, u0, u1, fixed, FAM, 0, QS_MASK_NONE, DT, 16);        \
        else if (jb->group == 32) units_t(jb, u0, u1, fixed, FAM, 0, QS_MASK_NONE, DT, 32);        \
        else if (jb->group == 64) units_t(jb, u0, u1, fixed, FAM, 0, QS_MASK_NONE, DT, 64);        \
        else if (jb->group == 128) units_t(jb, u0, u1, fixed, FAM, 0, QS_MASK_NONE, DT, 128);      \
        else units_t(jb, u0, u1, fixed, FAM, 0, QS_MASK_NONE, DT, 0);                              \
    } while (0)
#define QS_UNITS_MM(FAM, RND, DT)                                      \
    do {                                                               \
        if (jb->mask_mode == QS_MASK_NONE && !(RND)) QS_UNITS_FAST(FAM, DT);                \
        else if (jb->mask_mode == QS_MASK_NONE) QS_UNITS(FAM, RND, QS_MASK_NONE, DT);     \
        else if (jb->mask_mode == QS_MASK_BEFORE) QS_UNITS(FAM, RND, QS_MASK_BEFORE, DT); \
        else QS_UNITS(FAM, RND, QS_MASK_AFTER, DT);                    \
    } while (0)
#define QS_UNITS_RND(FAM, DT)                                          \
    do {                                                               \
        if (jb->kt->rounding) QS_UNITS_MM(FAM, 1, DT);                 \
        else QS_UNITS_MM(FAM, 0, DT);                                  \
    } while (0)

/* One function per family, each instantiating its (rounding, mask mode, dtype) variants. */
#define QS_DEFINE_RUN(NAME, FAM)                                                                        \
    static QS_CLONES void NAME(const qs_job *jb, int64_t u0, int64_t u1, const qs_gparams *fixed) {     \
        switch (jb->dtype) {                                                                             \
        case QS_DTYPE_F32: QS_UNITS_RND(FAM, QS_DTYPE_F32); break;                                       \
        case QS_DTYPE_F16: QS_UNITS_RND(FAM, QS_DTYPE_F16); break;                                       \
        default: QS_UNITS_RND(FAM, QS_DTYPE_BF16); break;                                                \
        }                                                                                                \
    }

QS_DEFINE_RUN(run_int_sym, QS_FAMILY_INT_SYM)
QS_DEFINE_RUN(run_int_full, QS_FAMILY_INT_FULL)
QS_DEFINE_RUN(run_int_asym, QS_FAMILY_INT_ASYM)
QS_DEFINE_RUN(run_bfp, QS_FAMILY_BFP)
QS_DEFINE_RUN(run_float, QS_FAMILY_FLOAT)

static void run_units(const qs_job *jb, int64_t u0, int64_t u1, const qs_gparams *fixed) {
    switch (jb->kt->family) {
    case QS_FAMILY_INT_SYM: run_int_sym(jb, u0, u1, fixed); break;
    case QS_FAMILY_INT_FULL: run_int_full(jb, u0, u1, fixed); break;
    case QS_FAMILY_INT_ASYM: run_int_asym(jb, u0, u1, fixed); break;
    case QS_FAMILY_BFP: run_bfp(jb, u0, u1, fixed); break;
    default: run_float(jb, u0, u1, fixed); break;
    }
}

/* Statistics of units [u0, u1) merged into *out (per-tensor calls). */
QS_ALWAYS_INLINE void units_range_t(const qs_job *jb, int64_t u0, int64_t u1, qs_range *out, const int32_t dt) {
    const int32_t masked = jb->mask_mode == QS_MASK_BEFORE;
    const int32_t minmax = jb->kt->family == QS_FAMILY_INT_ASYM;
    int64_t u;
    for (u = u0; u < u1; u++) {
        int64_t row = u / jb->units_per_row;
        int64_t c0 = (u % jb->units_per_row) * jb->group;
        int64_t n = jb->cols - c0 < jb->group ? jb->cols - c0 : jb->group;
        const char *xr = jb->x + row * jb->x_stride;
        const uint8_t *mr = jb->mask + row * jb->m_stride;
        if (minmax) {
            if (masked) range_scan(xr, mr, c0, n, out, 1, 1, dt);
            else range_scan(xr, mr, c0, n, out, 1, 0, dt);
        } else {
            if (masked) range_scan(xr, mr, c0, n, out, 0, 1, dt);
            else range_scan(xr, mr, c0, n, out, 0, 0, dt);
        }
    }
}

static QS_CLONES void run_units_range(const qs_job *jb, int64_t u0, int64_t u1, qs_range *out) {
#define QS_RANGE_DT(DT) units_range_t(jb, u0, u1, out, DT)
    QS_DISPATCH_DT(QS_RANGE_DT)
#undef QS_RANGE_DT
}

static qs_gparams tensor_params(const qs_kernel_traits *kt, qs_range r) {
    switch (kt->family) {
    case QS_FAMILY_INT_SYM: return group_params(kt, r, QS_FAMILY_INT_SYM);
    case QS_FAMILY_INT_FULL: return group_params(kt, r, QS_FAMILY_INT_FULL);
    case QS_FAMILY_INT_ASYM: return group_params(kt, r, QS_FAMILY_INT_ASYM);
    case QS_FAMILY_BFP: return group_params(kt, r, QS_FAMILY_BFP);
    default: return group_params(kt, r, QS_FAMILY_FLOAT);
    }
}

/* ---- entry point ---------------------------------------------------------------------------------------------- */

int32_t qs_fake_quant_cpu(const qs_quant_params *params, int32_t dtype, int64_t rows, int64_t cols, const void *x,
                          int64_t x_stride, void *y, int64_t y_stride, const uint8_t *mask, int64_t mask_stride,
                          int32_t mask_mode, int32_t num_threads) {
    qs_kernel_traits kt;
    qs_job jb;
    qs_gparams fixed = {QS_GP_QUANT, 0.0f, 0.0f};
    int64_t units, per_chunk, chunks;
    int32_t per_tensor, spans;
    int nt;
    QS_TRY(qs_check_fake_quant(params, dtype, rows, cols, x, x_stride, y, y_stride, mask, mask_stride, mask_mode,
                               &kt));
    if (num_threads > QS_MAX_THREADS) return QS_ERR_INVALID_ARGUMENT;
    if (rows == 0 || cols == 0) return QS_OK;

    jb.kt = &kt;
    jb.dtype = dtype;
    jb.mask_mode = mask_mode;
    jb.rows = rows;
    jb.cols = cols;
    jb.x = (const char *)x;
    jb.y = (char *)y;
    jb.mask = mask;
    jb.x_stride = x_stride * (int64_t)qs_esize(dtype);
    jb.y_stride = y_stride * (int64_t)qs_esize(dtype);
    jb.m_stride = mask_stride;
    jb.rng = qs_rng_make(params->seed);
    nt = qs_thread_count(num_threads, rows * cols);

    /* Units: groups; or, for per-tensor calls and element-wise formats, row spans of at most QS_SPAN elements. */
    per_tensor = params->group_size == QS_GROUP_TENSOR && kt.family != QS_FAMILY_FLOAT;
    spans = per_tensor || kt.family == QS_FAMILY_FLOAT;
    if (spans) jb.group = cols < QS_SPAN ? cols : QS_SPAN;
    else jb.group = params->group_size > 0 && params->group_size < cols ? params->group_size : cols;
    jb.units_per_row = (cols + jb.group - 1) / jb.group;
    units = rows * jb.units_per_row;
    per_chunk = QS_SPAN / jb.group; /* chunks of about QS_SPAN elements, at least one unit each */
    if (per_chunk < 1) per_chunk = 1;
    chunks = (units + per_chunk - 1) / per_chunk;

    if (per_tensor) {
        qs_range total = qs_range_empty;
#pragma omp parallel num_threads(nt)
        {
            qs_fpenv env = qs_fpenv_enter();
            qs_range mine = qs_range_empty;
            int64_t k;
#pragma omp for schedule(static)
            for (k = 0; k < chunks; k++) {
                int64_t u0 = k * per_chunk;
                run_units_range(&jb, u0, u0 + per_chunk < units ? u0 + per_chunk : units, &mine);
            }
#pragma omp critical(qs_range_merge)
            range_merge(&total, mine);
            qs_fpenv_leave(env);
        }
        {
            qs_fpenv env = qs_fpenv_enter();
            fixed = tensor_params(&kt, total);
            qs_fpenv_leave(env);
        }
    }
#pragma omp parallel num_threads(nt)
    {
        qs_fpenv env = qs_fpenv_enter();
        int64_t k;
#pragma omp for schedule(dynamic, 1)
        for (k = 0; k < chunks; k++) {
            int64_t u0 = k * per_chunk;
            run_units(&jb, u0, u0 + per_chunk < units ? u0 + per_chunk : units, spans ? &fixed : NULL);
        }
        qs_fpenv_leave(env);
    }
    return QS_OK;
}
