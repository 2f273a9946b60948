/*
 * qs_gptq.cu -- CUDA versions of the qparams entry points and of the GPTQ / SparseGPT block (qsparse.h), bit-identical
 * to the CPU library: every value comes from the host+device functions of csrc/qs_group.h, csrc/qs_lut.h and
 * csrc/qs_qparams.h, evaluated in the CPU's order.
 *
 *   qs_gptq_block_cuda: one thread per row runs qs_gptq_row over the block (rows are independent); w, mask at
 *     general 2-D strides (pass a column-major block, w_rs = 1, for coalesced loads across the threads of a warp).
 *   qs_fake_quant_qparams_cuda: one thread per element (grid-stride), its group's record read from qp.
 *   qs_quant_qparams_cuda: one thread per group, min/max statistics as order-free integer reductions.
 */
#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

#include "include/qsparse.h"
#include "qs_cuda.h"
#include "qs_format_table.h"
#include "qs_group.h"
#include "qs_lut.h"
#include "qs_gptq.h"
#include "qs_scalar.h"
#include "qs_validate.h"

/* ---- the block ---------------------------------------------------------------------------------------------------- */

static __global__ void qs_gptq_kernel(qs_gptq_job jb, const qs_kernel_traits kt, const qs_lut_traits lt,
                                      int32_t quantize) {
    jb.kt = quantize ? &kt : NULL;
    jb.lt = &lt;
    for (int64_t r = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; r < jb.rows; r += (int64_t)gridDim.x * blockDim.x)
        qs_gptq_row(&jb, r, jb.w + r * jb.w_rs, jb.w_cs);
}

int32_t qs_gptq_block_cuda(const qs_quant_params *params, int64_t rows, int64_t bcols, float *w, int64_t w_rs,
                           int64_t w_cs, const float *hinv, int64_t h_stride, const int32_t *qp, int64_t qp_stride,
                           const int64_t *slot, uint8_t *mask, int64_t m_rs, int64_t m_cs, int32_t keep, int32_t group,
                           float *q, int64_t q_stride, float *err, int64_t e_stride, double *loss, int32_t device,
                           void *stream) {
    qs_kernel_traits kt;
    qs_lut_traits lt;
    qs_gptq_job jb;
    int32_t sms, status;
    int64_t *dslot = NULL;
    const cudaStream_t st = (cudaStream_t)stream;
    memset(&kt, 0, sizeof kt);
    memset(&lt, 0, sizeof lt);
    QS_TRY(qs_check_gptq_block(params, rows, bcols, w, w_rs, w_cs, hinv, h_stride, qp, qp_stride, slot, mask, m_rs,
                               m_cs, keep, group, q, q_stride, err, e_stride, loss, &kt, &lt));
    if (rows == 0 || bcols == 0) return QS_OK;
    QS_TRY(qs_cuda_begin(device, &sms));
    /* kt, lt and the slots are replaced on the device side (the kernel's copies) */
    qs_gptq_job_fill(&jb, params != NULL ? &kt : NULL, &lt, rows, bcols, w, w_rs, w_cs, hinv, h_stride, qp, qp_stride,
                     NULL, mask, m_rs, m_cs, keep, group, q, q_stride, err, e_stride, loss);
    if (params != NULL && kt.family != QS_FAMILY_FLOAT) {
        /* the slots are host memory (validated there); the kernel reads a device copy */
        const size_t bytes = (size_t)bcols * sizeof(int64_t);
        if (cudaMallocAsync((void **)&dslot, bytes, st) != cudaSuccess) return QS_ERR_CUDA;
        if (cudaMemcpyAsync(dslot, slot, bytes, cudaMemcpyHostToDevice, st) != cudaSuccess) {
            (void)cudaFreeAsync(dslot, st);
            return QS_ERR_CUDA;
        }
        jb.slot = dslot;
    }
    qs_gptq_kernel<<<qs_grid(rows, 128, sms, 8, 1), 128, 0, st>>>(jb, kt, lt, params != NULL);
    status = qs_cuda_launch_status();
    if (dslot != NULL && cudaFreeAsync(dslot, st) != cudaSuccess) status = QS_ERR_CUDA;
    return status;
}

/* ---- quantizing with records -------------------------------------------------------------------------------------- */

typedef struct qs_qp_job {
    qs_kernel_traits kt;
    qs_lut_traits lt;
    qs_rng rng;
    const void *x;
    void *y;
    const uint8_t *mask;
    const int32_t *qp;
    int32_t *qp_out;
    int64_t x_stride, y_stride, m_stride, qp_stride;
    int64_t rows, cols, group, upr;
    int32_t dtype, mask_mode, per_tensor, elementwise;
    float tscale;
} qs_qp_job;

/* The arguments of a qparams call (checked) in a job; kt (and lt) are the caller's. */
static void qs_qp_job_fill(qs_qp_job *jb, const qs_quant_params *params, int32_t dtype, int64_t rows, int64_t cols,
                           const void *x, int64_t x_stride, void *y, int64_t y_stride, const uint8_t *mask,
                           int64_t mask_stride, int32_t mask_mode, const int32_t *qp_in, int32_t *qp_out,
                           int64_t qp_stride) {
    jb->rng = qs_rng_make(params->seed);
    jb->x = x;
    jb->y = y;
    jb->mask = mask_mode != QS_MASK_NONE ? mask : NULL;
    jb->qp = qp_in;
    jb->qp_out = qp_out;
    jb->x_stride = x_stride;
    jb->y_stride = y_stride;
    jb->m_stride = mask_stride;
    jb->qp_stride = qp_stride;
    jb->rows = rows;
    jb->cols = cols;
    jb->group = params->group_size > 0 && params->group_size < cols ? params->group_size : cols;
    jb->dtype = dtype;
    jb->mask_mode = mask_mode;
    jb->per_tensor = params->group_size == QS_GROUP_TENSOR;
}

static __global__ void qs_fq_qparams_kernel(const qs_qp_job jb) {
    const float ymax = qs_dtype_max(jb.dtype);
    const int32_t sto = jb.kt.rounding == QS_ROUND_STOCHASTIC;
    const size_t es = jb.dtype == QS_DTYPE_F32 ? 4u : 2u;
    const int64_t n = jb.rows * jb.cols;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t row = i / jb.cols, col = i % jb.cols;
        const int32_t *rec = jb.per_tensor ? jb.qp : jb.qp + row * jb.qp_stride + QS_QPARAM_WORDS * (col / jb.group);
        const int32_t keep = jb.mask_mode == QS_MASK_NONE || jb.mask[row * jb.m_stride + col];
        float v = qs_load((const char *)jb.x + row * jb.x_stride * es, col, jb.dtype);
        float y;
        if (jb.mask_mode == QS_MASK_BEFORE && !keep) v = 0.0f;
        y = qs_qp_quant(v, rec, &jb.kt, &jb.lt, sto ? qs_rand24(jb.rng, (uint64_t)i) : 0u, ymax);
        if (!keep) y = 0.0f;
        qs_store((char *)jb.y + row * jb.y_stride * es, col, jb.dtype, y);
    }
}

int32_t qs_fake_quant_qparams_cuda(const qs_quant_params *params, int32_t dtype, int64_t rows, int64_t cols,
                                   const void *x, int64_t x_stride, void *y, int64_t y_stride, const uint8_t *mask,
                                   int64_t mask_stride, int32_t mask_mode, const int32_t *qp, int64_t qp_stride,
                                   int32_t device, void *stream) {
    qs_qp_job jb;
    int32_t sms;
    memset(&jb, 0, sizeof jb);
    QS_TRY(qs_check_qparams(params, dtype, rows, cols, x, x_stride, y, y_stride, mask, mask_stride, mask_mode, qp,
                            qp_stride, &jb.kt));
    if (rows == 0 || cols == 0) return QS_OK;
    if (jb.kt.family == QS_FAMILY_LUT) QS_TRY(qs_lut_traits_make(params, &jb.lt));
    QS_TRY(qs_cuda_begin(device, &sms));
    qs_qp_job_fill(&jb, params, dtype, rows, cols, x, x_stride, y, y_stride, mask, mask_stride, mask_mode, qp,
                   NULL, qp_stride);
    qs_fq_qparams_kernel<<<qs_grid(rows * cols, QS_THREADS, sms, 8, 1), QS_THREADS, 0, (cudaStream_t)stream>>>(jb);
    return qs_cuda_launch_status();
}

/* ---- fitting records ---------------------------------------------------------------------------------------------- */

static __global__ void qs_qparams_kernel(const qs_qp_job jb) {
    const size_t es = jb.dtype == QS_DTYPE_F32 ? 4u : 2u;
    const int64_t units = jb.rows * jb.upr;
    qs_kernel_traits kt = jb.kt;
    kt.tscale = jb.tscale;
    for (int64_t u = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; u < units; u += (int64_t)gridDim.x * blockDim.x) {
        const int64_t row = u / jb.upr, k = u % jb.upr, c0 = k * jb.group;
        const int64_t n = jb.cols - c0 < jb.group ? jb.cols - c0 : jb.group;
        const char *xr = (const char *)jb.x + row * jb.x_stride * es;
        qs_range r = qs_range_empty();
        qs_gparams g;
        for (int64_t j = 0; j < n; j++) {
            uint32_t b = qs_f2u(qs_load(xr, c0 + j, jb.dtype));
            if (jb.mask_mode == QS_MASK_BEFORE && !jb.mask[row * jb.m_stride + c0 + j]) b = 0u;
            const int32_t key = qs_order_key(b);
            const uint32_t a = b & ~QS_F32_SIGN;
            r.kmin = key < r.kmin ? key : r.kmin;
            r.kmax = key > r.kmax ? key : r.kmax;
            r.amax_bits = a > r.amax_bits ? a : r.amax_bits;
        }
        g = qs_group_params(&kt, r, kt.family);
        if (jb.elementwise) qs_qp_store(jb.qp_out + row * jb.qp_stride, 0, 0, 0.0f, 0.0f, 0.0f); /* as the CPU's */
        else qs_qp_store_g(jb.qp_out + row * jb.qp_stride + QS_QPARAM_WORDS * k, &g);
    }
}

int32_t qs_quant_qparams_cuda(const qs_quant_params *params, int32_t dtype, int64_t rows, int64_t cols, const void *x,
                              int64_t x_stride, const uint8_t *mask, int64_t mask_stride, int32_t mask_mode,
                              const float *tensor_scale, int32_t *qp, int64_t qp_stride, int32_t device,
                              void *stream) {
    qs_qp_job jb;
    int32_t sms;
    memset(&jb, 0, sizeof jb);
    QS_TRY(qs_check_qparams(params, dtype, rows, cols, x, x_stride, x, x_stride, mask, mask_stride, mask_mode, qp,
                            qp_stride, &jb.kt));
    /* fitted here: min/max statistics of groups and rows; the mse search, lookup grids, per-tensor calls and an NVFP4
       tensor scale that is not given are the CPU library's */
    if (jb.kt.observer != QS_OBSERVER_MINMAX || jb.kt.family == QS_FAMILY_LUT || params->group_size == QS_GROUP_TENSOR)
        return QS_ERR_UNSUPPORTED;
    if ((jb.kt.family == QS_FAMILY_SCALED || jb.kt.family == QS_FAMILY_SCALED_FPQ) &&
        jb.kt.scale_mode == QS_SCALE_MODE_E4M3 && tensor_scale == NULL)
        return QS_ERR_UNSUPPORTED;
    if (rows == 0 || cols == 0) return QS_OK;
    QS_TRY(qs_cuda_begin(device, &sms));
    qs_qp_job_fill(&jb, params, dtype, rows, cols, x, x_stride, NULL, 0, mask, mask_stride, mask_mode, NULL, qp,
                   qp_stride);
    /* element-wise (QS_FAMILY_FLOAT, the element rows of QS_FAMILY_LLMQ): one zero record per row */
    jb.elementwise = jb.kt.family == QS_FAMILY_FLOAT || (jb.kt.family == QS_FAMILY_LLMQ && !jb.kt.lq_block);
    if (jb.elementwise) jb.group = cols;
    jb.upr = (cols + jb.group - 1) / jb.group;
    jb.tscale = tensor_scale != NULL ? *tensor_scale : 0.0f;
    qs_qparams_kernel<<<qs_grid(rows * jb.upr, 128, sms, 16, 1), 128, 0, (cudaStream_t)stream>>>(jb);
    return qs_cuda_launch_status();
}
