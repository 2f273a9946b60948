/*
 * qs_hadamard.cu -- CUDA Walsh-Hadamard transform per group, bit-identical to qs_hadamard_cpu (csrc/qs_hadamard.c).
 *
 * A block per group (grid-stride over groups): the group is loaded into shared memory as binary32, the butterfly
 * stages run in the CPU's order (stride h = 1, 2, ..., g/2; pair p of a stage is (j, j + h) with
 * j = (p / h) * 2h + p % h, (a, b) -> (a + b, a - b)), with a barrier between stages, then each element is scaled by
 * the same binary32 constant and stored. Each value goes through the same operations on the same operands as on
 * the CPU. Groups hold at most QS_HADAMARD_MAX_GROUP elements (32 KiB of shared memory).
 */
#include <cuda_runtime.h>
#include <stdint.h>

#include "include/qsparse.h"
#include "qs_cuda.h"
#include "qs_scalar.h"
#include "qs_validate.h"

template <int DT>
static __global__ void __launch_bounds__(QS_THREADS)
    qs_hadamard_kernel(const void *x, int64_t xs, void *y, int64_t ys, int64_t g, int32_t log2g, qs_divider per_row,
                       int64_t units, float scale) {
    extern __shared__ float buf[];
    for (int64_t u = blockIdx.x; u < units; u += gridDim.x) { /* block-uniform */
        const int64_t row = (int64_t)qs_div((uint64_t)u, per_row);
        const int64_t c0 = (u - row * (int64_t)per_row.d) * g;
        for (int64_t k = threadIdx.x; k < g; k += blockDim.x) buf[k] = qs_load(x, row * xs + c0 + k, DT);
        __syncthreads();
        for (int32_t s = 0; s < log2g; s++) {
            const int64_t h = (int64_t)1 << s;
            for (int64_t p = threadIdx.x; p < g / 2; p += blockDim.x) {
                const int64_t j = ((p >> s) << (s + 1)) + (p & (h - 1));
                const float a = buf[j], b = buf[j + h];
                buf[j] = a + b;
                buf[j + h] = a - b;
            }
            __syncthreads();
        }
        /* every read of the group's x happened before the first barrier: in place is safe */
        for (int64_t k = threadIdx.x; k < g; k += blockDim.x) qs_store(y, row * ys + c0 + k, DT, buf[k] * scale);
        __syncthreads(); /* buf is reused by the next group */
    }
}

int32_t qs_hadamard_cuda(int32_t dtype, int64_t rows, int64_t cols, const void *x, int64_t x_stride, void *y,
                         int64_t y_stride, int64_t group, int32_t device, void *stream) {
    int32_t sms;
    const cudaStream_t st = (cudaStream_t)stream;
    QS_TRY(qs_check_hadamard(dtype, rows, cols, x, x_stride, y, y_stride, group));
    if (rows == 0 || cols == 0) return QS_OK;
    QS_TRY(qs_cuda_begin(device, &sms));
    int32_t log2g = 0;
    while (((int64_t)1 << log2g) < group) log2g++;
    const int64_t units = rows * (cols / group);
    const qs_divider per_row = qs_divider_make((uint64_t)(cols / group));
    const unsigned int grid = qs_grid(units, 1, sms, 16, 1);
    const size_t smem = (size_t)group * sizeof(float);
    const float scale = qs_hadamard_scale(group);
    switch (dtype) {
    case QS_DTYPE_F32:
        qs_hadamard_kernel<QS_DTYPE_F32><<<grid, QS_THREADS, smem, st>>>(x, x_stride, y, y_stride, group, log2g,
                                                                         per_row, units, scale);
        break;
    case QS_DTYPE_F16:
        qs_hadamard_kernel<QS_DTYPE_F16><<<grid, QS_THREADS, smem, st>>>(x, x_stride, y, y_stride, group, log2g,
                                                                         per_row, units, scale);
        break;
    default:
        qs_hadamard_kernel<QS_DTYPE_BF16><<<grid, QS_THREADS, smem, st>>>(x, x_stride, y, y_stride, group, log2g,
                                                                          per_row, units, scale);
        break;
    }
    return qs_cuda_launch_status();
}
