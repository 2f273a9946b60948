/*
 * qs_mask.cu -- CUDA sparsity masks, bit-identical to qs_nm_mask_cpu and qs_magnitude_mask_cpu (csrc/qs_mask.c).
 *
 * scores / w: rows x cols (row stride in elements), dtype f32 | f16 | bf16. mask: rows x cols uint8, 1 = keep.
 *
 * N:M (qs_nm_kernel): keep `keep` of every `group` consecutive entries of a row; an entry is kept when fewer than
 * `keep` entries of its group rank above it, by qs_score_key (NaN highest, -0.0 == +0.0) and then by lower index.
 * A block takes 256 / group groups at a time, one thread per entry: the group's keys go to shared memory and each
 * thread counts the entries above its own, O(group) per entry as on the CPU. A partial last group of r entries
 * keeps min(keep, r) by the same count.
 *
 * Magnitude (prune the `prune` smallest |w|; among equal magnitudes the highest indices go first, so the lowest
 * stay; NaN largest): radix selection of the threshold key T on the 32-bit qs_magnitude_key, then every key above
 * T is kept and, of the `equal` keys equal to T, the first `equal - k` in row-major order, k being what is left to
 * prune at T. The digits differ from the CPU's (which only changes how T is found, never T itself).
 *   - per row (qs_magnitude_rows_kernel): a block per row, four 8-bit digit passes with a shared histogram, then
 *     one pass in index order that ranks the ties with a block scan.
 *   - per tensor: three passes of 11, 11 and 10 bits (qs_mag_hist_kernel: per-block shared histograms added into a
 *     global one; qs_mag_select_kernel: one block picks the digit), with the selection state in device memory so
 *     that nothing waits for the host. Ties are ranked over a fixed partition of the flat index range into chunks:
 *     per-chunk tie counts (qs_mag_count_kernel), an exclusive scan over the chunks (qs_mag_scan_kernel), then each
 *     chunk ranks its own ties in index order (qs_mag_write_kernel). Histogram counts are integer atomics and the
 *     ranks are prefix sums, so the mask is the same for any grid.
 */
#include <cuda_runtime.h>
#include <stdint.h>

#include "include/qsparse.h"
#include "qs_cuda.h"
#include "qs_scalar.h"
#include "qs_validate.h"

/* ---- N:M ------------------------------------------------------------------------------------------------------- */

#define QS_NM_THREADS 256
QS_STATIC_ASSERT(QS_NM_MAX_GROUP <= QS_NM_THREADS, "a group must fit in one block");

template <int DT>
static __global__ void __launch_bounds__(QS_NM_THREADS)
    qs_nm_kernel(const void *s, int64_t s_stride, uint8_t *m, int64_t m_stride, int64_t cols, int32_t keep,
                 int32_t group, qs_divider gpr, int64_t units) {
    __shared__ uint32_t keys[QS_NM_THREADS];
    const int32_t t = (int32_t)threadIdx.x;
    const int32_t per_block = QS_NM_THREADS / group; /* groups per block iteration */
    const int32_t gi = t / group, j = t - gi * group; /* this thread: entry j of the block's group gi */
    const int32_t gbase = gi * group;
    for (int64_t base = (int64_t)blockIdx.x * per_block; base < units; base += (int64_t)gridDim.x * per_block) {
        const int64_t u = base + gi;
        int64_t row = 0, c0 = 0;
        int32_t n = 0;
        if (gi < per_block && u < units) {
            row = (int64_t)qs_div((uint64_t)u, gpr);
            c0 = (u - row * (int64_t)gpr.d) * group;
            n = cols - c0 < group ? (int32_t)(cols - c0) : group;
        }
        const bool valid = j < n;
        const uint32_t key = valid ? qs_score_key(qs_load(s, row * s_stride + c0 + j, DT)) : 0u;
        keys[t] = key;
        __syncthreads();
        if (valid) {
            int32_t above = 0;
            for (int32_t i = 0; i < n; i++) {
                const uint32_t other = keys[gbase + i];
                above += (int32_t)((other > key) | ((other == key) & (i < j)));
            }
            m[row * m_stride + c0 + j] = (uint8_t)(above < keep);
        }
        __syncthreads(); /* keys[] is rewritten by the next iteration */
    }
}

int32_t qs_nm_mask_cuda(int32_t dtype, int64_t rows, int64_t cols, const void *scores, int64_t s_stride,
                        uint8_t *mask, int64_t m_stride, int32_t keep, int32_t group, int32_t device, void *stream) {
    int32_t sms;
    const cudaStream_t st = (cudaStream_t)stream;
    QS_TRY(qs_check_nm_mask(dtype, rows, cols, scores, s_stride, mask, m_stride, keep, group));
    if (rows == 0 || cols == 0) return QS_OK;
    QS_TRY(qs_cuda_begin(device, &sms));
    const int64_t gpr = (cols + group - 1) / group, units = rows * gpr;
    const qs_divider gdiv = qs_divider_make((uint64_t)gpr);
    const unsigned int grid = qs_grid(units, QS_NM_THREADS / group, sms, 8, 1);
    switch (dtype) {
    case QS_DTYPE_F32:
        qs_nm_kernel<QS_DTYPE_F32><<<grid, QS_NM_THREADS, 0, st>>>(scores, s_stride, mask, m_stride, cols, keep,
                                                                   group, gdiv, units);
        break;
    case QS_DTYPE_F16:
        qs_nm_kernel<QS_DTYPE_F16><<<grid, QS_NM_THREADS, 0, st>>>(scores, s_stride, mask, m_stride, cols, keep,
                                                                   group, gdiv, units);
        break;
    default:
        qs_nm_kernel<QS_DTYPE_BF16><<<grid, QS_NM_THREADS, 0, st>>>(scores, s_stride, mask, m_stride, cols, keep,
                                                                    group, gdiv, units);
        break;
    }
    return qs_cuda_launch_status();
}

/* ---- magnitude, per row ---------------------------------------------------------------------------------------- */

/* Writes the mask of entries [0, n) of one row or chunk, in index order, for threshold t: keys above t are kept,
   and a key equal to t is kept when its rank among the ties (tie_base + ties earlier in this range) is below
   ties_kept. key_at(i) is the key of entry i, mask_at(i) a reference to its mask byte. Every thread of the block
   must call it; blockDim.x a multiple of 32. */
template <class KeyAt, class MaskAt>
static __device__ __forceinline__ void qs_rank_and_write(int64_t n, uint32_t t, unsigned long long tie_base,
                                                         unsigned long long ties_kept, KeyAt key_at,
                                                         MaskAt mask_at) {
    unsigned long long seen = tie_base;
    for (int64_t b = 0; b < n; b += blockDim.x) { /* block-uniform */
        const int64_t i = b + threadIdx.x;
        const bool valid = i < n;
        const uint32_t key = valid ? key_at(i) : 0u;
        const bool tie = valid && key == t;
        unsigned long long total;
        const unsigned long long incl = qs_block_scan((unsigned long long)tie, &total);
        if (valid) mask_at(i) = (uint8_t)(key > t || (tie && seen + incl - 1ull < ties_kept));
        seen += total;
    }
}

template <int DT>
static __global__ void __launch_bounds__(256) qs_magnitude_rows_kernel(const void *w, int64_t w_stride, uint8_t *m,
                                                                       int64_t m_stride, int64_t rows, int64_t cols,
                                                                       int64_t prune) {
    __shared__ unsigned long long hist[256];
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) { /* block-uniform */
        const int64_t wr = row * w_stride;
        uint8_t *mr = m + row * m_stride;
        uint32_t prefix = 0u, pmask = 0u;
        unsigned long long k = (unsigned long long)prune, equal = 0ull;
        for (int shift = 24; shift >= 0; shift -= 8) {
            for (int b = (int)threadIdx.x; b < 256; b += (int)blockDim.x) hist[b] = 0ull;
            __syncthreads();
            for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
                const uint32_t key = qs_magnitude_key(qs_load(w, wr + i, DT));
                if ((key & pmask) == prefix) atomicAdd(&hist[(key >> shift) & 0xffu], 1ull);
            }
            __syncthreads();
            unsigned long long below;
            const int32_t d = qs_block_find_bin(hist, 256, k, &below);
            k -= below;
            if (shift == 0) equal = hist[d];
            prefix |= (uint32_t)d << shift;
            pmask |= 0xffu << shift;
            __syncthreads(); /* hist[d] is read above before the next pass clears it */
        }
        /* prefix is T; of the `equal` entries equal to T, prune the last k in index order */
        qs_rank_and_write(
            cols, prefix, 0ull, equal - k, [&](int64_t i) { return qs_magnitude_key(qs_load(w, wr + i, DT)); },
            [&](int64_t i) -> uint8_t & { return mr[i]; });
    }
}

/* ---- magnitude, per tensor ------------------------------------------------------------------------------------- */

/* Radix digits, most significant first: 11 + 11 + 10 bits. */
#define QS_MAG_PASSES 3
#define QS_MAG_BINS 2048
#define QS_MAG_SELECT_THREADS 1024
#define QS_MAG_CHUNK_MIN 4096
#define QS_MAG_MAX_CHUNKS 65536
static const int32_t qs_mag_shift[QS_MAG_PASSES] = {21, 10, 0};
static const int32_t qs_mag_bits[QS_MAG_PASSES] = {11, 11, 10};

/* The selection, in device memory between the kernels of one call. */
typedef struct qs_select_state {
    unsigned long long k;         /* entries still to prune among the keys that match prefix under pmask */
    unsigned long long equal;     /* after the last pass: entries whose key equals T */
    unsigned long long ties_kept; /* after the last pass: equal - k */
    uint32_t prefix, pmask;       /* the digits of T found so far */
} qs_select_state;

/* The logical tensor for the flat kernels: element i = row * cols + col. */
typedef struct qs_mag_job {
    const void *w;
    uint8_t *m;
    int64_t w_stride, m_stride, cols, n;
    qs_divider cols_div;
    int32_t contiguous; /* both row strides equal cols (or one row): memory offset == flat index */
} qs_mag_job;

static __device__ __forceinline__ void qs_mag_offsets(const qs_mag_job &jb, int64_t i, int64_t *wo, int64_t *mo) {
    if (jb.contiguous) {
        *wo = *mo = i;
    } else {
        const int64_t row = (int64_t)qs_div((uint64_t)i, jb.cols_div), col = i - row * jb.cols;
        *wo = row * jb.w_stride + col;
        *mo = row * jb.m_stride + col;
    }
}

static __device__ __forceinline__ int64_t qs_mag_mask_offset(const qs_mag_job &jb, int64_t i) {
    int64_t wo, mo;
    qs_mag_offsets(jb, i, &wo, &mo);
    return mo;
}

template <int DT>
static __device__ __forceinline__ uint32_t qs_mag_key_at(const qs_mag_job &jb, int64_t i) {
    int64_t wo, mo;
    qs_mag_offsets(jb, i, &wo, &mo);
    return qs_magnitude_key(qs_load(jb.w, wo, DT));
}

static __global__ void qs_mag_init_kernel(qs_select_state *state, unsigned long long *hist, int64_t prune) {
    for (int b = (int)threadIdx.x; b < QS_MAG_BINS; b += (int)blockDim.x) hist[b] = 0ull;
    if (threadIdx.x == 0) {
        state->k = (unsigned long long)prune;
        state->equal = 0ull;
        state->ties_kept = 0ull;
        state->prefix = 0u;
        state->pmask = 0u;
    }
}

/* Adds the digit histogram of the keys that match the state's prefix into hist. Each block counts at most
   2^31 entries (the grid is sized for it), so its shared 32-bit counters cannot overflow. */
template <int DT>
static __global__ void __launch_bounds__(QS_THREADS) qs_mag_hist_kernel(const qs_mag_job jb,
                                                                        const qs_select_state *state,
                                                                        unsigned long long *hist, int32_t shift,
                                                                        int32_t bits) {
    __shared__ uint32_t local[QS_MAG_BINS];
    const uint32_t prefix = state->prefix, pmask = state->pmask, dmask = (1u << bits) - 1u;
    for (int b = (int)threadIdx.x; b < QS_MAG_BINS; b += (int)blockDim.x) local[b] = 0u;
    __syncthreads();
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < jb.n; i += (int64_t)gridDim.x * blockDim.x) {
        const uint32_t key = qs_mag_key_at<DT>(jb, i);
        if ((key & pmask) == prefix) atomicAdd(&local[(key >> shift) & dmask], 1u);
    }
    __syncthreads();
    for (int b = (int)threadIdx.x; b < QS_MAG_BINS; b += (int)blockDim.x)
        if (local[b] != 0u) atomicAdd(&hist[b], (unsigned long long)local[b]);
}

/* One block of QS_MAG_SELECT_THREADS: the next digit of T from hist, which it then clears for the next pass. */
static __global__ void __launch_bounds__(QS_MAG_SELECT_THREADS)
    qs_mag_select_kernel(qs_select_state *state, unsigned long long *hist, int32_t shift, int32_t bits,
                         int32_t last) {
    const unsigned long long k = state->k;
    unsigned long long below;
    const int32_t nbins = 1 << bits;
    const int32_t d = qs_block_find_bin(hist, nbins, k, &below);
    if (threadIdx.x == 0) {
        const unsigned long long rest = k - below;
        state->k = rest;
        state->prefix |= (uint32_t)d << shift;
        state->pmask |= ((1u << bits) - 1u) << shift;
        if (last) {
            state->equal = hist[d];
            state->ties_kept = hist[d] - rest;
        }
    }
    __syncthreads(); /* hist[d] is read above before it is cleared */
    for (int b = (int)threadIdx.x; b < nbins; b += (int)blockDim.x) hist[b] = 0ull;
}

/* Whether the ties need ranking: some but not all of them are kept. */
static __device__ __forceinline__ bool qs_mag_ties_ranked(const qs_select_state *state) {
    return state->ties_kept != 0ull && state->ties_kept != state->equal;
}

/* counts[c] = entries equal to T in chunk c = [c * chunk, (c + 1) * chunk). */
template <int DT>
static __global__ void __launch_bounds__(QS_THREADS) qs_mag_count_kernel(const qs_mag_job jb,
                                                                         const qs_select_state *state,
                                                                         unsigned long long *counts, int64_t chunk,
                                                                         int64_t nchunks) {
    if (!qs_mag_ties_ranked(state)) return;
    const uint32_t t = state->prefix;
    for (int64_t c = blockIdx.x; c < nchunks; c += gridDim.x) { /* block-uniform */
        const int64_t i0 = c * chunk, i1 = jb.n - i0 < chunk ? jb.n : i0 + chunk;
        unsigned long long mine = 0ull, total;
        for (int64_t i = i0 + threadIdx.x; i < i1; i += blockDim.x) mine += qs_mag_key_at<DT>(jb, i) == t;
        (void)qs_block_scan(mine, &total);
        if (threadIdx.x == 0) counts[c] = total;
    }
}

/* counts[] := exclusive prefix sums of counts[], by one block. */
static __global__ void __launch_bounds__(QS_MAG_SELECT_THREADS)
    qs_mag_scan_kernel(const qs_select_state *state, unsigned long long *counts, int64_t nchunks) {
    if (!qs_mag_ties_ranked(state)) return;
    const int64_t per = (nchunks + blockDim.x - 1) / blockDim.x;
    const int64_t c0 = (int64_t)threadIdx.x * per, c1 = c0 + per < nchunks ? c0 + per : nchunks;
    unsigned long long mine = 0ull, total, run;
    for (int64_t c = c0; c < c1; c++) mine += counts[c];
    run = qs_block_scan(mine, &total) - mine;
    for (int64_t c = c0; c < c1; c++) {
        const unsigned long long v = counts[c];
        counts[c] = run;
        run += v;
    }
}

template <int DT>
static __global__ void __launch_bounds__(QS_THREADS) qs_mag_write_kernel(const qs_mag_job jb,
                                                                         const qs_select_state *state,
                                                                         const unsigned long long *counts,
                                                                         int64_t chunk, int64_t nchunks) {
    const uint32_t t = state->prefix;
    const unsigned long long ties_kept = state->ties_kept;
    const bool ranked = qs_mag_ties_ranked(state);
    for (int64_t c = blockIdx.x; c < nchunks; c += gridDim.x) { /* block-uniform */
        const int64_t i0 = c * chunk, i1 = jb.n - i0 < chunk ? jb.n : i0 + chunk;
        if (ranked) {
            qs_rank_and_write(
                i1 - i0, t, counts[c], ties_kept, [&](int64_t i) { return qs_mag_key_at<DT>(jb, i0 + i); },
                [&](int64_t i) -> uint8_t & { return jb.m[qs_mag_mask_offset(jb, i0 + i)]; });
        } else {
            /* all ties kept, or none */
            for (int64_t i = i0 + threadIdx.x; i < i1; i += blockDim.x) {
                int64_t wo, mo;
                qs_mag_offsets(jb, i, &wo, &mo);
                const uint32_t key = qs_magnitude_key(qs_load(jb.w, wo, DT));
                jb.m[mo] = (uint8_t)(key > t || (key == t && ties_kept != 0ull));
            }
        }
    }
}

template <int DT>
static int32_t qs_magnitude_tensor(const qs_mag_job &jb, int64_t prune, int32_t sms, cudaStream_t st) {
    /* chunks of at least QS_MAG_CHUNK_MIN entries, a multiple of the block size, at most ~QS_MAG_MAX_CHUNKS */
    int64_t chunk = (jb.n + QS_MAG_MAX_CHUNKS - 1) / QS_MAG_MAX_CHUNKS;
    chunk = chunk < QS_MAG_CHUNK_MIN ? QS_MAG_CHUNK_MIN : (chunk + QS_THREADS - 1) / QS_THREADS * QS_THREADS;
    const int64_t nchunks = (jb.n + chunk - 1) / chunk;
    const size_t state_bytes = 64, hist_bytes = QS_MAG_BINS * sizeof(unsigned long long);
    const size_t bytes = state_bytes + hist_bytes + (size_t)nchunks * sizeof(unsigned long long);
    char *scratch = NULL;
    int32_t status = QS_OK;
    QS_STATIC_ASSERT(sizeof(qs_select_state) <= 64, "state slot");

    if (cudaMallocAsync((void **)&scratch, bytes, st) != cudaSuccess) {
        (void)cudaGetLastError();
        return QS_ERR_NO_MEMORY;
    }
    qs_select_state *state = (qs_select_state *)scratch;
    unsigned long long *hist = (unsigned long long *)(scratch + state_bytes);
    unsigned long long *counts = hist + QS_MAG_BINS;
    /* each histogram block sees fewer than 2^31 entries */
    const unsigned int hgrid = qs_grid(jb.n, QS_THREADS, sms, 4, (jb.n >> 31) + 1);
    const unsigned int cgrid = qs_grid(nchunks, 1, sms, 8, 1);

    qs_mag_init_kernel<<<1, QS_THREADS, 0, st>>>(state, hist, prune);
    for (int p = 0; p < QS_MAG_PASSES; p++) {
        qs_mag_hist_kernel<DT><<<hgrid, QS_THREADS, 0, st>>>(jb, state, hist, qs_mag_shift[p], qs_mag_bits[p]);
        qs_mag_select_kernel<<<1, QS_MAG_SELECT_THREADS, 0, st>>>(state, hist, qs_mag_shift[p], qs_mag_bits[p],
                                                                  p == QS_MAG_PASSES - 1);
    }
    qs_mag_count_kernel<DT><<<cgrid, QS_THREADS, 0, st>>>(jb, state, counts, chunk, nchunks);
    qs_mag_scan_kernel<<<1, QS_MAG_SELECT_THREADS, 0, st>>>(state, counts, nchunks);
    qs_mag_write_kernel<DT><<<cgrid, QS_THREADS, 0, st>>>(jb, state, counts, chunk, nchunks);
    status = qs_cuda_launch_status();
    if (cudaFreeAsync(scratch, st) != cudaSuccess && status == QS_OK) status = QS_ERR_CUDA;
    return status;
}

int32_t qs_magnitude_mask_cuda(int32_t dtype, int64_t rows, int64_t cols, const void *w, int64_t w_stride,
                               uint8_t *mask, int64_t m_stride, int64_t prune, int32_t per_row, int32_t device,
                               void *stream) {
    int32_t sms;
    const cudaStream_t st = (cudaStream_t)stream;
    QS_TRY(qs_check_magnitude_mask(dtype, rows, cols, w, w_stride, mask, m_stride, prune, per_row));
    if (rows == 0 || cols == 0) return QS_OK;
    QS_TRY(qs_cuda_begin(device, &sms));
    if (prune == 0) {
        if (cudaMemset2DAsync(mask, (size_t)m_stride, 1, (size_t)cols, (size_t)rows, st) != cudaSuccess)
            return QS_ERR_CUDA;
        return QS_OK;
    }
    if (per_row && rows > 1) {
        /* a block per row, sized to the row: short rows get small blocks and more of them per SM */
        int32_t threads = 32;
        while (threads < 256 && threads < cols) threads *= 2;
        const unsigned int grid = qs_grid(rows, 1, sms, 2048 / threads, 1);
        switch (dtype) {
        case QS_DTYPE_F32:
            qs_magnitude_rows_kernel<QS_DTYPE_F32><<<grid, threads, 0, st>>>(w, w_stride, mask, m_stride, rows,
                                                                             cols, prune);
            break;
        case QS_DTYPE_F16:
            qs_magnitude_rows_kernel<QS_DTYPE_F16><<<grid, threads, 0, st>>>(w, w_stride, mask, m_stride, rows,
                                                                             cols, prune);
            break;
        default:
            qs_magnitude_rows_kernel<QS_DTYPE_BF16><<<grid, threads, 0, st>>>(w, w_stride, mask, m_stride, rows,
                                                                              cols, prune);
            break;
        }
        return qs_cuda_launch_status();
    }
    /* per tensor; a single row per row is the same selection, done over the whole GPU */
    qs_mag_job jb;
    jb.w = w;
    jb.m = mask;
    jb.w_stride = w_stride;
    jb.m_stride = m_stride;
    jb.cols = cols;
    jb.n = rows * cols;
    jb.cols_div = qs_divider_make((uint64_t)cols);
    jb.contiguous = rows == 1 || (w_stride == cols && m_stride == cols);
    switch (dtype) {
    case QS_DTYPE_F32: return qs_magnitude_tensor<QS_DTYPE_F32>(jb, prune, sms, st);
    case QS_DTYPE_F16: return qs_magnitude_tensor<QS_DTYPE_F16>(jb, prune, sms, st);
    default: return qs_magnitude_tensor<QS_DTYPE_BF16>(jb, prune, sms, st);
    }
}
