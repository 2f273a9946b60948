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
#include "qs_quant_impl.h"

static void run_units(const qs_job *jb, int64_t u0, int64_t u1, const qs_gparams *fixed) {
    switch (jb->kt->family) {
    case QS_FAMILY_INT_SYM: qs_run_int_sym(jb, u0, u1, fixed); break;
    case QS_FAMILY_INT_FULL: qs_run_int_full(jb, u0, u1, fixed); break;
    case QS_FAMILY_INT_ASYM: qs_run_int_asym(jb, u0, u1, fixed); break;
    case QS_FAMILY_BFP: qs_run_bfp(jb, u0, u1, fixed); break;
    case QS_FAMILY_SCALED: qs_run_scaled(jb, u0, u1, fixed); break;
    case QS_FAMILY_SCALED_FPQ: qs_run_scaled_fpq(jb, u0, u1, fixed); break;
    case QS_FAMILY_SCALED_POW2: qs_run_scaled_pow2(jb, u0, u1, fixed); break;
    case QS_FAMILY_LUT: qs_run_lut(jb, u0, u1); break;
    case QS_FAMILY_LLMQ: qs_run_llmq(jb, u0, u1, fixed); break;
    default: qs_run_float(jb, u0, u1, fixed); break;
    }
}

/* Statistics of units [u0, u1) merged into *out (per-tensor calls). */
QS_ALWAYS_INLINE void units_range_t(const qs_job *jb, int64_t u0, int64_t u1, qs_range *out, const int32_t dt) {
    const int32_t masked = jb->mask_mode == QS_MASK_BEFORE;
    const int32_t minmax = jb->kt->family == QS_FAMILY_INT_ASYM;
    qs_unit c = unit_first(jb, u0);
    int64_t u;
    for (u = u0; u < u1; u++, unit_next(jb, &c)) {
        const char *xr = jb->x + c.row * jb->x_stride;
        const uint8_t *mr = masked ? jb->mask + c.row * jb->m_stride : NULL;
        if (minmax) {
            if (masked) range_scan(xr, mr, c.c0, c.n, out, 1, 1, dt);
            else range_scan(xr, mr, c.c0, c.n, out, 1, 0, dt);
        } else {
            if (masked) range_scan(xr, mr, c.c0, c.n, out, 0, 1, dt);
            else range_scan(xr, mr, c.c0, c.n, out, 0, 0, dt);
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
    case QS_FAMILY_SCALED: return qs_group_params(kt, r, QS_FAMILY_SCALED);
    case QS_FAMILY_SCALED_FPQ: return qs_group_params(kt, r, QS_FAMILY_SCALED_FPQ);
    case QS_FAMILY_SCALED_POW2: return qs_group_params(kt, r, QS_FAMILY_SCALED_POW2);
    case QS_FAMILY_LLMQ: return qs_group_params(kt, r, QS_FAMILY_LLMQ);
    default: return qs_group_params(kt, r, QS_FAMILY_FLOAT);
    }
}

/* Units of a job: groups of `group` elements, or row spans of at most QS_SPAN elements when group <= 0. */
static void job_units(qs_job *jb, int64_t group, int64_t *units, int64_t *per_chunk, int64_t *chunks) {
    if (group <= 0) jb->group = jb->cols < QS_SPAN ? jb->cols : QS_SPAN;
    else jb->group = group < jb->cols ? group : jb->cols;
    jb->units_per_row = (jb->cols + jb->group - 1) / jb->group;
    *units = jb->rows * jb->units_per_row;
    *per_chunk = QS_SPAN / jb->group; /* chunks of about QS_SPAN elements, at least one unit each */
    if (*per_chunk < 1) *per_chunk = 1;
    *chunks = (*units + *per_chunk - 1) / *per_chunk;
}

/* The statistics of the whole tensor (after masking with QS_MASK_BEFORE). */
static qs_range tensor_range(qs_job *jb, int nt) {
    qs_range total = qs_range_empty();
    int64_t units, per_chunk, chunks;
    job_units(jb, 0, &units, &per_chunk, &chunks);
#pragma omp parallel num_threads(nt)
    {
        qs_fpenv env = qs_fpenv_enter();
        qs_range mine = qs_range_empty();
        int64_t k;
#pragma omp for schedule(static)
        for (k = 0; k < chunks; k++) {
            int64_t u0 = k * per_chunk;
            run_units_range(jb, u0, u0 + per_chunk < units ? u0 + per_chunk : units, &mine);
        }
#pragma omp critical(qs_range_merge)
        qs_range_merge(&total, mine);
        qs_fpenv_leave(env);
    }
    (void)nt; /* only read by OpenMP pragmas */
    return total;
}

/* The llm-mixed-q profile's replacement max of its blocks of zeros (qs_lq_zero_bits): the smallest nonzero and the
   largest group max |x| of the tensor's groups of `group` elements (after masking with QS_MASK_BEFORE). */
static uint32_t lq_zero_max(qs_job *jb, int64_t group, int nt) {
    uint32_t zmin = 0xffffffffu, zmax = 0u;
    int64_t units, per_chunk, chunks;
    job_units(jb, group, &units, &per_chunk, &chunks);
#pragma omp parallel num_threads(nt)
    {
        qs_fpenv env = qs_fpenv_enter();
        uint32_t mn = 0xffffffffu, mx = 0u;
        int64_t k;
#pragma omp for schedule(static)
        for (k = 0; k < chunks; k++) {
            const int64_t u1 = (k + 1) * per_chunk < units ? (k + 1) * per_chunk : units;
            int64_t u;
            for (u = k * per_chunk; u < u1; u++) {
                qs_range r = qs_range_empty();
                run_units_range(jb, u, u + 1, &r);
                mn = r.amax_bits != 0u && r.amax_bits < mn ? r.amax_bits : mn;
                mx = r.amax_bits > mx ? r.amax_bits : mx;
            }
        }
#pragma omp critical(qs_lq_zero_merge)
        {
            zmin = mn < zmin ? mn : zmin;
            zmax = mx > zmax ? mx : zmax;
        }
        qs_fpenv_leave(env);
    }
    (void)nt; /* only read by OpenMP pragmas */
    return qs_lq_zero_bits(zmin, zmax);
}

/* ---- entry point ---------------------------------------------------------------------------------------------- */

/* The llm-mixed-q quantizers' element exponents from a table instead of a log2 per element (qs_lq_ilog2) on
   tensors of this many elements or more: the table costs about 6,400 log2 calls (qs_lq_table_make), the elements
   one each. */
#define QS_LQ_TABLE_MIN 16384

/* The common body of qs_fake_quant_cpu and qs_group_choice_cpu (y or choice may be NULL; arguments checked). */
/* qp_out / qp_in: the records of qs_quant_qparams_cpu / qs_fake_quant_qparams_cpu (else NULL); tscale_in: the
   tensor scale to use instead of the tensor's (else NULL). */
static int32_t fake_quant_run(const qs_quant_params *params, qs_kernel_traits kt, int32_t dtype, int64_t rows,
                              int64_t cols, const void *x, int64_t x_stride, void *y, int64_t y_stride,
                              const uint8_t *mask, int64_t mask_stride, int32_t mask_mode, uint8_t *choice,
                              int64_t c_stride, int32_t *qp_out, const int32_t *qp_in, int64_t qp_stride,
                              const float *tscale_in, int32_t num_threads) {
    qs_job jb;
    qs_lut_traits lut;
    qs_gparams fixed = {QS_GP_QUANT, 0.0f, 0.0f, 0.0f};
    uint32_t lq_t[QS_LQ_TABLE];
    int64_t units, per_chunk, chunks;
    int32_t per_tensor, spans, elementwise, tensor_scale;
    int nt;
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
    jb.lut = NULL;
    jb.choice = choice;
    jb.c_stride = c_stride;
    jb.qp_out = qp_out;
    jb.qp_in = qp_in;
    jb.qp_stride = qp_stride;
    if (kt.family == QS_FAMILY_LUT) {
        QS_TRY(qs_lut_traits_make(params, &lut));
        jb.lut = &lut;
    }
    nt = qs_thread_count(num_threads, rows * cols);
    (void)nt; /* only read by OpenMP pragmas */

    /* Per-tensor calls and the tensor scale of QS_SCALE_MODE_E4M3 first reduce the whole tensor. */
    /* element-wise: QS_FAMILY_FLOAT and the element rows of QS_FAMILY_LLMQ (their bias is the row's) */
    elementwise = kt.family == QS_FAMILY_FLOAT || (kt.family == QS_FAMILY_LLMQ && !kt.lq_block);
    per_tensor = params->group_size == QS_GROUP_TENSOR && !elementwise;
    spans = per_tensor || elementwise;
    if (elementwise && kt.family == QS_FAMILY_LLMQ) fixed.s = kt.lq_bias;
    tensor_scale = (kt.family == QS_FAMILY_SCALED || kt.family == QS_FAMILY_SCALED_FPQ) &&
                   kt.scale_mode == QS_SCALE_MODE_E4M3;
    /* the llm-mixed-q profile: a block of zeros takes the max of the tensor's blocks that block_log.py (and
       block_minifloat.py, block_fp.py) give it; one block (per tensor) of zeros is the all-zero case, max 1 */
    if (kt.family == QS_FAMILY_LLMQ && kt.lq_src && kt.lq_block && qp_in == NULL)
        kt.lq_zbits = per_tensor ? 0x3f800000u
                                 : lq_zero_max(&jb, params->group_size > 0 ? params->group_size : cols, nt);
    if (kt.family == QS_FAMILY_LLMQ && qs_lq_kind_op(kt.lq_kind) >= 0 && rows * cols >= QS_LQ_TABLE_MIN) {
        const qs_fpenv env = qs_fpenv_enter();
        qs_lq_table_make(qs_lq_kind_op(kt.lq_kind), kt.lq_half, lq_t);
        qs_fpenv_leave(env);
        kt.lq_t = lq_t;
    }
    if (qp_in != NULL) {
        if (per_tensor) fixed = qs_qp_gparams(qp_in); /* records hold the outcome: no statistics needed */
    } else if (per_tensor ||
               (tensor_scale && tscale_in == NULL)) {
        const qs_range total = tensor_range(&jb, nt);
        qs_fpenv env = qs_fpenv_enter();
        if (tensor_scale) kt.tscale = qs_tensor_scale(&kt, total);
        if (per_tensor) fixed = tensor_params(&kt, total);
        if (per_tensor && kt.observer && fixed.mode == QS_GP_QUANT) /* one search over the whole tensor */
            fixed = mse_search(&jb, total, fixed, 0, 0, 0, 1, kt.family, dtype);
        qs_fpenv_leave(env);
    }
    if (tscale_in != NULL && tensor_scale)
        kt.tscale = *tscale_in;
    if (qp_out != NULL && spans) { /* one record (per tensor), or none to fit (element-wise formats) */
        int64_t r;
        if (per_tensor) qs_qp_store_g(qp_out, &fixed);
        else
            for (r = 0; r < rows; r++) qs_qp_store(qp_out + r * qp_stride, 0, 0, 0.0f, 0.0f, 0.0f);
        return QS_OK;
    }
    /* Units: groups; or, for per-tensor calls and element-wise formats, row spans of at most QS_SPAN elements. */
    job_units(&jb, spans ? 0 : (params->group_size > 0 ? params->group_size : cols), &units, &per_chunk, &chunks);
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

int32_t qs_fake_quant_cpu(const qs_quant_params *params, int32_t dtype, int64_t rows, int64_t cols, const void *x,
                          int64_t x_stride, void *y, int64_t y_stride, const uint8_t *mask, int64_t mask_stride,
                          int32_t mask_mode, int32_t num_threads) {
    qs_kernel_traits kt;
    QS_TRY(qs_check_fake_quant(params, dtype, rows, cols, x, x_stride, y, y_stride, mask, mask_stride, mask_mode,
                               &kt));
    QS_TRY(qs_check_threads(num_threads));
    return fake_quant_run(params, kt, dtype, rows, cols, x, x_stride, y, y_stride, mask, mask_stride, mask_mode, NULL,
                          0, NULL, NULL, 0, NULL, num_threads);
}

int32_t qs_group_choice_cpu(const qs_quant_params *params, int32_t dtype, int64_t rows, int64_t cols, const void *x,
                            int64_t x_stride, const uint8_t *mask, int64_t mask_stride, int32_t mask_mode,
                            uint8_t *choice, int64_t choice_stride, int32_t num_threads) {
    qs_kernel_traits kt;
    QS_TRY(qs_check_group_choice(params, dtype, rows, cols, x, x_stride, mask, mask_stride, mask_mode, choice,
                                 choice_stride, &kt));
    QS_TRY(qs_check_threads(num_threads));
    return fake_quant_run(params, kt, dtype, rows, cols, x, x_stride, NULL, 0, mask, mask_stride, mask_mode, choice,
                          choice_stride, NULL, NULL, 0, NULL, num_threads);
}

int32_t qs_quant_qparams_cpu(const qs_quant_params *params, int32_t dtype, int64_t rows, int64_t cols, const void *x,
                             int64_t x_stride, const uint8_t *mask, int64_t mask_stride, int32_t mask_mode,
                             const float *tensor_scale, int32_t *qp, int64_t qp_stride, int32_t num_threads) {
    qs_kernel_traits kt;
    QS_TRY(qs_check_qparams(params, dtype, rows, cols, x, x_stride, x, x_stride, mask, mask_stride, mask_mode, qp,
                            qp_stride, &kt));
    QS_TRY(qs_check_threads(num_threads));
    return fake_quant_run(params, kt, dtype, rows, cols, x, x_stride, NULL, 0, mask, mask_stride, mask_mode, NULL, 0,
                          qp, NULL, qp_stride, tensor_scale, num_threads);
}

int32_t qs_fake_quant_qparams_cpu(const qs_quant_params *params, int32_t dtype, int64_t rows, int64_t cols,
                                  const void *x, int64_t x_stride, void *y, int64_t y_stride, const uint8_t *mask,
                                  int64_t mask_stride, int32_t mask_mode, const int32_t *qp, int64_t qp_stride,
                                  int32_t num_threads) {
    qs_kernel_traits kt;
    QS_TRY(qs_check_qparams(params, dtype, rows, cols, x, x_stride, y, y_stride, mask, mask_stride, mask_mode, qp,
                            qp_stride, &kt));
    QS_TRY(qs_check_threads(num_threads));
    return fake_quant_run(params, kt, dtype, rows, cols, x, x_stride, y, y_stride, mask, mask_stride, mask_mode, NULL, 0,
                          NULL, qp, qp_stride, NULL, num_threads);
}
