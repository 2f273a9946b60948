/*
 * qs_quant_lut.cu -- CUDA kernels of the lookup-grid formats (QS_FAMILY_LUT) and the bitmod profile, bit-identical
 * to csrc/qs_quant_lut.c: one thread per group runs the scalar functions of csrc/qs_lut.h in the CPU's order
 * (statistics; each grid's squared error in 8 lanes, element j of the group into lane j % 8; the outputs of the
 * chosen grid). Groups are independent, so any grid of threads gives the same bits.
 */
#include <cuda_runtime.h>
#include <stdint.h>

#include "include/qsparse.h"
#include "qs_cuda.h"
#include "qs_format_table.h"
#include "qs_group.h"
#include "qs_lut.h"
#include "qs_scalar.h"
#include "qs_validate.h"

typedef struct qs_lut_job {
    qs_lut_traits lt;
    const void *x;
    void *y;             /* NULL: choices only */
    const uint8_t *mask; /* NULL without a mask */
    uint8_t *choice;     /* NULL: outputs only */
    int64_t x_stride, y_stride, m_stride, c_stride;
    int64_t rows, cols, group, upr, units;
    int32_t dtype, mask_mode;
} qs_lut_job;

static __device__ __forceinline__ float qs_lut_ld(const qs_lut_job &jb, int64_t row, int64_t col) {
    float v = qs_load((const char *)jb.x + row * jb.x_stride * (jb.dtype == QS_DTYPE_F32 ? 4 : 2), col, jb.dtype);
    if (jb.mask_mode == QS_MASK_BEFORE && !jb.mask[row * jb.m_stride + col]) v = 0.0f;
    return jb.lt.f16 ? qs_f16r(v) : v;
}

__global__ void qs_lut_kernel(const qs_lut_job jb) {
    const float ymax = qs_dtype_max(jb.dtype);
    for (int64_t u = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; u < jb.units;
         u += (int64_t)gridDim.x * blockDim.x) {
        const int64_t row = u / jb.upr, k = u % jb.upr, c0 = k * jb.group;
        const int64_t n = jb.cols - c0 < jb.group ? jb.cols - c0 : jb.group;
        float amax = 0.0f, vmin = qs_u2f(QS_F32_INF_BITS), vmax = -qs_u2f(QS_F32_INF_BITS); /* n >= 1 */
        int32_t bad = 0, choice = 0, c;
        qs_lut_gp gp;
        for (int64_t j = 0; j < n; j++) {
            const float v = qs_lut_ld(jb, row, c0 + j), a = qs_abs(v);
            if (!qs_isfinite(v)) bad = 1;
            amax = a > amax ? a : amax;
            vmin = v < vmin ? v : vmin;
            vmax = v > vmax ? v : vmax;
        }
        gp = qs_lut_params(&jb.lt, &jb.lt.g[0], amax, vmin, vmax);
        if (bad) {
            gp.mode = 2;
        } else if (jb.lt.count > 1) {
            float best = jb.lt.f16 ? 1e3f : qs_u2f(QS_F32_INF_BITS);
            choice = jb.lt.f16 ? QS_LUT_NO_CHOICE : 0;
            for (c = 0; c < jb.lt.count; c++) {
                const qs_lut_gp p = qs_lut_params(&jb.lt, &jb.lt.g[c], amax, vmin, vmax);
                float lanes[QS_LUT_LANES] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
                double exact = 0.0;
                if (p.mode != 0) {
                    choice = 0;
                    break;
                }
                for (int64_t j = 0; j < n; j++) {
                    const float v = qs_lut_ld(jb, row, c0 + j);
                    const float e = qs_lut_sqerr(qs_lut_elem(v, &jb.lt, &jb.lt.g[c], &p, ymax), v, jb.lt.f16);
                    if (jb.lt.f16) exact += (double)e;
                    else lanes[j & 7] += e;
                }
                const float total = qs_lut_total(lanes, exact, n, jb.lt.f16);
                if (total < best) {
                    best = total;
                    choice = c;
                    gp = p;
                }
            }
        }
        if (jb.choice != NULL) jb.choice[row * jb.c_stride + k] = (uint8_t)choice;
        if (jb.y == NULL) continue;
        char *yr = (char *)jb.y + row * jb.y_stride * (jb.dtype == QS_DTYPE_F32 ? 4 : 2);
        for (int64_t j = 0; j < n; j++) {
            float out;
            if (gp.mode == 2) out = qs_qnan();
            else if (gp.mode == 1 || choice == QS_LUT_NO_CHOICE) out = 0.0f;
            else out = qs_lut_elem(qs_lut_ld(jb, row, c0 + j), &jb.lt, &jb.lt.g[choice], &gp, ymax);
            if (jb.mask_mode != QS_MASK_NONE && !jb.mask[row * jb.m_stride + c0 + j]) out = 0.0f;
            qs_store(yr, c0 + j, jb.dtype, out);
        }
    }
}

/* QS_FAMILY_LUT calls of qs_fake_quant_cuda (y != NULL) and qs_group_choice_cuda (choice != NULL); arguments
   checked. */
int32_t qs_lut_cuda(const qs_quant_params *params, int32_t dtype, int64_t rows, int64_t cols, const void *x,
                    int64_t x_stride, void *y, int64_t y_stride, const uint8_t *mask, int64_t mask_stride,
                    int32_t mask_mode, uint8_t *choice, int64_t choice_stride, int32_t device, void *stream) {
    qs_lut_job jb;
    int32_t sms;
    if (rows == 0 || cols == 0) return QS_OK;
    QS_TRY(qs_cuda_begin(device, &sms));
    memset(&jb, 0, sizeof jb);
    QS_TRY(qs_lut_traits_make(params, &jb.lt));
    jb.x = x;
    jb.y = y;
    jb.mask = mask_mode != QS_MASK_NONE ? mask : NULL;
    jb.choice = choice;
    jb.x_stride = x_stride;
    jb.y_stride = y_stride;
    jb.m_stride = mask_mode != QS_MASK_NONE ? mask_stride : 0;
    jb.c_stride = choice_stride;
    jb.rows = rows;
    jb.cols = cols;
    jb.group = params->group_size > 0 && params->group_size < cols ? params->group_size : cols;
    jb.upr = (cols + jb.group - 1) / jb.group;
    jb.units = rows * jb.upr;
    jb.dtype = dtype;
    jb.mask_mode = mask_mode;
    qs_lut_kernel<<<qs_grid(jb.units, 128, sms, 16, 1), 128, 0, (cudaStream_t)stream>>>(jb);
    return qs_cuda_launch_status();
}

int32_t qs_group_choice_cuda(const qs_quant_params *params, int32_t dtype, int64_t rows, int64_t cols, const void *x,
                             int64_t x_stride, const uint8_t *mask, int64_t mask_stride, int32_t mask_mode,
                             uint8_t *choice, int64_t choice_stride, int32_t device, void *stream) {
    qs_kernel_traits kt;
    QS_TRY(qs_check_group_choice(params, dtype, rows, cols, x, x_stride, mask, mask_stride, mask_mode, choice,
                                 choice_stride, &kt));
    return qs_lut_cuda(params, dtype, rows, cols, x, x_stride, NULL, 0, mask, mask_stride, mask_mode, choice,
                       choice_stride, device, stream);
}
