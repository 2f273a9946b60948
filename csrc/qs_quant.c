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
#include "qs_group.h"
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

/* ---- quantization of one span of a row ------------------------------------------------------------------------ */

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
    for (i = 0; i < n; i++) {
        float v = qs_load(xr, c0 + i, dt);
        uint32_t u24 = rnd ? qs_rand24(rng, base + (uint64_t)i) : 0u;
        float y;
        if (mm == QS_MASK_BEFORE) v = qs_select(mr[c0 + i], v, 0.0f);
        y = qs_quant_elem(v, u24, &g, &kt, fam, rnd, qs_dtype_max(dt));
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
            qs_range r = qs_range_empty();
            qs_gparams g;
            range_scan(jb->x + row * jb->x_stride, mm == QS_MASK_BEFORE ? jb->mask + row * jb->m_stride : NULL, c0, gc, &r,
                       fam == QS_FAMILY_INT_ASYM, mm == QS_MASK_BEFORE, dt);
            g = qs_group_params(jb->kt, r, fam);
            apply_span(jb, &g, row, c0, gc, fam, rnd, mm, dt);
        } else if (fixed) {
            apply_span(jb, fixed, row, c0, n, fam, rnd, mm, dt);
        } else {
            qs_range r = qs_range_empty();
            qs_gparams g;
            range_scan(jb->x + row * jb->x_stride, mm == QS_MASK_BEFORE ? jb->mask + row * jb->m_stride : NULL, c0, n, &r,
                       fam == QS_FAMILY_INT_ASYM, mm == QS_MASK_BEFORE, dt);
            g = qs_group_params(jb->kt, r, fam);
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
        const uint8_t *mr = masked ? jb->mask + row * jb->m_stride : NULL;
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
    case QS_FAMILY_INT_SYM: return qs_group_params(kt, r, QS_FAMILY_INT_SYM);
    case QS_FAMILY_INT_FULL: return qs_group_params(kt, r, QS_FAMILY_INT_FULL);
    case QS_FAMILY_INT_ASYM: return qs_group_params(kt, r, QS_FAMILY_INT_ASYM);
    case QS_FAMILY_BFP: return qs_group_params(kt, r, QS_FAMILY_BFP);
    default: return qs_group_params(kt, r, QS_FAMILY_FLOAT);
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
    QS_TRY(qs_check_threads(num_threads));
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
    (void)nt; /* only read by OpenMP pragmas */

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
        qs_range total = qs_range_empty();
#pragma omp parallel num_threads(nt)
        {
            qs_fpenv env = qs_fpenv_enter();
            qs_range mine = qs_range_empty();
            int64_t k;
#pragma omp for schedule(static)
            for (k = 0; k < chunks; k++) {
                int64_t u0 = k * per_chunk;
                run_units_range(&jb, u0, u0 + per_chunk < units ? u0 + per_chunk : units, &mine);
            }
#pragma omp critical(qs_range_merge)
            qs_range_merge(&total, mine);
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
