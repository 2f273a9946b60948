/*
 * qs_cuda.h -- what the kernels of the CUDA library share: 64-bit division by a per-launch constant, block scans
 * and radix-selection steps, and the host-side call prologue and grid sizing.
 *
 * Tensors are row-major 2-D views as in qsparse.h: rows x cols elements, row strides in elements. A "flat" index
 * i = row * cols + col is the element's position in the logical tensor (the stochastic rounding counter, and the
 * order of magnitude-mask ties); it maps to memory through the row strides, so every kernel works on strided views.
 *
 * Rules every kernel here follows: int64_t sizes and indices (a tensor may exceed 2^31 elements); grid-stride loops,
 * so any grid size gives the same result; no global mutable state; results independent of the launch
 * configuration (reductions are min/max/or or integer sums, which do not depend on order).
 */
#ifndef QS_CUDA_H
#define QS_CUDA_H

#include <cuda_runtime.h>
#include <stdint.h>

#include "include/qsparse.h"
#include "qs_format_table.h"
#include "qs_scalar.h"
#include "qs_validate.h"

#define QS_FULL_MASK 0xffffffffu
/* Threads per block of the element-wise and group kernels. */
#define QS_THREADS 256

/* ---- 64-bit division by a per-launch constant ------------------------------------------------------------------ */

/* q = n / d for any 0 <= n < 2^64 and a divisor 1 <= d < 2^63 fixed for a launch, by a multiply-high, an add and
   two shifts (unsigned division by invariant integers, the round-up method with the 65th multiplier bit folded into
   the add). Kernels use it to map flat and unit indices to (row, column) without a 64-bit hardware divide, which
   the GPU emulates in dozens of instructions. */
typedef struct qs_divider {
    uint64_t d, m;
    uint32_t s1, s2;
} qs_divider;

static inline qs_divider qs_divider_make(uint64_t d) {
    qs_divider dv;
    uint32_t l = 0; /* ceil(log2(d)) */
    while (l < 64u && ((uint64_t)1 << l) < d) l++;
    dv.d = d;
    /* m = floor(2^64 * (2^l - d) / d) + 1 < 2^64 */
    dv.m = (uint64_t)((((unsigned __int128)1 << 64) * (((unsigned __int128)1 << l) - d)) / d + 1u);
    dv.s1 = l < 1u ? l : 1u;
    dv.s2 = l > 1u ? l - 1u : 0u;
    return dv;
}

QS_HD uint64_t qs_div(uint64_t n, qs_divider dv) {
#if defined(__CUDA_ARCH__)
    uint64_t t = __umul64hi(dv.m, n);
#else
    uint64_t t = (uint64_t)(((unsigned __int128)dv.m * n) >> 64);
#endif
    return (t + ((n - t) >> dv.s1)) >> dv.s2;
}

/* ---- block scans of 64-bit counts ------------------------------------------------------------------------------ */

/* Inclusive prefix sum of v over the threads of the block in thread order, and the block total in *total.
   blockDim.x a multiple of 32, at most 1024; every thread must call it. */
static __device__ __forceinline__ unsigned long long qs_block_scan(unsigned long long v, unsigned long long *total) {
    __shared__ unsigned long long s_warp[32];
    const int lane = (int)(threadIdx.x & 31u), warp = (int)(threadIdx.x >> 5), nwarps = (int)(blockDim.x >> 5);
    for (int off = 1; off < 32; off <<= 1) {
        unsigned long long t = __shfl_up_sync(QS_FULL_MASK, v, off);
        if (lane >= off) v += t;
    }
    if (lane == 31) s_warp[warp] = v;
    __syncthreads();
    if (warp == 0) {
        unsigned long long w = lane < nwarps ? s_warp[lane] : 0ull;
        for (int off = 1; off < 32; off <<= 1) {
            unsigned long long t = __shfl_up_sync(QS_FULL_MASK, w, off);
            if (lane >= off) w += t;
        }
        s_warp[lane] = w;
    }
    __syncthreads();
    if (warp > 0) v += s_warp[warp - 1];
    *total = s_warp[nwarps - 1];
    __syncthreads(); /* the next call may overwrite s_warp */
    return v;
}

/* The smallest bin d with hist[0] + ... + hist[d] >= k, for 1 <= k <= the sum of all bins (radix selection: d is
   the digit of the k-th smallest key). *below receives hist[0] + ... + hist[d-1]. nbins a multiple of blockDim.x;
   every thread of the block must call it, and every thread gets the same answer. */
static __device__ __forceinline__ int32_t qs_block_find_bin(const unsigned long long *hist, int32_t nbins,
                                                            unsigned long long k, unsigned long long *below) {
    __shared__ int32_t s_bin;
    __shared__ unsigned long long s_below;
    const int32_t per = nbins / (int32_t)blockDim.x, b0 = (int32_t)threadIdx.x * per;
    unsigned long long local = 0ull, total, incl, excl;
    if (threadIdx.x == 0) { /* defined even if the caller broke the precondition; qs_block_scan orders it */
        s_bin = nbins - 1;
        s_below = 0ull;
    }
    for (int32_t b = 0; b < per; b++) local += hist[b0 + b];
    incl = qs_block_scan(local, &total);
    excl = incl - local;
    /* exactly one thread's bins hold the k-th entry: the first whose inclusive count reaches k */
    if (excl < k && k <= incl) {
        unsigned long long c = excl;
        for (int32_t b = 0; b < per; b++) {
            if (k <= c + hist[b0 + b]) {
                s_bin = b0 + b;
                s_below = c;
                break;
            }
            c += hist[b0 + b];
        }
    }
    __syncthreads();
    int32_t d = s_bin;
    *below = s_below;
    __syncthreads(); /* the next call may overwrite s_bin */
    return d;
}

/* ---- host side ------------------------------------------------------------------------------------------------- */

/* Every CUDA entry point, after validating its arguments: select the caller's device (this library links the CUDA
   runtime statically, so its current device is its own, not torch's), clear an error left by an earlier failed
   call, and read the SM count for the grid size. */
static inline int32_t qs_cuda_begin(int32_t device, int32_t *sms) {
    (void)cudaGetLastError();
    if (cudaSetDevice(device) != cudaSuccess) return QS_ERR_CUDA;
    if (cudaDeviceGetAttribute(sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) return QS_ERR_CUDA;
    if (*sms < 1) *sms = 1;
    return QS_OK;
}

/* Blocks for `items` work items of `per_block` each, capped at `per_sm` resident blocks per SM (grid-stride
   loops do the rest), and at least `min_blocks`. */
static inline unsigned int qs_grid(int64_t items, int64_t per_block, int32_t sms, int32_t per_sm,
                                   int64_t min_blocks) {
    int64_t b = (items + per_block - 1) / per_block;
    int64_t cap = (int64_t)sms * per_sm;
    if (b > cap) b = cap;
    if (b < min_blocks) b = min_blocks;
    if (b > 0x7fffffffLL) b = 0x7fffffffLL;
    return (unsigned int)(b < 1 ? 1 : b);
}

/* QS_FAMILY_LUT fake quantization and group choices (qs_quant_lut.cu), arguments already checked. */
int32_t qs_lut_cuda(const qs_quant_params *params, int32_t dtype, int64_t rows, int64_t cols, const void *x,
                    int64_t x_stride, void *y, int64_t y_stride, const uint8_t *mask, int64_t mask_stride,
                    int32_t mask_mode, uint8_t *choice, int64_t choice_stride, int32_t device, void *stream);

/* QS_ERR_CUDA if a launch on the stream failed. */
static inline int32_t qs_cuda_launch_status(void) { return cudaGetLastError() == cudaSuccess ? QS_OK : QS_ERR_CUDA; }

#endif /* QS_CUDA_H */
