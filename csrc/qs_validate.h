/*
 * qs_validate.h -- argument checks shared by the CPU and CUDA entry points (host code), so that both libraries
 * return the same status for the same bad call. Order: structs, sizes, strides, enums, then pointers; the mask
 * stride of a fused fake-quantization is checked after the mask mode (it is only read when a mask is used); the
 * CPU entry points check the thread count last (qs_check_threads).
 */
#ifndef QS_VALIDATE_H
#define QS_VALIDATE_H

#include <stdint.h>

#include "include/qsparse.h"
#include "qs_format_table.h"

#define QS_MAX_THREADS 4096
/* Views must be addressable in bytes with int64 arithmetic for every dtype (4 bytes at most per element). */
#define QS_MAX_EXTENT (INT64_MAX / 4)

/* A rows x cols view with row stride `stride`: sizes non-negative, cols <= stride <= QS_MAX_EXTENT, and the view's
   extent (rows-1)*stride + cols at most QS_MAX_EXTENT elements, so that byte offsets cannot overflow. */
static inline int32_t qs_check_sizes(int64_t rows, int64_t cols) {
    if (rows < 0 || cols < 0) return QS_ERR_INVALID_SIZE;
    if (cols > 0 && rows > INT64_MAX / cols) return QS_ERR_INVALID_SIZE; /* logical indices row*cols+col */
    return QS_OK;
}

static inline int32_t qs_check_stride(int64_t rows, int64_t cols, int64_t stride) {
    if (stride < cols || stride > QS_MAX_EXTENT) return QS_ERR_INVALID_STRIDE;
    if (cols > QS_MAX_EXTENT) return QS_ERR_INVALID_SIZE;
    if (rows > 1 && cols > 0 && rows - 1 > (QS_MAX_EXTENT - cols) / stride) return QS_ERR_INVALID_SIZE;
    return QS_OK;
}

/* CPU thread counts: <= 0 means the OpenMP default; above QS_MAX_THREADS is refused. (The kernels also never
   start more threads than there are processors: results do not depend on the count.) */
static inline int32_t qs_check_threads(int32_t num_threads) {
    return num_threads > QS_MAX_THREADS ? QS_ERR_INVALID_ARGUMENT : QS_OK;
}

static inline int32_t qs_check_dtype(int32_t dtype) {
    return (dtype >= 0 && dtype < QS_DTYPE_COUNT_) ? QS_OK : QS_ERR_INVALID_DTYPE;
}

#define QS_TRY(expr)                          \
    do {                                      \
        int32_t qs_try_status_ = (expr);      \
        if (qs_try_status_ != QS_OK) return qs_try_status_; \
    } while (0)

/* Everything about a fake-quantization call except the execution resource (threads or stream). */
static inline int32_t qs_check_fake_quant(const qs_quant_params *p, int32_t dtype, int64_t rows, int64_t cols,
                                          const void *x, int64_t x_stride, const void *y, int64_t y_stride,
                                          const uint8_t *mask, int64_t mask_stride, int32_t mask_mode,
                                          qs_kernel_traits *kt) {
    int i;
    if (p == NULL) return QS_ERR_NULL_POINTER;
    QS_TRY(qs_check_frac_bits(p));
    for (i = 0; i < 1; i++)
        if (p->reserved[i] != 0) return QS_ERR_INVALID_ARGUMENT;
    QS_TRY(qs_check_sizes(rows, cols));
    QS_TRY(qs_check_stride(rows, cols, x_stride));
    QS_TRY(qs_check_stride(rows, cols, y_stride));
    QS_TRY(qs_check_dtype(dtype));
    QS_TRY(qs_kernel_traits_make(p, kt));
    /* the llm-mixed-q profile computes in a half-precision input's dtype, as the source's torch code does */
    if (kt->family == QS_FAMILY_LLMQ && kt->lq_src && kt->lq_kind != QS_LQ_FIXED && dtype != QS_DTYPE_F32)
        kt->lq_half = dtype;
    if (p->group_size < QS_GROUP_TENSOR) return QS_ERR_INVALID_GROUP;
    /* element-wise formats have no groups: only the neutral QS_GROUP_ROW is accepted */
    if ((kt->family == QS_FAMILY_FLOAT || (kt->family == QS_FAMILY_LLMQ && !kt->lq_block)) &&
        p->group_size != QS_GROUP_ROW)
        return QS_ERR_INVALID_GROUP;
    if (mask_mode < 0 || mask_mode >= QS_MASK_MODE_COUNT_) return QS_ERR_INVALID_ARGUMENT;
    if (mask_mode != QS_MASK_NONE) QS_TRY(qs_check_stride(rows, cols, mask_stride));
    if (rows == 0 || cols == 0) return QS_OK;
    if (x == NULL || y == NULL) return QS_ERR_NULL_POINTER;
    if (mask_mode != QS_MASK_NONE && mask == NULL) return QS_ERR_NULL_POINTER;
    return QS_OK;
}

/* Groups per row of a fake quantization (one for QS_GROUP_ROW and QS_GROUP_TENSOR). */
static inline int64_t qs_groups_per_row(const qs_quant_params *p, int64_t cols) {
    return p->group_size > 0 && p->group_size < cols ? (cols + p->group_size - 1) / p->group_size : 1;
}

/* qs_group_choice_*: a fake-quantization without an output, of a QS_FAMILY_LUT format, and a choice matrix of
   rows x ceil(cols / G) with row stride choice_stride. */
static inline int32_t qs_check_group_choice(const qs_quant_params *p, int32_t dtype, int64_t rows, int64_t cols,
                                            const void *x, int64_t x_stride, const uint8_t *mask, int64_t mask_stride,
                                            int32_t mask_mode, const uint8_t *choice, int64_t choice_stride,
                                            qs_kernel_traits *kt) {
    int64_t groups;
    QS_TRY(qs_check_fake_quant(p, dtype, rows, cols, x, x_stride, x, x_stride, mask, mask_stride, mask_mode, kt));
    if (kt->family != QS_FAMILY_LUT) return QS_ERR_INVALID_ARGUMENT;
    groups = qs_groups_per_row(p, cols);
    QS_TRY(qs_check_stride(rows, groups, choice_stride));
    if (rows == 0 || cols == 0) return QS_OK;
    if (choice == NULL) return QS_ERR_NULL_POINTER;
    return QS_OK;
}

static inline int32_t qs_check_hadamard(int32_t dtype, int64_t rows, int64_t cols, const void *x, int64_t x_stride,
                                        const void *y, int64_t y_stride, int64_t group) {
    QS_TRY(qs_check_sizes(rows, cols));
    QS_TRY(qs_check_stride(rows, cols, x_stride));
    QS_TRY(qs_check_stride(rows, cols, y_stride));
    QS_TRY(qs_check_dtype(dtype));
    if (group < 1 || group > QS_HADAMARD_MAX_GROUP || (group & (group - 1)) != 0 || cols % group != 0)
        return QS_ERR_INVALID_GROUP;
    if (rows == 0 || cols == 0) return QS_OK;
    if (x == NULL || y == NULL) return QS_ERR_NULL_POINTER;
    return QS_OK;
}

/* The normalization of the Hadamard transform of size g (a power of two), as both libraries compute it. */
static inline float qs_hadamard_scale(int64_t group) {
    double s = 1.0;
    int64_t g = group;
    while (g >= 4) { /* 1 / sqrt(4^k) = 2^-k exactly */
        s *= 0.5;
        g /= 4;
    }
    return (float)(g == 2 ? s * 0.70710678118654752440 : s);
}

static inline int32_t qs_check_nm_mask(int32_t dtype, int64_t rows, int64_t cols, const void *scores,
                                       int64_t s_stride, const uint8_t *mask, int64_t m_stride, int32_t keep,
                                       int32_t group) {
    QS_TRY(qs_check_sizes(rows, cols));
    QS_TRY(qs_check_stride(rows, cols, s_stride));
    QS_TRY(qs_check_stride(rows, cols, m_stride));
    QS_TRY(qs_check_dtype(dtype));
    if (group < 1 || group > QS_NM_MAX_GROUP) return QS_ERR_INVALID_GROUP;
    if (keep < 0 || keep > group) return QS_ERR_INVALID_ARGUMENT;
    if (rows == 0 || cols == 0) return QS_OK;
    if (scores == NULL || mask == NULL) return QS_ERR_NULL_POINTER;
    return QS_OK;
}

static inline int32_t qs_check_magnitude_mask(int32_t dtype, int64_t rows, int64_t cols, const void *w,
                                              int64_t w_stride, const uint8_t *mask, int64_t m_stride,
                                              int64_t prune, int32_t per_row) {
    QS_TRY(qs_check_sizes(rows, cols));
    QS_TRY(qs_check_stride(rows, cols, w_stride));
    QS_TRY(qs_check_stride(rows, cols, m_stride));
    QS_TRY(qs_check_dtype(dtype));
    if (per_row != 0 && per_row != 1) return QS_ERR_INVALID_ARGUMENT;
    if (prune < 0 || prune > (per_row ? cols : rows * cols)) return QS_ERR_INVALID_ARGUMENT;
    if (rows == 0 || cols == 0) return QS_OK;
    if (w == NULL || mask == NULL) return QS_ERR_NULL_POINTER;
    return QS_OK;
}


/* qs_quant_qparams_* and qs_fake_quant_qparams_*: a fake quantization (y may be x for the former, which writes no
   output), and records of QS_QPARAM_WORDS words per group, qp_stride words per row (any stride for QS_GROUP_TENSOR,
   which has one record). Stochastic rounding is allowed only when quantizing with records. */
static inline int32_t qs_check_qparams(const qs_quant_params *p, int32_t dtype, int64_t rows, int64_t cols,
                                       const void *x, int64_t x_stride, const void *y, int64_t y_stride,
                                       const uint8_t *mask, int64_t mask_stride, int32_t mask_mode, const int32_t *qp,
                                       int64_t qp_stride, qs_kernel_traits *kt) {
    QS_TRY(qs_check_fake_quant(p, dtype, rows, cols, x, x_stride, y, y_stride, mask, mask_stride, mask_mode, kt));
    if (p->group_size != QS_GROUP_TENSOR) {
        const int64_t words = qs_groups_per_row(p, cols);
        if (words > QS_MAX_EXTENT / QS_QPARAM_WORDS) return QS_ERR_INVALID_SIZE;
        QS_TRY(qs_check_stride(rows, words * QS_QPARAM_WORDS, qp_stride));
    }
    if (rows == 0 || cols == 0) return QS_OK;
    if (qp == NULL) return QS_ERR_NULL_POINTER;
    return QS_OK;
}

/* qs_gptq_block_*: see qsparse.h. kt receives the traits of params (kt->family is meaningful only when params is
   not NULL). A general 2-D view: strides >= 1 and the extent (rows-1)*rs + (cols-1)*cs at most QS_MAX_EXTENT. */
static inline int32_t qs_check_view2d(int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
    if (rs < 1 || cs < 1 || rs > QS_MAX_EXTENT || cs > QS_MAX_EXTENT) return QS_ERR_INVALID_STRIDE;
    if (rows > 1 && rows - 1 > QS_MAX_EXTENT / rs) return QS_ERR_INVALID_SIZE;
    if (cols > 1 && cols - 1 > (QS_MAX_EXTENT - (rows > 0 ? (rows - 1) * rs : 0)) / cs) return QS_ERR_INVALID_SIZE;
    return QS_OK;
}

static inline int32_t qs_check_gptq_block(const qs_quant_params *p, int64_t rows, int64_t bcols, const float *w,
                                          int64_t w_rs, int64_t w_cs, const float *hinv, int64_t h_stride,
                                          const int32_t *qp, int64_t qp_stride, const int64_t *slot,
                                          const uint8_t *mask, int64_t m_rs, int64_t m_cs, int32_t keep,
                                          int32_t group, const float *q, int64_t q_stride, const float *err,
                                          int64_t e_stride, const double *loss, qs_kernel_traits *kt,
                                          qs_lut_traits *lt) {
    int32_t needs_records = 0;
    int64_t i;
    QS_TRY(qs_check_sizes(rows, bcols));
    if (bcols > QS_GPTQ_MAX_BLOCK) return QS_ERR_INVALID_SIZE;
    QS_TRY(qs_check_view2d(rows, bcols, w_rs, w_cs));
    QS_TRY(qs_check_stride(bcols, bcols, h_stride));
    QS_TRY(qs_check_stride(rows, bcols, q_stride));
    QS_TRY(qs_check_stride(rows, bcols, e_stride));
    if (mask != NULL) QS_TRY(qs_check_view2d(rows, bcols, m_rs, m_cs));
    if (p != NULL) {
        qs_quant_params pp = *p;
        if (qs_check_frac_bits(p) != QS_OK || p->reserved[0] != 0) return QS_ERR_INVALID_ARGUMENT;
        pp.rounding = QS_ROUND_RNE; /* check everything else first; then the rounding this kernel supports */
        QS_TRY(qs_kernel_traits_make(p->rounding == QS_ROUND_STOCHASTIC ? &pp : p, kt));
        if (p->group_size < QS_GROUP_TENSOR) return QS_ERR_INVALID_GROUP;
        if (p->rounding == QS_ROUND_STOCHASTIC) return QS_ERR_UNSUPPORTED;
        if (kt->family == QS_FAMILY_LUT) QS_TRY(qs_lut_traits_make(p, lt));
        needs_records = kt->family != QS_FAMILY_FLOAT;
        if (needs_records && (qp_stride < 0 || qp_stride > QS_MAX_EXTENT)) return QS_ERR_INVALID_STRIDE;
    }
    if (keep != 0) {
        if (group < 1 || group > QS_NM_MAX_GROUP) return QS_ERR_INVALID_GROUP;
        if (keep < 0 || keep > group || bcols % group != 0) return QS_ERR_INVALID_ARGUMENT;
    }
    if (rows == 0 || bcols == 0) return QS_OK;
    if (w == NULL || hinv == NULL || q == NULL || err == NULL || loss == NULL) return QS_ERR_NULL_POINTER;
    if (keep != 0 && mask == NULL) return QS_ERR_NULL_POINTER;
    if (needs_records) {
        if (qp == NULL || slot == NULL) return QS_ERR_NULL_POINTER;
        for (i = 0; i < bcols; i++)
            if (slot[i] < 0 || slot[i] >= qp_stride / QS_QPARAM_WORDS) {
                /* rows == 1 may use a stride of exactly one row's records */
                return QS_ERR_INVALID_ARGUMENT;
            }
    }
    return QS_OK;
}

#endif /* QS_VALIDATE_H */
