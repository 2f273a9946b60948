/*
 * qs_quant.cu -- CUDA fake quantization: y = dequantize(quantize(x)) in groups along each row, bit-identical to
 * qs_fake_quant_cpu (csrc/qs_quant.c), which is the reference these kernels are tested against.
 *
 * x, y: rows x cols, row strides x_stride / y_stride (elements), dtype f32 | f16 | bf16, computed in binary32.
 * mask: rows x cols uint8 (0 = pruned), row stride mask_stride, used per qs_mask_mode.
 *
 * Units are the CPU library's: groups of G consecutive elements of a row (a partial last group is a group of its
 * own), a whole row for QS_GROUP_ROW (or G >= cols), the whole tensor for QS_GROUP_TENSOR; element-wise formats
 * (QS_FAMILY_FLOAT, the element rows of QS_FAMILY_LLMQ) have no units; the NVFP4 tensor scale (QS_SCALE_MODE_E4M3) comes from a first pass over the
 * whole tensor (qs_fq_tensor_stats, read through jb.tstats). The group statistics (max |x| bits, or order-key min
 * and max for int{b}_asym,
 * after masking with QS_MASK_BEFORE), the group parameters and the element math are the CPU's own code:
 * csrc/qs_group.h and csrc/qs_scalar.h. The build uses --fmad=false and IEEE division, so every operation rounds as
 * on the CPU.
 *
 * Kernels, chosen on the host by the unit size G:
 *   - qs_fq_warp_kernel (G <= 1024): a segment of S lanes of one warp per group, each lane holding K consecutive
 *     elements of the group in registers (element j on lane j / K, slot j % K; K is at least 16 bytes of
 *     elements, S the power of two >= G / K). Loads and stores are 16-byte vectors when the layout allows
 *     (jb.vec_ok), so a warp moves whole cache lines. Statistics by warp shuffles within the segment, then
 *     quantize from registers: x is read once, and each lane's share of the per-group work (span, shuffles,
 *     group constants) is spread over K elements. Lanes with K < 8 take R = 8 / K groups at a time.
 *   - qs_fq_block_kernel (G > 1024, at least one group per SM): a block per group, the first QS_BLOCK_CACHE
 *     elements per thread kept in registers, the rest read twice.
 *   - qs_fq_tile_range_kernel + qs_fq_tile_apply_kernel (G > 1024, fewer groups than SMs): groups split into
 *     tiles of QS_TILE elements spread over the whole GPU; per-group statistics merged with integer atomics (min
 *     and max: order-independent) into scratch memory, then applied.
 *   - qs_fq_flat_kernel: element-wise formats, and the second phase of QS_GROUP_TENSOR, whose statistics come from
 *     qs_fq_flat_range_kernel. Flat index i = row * cols + col; 16-byte vector loads when every tensor is
 *     contiguous and aligned.
 * In place (y == x) is safe: every element is read (statistics and value) before its group's first write, and
 * each element is written by the thread that read it.
 */
#include <cuda_runtime.h>
#include <stdint.h>

#include "include/qsparse.h"
#include "qs_cuda.h"
#include "qs_format_table.h"
#include "qs_group.h"
#include "qs_scalar.h"
#include "qs_validate.h"

/* Largest group of the warp kernel: 32 lanes x 32 registers. */
#define QS_WARP_MAX_GROUP 1024
/* Elements per thread the block kernel keeps in registers (QS_THREADS x 16 = 4096 per group). */
#define QS_BLOCK_CACHE 16
/* Elements per tile of the tiled kernels. */
#define QS_TILE (QS_THREADS * QS_BLOCK_CACHE)

/* Everything a fake-quant kernel needs, passed by value. */
typedef struct qs_fq_job {
    qs_kernel_traits kt;
    qs_rng rng;
    const void *x;
    void *y;
    const uint8_t *mask;
    int64_t x_stride, y_stride, m_stride; /* elements */
    int64_t rows, cols;
    int64_t group;         /* G: elements per unit, 1 <= G <= cols */
    int64_t units;         /* rows * units per row */
    qs_divider upr;        /* units per row */
    qs_divider cols_div;   /* cols (flat kernels) */
    qs_divider tpu;        /* tiles per unit (tiled kernels) */
    int32_t mask_mode;     /* qs_mask_mode */
    int32_t seg_log2;      /* warp kernel: log2 of the lanes per group */
    int32_t vec_ok;        /* warp kernel: x, y, their row strides and G * element size are multiples of 16 bytes */
    int32_t contiguous;    /* flat kernels: every row stride equals cols (or one row), so memory index == flat */
    const int32_t *tstats; /* QS_SCALE_MODE_E4M3: the statistics of the whole tensor (its tensor scale), else NULL */
} qs_fq_job;

/* ---- group statistics: qs_range of qs_group.h, reduced over lanes, blocks and atomics (min/max reductions do not
   depend on their order, so every split gives the CPU's range) -------------------------------------------------- */

/* Adds the bit pattern b of one value (after masking) to r. */
template <int FAM>
static __device__ __forceinline__ void qs_range_add(qs_range *r, uint32_t b) {
    if constexpr (FAM == QS_FAMILY_INT_ASYM) {
        const int32_t k = qs_order_key(b);
        r->kmin = k < r->kmin ? k : r->kmin;
        r->kmax = k > r->kmax ? k : r->kmax;
    } else {
        const uint32_t a = b & ~QS_F32_SIGN;
        r->amax_bits = a > r->amax_bits ? a : r->amax_bits;
    }
}

template <int FAM>
static __device__ __forceinline__ void qs_range_merge(qs_range *into, int32_t kmin, int32_t kmax, uint32_t amax_bits) {
    if constexpr (FAM == QS_FAMILY_INT_ASYM) {
        into->kmin = kmin < into->kmin ? kmin : into->kmin;
        into->kmax = kmax > into->kmax ? kmax : into->kmax;
    } else {
        into->amax_bits = amax_bits > into->amax_bits ? amax_bits : into->amax_bits;
    }
}

/* Merges the ranges of the aligned groups of `width` lanes (a power of two <= 32): every lane of a group ends with
   the group's range. Only the fields the family uses travel. All 32 lanes of the warp must call it. */
template <int FAM>
static __device__ __forceinline__ void qs_range_reduce_lanes(qs_range *r, int width) {
    for (int off = width >> 1; off > 0; off >>= 1) {
        if constexpr (FAM == QS_FAMILY_INT_ASYM) {
            const int32_t kmin = __shfl_xor_sync(QS_FULL_MASK, r->kmin, off);
            const int32_t kmax = __shfl_xor_sync(QS_FULL_MASK, r->kmax, off);
            qs_range_merge<FAM>(r, kmin, kmax, 0u);
        } else {
            qs_range_merge<FAM>(r, 0, 0, __shfl_xor_sync(QS_FULL_MASK, r->amax_bits, off));
        }
    }
}

/* The range of the whole block, returned to every thread. blockDim.x a multiple of 32, at most 1024; every thread
   of the block must call it (it synchronizes the block). */
template <int FAM>
static __device__ __forceinline__ qs_range qs_range_reduce_block(qs_range r) {
    __shared__ int32_t s_min[32], s_max[32];
    __shared__ uint32_t s_amax[32];
    const int lane = (int)(threadIdx.x & 31u), warp = (int)(threadIdx.x >> 5), nwarps = (int)(blockDim.x >> 5);
    qs_range_reduce_lanes<FAM>(&r, 32);
    if (lane == 0) {
        s_min[warp] = r.kmin;
        s_max[warp] = r.kmax;
        s_amax[warp] = r.amax_bits;
    }
    __syncthreads();
    r = qs_range_empty();
    for (int w = 0; w < nwarps; w++) qs_range_merge<FAM>(&r, s_min[w], s_max[w], s_amax[w]);
    __syncthreads(); /* the next call may overwrite the shared slots */
    return r;
}

/* A range kept in scratch memory, 3 words {kmin, kmax, amax_bits} per unit, merged into with atomics. */
template <int FAM>
static __device__ __forceinline__ void qs_range_atomic_merge(int32_t *slot, qs_range r) {
    if constexpr (FAM == QS_FAMILY_INT_ASYM) {
        atomicMin(&slot[0], r.kmin);
        atomicMax(&slot[1], r.kmax);
    } else {
        atomicMax((unsigned int *)&slot[2], r.amax_bits);
    }
}

static __device__ __forceinline__ qs_range qs_range_load(const int32_t *slot) {
    qs_range r;
    r.kmin = slot[0];
    r.kmax = slot[1];
    r.amax_bits = (uint32_t)slot[2];
    return r;
}

/* A group's constants (qs_group_params), with the tensor scale of QS_SCALE_MODE_E4M3 read from jb.tstats. */
template <int FAM>
static __device__ __forceinline__ qs_gparams qs_fq_params(const qs_fq_job &jb, qs_range rg) {
    if constexpr (FAM == QS_FAMILY_SCALED || FAM == QS_FAMILY_SCALED_FPQ) {
        if (jb.tstats != NULL) {
            qs_kernel_traits kt = jb.kt;
            kt.tscale = qs_tensor_scale(&jb.kt, qs_range_load(jb.tstats));
            return qs_group_params(&kt, rg, FAM);
        }
    }
    if constexpr (FAM == QS_FAMILY_LLMQ) { /* the profile's blocks of zeros: jb.tstats = {min nonzero, -, max} */
        if (jb.tstats != NULL && rg.amax_bits == 0u) {
            qs_kernel_traits kt = jb.kt;
            kt.lq_zbits = qs_lq_zero_bits((uint32_t)jb.tstats[0], (uint32_t)jb.tstats[2]);
            return qs_group_params(&kt, rg, FAM);
        }
    }
    return qs_group_params(&jb.kt, rg, FAM);
}

/* The output of one element (qs_group.h's math, masked as apply_span() of qs_quant.c does). v is the stored value,
   keep its mask bit (ignored with QS_MASK_NONE), u24 its random bits (stochastic rounding only). */
template <int DT, int FAM>
static __device__ __forceinline__ float qs_fq_output(float v, bool keep, int32_t mm, uint32_t u24,
                                                     const qs_gparams &g, const qs_kernel_traits &kt) {
    float y;
    if (g.mode != QS_GP_QUANT) {
        y = qs_special_elem(v, &g);
    } else {
        if (mm == QS_MASK_BEFORE) v = qs_select(keep, v, 0.0f);
        y = qs_quant_elem(v, u24, &g, &kt, FAM, kt.rounding, qs_dtype_max(DT));
    }
    if (mm != QS_MASK_NONE) y = qs_select(keep, y, 0.0f);
    return y;
}

/* apply_span()'s stores: a quantized group of a grid family through qs_store_notnan (its values are finite: its
   statistics saw no NaN or Inf), everything else through qs_store. */
template <int DT, int FAM>
static __device__ __forceinline__ void qs_fq_store(void *p, int64_t i, const qs_gparams &g, float y) {
    if (FAM != QS_FAMILY_FLOAT && FAM != QS_FAMILY_LLMQ && g.mode == QS_GP_QUANT) qs_store_notnan(p, i, DT, y);
    else qs_store(p, i, DT, y);
}

/* Quantizes the element at flat index `flat`, stored at x[xo], mask[mo], written to y[yo]. */
template <int DT, int FAM>
static __device__ __forceinline__ void qs_fq_element(const qs_fq_job &jb, const qs_gparams &g, uint64_t flat,
                                                     int64_t xo, int64_t yo, int64_t mo) {
    const float v = qs_load(jb.x, xo, DT);
    const bool keep = jb.mask_mode == QS_MASK_NONE || jb.mask[mo] != 0;
    const uint32_t u24 = (jb.kt.rounding == QS_ROUND_STOCHASTIC && g.mode == QS_GP_QUANT) ? qs_rand24(jb.rng, flat) : 0u;
    qs_fq_store<DT, FAM>(jb.y, yo, g, qs_fq_output<DT, FAM>(v, keep, jb.mask_mode, u24, g, jb.kt));
}

/* The bit pattern a value contributes to the statistics: QS_MASK_BEFORE reads masked positions as +0.0. */
static __device__ __forceinline__ uint32_t qs_stat_bits(float v, bool keep, int32_t mm) {
    return (mm == QS_MASK_BEFORE && !keep) ? 0u : qs_f2u(v);
}

/* Row, first column and length of unit u. */
static __device__ __forceinline__ void qs_unit_span(const qs_fq_job &jb, int64_t u, int64_t *row, int64_t *c0,
                                                    int64_t *n) {
    const int64_t q = (int64_t)qs_div((uint64_t)u, jb.upr);
    *row = q;
    *c0 = (u - q * (int64_t)jb.upr.d) * jb.group;
    *n = jb.cols - *c0 < jb.group ? jb.cols - *c0 : jb.group;
}

/* Element e of a 16-byte vector of DT values (little-endian lanes; e is a compile-time constant after unrolling). */
template <int DT>
static __device__ __forceinline__ float qs_vec_get(const uint4 &w, int e) {
    const uint32_t words[4] = {w.x, w.y, w.z, w.w};
    if constexpr (DT == QS_DTYPE_F32) {
        return qs_u2f(words[e]);
    } else {
        const uint16_t h = (uint16_t)(words[e >> 1] >> (16 * (e & 1)));
        return DT == QS_DTYPE_F16 ? qs_f16_to_f32(h) : qs_bf16_to_f32(h);
    }
}

/* The stored bits of output y (the low 16 for f16/bf16), through the same store as the scalar path. */
template <int DT, int FAM>
static __device__ __forceinline__ uint32_t qs_vec_bits(const qs_gparams &g, float y) {
    if constexpr (DT == QS_DTYPE_F32) {
        float out;
        qs_fq_store<DT, FAM>(&out, 0, g, y);
        return qs_f2u(out);
    } else {
        uint16_t out;
        qs_fq_store<DT, FAM>(&out, 0, g, y);
        return out;
    }
}

/* 16 / element size outputs y[0..] packed into one 16-byte vector, each stored as qs_fq_store would store it. */
template <int DT, int FAM>
static __device__ __forceinline__ uint4 qs_vec_pack(const qs_gparams &g, const float *y) {
    uint32_t out[4] = {0u, 0u, 0u, 0u};
#pragma unroll
    for (int e = 0; e < (DT == QS_DTYPE_F32 ? 4 : 8); e++) {
        const uint32_t b = qs_vec_bits<DT, FAM>(g, y[e]);
        if constexpr (DT == QS_DTYPE_F32) out[e] = b;
        else out[e >> 1] |= b << (16 * (e & 1));
    }
    return make_uint4(out[0], out[1], out[2], out[3]);
}

/* ---- groups of at most QS_WARP_MAX_GROUP elements: a warp segment per group ----------------------------------- */

template <int DT, int FAM, int K>
static __global__ void __launch_bounds__(QS_THREADS) qs_fq_warp_kernel(const qs_fq_job jb) {
    constexpr int R = K >= 8 ? 1 : 8 / K;                 /* groups per segment per iteration */
    constexpr int VEC = DT == QS_DTYPE_F32 ? 4 : 8;       /* elements per 16 bytes */
    constexpr int NV = K % VEC == 0 ? K / VEC : 0;        /* 16-byte vectors per lane, if K allows */
    constexpr int ESIZE = DT == QS_DTYPE_F32 ? 4 : 2;
    constexpr uint32_t ALL = K == 32 ? 0xffffffffu : (1u << K) - 1u; /* every slot holds an element */
    const int lane = (int)(threadIdx.x & 31u);
    const int S = 1 << jb.seg_log2;
    const int seg = lane >> jb.seg_log2, sl = lane & (S - 1);
    const int64_t segs = 32 >> jb.seg_log2;
    const int64_t per_warp = segs * R;
    const int64_t warp = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int64_t nwarps = ((int64_t)gridDim.x * blockDim.x) >> 5;
    const int32_t mm = jb.mask_mode;
    const int64_t j0 = (int64_t)sl * K; /* this lane's first element of its group */

    /* The loop condition is warp-uniform, so the shuffles below always run on the full warp. */
    for (int64_t base = warp * per_warp; base < jb.units; base += nwarps * per_warp) {
        float v[R][K];
        uint32_t keep[R], valid[R]; /* bit k: slot k's mask bit, slot k holds an element */
        int64_t row[R], c0[R];
        qs_range rg[R];
#pragma unroll
        for (int r = 0; r < R; r++) {
            const int64_t u = base + r * segs + seg;
            int64_t n = 0;
            row[r] = 0;
            c0[r] = 0;
            if (u < jb.units) qs_unit_span(jb, u, &row[r], &c0[r], &n);
            rg[r] = qs_range_empty();
            keep[r] = 0u;
            valid[r] = 0u;
            const int64_t xo = row[r] * jb.x_stride + c0[r] + j0, mo = row[r] * jb.m_stride + c0[r] + j0;
            bool vec = false;
            if constexpr (NV > 0) {
                vec = jb.vec_ok && j0 + K <= n;
                if (vec) {
#pragma unroll
                    for (int q = 0; q < NV; q++) {
                        const uint4 w = *(const uint4 *)((const char *)jb.x + (xo + q * VEC) * ESIZE);
#pragma unroll
                        for (int e = 0; e < VEC; e++) v[r][q * VEC + e] = qs_vec_get<DT>(w, e);
                    }
                    valid[r] = ALL;
                }
            }
            if (!vec) {
#pragma unroll
                for (int k = 0; k < K; k++) {
                    v[r][k] = 0.0f;
                    if (j0 + k < n) {
                        v[r][k] = qs_load(jb.x, xo + k, DT);
                        valid[r] |= 1u << k;
                    }
                }
            }
#pragma unroll
            for (int k = 0; k < K; k++) {
                if ((valid[r] >> k) & 1u) {
                    const bool kp = mm == QS_MASK_NONE || jb.mask[mo + k] != 0;
                    keep[r] |= (uint32_t)kp << k;
                    qs_range_add<FAM>(&rg[r], qs_stat_bits(v[r][k], kp, mm));
                }
            }
        }
#pragma unroll
        for (int r = 0; r < R; r++) qs_range_reduce_lanes<FAM>(&rg[r], S);
#pragma unroll
        for (int r = 0; r < R; r++) {
            if (valid[r] == 0u) continue;
            const qs_gparams g = qs_fq_params<FAM>(jb, rg[r]);
            const uint64_t flat0 = (uint64_t)row[r] * (uint64_t)jb.cols + (uint64_t)c0[r] + (uint64_t)j0;
            const int64_t yo = row[r] * jb.y_stride + c0[r] + j0;
            float y[K];
#pragma unroll
            for (int k = 0; k < K; k++) {
                const uint32_t u24 = (jb.kt.rounding == QS_ROUND_STOCHASTIC && g.mode == QS_GP_QUANT)
                                         ? qs_rand24(jb.rng, flat0 + (uint64_t)k)
                                         : 0u;
                y[k] = qs_fq_output<DT, FAM>(v[r][k], (keep[r] >> k) & 1u, mm, u24, g, jb.kt);
            }
            bool vec = false;
            if constexpr (NV > 0) {
                vec = jb.vec_ok && valid[r] == ALL;
                if (vec) {
#pragma unroll
                    for (int q = 0; q < NV; q++)
                        *(uint4 *)((char *)jb.y + (yo + q * VEC) * ESIZE) = qs_vec_pack<DT, FAM>(g, &y[q * VEC]);
                }
            }
            if (!vec) {
#pragma unroll
                for (int k = 0; k < K; k++)
                    if ((valid[r] >> k) & 1u) qs_fq_store<DT, FAM>(jb.y, yo + k, g, y[k]);
            }
        }
    }
}

/* ---- large groups: a block per group -------------------------------------------------------------------------- */

template <int DT, int FAM>
static __global__ void __launch_bounds__(QS_THREADS) qs_fq_block_kernel(const qs_fq_job jb) {
    const int64_t tid = threadIdx.x;
    const int32_t mm = jb.mask_mode;
    for (int64_t u = blockIdx.x; u < jb.units; u += gridDim.x) { /* block-uniform */
        int64_t row, c0, n;
        float v[QS_BLOCK_CACHE];
        uint32_t keep = 0u;
        qs_range rg = qs_range_empty();
        qs_unit_span(jb, u, &row, &c0, &n);
        const int64_t xr = row * jb.x_stride + c0, yr = row * jb.y_stride + c0, mr = row * jb.m_stride + c0;
#pragma unroll
        for (int k = 0; k < QS_BLOCK_CACHE; k++) {
            const int64_t j = tid + (int64_t)QS_THREADS * k;
            v[k] = 0.0f;
            if (j < n) {
                const bool kp = mm == QS_MASK_NONE || jb.mask[mr + j] != 0;
                v[k] = qs_load(jb.x, xr + j, DT);
                keep |= (uint32_t)kp << k;
                qs_range_add<FAM>(&rg, qs_stat_bits(v[k], kp, mm));
            }
        }
        for (int64_t j = tid + (int64_t)QS_TILE; j < n; j += QS_THREADS) {
            const bool kp = mm == QS_MASK_NONE || jb.mask[mr + j] != 0;
            qs_range_add<FAM>(&rg, qs_stat_bits(qs_load(jb.x, xr + j, DT), kp, mm));
        }
        /* every read of the group happens before this barrier, every write after it (in-place safety) */
        rg = qs_range_reduce_block<FAM>(rg);
        const qs_gparams g = qs_fq_params<FAM>(jb, rg);
        const uint64_t flat0 = (uint64_t)row * (uint64_t)jb.cols + (uint64_t)c0;
#pragma unroll
        for (int k = 0; k < QS_BLOCK_CACHE; k++) {
            const int64_t j = tid + (int64_t)QS_THREADS * k;
            if (j < n) {
                const uint32_t u24 = (jb.kt.rounding == QS_ROUND_STOCHASTIC && g.mode == QS_GP_QUANT)
                                         ? qs_rand24(jb.rng, flat0 + (uint64_t)j)
                                         : 0u;
                qs_fq_store<DT, FAM>(jb.y, yr + j, g, qs_fq_output<DT, FAM>(v[k], (keep >> k) & 1u, mm, u24, g, jb.kt));
            }
        }
        for (int64_t j = tid + (int64_t)QS_TILE; j < n; j += QS_THREADS)
            qs_fq_element<DT, FAM>(jb, g, flat0 + (uint64_t)j, xr + j, yr + j, mr + j);
    }
}

/* ---- large groups, few of them: tiles over the whole GPU, statistics through scratch memory ------------------ */

/* Tile t covers elements [s * QS_TILE, (s + 1) * QS_TILE) of unit u = t / tiles_per_unit, s = t % tiles_per_unit. */
static __device__ __forceinline__ void qs_tile_span(const qs_fq_job &jb, int64_t t, int64_t *u, int64_t *row,
                                                    int64_t *c0, int64_t *j0, int64_t *j1) {
    int64_t n;
    *u = (int64_t)qs_div((uint64_t)t, jb.tpu);
    *j0 = (t - *u * (int64_t)jb.tpu.d) * QS_TILE;
    qs_unit_span(jb, *u, row, c0, &n);
    *j1 = n - *j0 < QS_TILE ? n : *j0 + QS_TILE;
}

/* stats: 3 words per unit (qs_range_atomic_merge), initialized to the empty range by qs_fq_stats_init_kernel. */
template <int DT, int FAM>
static __global__ void __launch_bounds__(QS_THREADS) qs_fq_tile_range_kernel(const qs_fq_job jb, int64_t tiles,
                                                                             int32_t *stats) {
    for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) { /* block-uniform */
        int64_t u, row, c0, j0, j1;
        qs_range rg = qs_range_empty();
        qs_tile_span(jb, t, &u, &row, &c0, &j0, &j1);
        for (int64_t j = j0 + threadIdx.x; j < j1; j += QS_THREADS) {
            const bool kp = jb.mask_mode == QS_MASK_NONE || jb.mask[row * jb.m_stride + c0 + j] != 0;
            qs_range_add<FAM>(&rg, qs_stat_bits(qs_load(jb.x, row * jb.x_stride + c0 + j, DT), kp, jb.mask_mode));
        }
        rg = qs_range_reduce_block<FAM>(rg);
        if (threadIdx.x == 0) qs_range_atomic_merge<FAM>(&stats[3 * u], rg);
    }
}

template <int DT, int FAM>
static __global__ void __launch_bounds__(QS_THREADS) qs_fq_tile_apply_kernel(const qs_fq_job jb, int64_t tiles,
                                                                             const int32_t *stats) {
    for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
        int64_t u, row, c0, j0, j1;
        qs_tile_span(jb, t, &u, &row, &c0, &j0, &j1);
        const qs_gparams g = qs_fq_params<FAM>(jb, qs_range_load(&stats[3 * u]));
        const uint64_t flat0 = (uint64_t)row * (uint64_t)jb.cols + (uint64_t)c0;
        for (int64_t j = j0 + threadIdx.x; j < j1; j += QS_THREADS)
            qs_fq_element<DT, FAM>(jb, g, flat0 + (uint64_t)j, row * jb.x_stride + c0 + j,
                                   row * jb.y_stride + c0 + j, row * jb.m_stride + c0 + j);
    }
}

static __global__ void qs_fq_stats_init_kernel(int32_t *stats, int64_t units) {
    for (int64_t u = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; u < units; u += (int64_t)gridDim.x * blockDim.x) {
        stats[3 * u] = INT32_MAX;
        stats[3 * u + 1] = INT32_MIN;
        stats[3 * u + 2] = 0;
    }
}

/* ---- flat kernels: element-wise formats and QS_GROUP_TENSOR ---------------------------------------------------- */

/* Memory offsets of flat index i. */
static __device__ __forceinline__ void qs_flat_offsets(const qs_fq_job &jb, int64_t i, int64_t *xo, int64_t *yo,
                                                       int64_t *mo) {
    if (jb.contiguous) {
        *xo = *yo = *mo = i;
    } else {
        const int64_t row = (int64_t)qs_div((uint64_t)i, jb.cols_div), col = i - row * jb.cols;
        *xo = row * jb.x_stride + col;
        *yo = row * jb.y_stride + col;
        *mo = row * jb.m_stride + col;
    }
}

/* VEC > 1: jb.contiguous, x and y 16-byte aligned and the mask VEC-byte aligned; VEC = 16 / element size. */
template <int DT, int FAM, int VEC>
static __global__ void __launch_bounds__(QS_THREADS) qs_fq_flat_kernel(const qs_fq_job jb, const int32_t *stats) {
    qs_gparams g = {QS_GP_QUANT, 0.0f, 0.0f, 0.0f};
    if constexpr (FAM == QS_FAMILY_LLMQ) {
        if (stats == NULL) g.s = jb.kt.lq_bias; /* element rows: the row's bias */
        else g = qs_fq_params<FAM>(jb, qs_range_load(stats));
    } else if constexpr (FAM != QS_FAMILY_FLOAT) {
        g = qs_fq_params<FAM>(jb, qs_range_load(stats));
    }
    const int64_t n = jb.rows * jb.cols;
    const int64_t start = (int64_t)blockIdx.x * blockDim.x + threadIdx.x, step = (int64_t)gridDim.x * blockDim.x;
    int64_t tail = 0;
    if constexpr (VEC > 1) {
        const int32_t mm = jb.mask_mode;
        const int64_t nv = n / VEC;
        for (int64_t t = start; t < nv; t += step) {
            const uint4 w = ((const uint4 *)jb.x)[t];
            uint64_t mbits = 0u;
            float y[VEC];
            if (mm != QS_MASK_NONE) {
                if constexpr (VEC == 4) mbits = ((const uint32_t *)jb.mask)[t];
                else mbits = ((const unsigned long long *)jb.mask)[t];
            }
#pragma unroll
            for (int e = 0; e < VEC; e++) {
                const float v = qs_vec_get<DT>(w, e);
                const bool keep = ((mbits >> (8 * e)) & 0xffu) != 0u;
                const uint32_t u24 = (jb.kt.rounding == QS_ROUND_STOCHASTIC && g.mode == QS_GP_QUANT)
                                         ? qs_rand24(jb.rng, (uint64_t)(t * VEC + e))
                                         : 0u;
                y[e] = qs_fq_output<DT, FAM>(v, keep, mm, u24, g, jb.kt);
            }
            ((uint4 *)jb.y)[t] = qs_vec_pack<DT, FAM>(g, y);
        }
        tail = nv * VEC;
    }
    for (int64_t i = tail + start; i < n; i += step) {
        int64_t xo, yo, mo;
        qs_flat_offsets(jb, i, &xo, &yo, &mo);
        qs_fq_element<DT, FAM>(jb, g, (uint64_t)i, xo, yo, mo);
    }
}

/* Statistics of the whole tensor into stats[0..2] (initialized to the empty range). */
template <int DT, int FAM>
static __global__ void __launch_bounds__(QS_THREADS) qs_fq_flat_range_kernel(const qs_fq_job jb, int32_t *stats) {
    const int64_t n = jb.rows * jb.cols;
    const int32_t mm = jb.mask_mode;
    qs_range rg = qs_range_empty();
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t xo, yo, mo;
        qs_flat_offsets(jb, i, &xo, &yo, &mo);
        const bool kp = mm == QS_MASK_NONE || jb.mask[mo] != 0;
        qs_range_add<FAM>(&rg, qs_stat_bits(qs_load(jb.x, xo, DT), kp, mm));
    }
    rg = qs_range_reduce_block<FAM>(rg);
    if (threadIdx.x == 0) qs_range_atomic_merge<FAM>(stats, rg);
}

/* ---- host dispatch ------------------------------------------------------------------------------------------- */

/* Scratch statistics of `units` units, on the stream: allocated and set to the empty range. */
static int32_t qs_fq_stats_alloc(int64_t units, int32_t sms, cudaStream_t st, int32_t **stats) {
    *stats = NULL;
    if (cudaMallocAsync((void **)stats, (size_t)units * 3u * sizeof(int32_t), st) != cudaSuccess) {
        (void)cudaGetLastError(); /* an allocation failure is reported as such, not as a later launch error */
        *stats = NULL;
        return QS_ERR_NO_MEMORY;
    }
    qs_fq_stats_init_kernel<<<qs_grid(units, QS_THREADS, sms, 4, 1), QS_THREADS, 0, st>>>(*stats, units);
    return qs_cuda_launch_status();
}

/* Frees scratch on the stream; keeps the first error. */
static int32_t qs_fq_stats_free(int32_t *stats, cudaStream_t st, int32_t status) {
    if (stats != NULL && cudaFreeAsync(stats, st) != cudaSuccess && status == QS_OK) return QS_ERR_CUDA;
    return status;
}

template <int DT, int FAM>
static int32_t qs_fq_launch_flat(const qs_fq_job &jb, const int32_t *stats, int32_t sms, cudaStream_t st) {
    constexpr int VEC = DT == QS_DTYPE_F32 ? 4 : 8;
    const int64_t n = jb.rows * jb.cols;
    const bool aligned = ((uintptr_t)jb.x % 16u) == 0u && ((uintptr_t)jb.y % 16u) == 0u &&
                         (jb.mask_mode == QS_MASK_NONE || ((uintptr_t)jb.mask % (uintptr_t)VEC) == 0u);
    if (jb.contiguous && aligned && n >= VEC) {
        qs_fq_flat_kernel<DT, FAM, VEC><<<qs_grid(n / VEC, QS_THREADS, sms, 8, 1), QS_THREADS, 0, st>>>(jb, stats);
    } else {
        qs_fq_flat_kernel<DT, FAM, 1><<<qs_grid(n, QS_THREADS, sms, 8, 1), QS_THREADS, 0, st>>>(jb, stats);
    }
    return qs_cuda_launch_status();
}

template <int DT, int FAM, int K>
static void qs_fq_launch_warp(const qs_fq_job &jb, int32_t sms, cudaStream_t st) {
    constexpr int R = K >= 8 ? 1 : 8 / K;
    const int64_t per_warp = (int64_t)(32 >> jb.seg_log2) * R;
    const int64_t warps = (jb.units + per_warp - 1) / per_warp;
    qs_fq_warp_kernel<DT, FAM, K><<<qs_grid(warps, QS_THREADS / 32, sms, 8, 1), QS_THREADS, 0, st>>>(jb);
}

/* Grouped formats (INT_SYM, INT_FULL, INT_ASYM, BFP, SCALED). */
template <int DT, int FAM>
static int32_t qs_fq_run_groups(qs_fq_job &jb, int64_t group_size, int32_t sms, cudaStream_t st);

/* The statistics of the whole tensor into new scratch *stats (freed by the caller with qs_fq_stats_free). */
template <int DT, int FAM>
static int32_t qs_fq_tensor_stats(const qs_fq_job &jb, int32_t sms, cudaStream_t st, int32_t **stats) {
    int32_t status = qs_fq_stats_alloc(1, sms, st, stats);
    if (status == QS_OK) {
        qs_fq_flat_range_kernel<DT, FAM><<<qs_grid(jb.rows * jb.cols, QS_THREADS, sms, 8, 1), QS_THREADS, 0, st>>>(
            jb, *stats);
        status = qs_cuda_launch_status();
    }
    return status;
}

/* {smallest nonzero, -, largest} of the units' max |x| bits (ustats, 3 words per unit) merged into slot[0..2]. */
static __global__ void __launch_bounds__(QS_THREADS) qs_fq_lq_zero_kernel(const int32_t *ustats, int64_t units,
                                                                          int32_t *slot) {
    uint32_t mn = 0xffffffffu, mx = 0u;
    for (int64_t u = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; u < units; u += (int64_t)gridDim.x * blockDim.x) {
        const uint32_t a = (uint32_t)ustats[3 * u + 2];
        mn = a != 0u && a < mn ? a : mn;
        mx = a > mx ? a : mx;
    }
    if (mn != 0xffffffffu) atomicMin((unsigned int *)&slot[0], mn);
    if (mx != 0u) atomicMax((unsigned int *)&slot[2], mx);
}

/* QS_FAMILY_LLMQ. The llm-mixed-q profile's block rows first reduce the group statistics of the whole tensor
   (the tiled range kernel into per-unit scratch, then qs_fq_lq_zero_kernel), so that a block of zeros takes the
   source's replacement max (qs_lq_zero_bits, read through jb.tstats in qs_fq_params); per tensor, one block of
   zeros is the all-zero case (max 1). */
template <int DT>
static int32_t qs_fq_run_llmq(qs_fq_job &jb, int64_t group_size, int32_t sms, cudaStream_t st) {
    if (!jb.kt.lq_block) return qs_fq_launch_flat<DT, QS_FAMILY_LLMQ>(jb, NULL, sms, st);
    if (!jb.kt.lq_src) return qs_fq_run_groups<DT, QS_FAMILY_LLMQ>(jb, group_size, sms, st);
    if (group_size == QS_GROUP_TENSOR) {
        jb.kt.lq_zbits = 0x3f800000u;
        return qs_fq_run_groups<DT, QS_FAMILY_LLMQ>(jb, group_size, sms, st);
    }
    qs_fq_job pj = jb;
    pj.group = group_size > 0 && group_size < jb.cols ? group_size : jb.cols;
    const int64_t upr = (pj.cols + pj.group - 1) / pj.group;
    pj.upr = qs_divider_make((uint64_t)upr);
    pj.units = pj.rows * upr;
    const int64_t tpu = (pj.group + QS_TILE - 1) / QS_TILE;
    const int64_t tiles = pj.units * tpu;
    pj.tpu = qs_divider_make((uint64_t)tpu);
    int32_t *ustats = NULL, *slot = NULL;
    int32_t status = qs_fq_stats_alloc(pj.units, sms, st, &ustats);
    if (status == QS_OK) status = qs_fq_stats_alloc(1, sms, st, &slot);
    if (status == QS_OK) {
        qs_fq_tile_range_kernel<DT, QS_FAMILY_LLMQ><<<qs_grid(tiles, 1, sms, 8, 1), QS_THREADS, 0, st>>>(pj, tiles,
                                                                                                        ustats);
        status = qs_cuda_launch_status();
    }
    if (status == QS_OK) {
        qs_fq_lq_zero_kernel<<<qs_grid(pj.units, QS_THREADS, sms, 4, 1), QS_THREADS, 0, st>>>(ustats, pj.units, slot);
        status = qs_cuda_launch_status();
    }
    status = qs_fq_stats_free(ustats, st, status);
    if (status == QS_OK) {
        jb.tstats = slot;
        status = qs_fq_run_groups<DT, QS_FAMILY_LLMQ>(jb, group_size, sms, st);
        jb.tstats = NULL;
    }
    return qs_fq_stats_free(slot, st, status);
}

/* SCALED with QS_SCALE_MODE_E4M3: the tensor's statistics first, then the groups (which read them). */
template <int DT, int FAM>
static int32_t qs_fq_run_scaled(qs_fq_job &jb, int64_t group_size, int32_t sms, cudaStream_t st) {
    if (jb.kt.scale_mode != QS_SCALE_MODE_E4M3) return qs_fq_run_groups<DT, FAM>(jb, group_size, sms, st);
    int32_t *stats = NULL;
    int32_t status = qs_fq_tensor_stats<DT, FAM>(jb, sms, st, &stats);
    if (status == QS_OK) {
        jb.tstats = stats;
        status = qs_fq_run_groups<DT, FAM>(jb, group_size, sms, st);
        jb.tstats = NULL;
    }
    return qs_fq_stats_free(stats, st, status);
}

template <int DT, int FAM>
static int32_t qs_fq_run_groups(qs_fq_job &jb, int64_t group_size, int32_t sms, cudaStream_t st) {
    if (group_size == QS_GROUP_TENSOR) {
        if (jb.tstats != NULL) return qs_fq_launch_flat<DT, FAM>(jb, jb.tstats, sms, st); /* reduced already */
        int32_t *stats = NULL;
        int32_t status = qs_fq_tensor_stats<DT, FAM>(jb, sms, st, &stats);
        if (status == QS_OK) status = qs_fq_launch_flat<DT, FAM>(jb, stats, sms, st);
        return qs_fq_stats_free(stats, st, status);
    }
    jb.group = group_size > 0 && group_size < jb.cols ? group_size : jb.cols;
    const int64_t upr = (jb.cols + jb.group - 1) / jb.group;
    jb.upr = qs_divider_make((uint64_t)upr);
    jb.units = jb.rows * upr;
    if (jb.group <= QS_WARP_MAX_GROUP) {
        /* K: 16 bytes of elements per lane at least, more when the group needs more than 32 lanes */
        const int64_t esize = DT == QS_DTYPE_F32 ? 4 : 2;
        int64_t per_lane = 16 / esize;
        while (per_lane < 32 && (jb.group + per_lane - 1) / per_lane > 32) per_lane *= 2;
        const int64_t lanes = (jb.group + per_lane - 1) / per_lane;
        int32_t l = 0;
        while ((1 << l) < lanes) l++;
        jb.seg_log2 = l;
        jb.vec_ok = ((uintptr_t)jb.x % 16u) == 0u && ((uintptr_t)jb.y % 16u) == 0u &&
                    (jb.x_stride * esize) % 16 == 0 && (jb.y_stride * esize) % 16 == 0 && (jb.group * esize) % 16 == 0;
        if (per_lane == 4) qs_fq_launch_warp<DT, FAM, 4>(jb, sms, st);
        else if (per_lane == 8) qs_fq_launch_warp<DT, FAM, 8>(jb, sms, st);
        else if (per_lane == 16) qs_fq_launch_warp<DT, FAM, 16>(jb, sms, st);
        else qs_fq_launch_warp<DT, FAM, 32>(jb, sms, st);
        return qs_cuda_launch_status();
    }
    if (jb.units >= sms) {
        qs_fq_block_kernel<DT, FAM><<<qs_grid(jb.units, 1, sms, 8, 1), QS_THREADS, 0, st>>>(jb);
        return qs_cuda_launch_status();
    }
    /* fewer groups than SMs: spread each group over many blocks */
    {
        const int64_t tpu = (jb.group + QS_TILE - 1) / QS_TILE;
        const int64_t tiles = jb.units * tpu;
        const unsigned int grid = qs_grid(tiles, 1, sms, 8, 1);
        int32_t *stats = NULL;
        int32_t status;
        jb.tpu = qs_divider_make((uint64_t)tpu);
        status = qs_fq_stats_alloc(jb.units, sms, st, &stats);
        if (status == QS_OK) {
            qs_fq_tile_range_kernel<DT, FAM><<<grid, QS_THREADS, 0, st>>>(jb, tiles, stats);
            status = qs_cuda_launch_status();
        }
        if (status == QS_OK) {
            qs_fq_tile_apply_kernel<DT, FAM><<<grid, QS_THREADS, 0, st>>>(jb, tiles, stats);
            status = qs_cuda_launch_status();
        }
        return qs_fq_stats_free(stats, st, status);
    }
}

template <int DT>
static int32_t qs_fq_run(qs_fq_job &jb, int64_t group_size, int32_t sms, cudaStream_t st) {
    switch (jb.kt.family) {
    case QS_FAMILY_INT_SYM: return qs_fq_run_groups<DT, QS_FAMILY_INT_SYM>(jb, group_size, sms, st);
    case QS_FAMILY_INT_FULL: return qs_fq_run_groups<DT, QS_FAMILY_INT_FULL>(jb, group_size, sms, st);
    case QS_FAMILY_INT_ASYM: return qs_fq_run_groups<DT, QS_FAMILY_INT_ASYM>(jb, group_size, sms, st);
    case QS_FAMILY_BFP: return qs_fq_run_groups<DT, QS_FAMILY_BFP>(jb, group_size, sms, st);
    case QS_FAMILY_SCALED: return qs_fq_run_scaled<DT, QS_FAMILY_SCALED>(jb, group_size, sms, st);
    case QS_FAMILY_SCALED_FPQ: return qs_fq_run_scaled<DT, QS_FAMILY_SCALED_FPQ>(jb, group_size, sms, st);
    case QS_FAMILY_SCALED_POW2: return qs_fq_run_groups<DT, QS_FAMILY_SCALED_POW2>(jb, group_size, sms, st);
    case QS_FAMILY_LLMQ: return qs_fq_run_llmq<DT>(jb, group_size, sms, st);
    default: return qs_fq_launch_flat<DT, QS_FAMILY_FLOAT>(jb, NULL, sms, st);
    }
}

/* ---- entry point ----------------------------------------------------------------------------------------------- */

int32_t qs_fake_quant_cuda(const qs_quant_params *params, int32_t dtype, int64_t rows, int64_t cols, const void *x,
                           int64_t x_stride, void *y, int64_t y_stride, const uint8_t *mask, int64_t mask_stride,
                           int32_t mask_mode, int32_t device, void *stream) {
    qs_kernel_traits kt;
    qs_fq_job jb;
    int32_t sms;
    const cudaStream_t st = (cudaStream_t)stream;
    QS_TRY(qs_check_fake_quant(params, dtype, rows, cols, x, x_stride, y, y_stride, mask, mask_stride, mask_mode,
                               &kt));
    if (kt.observer != QS_OBSERVER_MINMAX) return QS_ERR_UNSUPPORTED; /* the mse search is CPU-only for now */
    if (kt.family == QS_FAMILY_LUT)
        return qs_lut_cuda(params, dtype, rows, cols, x, x_stride, y, y_stride, mask, mask_stride, mask_mode, NULL, 0,
                           device, stream);
    if (rows == 0 || cols == 0) return QS_OK;
    QS_TRY(qs_cuda_begin(device, &sms));

    memset(&jb, 0, sizeof jb);
    jb.kt = kt;
    jb.rng = qs_rng_make(params->seed);
    jb.x = x;
    jb.y = y;
    jb.mask = mask_mode != QS_MASK_NONE ? mask : NULL;
    jb.x_stride = x_stride;
    jb.y_stride = y_stride;
    jb.m_stride = mask_mode != QS_MASK_NONE ? mask_stride : 0;
    jb.rows = rows;
    jb.cols = cols;
    jb.group = cols;
    jb.units = rows;
    jb.upr = qs_divider_make(1u);
    jb.cols_div = qs_divider_make((uint64_t)cols);
    jb.tpu = qs_divider_make(1u);
    jb.mask_mode = mask_mode;
    jb.contiguous = rows == 1 || (x_stride == cols && y_stride == cols &&
                                  (mask_mode == QS_MASK_NONE || mask_stride == cols));

    switch (dtype) {
    case QS_DTYPE_F32: return qs_fq_run<QS_DTYPE_F32>(jb, params->group_size, sms, st);
    case QS_DTYPE_F16: return qs_fq_run<QS_DTYPE_F16>(jb, params->group_size, sms, st);
    default: return qs_fq_run<QS_DTYPE_BF16>(jb, params->group_size, sms, st);
    }
}
