/*
 * qs_mask.c -- CPU sparsity masks.
 *
 * scores / w: rows x cols (row stride in elements), dtype f32 | f16 | bf16. mask: rows x cols uint8, 1 = keep.
 *
 * N:M (`keep` of every `group` consecutive entries of a row): an entry is kept when fewer than `keep` entries of its
 * group rank above it, ranking by score (qs_score_key: NaN highest, -0.0 == +0.0) and then by lower index. The
 * ranks are computed directly, O(group) per entry, which for group <= QS_NM_MAX_GROUP is cheaper than sorting.
 *
 * Magnitude (prune the `prune` smallest |w|): the order is (|w| ascending, index descending), so among equal
 * magnitudes the highest indices go first and the lowest stay. The threshold key T is found by radix selection on
 * the 32-bit magnitude keys (per row: four 8-bit digits; per tensor: two 16-bit digits with per-thread histograms);
 * then everything below T is pruned and, of the entries equal to T, the first `ties_kept` in row-major order are
 * kept. The per-thread histograms of the last digit give each thread's count of T-entries over a fixed partition
 * of the tensor, so every entry's rank among the ties is known without a serial pass: any thread count, same mask.
 */
#include <stdlib.h>
#include <string.h>

#include "include/qsparse.h"
#include "qs_cpu.h"
#include "qs_scalar.h"
#include "qs_validate.h"

/* ---- N:M ------------------------------------------------------------------------------------------------------- */

/* Groups [u0, u1) in row-major order, gpr groups per row. */
QS_ALWAYS_INLINE void nm_groups_t(const char *s, int64_t s_stride, uint8_t *m, int64_t m_stride, int64_t u0,
                                  int64_t u1, int64_t gpr, int64_t cols, int32_t keep, int32_t group,
                                  const int32_t dt) {
    uint32_t key[QS_NM_MAX_GROUP];
    int64_t u;
    for (u = u0; u < u1; u++) {
        int64_t row = u / gpr, c0 = (u % gpr) * group;
        const void *sr = s + row * s_stride;
        uint8_t *mr = m + row * m_stride;
        int32_t n = cols - c0 < group ? (int32_t)(cols - c0) : group;
        int32_t i, j;
        for (i = 0; i < n; i++) key[i] = qs_score_key(qs_load(sr, c0 + i, dt));
        for (i = 0; i < n; i++) {
            int32_t above = 0;
            for (j = 0; j < n; j++) above += (key[j] > key[i]) | ((key[j] == key[i]) & (j < i));
            mr[c0 + i] = (uint8_t)(above < keep);
        }
    }
}

static QS_CLONES void nm_groups(int32_t dt, const char *s, int64_t s_stride, uint8_t *m, int64_t m_stride, int64_t u0,
                                int64_t u1, int64_t gpr, int64_t cols, int32_t keep, int32_t group) {
    switch (dt) {
    case QS_DTYPE_F32: nm_groups_t(s, s_stride, m, m_stride, u0, u1, gpr, cols, keep, group, QS_DTYPE_F32); break;
    case QS_DTYPE_F16: nm_groups_t(s, s_stride, m, m_stride, u0, u1, gpr, cols, keep, group, QS_DTYPE_F16); break;
    default: nm_groups_t(s, s_stride, m, m_stride, u0, u1, gpr, cols, keep, group, QS_DTYPE_BF16); break;
    }
}

int32_t qs_nm_mask_cpu(int32_t dtype, int64_t rows, int64_t cols, const void *scores, int64_t s_stride,
                       uint8_t *mask, int64_t m_stride, int32_t keep, int32_t group, int32_t num_threads) {
    int nt;
    int64_t esize, gpr, units, per_chunk, chunks;
    QS_TRY(qs_check_nm_mask(dtype, rows, cols, scores, s_stride, mask, m_stride, keep, group));
    if (num_threads > QS_MAX_THREADS) return QS_ERR_INVALID_ARGUMENT;
    if (rows == 0 || cols == 0) return QS_OK;
    esize = dtype == QS_DTYPE_F32 ? 4 : 2;
    nt = qs_thread_count(num_threads, rows * cols);
    gpr = (cols + group - 1) / group;
    units = rows * gpr;
    per_chunk = ((int64_t)1 << 16) / group; /* about 64K entries a chunk */
    chunks = (units + per_chunk - 1) / per_chunk;
#pragma omp parallel num_threads(nt)
    {
        qs_fpenv env = qs_fpenv_enter();
        int64_t k;
#pragma omp for schedule(dynamic, 1)
        for (k = 0; k < chunks; k++) {
            int64_t u0 = k * per_chunk, u1 = u0 + per_chunk < units ? u0 + per_chunk : units;
            nm_groups(dtype, (const char *)scores, s_stride * esize, mask, m_stride, u0, u1, gpr, cols, keep, group);
        }
        qs_fpenv_leave(env);
    }
    return QS_OK;
}

/* ---- magnitude ------------------------------------------------------------------------------------------------ */

/* Per row: keys of one row, 4 passes of 8 bits over the row (which stays in cache). */
QS_ALWAYS_INLINE void magnitude_row_t(const void *wr, uint8_t *mr, int64_t cols, int64_t prune, const int32_t dt) {
    int64_t hist[256];
    uint32_t prefix = 0u, pmask = 0u;
    int64_t k = prune, less = 0, i, ties_kept, seen;
    int shift;
    if (prune == 0) {
        memset(mr, 1, (size_t)cols);
        return;
    }
    for (shift = 24; shift >= 0; shift -= 8) {
        int d;
        memset(hist, 0, sizeof hist);
        for (i = 0; i < cols; i++) {
            uint32_t key = qs_magnitude_key(qs_load(wr, i, dt));
            if ((key & pmask) == prefix) hist[(key >> shift) & 0xffu]++;
        }
        for (d = 0; d < 256; d++) {
            if (k <= hist[d]) break;
            k -= hist[d];
            less += hist[d];
        }
        prefix |= (uint32_t)d << shift;
        pmask |= 0xffu << shift;
    }
    /* prefix is T; `less` entries are below it; of the entries equal to T, prune k (the last k in index order) */
    {
        int64_t equal = 0;
        for (i = 0; i < cols; i++) equal += qs_magnitude_key(qs_load(wr, i, dt)) == prefix;
        ties_kept = equal - k;
    }
    seen = 0;
    for (i = 0; i < cols; i++) {
        uint32_t key = qs_magnitude_key(qs_load(wr, i, dt));
        uint8_t keepit = key > prefix;
        if (key == prefix) keepit = seen++ < ties_kept;
        mr[i] = keepit;
    }
}

static QS_CLONES void magnitude_rows(int32_t dt, const char *w, int64_t w_stride, uint8_t *m, int64_t m_stride,
                                     int64_t r0, int64_t r1, int64_t cols, int64_t prune) {
    int64_t row;
    for (row = r0; row < r1; row++) {
        const void *wr = w + row * w_stride;
        uint8_t *mr = m + row * m_stride;
        switch (dt) {
        case QS_DTYPE_F32: magnitude_row_t(wr, mr, cols, prune, QS_DTYPE_F32); break;
        case QS_DTYPE_F16: magnitude_row_t(wr, mr, cols, prune, QS_DTYPE_F16); break;
        default: magnitude_row_t(wr, mr, cols, prune, QS_DTYPE_BF16); break;
        }
    }
}

/* Per tensor, the work is split into contiguous ranges [f0, f1) of row-major element indices. */
#define QS_FOR_FLAT(f0, f1, cols, BODY)                                   \
    do {                                                                  \
        int64_t row_ = (f0) / (cols), col_ = (f0) % (cols), f_;           \
        for (f_ = (f0); f_ < (f1); f_++) {                                \
            BODY;                                                         \
            if (++col_ == (cols)) {                                       \
                col_ = 0;                                                 \
                row_++;                                                   \
            }                                                             \
        }                                                                 \
    } while (0)

/* Histogram of the 16-bit digit at `shift` of the keys that match `prefix` under `pmask`. */
QS_ALWAYS_INLINE void tensor_hist_t(const char *w, int64_t w_stride, int64_t f0, int64_t f1, int64_t cols, int shift,
                                    uint32_t pmask, uint32_t prefix, int64_t *hist, const int32_t dt) {
    QS_FOR_FLAT(f0, f1, cols, {
        uint32_t key = qs_magnitude_key(qs_load(w + row_ * w_stride, col_, dt));
        if ((key & pmask) == prefix) hist[(key >> shift) & 0xffffu]++;
    });
}

static QS_CLONES void tensor_hist(int32_t dt, const char *w, int64_t w_stride, int64_t f0, int64_t f1, int64_t cols,
                                  int shift, uint32_t pmask, uint32_t prefix, int64_t *hist) {
    switch (dt) {
    case QS_DTYPE_F32: tensor_hist_t(w, w_stride, f0, f1, cols, shift, pmask, prefix, hist, QS_DTYPE_F32); break;
    case QS_DTYPE_F16: tensor_hist_t(w, w_stride, f0, f1, cols, shift, pmask, prefix, hist, QS_DTYPE_F16); break;
    default: tensor_hist_t(w, w_stride, f0, f1, cols, shift, pmask, prefix, hist, QS_DTYPE_BF16); break;
    }
}

/* Keeps keys above t, and the ties whose global rank (ties_before + position in this range) is below ties_kept. */
QS_ALWAYS_INLINE void tensor_write_t(const char *w, int64_t w_stride, uint8_t *m, int64_t m_stride, int64_t f0,
                                     int64_t f1, int64_t cols, uint32_t t, int64_t ties_before, int64_t ties_kept,
                                     const int32_t dt) {
    int64_t seen = ties_before;
    QS_FOR_FLAT(f0, f1, cols, {
        uint32_t key = qs_magnitude_key(qs_load(w + row_ * w_stride, col_, dt));
        uint8_t keepit = key > t;
        if (key == t) keepit = seen++ < ties_kept;
        m[row_ * m_stride + col_] = keepit;
    });
}

static QS_CLONES void tensor_write(int32_t dt, const char *w, int64_t w_stride, uint8_t *m, int64_t m_stride,
                                   int64_t f0, int64_t f1, int64_t cols, uint32_t t, int64_t ties_before,
                                   int64_t ties_kept) {
    switch (dt) {
    case QS_DTYPE_F32: tensor_write_t(w, w_stride, m, m_stride, f0, f1, cols, t, ties_before, ties_kept, QS_DTYPE_F32); break;
    case QS_DTYPE_F16: tensor_write_t(w, w_stride, m, m_stride, f0, f1, cols, t, ties_before, ties_kept, QS_DTYPE_F16); break;
    default: tensor_write_t(w, w_stride, m, m_stride, f0, f1, cols, t, ties_before, ties_kept, QS_DTYPE_BF16); break;
    }
}

/* Part p of `parts` contiguous pieces of [0, n). */
static void part_range(int64_t n, int64_t parts, int64_t p, int64_t *f0, int64_t *f1) {
    int64_t q = n / parts, r = n % parts;
    *f0 = p * q + (p < r ? p : r);
    *f1 = *f0 + q + (p < r ? 1 : 0);
}

#define QS_HIST16 65536

static int32_t magnitude_tensor(int32_t dt, const char *w, int64_t w_stride, uint8_t *m, int64_t m_stride,
                                int64_t rows, int64_t cols, int64_t prune, int nt) {
    /* The partition into `parts` index ranges follows the thread count; the result does not: tie ranks are
       global prefix sums over the parts. */
    int64_t n = rows * cols;
    int64_t parts = nt;
    int64_t *hist = (int64_t *)calloc((size_t)parts * QS_HIST16, sizeof(int64_t));
    int64_t *tie_base = (int64_t *)calloc((size_t)parts, sizeof(int64_t));
    uint32_t prefix = 0u, pmask = 0u;
    int64_t k = prune, less = 0, ties_kept, equal = 0;
    int shift, p;
    if (hist == NULL || tie_base == NULL) {
        free(hist);
        free(tie_base);
        return QS_ERR_NO_MEMORY;
    }
    for (shift = 16; shift >= 0; shift -= 16) {
        int64_t d;
        memset(hist, 0, (size_t)parts * QS_HIST16 * sizeof(int64_t));
#pragma omp parallel for num_threads(nt) schedule(static)
        for (p = 0; p < (int)parts; p++) {
            qs_fpenv env = qs_fpenv_enter();
            int64_t f0, f1;
            part_range(n, parts, p, &f0, &f1);
            tensor_hist(dt, w, w_stride, f0, f1, cols, shift, pmask, prefix, hist + (int64_t)p * QS_HIST16);
            qs_fpenv_leave(env);
        }
        for (d = 0; d < QS_HIST16; d++) {
            int64_t c = 0;
            for (p = 0; p < (int)parts; p++) c += hist[(int64_t)p * QS_HIST16 + d];
            if (k <= c) break;
            k -= c;
            less += c;
        }
        prefix |= (uint32_t)d << shift;
        pmask |= 0xffffu << shift;
        if (shift == 0) {
            /* hist[p][d] now counts the entries equal to T in part p */
            for (p = 0; p < (int)parts; p++) {
                tie_base[p] = equal;
                equal += hist[(int64_t)p * QS_HIST16 + d];
            }
        }
    }
    ties_kept = equal - k;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (p = 0; p < (int)parts; p++) {
        qs_fpenv env = qs_fpenv_enter();
        int64_t f0, f1;
        part_range(n, parts, p, &f0, &f1);
        tensor_write(dt, w, w_stride, m, m_stride, f0, f1, cols, prefix, tie_base[p], ties_kept);
        qs_fpenv_leave(env);
    }
    free(hist);
    free(tie_base);
    return QS_OK;
}

int32_t qs_magnitude_mask_cpu(int32_t dtype, int64_t rows, int64_t cols, const void *w, int64_t w_stride,
                              uint8_t *mask, int64_t m_stride, int64_t prune, int32_t per_row, int32_t num_threads) {
    int nt;
    int64_t esize;
    QS_TRY(qs_check_magnitude_mask(dtype, rows, cols, w, w_stride, mask, m_stride, prune, per_row));
    if (num_threads > QS_MAX_THREADS) return QS_ERR_INVALID_ARGUMENT;
    if (rows == 0 || cols == 0) return QS_OK;
    esize = dtype == QS_DTYPE_F32 ? 4 : 2;
    nt = qs_thread_count(num_threads, rows * cols);
    if (per_row) {
        int64_t chunk_rows = ((int64_t)1 << 16) / cols, chunks;
        if (chunk_rows < 1) chunk_rows = 1;
        chunks = (rows + chunk_rows - 1) / chunk_rows;
#pragma omp parallel num_threads(nt)
        {
            qs_fpenv env = qs_fpenv_enter();
            int64_t c;
#pragma omp for schedule(dynamic, 1)
            for (c = 0; c < chunks; c++) {
                int64_t r0 = c * chunk_rows, r1 = r0 + chunk_rows < rows ? r0 + chunk_rows : rows;
                magnitude_rows(dtype, (const char *)w, w_stride * esize, mask, m_stride, r0, r1, cols, prune);
            }
            qs_fpenv_leave(env);
        }
        return QS_OK;
    }
    if (prune == 0) {
        int64_t row;
        for (row = 0; row < rows; row++) memset(mask + row * m_stride, 1, (size_t)cols);
        return QS_OK;
    }
    return magnitude_tensor(dtype, (const char *)w, w_stride * esize, mask, m_stride, rows, cols, prune, nt);
}
