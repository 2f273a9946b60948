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

/* One group of n entries (n <= group). An entry is kept when fewer than `keep` entries rank above it; each pair
   (j < i) is compared once: if key[j] >= key[i], j ranks above i (ties to the lower index), else i above j. */
QS_ALWAYS_INLINE void nm_group(const void *sr, uint8_t *mr, int64_t c0, int32_t n, int32_t keep, const int32_t dt) {
    uint32_t key[QS_NM_MAX_GROUP];
    int32_t above[QS_NM_MAX_GROUP];
    int32_t i, j;
    for (i = 0; i < n; i++) {
        key[i] = qs_score_key(qs_load(sr, c0 + i, dt));
        above[i] = 0;
    }
    for (i = 1; i < n; i++)
        for (j = 0; j < i; j++) {
            int32_t c = key[j] >= key[i];
            above[i] += c;
            above[j] += 1 - c;
        }
    for (i = 0; i < n; i++) mr[c0 + i] = (uint8_t)(above[i] < keep);
}

/* `count` consecutive full groups of a literal size G starting at column c0: the same rule, written so that the
   loop over groups vectorizes (each group's G keys become lanes of interleaved vector loads). */
QS_ALWAYS_INLINE void nm_run(const void *sr, uint8_t *mr, int64_t c0, int64_t count, int32_t keep, const int32_t G,
                             const int32_t dt) {
    int64_t g;
    for (g = 0; g < count; g++) {
        uint32_t key[16];
        int32_t above[16];
        int32_t i, j;
        QS_UNROLL
        for (i = 0; i < G; i++) {
            key[i] = qs_score_key(qs_load(sr, c0 + g * G + i, dt));
            above[i] = 0;
        }
        QS_UNROLL
        for (i = 1; i < G; i++) {
            QS_UNROLL
            for (j = 0; j < i; j++) {
                int32_t c = key[j] >= key[i];
                above[i] += c;
                above[j] += 1 - c;
            }
        }
        QS_UNROLL
        for (i = 0; i < G; i++) mr[c0 + g * G + i] = (uint8_t)(above[i] < keep);
    }
}

/* Groups [u0, u1) in row-major order, gpr groups per row. gc: the group size as a literal (2, 4, 8, 16) or 0. */
QS_ALWAYS_INLINE void nm_groups_t(const char *s, int64_t s_stride, uint8_t *m, int64_t m_stride, int64_t u0,
                                  int64_t u1, int64_t gpr, int64_t cols, int32_t keep, int32_t group,
                                  const int32_t gc, const int32_t dt) {
    int64_t full = cols / group; /* full groups per row */
    int64_t u = u0;
    while (u < u1) {
        int64_t row = u / gpr, g = u % gpr;
        int64_t end = u1 - u < gpr - g ? u1 : u + (gpr - g); /* stay within this row */
        const void *sr = s + row * s_stride;
        uint8_t *mr = m + row * m_stride;
        if (gc) {
            int64_t run = (end - u) < full - g ? end - u : full - g;
            if (run > 0) {
                nm_run(sr, mr, g * group, run, keep, gc, dt);
                u += run;
                g += run;
            }
        }
        for (; u < end; u++, g++) {
            int64_t c0 = g * group;
            nm_group(sr, mr, c0, cols - c0 < group ? (int32_t)(cols - c0) : group, keep, dt);
        }
    }
}

#define QS_NM_GROUP_SIZES(DT)                                                                                 \
    switch (group) {                                                                                          \
    case 2: nm_groups_t(s, s_stride, m, m_stride, u0, u1, gpr, cols, keep, group, 2, DT); break;             \
    case 4: nm_groups_t(s, s_stride, m, m_stride, u0, u1, gpr, cols, keep, group, 4, DT); break;             \
    case 8: nm_groups_t(s, s_stride, m, m_stride, u0, u1, gpr, cols, keep, group, 8, DT); break;             \
    case 16: nm_groups_t(s, s_stride, m, m_stride, u0, u1, gpr, cols, keep, group, 16, DT); break;           \
    default: nm_groups_t(s, s_stride, m, m_stride, u0, u1, gpr, cols, keep, group, 0, DT); break;            \
    }

static QS_CLONES void nm_groups(int32_t dt, const char *s, int64_t s_stride, uint8_t *m, int64_t m_stride, int64_t u0,
                                int64_t u1, int64_t gpr, int64_t cols, int32_t keep, int32_t group) {
    switch (dt) {
    case QS_DTYPE_F32: QS_NM_GROUP_SIZES(QS_DTYPE_F32); break;
    case QS_DTYPE_F16: QS_NM_GROUP_SIZES(QS_DTYPE_F16); break;
    default: QS_NM_GROUP_SIZES(QS_DTYPE_BF16); break;
    }
}
#undef QS_NM_GROUP_SIZES

int32_t qs_nm_mask_cpu(int32_t dtype, int64_t rows, int64_t cols, const void *scores, int64_t s_stride,
                       uint8_t *mask, int64_t m_stride, int32_t keep, int32_t group, int32_t num_threads) {
    int nt;
    int64_t esize, gpr, units, per_chunk, chunks;
    QS_TRY(qs_check_nm_mask(dtype, rows, cols, scores, s_stride, mask, m_stride, keep, group));
    QS_TRY(qs_check_threads(num_threads));
    if (rows == 0 || cols == 0) return QS_OK;
    esize = dtype == QS_DTYPE_F32 ? 4 : 2;
    nt = qs_thread_count(num_threads, rows * cols);
    (void)nt; /* only read by OpenMP pragmas */
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

/* Keys of |w| (qs_magnitude_key) order like |w|, NaN largest. Selection finds the key T of the prune-th smallest
   entry; entries below T are pruned, above T kept, and of the entries equal to T the first `ties_kept` in index
   order are kept. All passes work on spans [c0, c1) of one row. */

QS_ALWAYS_INLINE void span_hist(const void *wr, int64_t c0, int64_t c1, int shift, uint32_t digit_mask,
                                uint32_t pmask, uint32_t prefix, uint32_t *hist, const int32_t dt) {
    int64_t i;
    if (pmask == 0u) {
        for (i = c0; i < c1; i++) hist[(qs_magnitude_key(qs_load(wr, i, dt)) >> shift) & digit_mask]++;
    } else {
        for (i = c0; i < c1; i++) {
            uint32_t key = qs_magnitude_key(qs_load(wr, i, dt));
            if ((key & pmask) == prefix) hist[(key >> shift) & digit_mask]++;
        }
    }
}

/* mask = key > t (vectorizable; the ties are settled by span_ties). */
QS_ALWAYS_INLINE void span_above(const void *wr, uint8_t *mr, int64_t c0, int64_t c1, uint32_t t, const int32_t dt) {
    int64_t i;
    for (i = c0; i < c1; i++) mr[i] = (uint8_t)(qs_magnitude_key(qs_load(wr, i, dt)) > t);
}

QS_ALWAYS_INLINE void span_ties(const void *wr, uint8_t *mr, int64_t c0, int64_t c1, uint32_t t, int64_t *seen,
                                int64_t ties_kept, const int32_t dt) {
    int64_t i;
    for (i = c0; i < c1; i++)
        if (qs_magnitude_key(qs_load(wr, i, dt)) == t) mr[i] = (uint8_t)((*seen)++ < ties_kept);
}

/* The bin d holding the k-th smallest (1 <= k <= total): returns d and leaves in *k the rank within bin d. */
static int64_t hist_find(const uint32_t *hist, int64_t bins, int64_t *k) {
    int64_t d;
    for (d = 0; d < bins - 1; d++) {
        if (*k <= (int64_t)hist[d]) break;
        *k -= hist[d];
    }
    return d;
}

/* Radix selection over a buffer of candidate (key, index) pairs already in index order, all sharing the key bits
   above `low_bits`: marks the kept ones in mr (the rest stay 0). k: how many of them to prune. */
static void select_candidates(uint64_t *cand, int64_t n, int64_t k, int low_bits, uint8_t *mr) {
    uint32_t hist[256];
    uint32_t prefix = 0u, pmask = 0u, t;
    int64_t i, ties_kept, seen = 0, equal;
    int shift;
    for (shift = low_bits - 8; shift > -8; shift -= 8) {
        int sh = shift < 0 ? 0 : shift;
        uint32_t dmask = shift < 0 ? (0xffu >> -shift) : 0xffu;
        memset(hist, 0, sizeof hist);
        for (i = 0; i < n; i++) {
            uint32_t key = (uint32_t)(cand[i] >> 32);
            if ((key & pmask) == prefix) hist[(key >> sh) & dmask]++;
        }
        prefix |= (uint32_t)hist_find(hist, 256, &k) << sh;
        pmask |= dmask << sh;
    }
    t = prefix; /* the low bits of T; the high bits are common to all candidates */
    equal = 0;
    for (i = 0; i < n; i++) equal += ((uint32_t)(cand[i] >> 32) & pmask) == t;
    ties_kept = equal - k;
    for (i = 0; i < n; i++) {
        uint32_t key = (uint32_t)(cand[i] >> 32) & pmask;
        int64_t idx = (int64_t)(uint32_t)cand[i];
        if (key > t) mr[idx] = 1;
        else if (key == t) mr[idx] = (uint8_t)(seen++ < ties_kept);
    }
}

#define QS_ROW_DIGIT 11 /* first digit of the per-row selection: 2048 bins */

/* One row: a histogram of the top QS_ROW_DIGIT bits, then an exact selection among the entries of the bin that
   holds the threshold, collected into `cand` (capacity cap). A bin larger than cap (many equal magnitudes in a
   long row) falls back to radix passes over the row. */
QS_ALWAYS_INLINE void magnitude_row_t(const void *wr, uint8_t *mr, int64_t cols, int64_t prune, uint32_t *hist,
                                      uint64_t *cand, int64_t cap, const int32_t dt) {
    const int shift0 = 32 - QS_ROW_DIGIT;
    int64_t k = prune, d, n, i;
    if (prune == 0 || prune == cols) {
        memset(mr, prune == 0, (size_t)cols);
        return;
    }
    memset(hist, 0, sizeof(uint32_t) << QS_ROW_DIGIT);
    span_hist(wr, 0, cols, shift0, (1u << QS_ROW_DIGIT) - 1u, 0u, 0u, hist, dt);
    d = hist_find(hist, (int64_t)1 << QS_ROW_DIGIT, &k);
    n = hist[d];
    span_above(wr, mr, 0, cols, (((uint32_t)d + 1u) << shift0) - 1u, dt); /* keeps bins above d */
    if (n <= cap && cols <= (int64_t)UINT32_MAX) {
        int64_t c = 0;
        for (i = 0; i < cols; i++) {
            uint32_t key = qs_magnitude_key(qs_load(wr, i, dt));
            if ((key >> shift0) == (uint32_t)d) cand[c++] = ((uint64_t)key << 32) | (uint64_t)i;
        }
        select_candidates(cand, c, k, shift0, mr);
    } else {
        /* radix passes of 8 bits over the row for the remaining bits */
        uint32_t prefix = (uint32_t)d << shift0, pmask = ~0u << shift0, t;
        int64_t seen = 0, equal;
        int shift;
        for (shift = shift0 - 8; shift > -8; shift -= 8) {
            int sh = shift < 0 ? 0 : shift;
            uint32_t dmask = shift < 0 ? (0xffu >> -shift) : 0xffu;
            memset(hist, 0, 256 * sizeof(uint32_t));
            span_hist(wr, 0, cols, sh, dmask, pmask, prefix, hist, dt);
            prefix |= (uint32_t)hist_find(hist, 256, &k) << sh;
            pmask |= dmask << sh;
        }
        t = prefix;
        equal = 0;
        for (i = 0; i < cols; i++) equal += qs_magnitude_key(qs_load(wr, i, dt)) == t;
        for (i = 0; i < cols; i++) mr[i] = (uint8_t)(qs_magnitude_key(qs_load(wr, i, dt)) > t);
        span_ties(wr, mr, 0, cols, t, &seen, equal - k, dt);
    }
}

static QS_CLONES void magnitude_rows(int32_t dt, const char *w, int64_t w_stride, uint8_t *m, int64_t m_stride,
                                     int64_t r0, int64_t r1, int64_t cols, int64_t prune, uint32_t *hist,
                                     uint64_t *cand, int64_t cap) {
    int64_t row;
    for (row = r0; row < r1; row++) {
        const void *wr = w + row * w_stride;
        uint8_t *mr = m + row * m_stride;
        switch (dt) {
        case QS_DTYPE_F32: magnitude_row_t(wr, mr, cols, prune, hist, cand, cap, QS_DTYPE_F32); break;
        case QS_DTYPE_F16: magnitude_row_t(wr, mr, cols, prune, hist, cand, cap, QS_DTYPE_F16); break;
        default: magnitude_row_t(wr, mr, cols, prune, hist, cand, cap, QS_DTYPE_BF16); break;
        }
    }
}

/* Per tensor, each thread takes a contiguous range [f0, f1) of row-major indices, visited as row spans. */
#define QS_FOR_SPANS(f0, f1, cols, BODY)                                              \
    do {                                                                              \
        int64_t f_ = (f0), row_ = (f0) / (cols), c0_ = (f0) % (cols);                 \
        while (f_ < (f1)) {                                                           \
            int64_t c1_ = (cols) - c0_ < (f1) - f_ ? (cols) : c0_ + ((f1) - f_);       \
            BODY;                                                                     \
            f_ += c1_ - c0_;                                                          \
            row_++;                                                                   \
            c0_ = 0;                                                                  \
        }                                                                             \
    } while (0)

/* Pass `pass` over [f0, f1): 0, 1 = histograms of the 16-bit digits; 2 = keep keys > t; 3 = settle the ties. */
QS_ALWAYS_INLINE void tensor_pass_t(int pass, const char *w, int64_t w_stride, uint8_t *m, int64_t m_stride,
                                    int64_t f0, int64_t f1, int64_t cols, uint32_t prefix, uint32_t *hist,
                                    int64_t *seen, int64_t ties_kept, const int32_t dt) {
    QS_FOR_SPANS(f0, f1, cols, {
        const void *wr = w + row_ * w_stride;
        uint8_t *mr = m + row_ * m_stride;
        if (pass == 0) span_hist(wr, c0_, c1_, 16, 0xffffu, 0u, 0u, hist, dt);
        else if (pass == 1) span_hist(wr, c0_, c1_, 0, 0xffffu, 0xffff0000u, prefix, hist, dt);
        else if (pass == 2) span_above(wr, mr, c0_, c1_, prefix, dt);
        else span_ties(wr, mr, c0_, c1_, prefix, seen, ties_kept, dt);
    });
}

static QS_CLONES void tensor_pass(int32_t dt, int pass, const char *w, int64_t w_stride, uint8_t *m, int64_t m_stride,
                                  int64_t f0, int64_t f1, int64_t cols, uint32_t prefix, uint32_t *hist,
                                  int64_t *seen, int64_t ties_kept) {
    switch (dt) {
    case QS_DTYPE_F32: tensor_pass_t(pass, w, w_stride, m, m_stride, f0, f1, cols, prefix, hist, seen, ties_kept, QS_DTYPE_F32); break;
    case QS_DTYPE_F16: tensor_pass_t(pass, w, w_stride, m, m_stride, f0, f1, cols, prefix, hist, seen, ties_kept, QS_DTYPE_F16); break;
    default: tensor_pass_t(pass, w, w_stride, m, m_stride, f0, f1, cols, prefix, hist, seen, ties_kept, QS_DTYPE_BF16); break;
    }
}

/* Part p of `parts` contiguous pieces of [0, n). */
static void part_range(int64_t n, int64_t parts, int64_t p, int64_t *f0, int64_t *f1) {
    int64_t q = n / parts, r = n % parts;
    *f0 = p * q + (p < r ? p : r);
    *f1 = *f0 + q + (p < r ? 1 : 0);
}

#define QS_HIST16 65536
#define QS_PART_MAX ((int64_t)1 << 31) /* elements per part, so that 32-bit histogram counts cannot overflow */

static int32_t magnitude_tensor(int32_t dt, const char *w, int64_t w_stride, uint8_t *m, int64_t m_stride,
                                int64_t rows, int64_t cols, int64_t prune, int nt) {
    /* The partition into `parts` index ranges follows the thread count (and a size cap); the result does not:
       tie ranks are global prefix sums over the parts. */
    const int64_t n = rows * cols;
    const int64_t parts = (n + QS_PART_MAX - 1) / QS_PART_MAX > nt ? (n + QS_PART_MAX - 1) / QS_PART_MAX : nt;
    uint32_t *hist = (uint32_t *)malloc((size_t)parts * QS_HIST16 * sizeof(uint32_t));
    int64_t *tie_base = (int64_t *)calloc((size_t)parts, sizeof(int64_t));
    uint32_t prefix = 0u;
    int64_t k = prune, ties_kept, equal = 0, p;
    int pass;
    if (hist == NULL || tie_base == NULL) {
        free(hist);
        free(tie_base);
        return QS_ERR_NO_MEMORY;
    }
    for (pass = 0; pass < 2; pass++) {
        int64_t d, total;
        memset(hist, 0, (size_t)parts * QS_HIST16 * sizeof(uint32_t));
#pragma omp parallel for num_threads(nt) schedule(static)
        for (p = 0; p < parts; p++) {
            qs_fpenv env = qs_fpenv_enter();
            int64_t f0, f1;
            part_range(n, parts, p, &f0, &f1);
            tensor_pass(dt, pass, w, w_stride, m, m_stride, f0, f1, cols, prefix, hist + p * QS_HIST16, NULL, 0);
            qs_fpenv_leave(env);
        }
        for (d = 0; d < QS_HIST16; d++) {
            total = 0;
            for (p = 0; p < parts; p++) total += hist[p * QS_HIST16 + d];
            if (k <= total) break;
            k -= total;
        }
        prefix |= (uint32_t)d << (pass == 0 ? 16 : 0);
        if (pass == 1) /* hist[p][d] counts the entries equal to T in part p */
            for (p = 0; p < parts; p++) {
                tie_base[p] = equal;
                equal += hist[p * QS_HIST16 + d];
            }
    }
    ties_kept = equal - k;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (p = 0; p < parts; p++) {
        qs_fpenv env = qs_fpenv_enter();
        int64_t f0, f1, seen = tie_base[p];
        part_range(n, parts, p, &f0, &f1);
        tensor_pass(dt, 2, w, w_stride, m, m_stride, f0, f1, cols, prefix, NULL, NULL, 0);
        if (p + 1 < parts ? tie_base[p + 1] > tie_base[p] : equal > tie_base[p]) /* this part holds ties */
            tensor_pass(dt, 3, w, w_stride, m, m_stride, f0, f1, cols, prefix, NULL, &seen, ties_kept);
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
    QS_TRY(qs_check_threads(num_threads));
    if (rows == 0 || cols == 0) return QS_OK;
    esize = dtype == QS_DTYPE_F32 ? 4 : 2;
    nt = qs_thread_count(num_threads, rows * cols);
    (void)nt; /* only read by OpenMP pragmas */
    if (per_row) {
        int64_t chunk_rows = ((int64_t)1 << 16) / cols, chunks;
        const int64_t cap = cols < ((int64_t)1 << 16) ? cols : ((int64_t)1 << 16);
        int32_t status = QS_OK;
        if (chunk_rows < 1) chunk_rows = 1;
        chunks = (rows + chunk_rows - 1) / chunk_rows;
#pragma omp parallel num_threads(nt)
        {
            qs_fpenv env = qs_fpenv_enter();
            uint32_t *hist = (uint32_t *)malloc(sizeof(uint32_t) << QS_ROW_DIGIT);
            uint64_t *cand = (uint64_t *)malloc((size_t)cap * sizeof(uint64_t));
            int64_t c;
            if (hist == NULL || cand == NULL) {
#pragma omp atomic write
                status = QS_ERR_NO_MEMORY;
            }
#pragma omp barrier
            if (status == QS_OK) {
#pragma omp for schedule(dynamic, 1)
                for (c = 0; c < chunks; c++) {
                    int64_t r0 = c * chunk_rows, r1 = r0 + chunk_rows < rows ? r0 + chunk_rows : rows;
                    magnitude_rows(dtype, (const char *)w, w_stride * esize, mask, m_stride, r0, r1, cols, prune, hist,
                                   cand, cap);
                }
            }
            free(hist);
            free(cand);
            qs_fpenv_leave(env);
        }
        return status;
    }
    if (prune == 0) {
        int64_t row;
        for (row = 0; row < rows; row++) memset(mask + row * m_stride, 1, (size_t)cols);
        return QS_OK;
    }
    return magnitude_tensor(dtype, (const char *)w, w_stride * esize, mask, m_stride, rows, cols, prune, nt);
}
