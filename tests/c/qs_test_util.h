/*
 * qs_test_util.h -- helpers shared by the C-level tests (test_boundary.c, fuzz_args.c): guarded
 * buffers, a deterministic generator, tensor fills and the bit-level facts the checks need.
 *
 * A guarded buffer is one malloc block laid out as [QT_GUARD canary bytes | data | QT_GUARD canary bytes], the
 * whole block filled with a position-dependent pattern that never contains 0x00 or 0x01 (the bytes a mask kernel
 * writes, and the low bytes of +0.0). ASan catches accesses outside the block; the canaries and a snapshot of the
 * whole block catch writes that stay inside it but land where no output element lives: before the tensor, after
 * it, or in the padding between rows of a strided view.
 *
 * Tensors are the library's row-major views: `rows` x `cols` elements of `esize` bytes, consecutive rows `stride`
 * elements apart. Test code only; it prints and allocates freely.
 */
#ifndef QS_TEST_UTIL_H
#define QS_TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qsparse.h"

#define QT_GUARD 64          /* canary bytes on each side; a multiple of 16 keeps the data as aligned as malloc's */
#define QT_CLEAN INT64_MIN   /* "no stray byte" from qt_first_stray() */

typedef struct qt_buf {
    unsigned char *block; /* guard | data | guard */
    unsigned char *snap;  /* the block as qt_snap() last saw it */
    unsigned char *data;  /* block + QT_GUARD */
    size_t bytes;         /* size of the data region */
    unsigned salt;        /* pattern seed, so that two buffers never hold the same bytes */
} qt_buf;

static inline unsigned char qt_pattern(size_t i, unsigned salt) {
    return (unsigned char)(0x80u | ((i * 37u + salt * 101u + 0x2bu) & 0x7fu));
}

static inline size_t qt_total(const qt_buf *b) { return b->bytes + 2u * QT_GUARD; }

/* Fills the whole block (guards and data) with the pattern. */
static inline void qt_fill_pattern(qt_buf *b) {
    size_t i, n = qt_total(b);
    for (i = 0; i < n; i++) b->block[i] = qt_pattern(i, b->salt);
}

static inline void qt_die_oom(size_t bytes) {
    fprintf(stderr, "test harness: cannot allocate %zu bytes\n", bytes);
    exit(2);
}

static inline void qt_buf_init(qt_buf *b, size_t bytes, unsigned salt) {
    b->bytes = bytes;
    b->salt = salt;
    b->block = (unsigned char *)malloc(qt_total(b));
    b->snap = (unsigned char *)malloc(qt_total(b));
    if (b->block == NULL || b->snap == NULL) qt_die_oom(qt_total(b));
    b->data = b->block + QT_GUARD;
    qt_fill_pattern(b);
    memcpy(b->snap, b->block, qt_total(b));
}

static inline void qt_buf_free(qt_buf *b) {
    free(b->block);
    free(b->snap);
    b->block = b->snap = b->data = NULL;
    b->bytes = 0;
}

static inline void qt_snap(qt_buf *b) { memcpy(b->snap, b->block, qt_total(b)); }

/* First byte of block[from, to) that differs from the snapshot, as an offset from data; QT_CLEAN when none. */
static inline int64_t qt_diff_range(const qt_buf *b, size_t from, size_t to) {
    size_t i;
    if (to > from && memcmp(b->block + from, b->snap + from, to - from) != 0)
        for (i = from; i < to; i++)
            if (b->block[i] != b->snap[i]) return (int64_t)i - QT_GUARD;
    return QT_CLEAN;
}

/* The whole block, guards included, equals the snapshot. */
static inline int64_t qt_first_change(const qt_buf *b) { return qt_diff_range(b, 0, qt_total(b)); }

/* First byte outside the rows x cols cells (esize bytes each, rows stride elements apart) that differs from the
   snapshot: a write before, after or between the rows of the tensor. The caller guarantees the view fits. */
static inline int64_t qt_first_stray(const qt_buf *b, int64_t rows, int64_t cols, int64_t stride, size_t esize) {
    size_t pos = 0;
    int64_t r, d;
    if (cols > 0) {
        for (r = 0; r < rows; r++) {
            size_t start = QT_GUARD + (size_t)(r * stride) * esize;
            if ((d = qt_diff_range(b, pos, start)) != QT_CLEAN) return d;
            pos = start + (size_t)cols * esize;
        }
    }
    return qt_diff_range(b, pos, qt_total(b));
}

/* Elements a rows x cols view with row stride `stride` spans: (rows-1)*stride + cols, 0 when empty. */
static inline int64_t qt_extent(int64_t rows, int64_t cols, int64_t stride) {
    return (rows <= 0 || cols <= 0) ? 0 : (rows - 1) * stride + cols;
}

static inline size_t qt_esize(int32_t dtype) { return dtype == QS_DTYPE_F32 ? 4u : 2u; }

/* ---- deterministic generator (splitmix64) ------------------------------------------------------------------- */

static inline uint64_t qt_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint32_t qt_below(uint64_t *s, uint32_t n) { return (uint32_t)(qt_next(s) % n); }

/* ---- element bit patterns ---------------------------------------------------------------------------------- */

static inline float qt_u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint32_t qt_f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline int qt_isnan_f32(float f) { return (qt_f2u(f) & 0x7fffffffu) > 0x7f800000u; }

/* How qt_fill_tensor chooses values. */
enum {
    QT_VALUES_FINITE = 0,   /* normal numbers of magnitude 2^-20 .. 2^20 */
    QT_VALUES_SPECIAL = 1,  /* mostly finite, about one in eight a zero, subnormal, extreme, Inf or NaN */
    QT_VALUES_TIES = 2      /* a handful of distinct values, so that ranks tie often */
};

/* One element's bit pattern (f32: 32 bits; f16/bf16: the low 16 bits). */
static inline uint32_t qt_value_bits(uint64_t *s, int32_t dtype, int kind) {
    static const uint32_t f32_special[] = {0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u,
                                           0xffc00001u, 0x00000001u, 0x807fffffu, 0x7f7fffffu, 0xff7fffffu,
                                           0x00800000u, 0x3f800000u};
    static const uint32_t f16_special[] = {0x0000u, 0x8000u, 0x7c00u, 0xfc00u, 0x7e00u, 0xfe01u,
                                           0x0001u, 0x83ffu, 0x7bffu, 0xfbffu, 0x0400u, 0x3c00u};
    static const uint32_t bf16_special[] = {0x0000u, 0x8000u, 0x7f80u, 0xff80u, 0x7fc0u, 0xffc1u,
                                            0x0001u, 0x807fu, 0x7f7fu, 0xff7fu, 0x0080u, 0x3f80u};
    static const uint32_t f32_ties[] = {0x00000000u, 0x80000000u, 0x3f800000u, 0xbf800000u, 0x40000000u,
                                        0x3f000000u};
    static const uint32_t h_ties[] = {0x0000u, 0x8000u, 0x3c00u, 0xbc00u, 0x4000u, 0x3800u};
    static const uint32_t b_ties[] = {0x0000u, 0x8000u, 0x3f80u, 0xbf80u, 0x4000u, 0x3f00u};
    uint64_t r = qt_next(s);
    uint32_t sign = (uint32_t)(r >> 63);
    if (kind == QT_VALUES_TIES) {
        uint32_t i = (uint32_t)(r % 6u);
        return dtype == QS_DTYPE_F32 ? f32_ties[i] : dtype == QS_DTYPE_F16 ? h_ties[i] : b_ties[i];
    }
    if (kind == QT_VALUES_SPECIAL && (r & 7u) == 0u) {
        uint32_t i = (uint32_t)((r >> 8) % 12u);
        return dtype == QS_DTYPE_F32 ? f32_special[i] : dtype == QS_DTYPE_F16 ? f16_special[i] : bf16_special[i];
    }
    if (dtype == QS_DTYPE_F32) {
        uint32_t e = 107u + (uint32_t)((r >> 8) % 41u); /* 2^-20 .. 2^20 */
        return (sign << 31) | (e << 23) | (uint32_t)((r >> 16) & 0x7fffffu);
    }
    if (dtype == QS_DTYPE_F16) {
        uint32_t e = 5u + (uint32_t)((r >> 8) % 21u); /* 2^-10 .. 2^10 */
        return (sign << 15) | (e << 10) | (uint32_t)((r >> 16) & 0x3ffu);
    }
    return (sign << 15) | ((107u + (uint32_t)((r >> 8) % 41u)) << 7) | (uint32_t)((r >> 16) & 0x7fu);
}

static inline void qt_store_bits(void *base, int64_t i, int32_t dtype, uint32_t bits) {
    if (dtype == QS_DTYPE_F32) memcpy((char *)base + i * 4, &bits, 4);
    else {
        uint16_t h = (uint16_t)bits;
        memcpy((char *)base + i * 2, &h, 2);
    }
}

static inline uint32_t qt_load_bits(const void *base, int64_t i, int32_t dtype) {
    if (dtype == QS_DTYPE_F32) {
        uint32_t u;
        memcpy(&u, (const char *)base + i * 4, 4);
        return u;
    } else {
        uint16_t h;
        memcpy(&h, (const char *)base + i * 2, 2);
        return h;
    }
}

/* Writes the cells of a rows x cols view (the padding keeps whatever it held). */
static inline void qt_fill_tensor(void *base, int32_t dtype, int64_t rows, int64_t cols, int64_t stride,
                                  uint64_t *s, int kind) {
    int64_t r, c;
    if (rows <= 0 || cols <= 0) return;
    for (r = 0; r < rows; r++)
        for (c = 0; c < cols; c++) qt_store_bits(base, r * stride + c, dtype, qt_value_bits(s, dtype, kind));
}

/* A 0/1 mask in the cells of a rows x cols view, about `percent_kept` percent ones. */
static inline void qt_fill_mask(uint8_t *m, int64_t rows, int64_t cols, int64_t stride, uint64_t *s,
                                unsigned percent_kept) {
    int64_t r, c;
    if (rows <= 0 || cols <= 0) return;
    for (r = 0; r < rows; r++)
        for (c = 0; c < cols; c++) m[r * stride + c] = (uint8_t)(qt_below(s, 100u) < percent_kept);
}

/* Format ids by name (the table is read from the library, so a new format is covered without new code). */
static inline int32_t qt_format_id(const char *name) {
    int32_t i, n = qs_format_count();
    for (i = 0; i < n; i++) {
        qs_format_info f;
        if (qs_format_get(i, &f) == QS_OK && strcmp(f.name, name) == 0) return i;
    }
    fprintf(stderr, "test harness: format %s not in the table\n", name);
    exit(2);
}

#endif /* QS_TEST_UTIL_H */
