/*
 * fuzz_args.c -- fuzzing the argument surface of the CPU library (RELIABILITY.md item 23).
 *
 * One input (a byte string) decodes into one set of arguments -- format, rows, cols, row strides, group size,
 * N:M keep and group, rounding, seed, dtype, mask mode, saturation, reserved fields, prune count, thread count,
 * which pointers are NULL -- and the remaining bytes are the payload that fills the tensors. Every CPU entry point
 * is then called with those arguments. For each call the harness
 *   - predicts the status from the documented rules, in the order of csrc/qs_validate.h (fz_expect_*), and
 *     requires exactly that status: a documented status for every bad call, QS_OK for every valid one;
 *   - backs every non-NULL pointer with a guarded buffer (qs_test_util.h) and requires that nothing outside the
 *     output cells changed (canaries, row padding), that inputs did not change, and that a failed or empty call
 *     wrote nothing at all;
 *   - checks cheap invariants of valid results (masked outputs are +0.0, N:M groups keep min(keep, r), magnitude
 *     masks prune exactly `prune`, element codes round-trip) and, for tensors large enough to run on several
 *     threads, that one thread gives the same bytes.
 * Any violation prints the arguments and the input in hex and aborts, so that libFuzzer keeps the input.
 *
 * Two builds:
 *   clang -fsanitize=fuzzer,address,undefined ...        libFuzzer calls LLVMFuzzerTestOneInput
 *                                                          (make -C tests/c fuzz; optional)
 *   gcc -DQS_FUZZ_STANDALONE -fsanitize=address,undefined  main() runs -n N pseudo-random inputs from the fixed
 *                                                          seed -s S (deterministic), or replays the files named
 *                                                          on the command line (make -C tests/c: what CI runs)
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qs_test_util.h"
#include "qsparse.h"

/* Largest tensor (bytes) the harness backs with memory; a valid call on a bigger view is skipped. */
#define FZ_MAX_BYTES ((int64_t)1 << 21)
/* Below this many elements the library runs on one thread (qs_cpu.h), so a thread count only matters above. */
#define FZ_PARALLEL_MIN ((int64_t)1 << 15)

/* ---- the current input, for failure reports ----------------------------------------------------------------- */

static const uint8_t *g_input;
static size_t g_input_len;
static char g_args[512]; /* the decoded arguments of the call under test */

/* ---- statistics of the run ---------------------------------------------------------------------------------------------- */

enum { E_FQ, E_NM, E_MAG, E_ENC, E_DEC, E_FMT, E_COUNT };
static long g_calls[E_COUNT], g_ok[E_COUNT], g_skipped[E_COUNT], g_parallel;
static long g_status[E_COUNT][QS_STATUS_COUNT_]; /* how often each status came back */
static int g_entry;                                /* the E_* of the call under test */

static void fz_fail(const char *fmt, ...) {
    va_list ap;
    size_t i;
    fprintf(stderr, "\nfuzz_args: FAIL: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n  call: %s\n  input (%zu bytes):", g_args, g_input_len);
    for (i = 0; i < g_input_len; i++) fprintf(stderr, "%s%02x", i % 32 == 0 ? "\n    " : "", g_input[i]);
    fprintf(stderr, "\n");
    abort();
}

static const char *st_name(int32_t s) {
    static const char *names[] = {"OK", "NULL_POINTER", "INVALID_SIZE", "INVALID_STRIDE", "INVALID_FORMAT",
                                  "INVALID_GROUP", "INVALID_ROUNDING", "INVALID_DTYPE", "INVALID_ARGUMENT",
                                  "UNSUPPORTED", "NO_MEMORY", "CUDA"};
    return (s >= 0 && s < QS_STATUS_COUNT_) ? names[s] : "(not a qs_status)";
}

/* A CPU entry point may return any status but QS_ERR_CUDA. */
static void fz_check_status(int32_t got, int32_t want) {
    if (got < 0 || got >= QS_STATUS_COUNT_ || got == QS_ERR_CUDA)
        fz_fail("status %d is not a documented CPU status", got);
    if (qs_status_string(got) == NULL) fz_fail("qs_status_string(%d) is NULL", got);
    if (got != want) fz_fail("status %d %s, expected %d %s", got, st_name(got), want, st_name(want));
    g_status[g_entry][got]++;
}

/* ---- decoding ------------------------------------------------------------------------------------------------ */

typedef struct fz_cursor {
    const uint8_t *p;
    size_t n, i;
} fz_cursor;

static uint8_t take8(fz_cursor *c) { return c->i < c->n ? c->p[c->i++] : 0u; }

static uint64_t take64(fz_cursor *c) {
    uint64_t v = 0;
    int k;
    for (k = 0; k < 8; k++) v = (v << 8) | take8(c);
    return v;
}

/* One field: one byte in 16 selects an extreme value from `ext`, the others a normal value from the next byte. */
static int fz_extreme(fz_cursor *c, int n_ext, int *which) {
    uint8_t b = take8(c);
    *which = (b >> 4) % n_ext;
    return (b & 0x0fu) == 0x0fu;
}

#define PICK(c, ext, normal_expr)                                               \
    do {                                                                        \
        int w_;                                                                 \
        if (fz_extreme(c, (int)(sizeof ext / sizeof ext[0]), &w_)) v_ = ext[w_]; \
        else {                                                                  \
            uint8_t b = take8(c);                                               \
            v_ = (normal_expr);                                                 \
        }                                                                       \
    } while (0)

typedef struct fz_case {
    qs_quant_params p;
    int null_params, null_x, null_y, null_mask, in_place, large;
    int32_t dtype, mask_mode, nt;
    int64_t rows, cols, xs, ys, ms;
    int32_t keep, group, per_row;
    int64_t prune;
    int32_t cfmt, csat;
    int64_t n;
    int32_t fmt_index, status_probe;
    int values; /* 0: raw payload bytes, else a QT_VALUES_* kind + 1 */
    const uint8_t *payload;
    size_t payload_len;
} fz_case;

static int32_t g_count;

static int is_element_format(int32_t f) {
    qs_format_info info;
    return qs_format_get(f, &info) == QS_OK && info.family == QS_FAMILY_FLOAT;
}

static uint32_t fz_flags(int32_t f) {
    qs_format_info info;
    return qs_format_get(f, &info) == QS_OK ? info.flags : 0u;
}

static int has_codes(int32_t f) { return (fz_flags(f) & QS_FMT_HAS_CODES) != 0u; }

/* a + b clamped to the int64 range (the decoder must not overflow on extreme sizes itself) */
static int64_t sat_add(int64_t a, int64_t b) {
    int64_t r;
    if (__builtin_add_overflow(a, b, &r)) return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

static int64_t pick_stride(fz_cursor *c, int64_t cols) {
    const int64_t ext[] = {sat_add(cols, -1), -1, 0, INT64_MIN, INT64_MAX, INT64_MAX / 4 + 1, INT64_MAX / 4,
                           (int64_t)1 << 62, (int64_t)1 << 40, (int64_t)1 << 31, INT64_MAX / 2, sat_add(cols, -2)};
    int64_t v_;
    PICK(c, ext, sat_add(cols, (int64_t)(b % 6u)));
    return v_;
}

static void fz_decode(const uint8_t *data, size_t size, fz_case *k) {
    fz_cursor cur = {data, size, 0};
    fz_cursor *c = &cur;
    uint8_t nb;
    int i;
    memset(k, 0, sizeof *k);

    nb = take8(c);
    k->null_x = nb == 1 || nb == 5;
    k->null_y = nb == 2 || nb == 5;
    k->null_mask = nb == 3 || nb == 5;
    k->null_params = nb == 4;
    k->in_place = (nb & 0xf0u) == 0x30u;
    k->large = take8(c) % 24u == 23u; /* not 0: an exhausted input reads zeros, and should stay cheap */
    {
        const int32_t ext[] = {-1, g_count, g_count + 1, INT32_MAX, INT32_MIN, -2, 127, 255};
        int32_t v_;
        PICK(c, ext, (int32_t)(b % (uint32_t)g_count));
        k->p.format = v_;
    }
    {
        const int64_t ext[] = {-1, INT64_MIN, INT64_MAX, (int64_t)1 << 32, (int64_t)1 << 40, INT64_MAX / 2, -2,
                               (int64_t)1 << 62};
        int64_t v_;
        PICK(c, ext, k->large ? 40 + (int64_t)(b % 41u) : (int64_t)(b % 9u));
        k->rows = v_;
        PICK(c, ext, k->large ? 1000 + 3 * (int64_t)b : (b & 0x80u) ? (int64_t)(b % 70u) : (int64_t)(b % 9u));
        k->cols = v_;
    }
    k->xs = pick_stride(c, k->cols);
    k->ys = pick_stride(c, k->cols);
    k->ms = pick_stride(c, k->cols);
    {
        const int64_t ext[] = {-2, INT64_MIN, INT64_MAX, (int64_t)1 << 40, -3, (int64_t)1 << 31};
        const int64_t normal[16] = {1, 2, 3, 4, 7, 8, 16, 32, 33, 64, 0, 0, -1, -1, 5, 128};
        int64_t v_;
        PICK(c, ext, (b & 0x10u) ? (b & 0x20u ? k->cols : sat_add(k->cols, 1)) : normal[b % 16u]);
        /* element formats accept only QS_GROUP_ROW: give them a fair share of valid calls */
        if (is_element_format(k->p.format) && (take8(c) & 1u)) v_ = QS_GROUP_ROW;
        k->p.group_size = v_;
    }
    {
        const int32_t ext[] = {2, -1, INT32_MAX, INT32_MIN};
        int32_t v_;
        PICK(c, ext, (int32_t)(b % 2u));
        k->p.rounding = v_;
    }
    k->p.seed = take64(c);
    {
        const int32_t ext[] = {3, -1, INT32_MAX, INT32_MIN};
        int32_t v_;
        PICK(c, ext, (int32_t)(b % 3u));
        k->dtype = v_;
    }
    {
        const int32_t ext[] = {3, -1, 100, INT32_MIN};
        int32_t v_;
        PICK(c, ext, (int32_t)(b % 3u));
        k->mask_mode = v_;
    }
    {
        const int32_t ext[] = {2, -2, INT32_MAX, INT32_MIN};
        int32_t v_;
        PICK(c, ext, (int32_t)(b % 3u) - 1);
        k->p.saturate = v_;
    }
    {
        uint8_t r = take8(c);
        if (r == 0xfdu) k->p.reserved[0] = (int64_t)(take64(c) | 1u);
        if (r == 0xfeu) k->p.frac_bits = (int32_t)(take64(c) | 1u);
        if (r == 0xfcu) k->p.frac_bits = (int32_t)(take8(c) % 64u) - 24; /* the fixed rows' range and beyond */
    }
    {
        /* scale mode: mostly the default (valid for every format), else any mode, sometimes out of range */
        const int32_t ext[] = {-1, QS_SCALE_MODE_COUNT_, INT32_MAX, INT32_MIN};
        int32_t v_;
        PICK(c, ext, b < 160u ? 0 : (int32_t)(b % (uint32_t)QS_SCALE_MODE_COUNT_));
        k->p.scale_mode = v_;
    }
    {
        const int32_t ext[] = {4096, 4097, INT32_MAX, INT32_MIN};
        const int32_t normal[8] = {1, 1, 1, 2, 3, 3, 0, -1};
        int32_t v_;
        PICK(c, ext, normal[b % 8u]);
        /* a valid large call with 4096 threads would only test the machine: cap valid counts at 3 there */
        if (k->large && v_ > 3 && v_ <= 4096) v_ = 3;
        k->nt = v_;
    }
    {
        const int32_t ext_g[] = {0, -1, QS_NM_MAX_GROUP + 1, INT32_MAX, INT32_MIN};
        const int32_t normal[16] = {4, 4, 4, 4, 8, 8, 1, 2, 3, 5, 7, 16, 100, 255, 256, 4};
        const int32_t ext_k[] = {-1, INT32_MAX, INT32_MIN, 0x7fff};
        int32_t v_;
        PICK(c, ext_g, normal[b % 16u]);
        k->group = v_;
        PICK(c, ext_k, k->group >= 0 ? (int32_t)(b % ((uint32_t)k->group + 1u)) : (int32_t)b);
        k->keep = (v_ == 0x7fff && k->group < INT32_MAX) ? k->group + 1 : v_;
    }
    {
        const int32_t ext[] = {2, -1, INT32_MIN};
        int32_t v_;
        PICK(c, ext, (int32_t)(b % 2u));
        k->per_row = v_;
    }
    {
        /* prune: mostly within [0, n], n the documented bound */
        int64_t n = 0;
        const int64_t ext[] = {-1, INT64_MIN, INT64_MAX, 0 /* n + 1, set below */};
        int w;
        if (k->rows >= 0 && k->cols >= 0 && (k->cols == 0 || k->rows <= INT64_MAX / k->cols))
            n = k->per_row == 1 ? k->cols : k->rows * k->cols;
        if (fz_extreme(c, 4, &w)) {
            k->prune = w == 3 ? sat_add(n, 1) : ext[w];
        } else {
            uint64_t r = take64(c);
            k->prune = (int64_t)((r >> 1) % ((uint64_t)n + 1u));
        }
    }
    {
        const int32_t ext[] = {-1, g_count, INT32_MIN, INT32_MAX};
        int32_t v_;
        PICK(c, ext, (int32_t)(b % (uint32_t)g_count));
        /* bias the codec towards the formats that have codes */
        if ((take8(c) & 3u) != 0u && v_ >= 0 && v_ < g_count)
            for (i = 0; i < g_count; i++)
                if (has_codes((v_ + i) % g_count)) {
                    v_ = (v_ + i) % g_count;
                    break;
                }
        k->cfmt = v_;
    }
    {
        const int32_t ext[] = {2, -2, INT32_MIN};
        int32_t v_;
        PICK(c, ext, (int32_t)(b % 3u) - 1);
        k->csat = v_;
    }
    {
        const int64_t ext[] = {-1, INT64_MIN, INT64_MAX, (int64_t)1 << 40};
        int64_t v_;
        PICK(c, ext, (int64_t)b + (int64_t)(b & 0x40u ? 256 : 0));
        k->n = v_;
    }
    {
        uint8_t b = take8(c), b2 = take8(c);
        /* unsigned arithmetic, then a conversion (implementation-defined, not undefined, when out of range) */
        k->fmt_index = (b & 0x80u) ? (int32_t)((uint32_t)b2 * 0x01010101u)
                                   : (int32_t)(b2 % (uint32_t)(g_count + 2)) - 1;
        k->status_probe = (int32_t)(((uint32_t)b << 24 | (uint32_t)b2) - 2u);
    }
    k->values = take8(c) % 4u;
    k->payload = c->p + c->i;
    k->payload_len = c->n - c->i;

}

/* ---- the status oracle: qsparse.h's documented rules, in qs_validate.h's order ------------------------------ */

static int mul_over(int64_t a, int64_t b, int64_t *r) { return __builtin_mul_overflow(a, b, r); }
static int add_over(int64_t a, int64_t b, int64_t *r) { return __builtin_add_overflow(a, b, r); }

static int32_t fz_expect_sizes(int64_t rows, int64_t cols) {
    int64_t t;
    if (rows < 0 || cols < 0) return QS_ERR_INVALID_SIZE;
    if (mul_over(rows, cols, &t)) return QS_ERR_INVALID_SIZE;
    return QS_OK;
}

/* cols <= stride <= INT64_MAX/4, and the view's extent (rows-1)*stride + cols at most INT64_MAX/4 */
static int32_t fz_expect_stride(int64_t rows, int64_t cols, int64_t stride) {
    int64_t t;
    if (stride < cols || stride > INT64_MAX / 4) return QS_ERR_INVALID_STRIDE;
    if (rows > 1 && cols > 0 &&
        (mul_over(rows - 1, stride, &t) || add_over(t, cols, &t) || t > INT64_MAX / 4))
        return QS_ERR_INVALID_SIZE;
    return QS_OK;
}

#define EXPECT(expr)                       \
    do {                                   \
        int32_t e_ = (expr);               \
        if (e_ != QS_OK) return e_;        \
    } while (0)

static int32_t fz_expect_fake_quant(const fz_case *k, int x_null, int y_null, int m_null) {
    qs_format_info info;
    int32_t mode;
    int i;
    if (k->null_params) return QS_ERR_NULL_POINTER;
    if (k->p.frac_bits != 0) { /* only the fixed-point rows take a fraction width, -16 .. 32 */
        const int fixed = qs_format_get(k->p.format, &info) == QS_OK && info.family == QS_FAMILY_LLMQ &&
                          (info.flags & QS_FMT_FIXED_POINT) != 0u;
        if (!fixed || k->p.frac_bits < -16 || k->p.frac_bits > 32) return QS_ERR_INVALID_ARGUMENT;
    }
    for (i = 0; i < 1; i++)
        if (k->p.reserved[i] != 0) return QS_ERR_INVALID_ARGUMENT;
    EXPECT(fz_expect_sizes(k->rows, k->cols));
    EXPECT(fz_expect_stride(k->rows, k->cols, k->xs));
    EXPECT(fz_expect_stride(k->rows, k->cols, k->in_place ? k->xs : k->ys));
    if (k->dtype < 0 || k->dtype >= QS_DTYPE_COUNT_) return QS_ERR_INVALID_DTYPE;
    if (k->p.format < 0 || k->p.format >= g_count) return QS_ERR_INVALID_FORMAT;
    if (k->p.rounding < 0 || k->p.rounding >= QS_ROUNDING_COUNT_) return QS_ERR_INVALID_ROUNDING;
    if (k->p.saturate < -1 || k->p.saturate > 1) return QS_ERR_INVALID_ARGUMENT;
    if (k->p.scale_mode < 0 || k->p.scale_mode >= QS_SCALE_MODE_COUNT_) return QS_ERR_INVALID_ARGUMENT;
    qs_format_get(k->p.format, &info);
    mode = k->p.scale_mode == QS_SCALE_MODE_DEFAULT ? info.default_scale_mode : k->p.scale_mode;
    if (info.family == QS_FAMILY_FLOAT || info.family == QS_FAMILY_SCALED) {
        /* scales need an element grid of <= 8 bits; scaled rows have no element-wise use; scaled grids and
           grids without Inf and NaN cannot overflow to anything but their max */
        if (mode != QS_SCALE_MODE_NONE && info.family == QS_FAMILY_FLOAT && !(info.flags & QS_FMT_HAS_CODES))
            return QS_ERR_INVALID_ARGUMENT;
        if (mode == QS_SCALE_MODE_NONE && info.family == QS_FAMILY_SCALED) return QS_ERR_INVALID_ARGUMENT;
        if (k->p.saturate == 0 &&
            (mode != QS_SCALE_MODE_NONE || !(info.flags & (QS_FMT_HAS_INF | QS_FMT_HAS_NAN))))
            return QS_ERR_INVALID_ARGUMENT;
    } else if (info.family == QS_FAMILY_LUT) {
        /* lookup grids: their own scale and tie rule, no saturation choice, groups or rows */
        if (k->p.scale_mode != QS_SCALE_MODE_DEFAULT && k->p.scale_mode != info.default_scale_mode)
            return QS_ERR_INVALID_ARGUMENT;
        if (k->p.rounding != QS_ROUND_RNE && k->p.rounding != QS_ROUND_TIES_LOWER) return QS_ERR_INVALID_ROUNDING;
        if (k->p.saturate == 0) return QS_ERR_INVALID_ARGUMENT;
        if (k->p.group_size == QS_GROUP_TENSOR) return QS_ERR_INVALID_GROUP;
    } else if (k->p.scale_mode != QS_SCALE_MODE_DEFAULT) {
        return QS_ERR_INVALID_ARGUMENT;
    }
    if (info.family == QS_FAMILY_LLMQ) { /* llm-mixed-q's formats: RNE only, always saturating */
        if (k->p.rounding != QS_ROUND_RNE) return QS_ERR_INVALID_ROUNDING;
        if (k->p.saturate == 0) return QS_ERR_INVALID_ARGUMENT;
    }
    if (k->p.group_size < QS_GROUP_TENSOR) return QS_ERR_INVALID_GROUP;
    /* element-wise use has no groups (also the element rows of llm-mixed-q's formats) */
    if ((mode == QS_SCALE_MODE_NONE || (info.family == QS_FAMILY_LLMQ && !(info.flags & QS_FMT_BLOCK_BIAS))) &&
        k->p.group_size != QS_GROUP_ROW)
        return QS_ERR_INVALID_GROUP;
    if (k->mask_mode < 0 || k->mask_mode >= QS_MASK_MODE_COUNT_) return QS_ERR_INVALID_ARGUMENT;
    if (k->mask_mode != QS_MASK_NONE) EXPECT(fz_expect_stride(k->rows, k->cols, k->ms));
    if (k->rows > 0 && k->cols > 0) {
        if (x_null || y_null) return QS_ERR_NULL_POINTER;
        if (k->mask_mode != QS_MASK_NONE && m_null) return QS_ERR_NULL_POINTER;
    }
    if (k->nt > 4096) return QS_ERR_INVALID_ARGUMENT;
    return QS_OK;
}

static int32_t fz_expect_nm(const fz_case *k, int s_null, int m_null) {
    EXPECT(fz_expect_sizes(k->rows, k->cols));
    EXPECT(fz_expect_stride(k->rows, k->cols, k->xs));
    EXPECT(fz_expect_stride(k->rows, k->cols, k->ys));
    if (k->dtype < 0 || k->dtype >= QS_DTYPE_COUNT_) return QS_ERR_INVALID_DTYPE;
    if (k->group < 1 || k->group > QS_NM_MAX_GROUP) return QS_ERR_INVALID_GROUP;
    if (k->keep < 0 || k->keep > k->group) return QS_ERR_INVALID_ARGUMENT;
    if (k->rows > 0 && k->cols > 0 && (s_null || m_null)) return QS_ERR_NULL_POINTER;
    if (k->nt > 4096) return QS_ERR_INVALID_ARGUMENT;
    return QS_OK;
}

static int32_t fz_expect_magnitude(const fz_case *k, int w_null, int m_null) {
    EXPECT(fz_expect_sizes(k->rows, k->cols));
    EXPECT(fz_expect_stride(k->rows, k->cols, k->xs));
    EXPECT(fz_expect_stride(k->rows, k->cols, k->ys));
    if (k->dtype < 0 || k->dtype >= QS_DTYPE_COUNT_) return QS_ERR_INVALID_DTYPE;
    if (k->per_row != 0 && k->per_row != 1) return QS_ERR_INVALID_ARGUMENT;
    if (k->prune < 0 || k->prune > (k->per_row ? k->cols : k->rows * k->cols)) return QS_ERR_INVALID_ARGUMENT;
    if (k->rows > 0 && k->cols > 0 && (w_null || m_null)) return QS_ERR_NULL_POINTER;
    if (k->nt > 4096) return QS_ERR_INVALID_ARGUMENT;
    return QS_OK;
}

/* `vals`: the encode input (n floats, or NULL when n does not fit the buffers: the call is then skipped), read for
   NaN, which a grid without NaN codes refuses */
static int32_t fz_expect_codec(const fz_case *k, int encode, int in_null, int out_null, const uint8_t *vals) {
    int64_t i;
    if (k->n < 0) return QS_ERR_INVALID_SIZE;
    if (k->cfmt < 0 || k->cfmt >= g_count) return QS_ERR_INVALID_FORMAT;
    if (!has_codes(k->cfmt)) return QS_ERR_UNSUPPORTED;
    if (encode && (k->csat < -1 || k->csat > 1)) return QS_ERR_INVALID_ARGUMENT;
    if (encode && k->csat == 0 && !(fz_flags(k->cfmt) & (QS_FMT_HAS_INF | QS_FMT_HAS_NAN)))
        return QS_ERR_INVALID_ARGUMENT;
    if (k->n == 0) return QS_OK;
    if (in_null || out_null) return QS_ERR_NULL_POINTER;
    if (encode && vals != NULL && !(fz_flags(k->cfmt) & QS_FMT_HAS_NAN)) {
        for (i = 0; i < k->n; i++) {
            float v;
            memcpy(&v, vals + i * 4, 4u);
            if (qt_isnan_f32(v)) return QS_ERR_INVALID_ARGUMENT;
        }
    }
    return QS_OK;
}

/* ---- buffers ------------------------------------------------------------------------------------------------- */

/* Bytes to back a rows x cols view: the extent when it is small enough, else a token 64 bytes (then the call
   must fail before touching it, or be skipped). *fits says which. */
static size_t fz_view_bytes(int64_t rows, int64_t cols, int64_t stride, size_t esize, int *fits) {
    int64_t t, e;
    *fits = 0;
    if (rows <= 0 || cols <= 0) {
        *fits = rows >= 0 && cols >= 0;
        return 64;
    }
    if (stride < cols) return 64;
    if (mul_over(rows - 1, stride, &t) || add_over(t, cols, &e) || mul_over(e, (int64_t)esize, &t) ||
        t > FZ_MAX_BYTES)
        return 64;
    *fits = 1;
    return (size_t)t;
}

static void fz_fill_values(const fz_case *k, void *base, int32_t dtype, int64_t rows, int64_t cols, int64_t stride) {
    int64_t r, col, idx = 0;
    uint64_t s = k->p.seed ^ 0x5eedu;
    if (rows <= 0 || cols <= 0) return;
    if (k->values != 0 || k->payload_len == 0) {
        qt_fill_tensor(base, dtype, rows, cols, stride, &s, k->values == 0 ? QT_VALUES_SPECIAL : k->values - 1);
        return;
    }
    for (r = 0; r < rows; r++)
        for (col = 0; col < cols; col++, idx++) {
            size_t at = (size_t)(idx * (dtype == QS_DTYPE_F32 ? 4 : 2)) % k->payload_len;
            uint32_t bits = 0;
            int j;
            for (j = 0; j < (dtype == QS_DTYPE_F32 ? 4 : 2); j++)
                bits = (bits << 8) | k->payload[(at + (size_t)j) % k->payload_len];
            qt_store_bits(base, r * stride + col, dtype, bits);
        }
}

static void fz_require_unchanged(const qt_buf *b, const char *what) {
    int64_t d = qt_first_change(b);
    if (d != QT_CLEAN) fz_fail("%s changed at byte %lld", what, (long long)d);
}

static void fz_require_in_view(const qt_buf *b, int64_t rows, int64_t cols, int64_t stride, size_t esize,
                               const char *what) {
    int64_t d = qt_first_stray(b, rows, cols, stride, esize);
    if (d != QT_CLEAN) fz_fail("write outside the %s view at byte %lld", what, (long long)d);
}

/* ---- the entry points -------------------------------------------------------------------------------------- */

/* Output checks shared by the tensor entry points: a failed or empty call wrote nothing, a valid one nothing
   outside the output view. */
static void fz_check_output(const qt_buf *out, int32_t got, int64_t rows, int64_t cols, int64_t stride,
                            size_t esize, const char *what) {
    if (got == QS_OK && rows > 0 && cols > 0) fz_require_in_view(out, rows, cols, stride, esize, what);
    else fz_require_unchanged(out, what);
}

static void fz_fake_quant(const fz_case *k) {
    const int dt_ok = k->dtype >= 0 && k->dtype < QS_DTYPE_COUNT_;
    const size_t es = dt_ok ? qt_esize(k->dtype) : 4u;
    const int64_t ys = k->in_place ? k->xs : k->ys;
    int64_t ms = k->ms;
    int fx, fy, fm, mask_buffer = !k->null_mask, nonempty = k->rows > 0 && k->cols > 0;
    size_t xb, yb, mb;
    qt_buf x, y, m, y1;
    const void *xp;
    void *yp;
    const uint8_t *mp;
    int32_t want, got;

    xb = fz_view_bytes(k->rows, k->cols, k->xs, es, &fx);
    yb = fz_view_bytes(k->rows, k->cols, ys, es, &fy);
    mb = fz_view_bytes(k->rows, k->cols, ms, 1u, &fm);
    want = fz_expect_fake_quant(k, k->null_x, k->in_place ? k->null_x : k->null_y, !mask_buffer);
    snprintf(g_args, sizeof g_args,
             "qs_fake_quant_cpu(params%s{format %d, rounding %d, group_size %lld, seed %llu, saturate %d, "
             "scale_mode %d, reserved {%lld}, frac_bits %d}, dtype %d, rows %lld, cols %lld, x%s, x_stride %lld, "
             "y%s, y_stride %lld, mask%s, mask_stride %lld, mask_mode %d, num_threads %d)",
             k->null_params ? "=NULL " : " ", k->p.format, k->p.rounding, (long long)k->p.group_size,
             (unsigned long long)k->p.seed, k->p.saturate, k->p.scale_mode, (long long)k->p.reserved[0],
             k->p.frac_bits, k->dtype,
             (long long)k->rows, (long long)k->cols, k->null_x ? "=NULL" : "", (long long)k->xs,
             k->in_place ? "=x" : k->null_y ? "=NULL" : "", (long long)ys, mask_buffer ? "" : "=NULL",
             (long long)ms, k->mask_mode, k->nt);
    g_calls[E_FQ]++;
    g_entry = E_FQ;
    if (want == QS_OK && nonempty && !(fx && fy && (fm || !mask_buffer))) {
        g_skipped[E_FQ]++; /* valid, but too large to back with memory */
        return;
    }
    qt_buf_init(&x, xb, 41u);
    qt_buf_init(&y, yb, 42u);
    qt_buf_init(&m, mb, 43u);
    if (fx && dt_ok) fz_fill_values(k, x.data, k->dtype, k->rows, k->cols, k->xs);
    if (fm) {
        uint64_t s = k->p.seed;
        qt_fill_mask(m.data, k->rows, k->cols, ms, &s, 60u);
    }
    qt_snap(&x);
    qt_snap(&m);
    xp = k->null_x ? NULL : x.data;
    yp = k->in_place ? (void *)x.data : k->null_y ? NULL : y.data;
    if (k->in_place && k->null_x) yp = NULL;
    mp = mask_buffer ? m.data : NULL;
    got = qs_fake_quant_cpu(k->null_params ? NULL : &k->p, k->dtype, k->rows, k->cols, xp, k->xs, yp, ys, mp, ms,
                            k->mask_mode, k->nt);
    fz_check_status(got, want);
    fz_require_unchanged(&m, "mask");
    if (k->in_place) {
        fz_check_output(&x, got, k->rows, k->cols, k->xs, es, "x (in place)");
        fz_require_unchanged(&y, "y (not passed)");
    } else {
        fz_require_unchanged(&x, "x");
        fz_check_output(&y, got, k->rows, k->cols, ys, es, "y");
    }
    if (got == QS_OK && nonempty) {
        const qt_buf *out = k->in_place ? &x : &y;
        g_ok[E_FQ]++;
        if (k->mask_mode != QS_MASK_NONE) {
            int64_t r, c;
            for (r = 0; r < k->rows; r++)
                for (c = 0; c < k->cols; c++)
                    if (m.data[r * ms + c] == 0u && qt_load_bits(out->data, r * ys + c, k->dtype) != 0u)
                        fz_fail("masked output (%lld, %lld) is not +0.0", (long long)r, (long long)c);
        }
        if (!k->in_place && k->nt != 1 && k->rows * k->cols >= FZ_PARALLEL_MIN) {
            int32_t again;
            g_parallel++;
            qt_buf_init(&y1, yb, 42u);
            again = qs_fake_quant_cpu(&k->p, k->dtype, k->rows, k->cols, xp, k->xs, y1.data, ys, mp, ms,
                                      k->mask_mode, 1);
            fz_check_status(again, QS_OK);
            if (memcmp(y.block, y1.block, qt_total(&y)) != 0) fz_fail("num_threads %d and 1 differ", k->nt);
            qt_buf_free(&y1);
        }
    }
    qt_buf_free(&x);
    qt_buf_free(&y);
    qt_buf_free(&m);
}

/* N:M and magnitude masks share the layout: scores/weights with stride xs, the mask with stride ys. */
static void fz_masks(const fz_case *k) {
    const int dt_ok = k->dtype >= 0 && k->dtype < QS_DTYPE_COUNT_;
    const size_t es = dt_ok ? qt_esize(k->dtype) : 4u;
    const int nonempty = k->rows > 0 && k->cols > 0;
    int fw, fm, which;
    size_t wb = fz_view_bytes(k->rows, k->cols, k->xs, es, &fw);
    size_t mb = fz_view_bytes(k->rows, k->cols, k->ys, 1u, &fm);
    qt_buf w, m, m1;
    const void *wp;
    uint8_t *mp;

    qt_buf_init(&w, wb, 51u);
    qt_buf_init(&m, mb, 52u);
    if (fw && dt_ok) fz_fill_values(k, w.data, k->dtype, k->rows, k->cols, k->xs);
    qt_snap(&w);
    wp = k->null_x ? NULL : w.data;
    mp = k->null_y ? NULL : m.data;
    for (which = 0; which < 2; which++) {
        int32_t want, got;
        const int e = which == 0 ? E_NM : E_MAG;
        if (which == 0) {
            want = fz_expect_nm(k, wp == NULL, mp == NULL);
            snprintf(g_args, sizeof g_args, "qs_nm_mask_cpu(dtype %d, rows %lld, cols %lld, scores%s, s_stride %lld, "
                     "mask%s, m_stride %lld, keep %d, group %d, num_threads %d)", k->dtype, (long long)k->rows,
                     (long long)k->cols, wp ? "" : "=NULL", (long long)k->xs, mp ? "" : "=NULL", (long long)k->ys,
                     k->keep, k->group, k->nt);
        } else {
            want = fz_expect_magnitude(k, wp == NULL, mp == NULL);
            snprintf(g_args, sizeof g_args, "qs_magnitude_mask_cpu(dtype %d, rows %lld, cols %lld, w%s, w_stride "
                     "%lld, mask%s, m_stride %lld, prune %lld, per_row %d, num_threads %d)", k->dtype,
                     (long long)k->rows, (long long)k->cols, wp ? "" : "=NULL", (long long)k->xs,
                     mp ? "" : "=NULL", (long long)k->ys, (long long)k->prune, k->per_row, k->nt);
        }
        g_calls[e]++;
        g_entry = e;
        if (want == QS_OK && nonempty && !(fw && fm)) {
            g_skipped[e]++;
            continue;
        }
        qt_fill_pattern(&m);
        qt_snap(&m);
        got = which == 0 ? qs_nm_mask_cpu(k->dtype, k->rows, k->cols, wp, k->xs, mp, k->ys, k->keep, k->group, k->nt)
                         : qs_magnitude_mask_cpu(k->dtype, k->rows, k->cols, wp, k->xs, mp, k->ys, k->prune,
                                                 k->per_row, k->nt);
        fz_check_status(got, want);
        fz_require_unchanged(&w, which == 0 ? "scores" : "w");
        fz_check_output(&m, got, k->rows, k->cols, k->ys, 1u, "mask");
        if (got != QS_OK || !nonempty) continue;
        g_ok[e]++;
        {
            int64_t r, c, c0, zeros = 0;
            for (r = 0; r < k->rows; r++) {
                int64_t row_zeros = 0;
                for (c = 0; c < k->cols; c++) {
                    uint8_t v = m.data[r * k->ys + c];
                    if (v > 1u) fz_fail("mask value %u at (%lld, %lld)", v, (long long)r, (long long)c);
                    row_zeros += v == 0u;
                }
                if (which == 0)
                    for (c0 = 0; c0 < k->cols; c0 += k->group) {
                        int64_t n = k->cols - c0 < k->group ? k->cols - c0 : k->group, ones = 0;
                        for (c = c0; c < c0 + n; c++) ones += m.data[r * k->ys + c];
                        if (ones != (k->keep < n ? k->keep : n))
                            fz_fail("group at (%lld, %lld) keeps %lld of %lld", (long long)r, (long long)c0,
                                    (long long)ones, (long long)n);
                    }
                else if (k->per_row && row_zeros != k->prune)
                    fz_fail("row %lld prunes %lld, expected %lld", (long long)r, (long long)row_zeros,
                            (long long)k->prune);
                zeros += row_zeros;
            }
            if (which == 1 && !k->per_row && zeros != k->prune)
                fz_fail("prunes %lld, expected %lld", (long long)zeros, (long long)k->prune);
        }
        if (k->nt != 1 && k->rows * k->cols >= FZ_PARALLEL_MIN) {
            int32_t again;
            g_parallel++;
            qt_buf_init(&m1, mb, 52u);
            again = which == 0 ? qs_nm_mask_cpu(k->dtype, k->rows, k->cols, wp, k->xs, m1.data, k->ys, k->keep,
                                                k->group, 1)
                               : qs_magnitude_mask_cpu(k->dtype, k->rows, k->cols, wp, k->xs, m1.data, k->ys,
                                                       k->prune, k->per_row, 1);
            fz_check_status(again, QS_OK);
            if (memcmp(m.block, m1.block, qt_total(&m)) != 0) fz_fail("num_threads %d and 1 differ", k->nt);
            qt_buf_free(&m1);
        }
    }
    qt_buf_free(&w);
    qt_buf_free(&m);
}

/* decode(payload codes) -> floats -> encode: the codes come back (a NaN code as some NaN code). */
static void fz_codec(const fz_case *k) {
    int fits = k->n >= 0 && k->n <= 4096;
    size_t n = fits ? (size_t)k->n : 16u;
    qt_buf codes, vals, back;
    const uint8_t *cp;
    float *vp;
    int32_t want, got;
    size_t i;
    qs_format_info info;
    int codes_ok = k->cfmt >= 0 && k->cfmt < g_count && has_codes(k->cfmt);

    qt_buf_init(&codes, n, 61u);
    qt_buf_init(&vals, n * 4u, 62u);
    qt_buf_init(&back, n, 63u);
    for (i = 0; i < n; i++) codes.data[i] = k->payload_len ? k->payload[i % k->payload_len] : (uint8_t)(i * 7u);
    qt_snap(&codes);
    cp = k->null_x ? NULL : codes.data;
    vp = k->null_y ? NULL : (float *)(void *)vals.data;

    want = fz_expect_codec(k, 0, cp == NULL, vp == NULL, NULL);
    snprintf(g_args, sizeof g_args, "qs_decode_cpu(format %d, n %lld, codes%s, x%s)", k->cfmt, (long long)k->n,
             cp ? "" : "=NULL", vp ? "" : "=NULL");
    g_calls[E_DEC]++;
    g_entry = E_DEC;
    if (want == QS_OK && !fits) {
        g_skipped[E_DEC]++;
    } else {
        got = qs_decode_cpu(k->cfmt, k->n, cp, vp);
        fz_check_status(got, want);
        fz_require_unchanged(&codes, "codes");
        fz_check_output(&vals, got, 1, k->n, k->n, 4u, "x");
        if (got == QS_OK && k->n > 0) g_ok[E_DEC]++;
    }

    /* encode the decoded values (or, when decoding failed, whatever the payload holds as floats) */
    if (!(want == QS_OK && k->n > 0 && fits)) fz_fill_values(k, vals.data, QS_DTYPE_F32, 1, (int64_t)n, (int64_t)n);
    qt_snap(&vals);
    want = fz_expect_codec(k, 1, k->null_y, k->null_x, fits ? vals.data : NULL);
    snprintf(g_args, sizeof g_args, "qs_encode_cpu(format %d, saturate %d, n %lld, x%s, codes%s)", k->cfmt, k->csat,
             (long long)k->n, k->null_y ? "=NULL" : "", k->null_x ? "=NULL" : "");
    g_calls[E_ENC]++;
    g_entry = E_ENC;
    if (want == QS_OK && !fits) {
        g_skipped[E_ENC]++;
    } else {
        got = qs_encode_cpu(k->cfmt, k->csat, k->n, k->null_y ? NULL : (const float *)(void *)vals.data,
                            k->null_x ? NULL : back.data);
        fz_check_status(got, want);
        fz_require_unchanged(&vals, "x");
        fz_check_output(&back, got, 1, k->n, k->n, 1u, "codes");
        if (got == QS_OK && k->n > 0) g_ok[E_ENC]++;
        /* round trip: only meaningful with decoded inputs and overflow to Inf (saturate 0) */
        if (got == QS_OK && k->csat == 0 && codes_ok && fits && qs_format_get(k->cfmt, &info) == QS_OK) {
            const uint8_t low = (uint8_t)((1u << info.bits) - 1u);
            for (i = 0; i < (size_t)k->n; i++) {
                float v;
                memcpy(&v, vals.data + i * 4u, 4u);
                if (!qt_isnan_f32(v) && back.data[i] != (codes.data[i] & low))
                    fz_fail("code %#x decodes to %a, which encodes to %#x", codes.data[i], (double)v, back.data[i]);
            }
        }
    }
    qt_buf_free(&codes);
    qt_buf_free(&vals);
    qt_buf_free(&back);
}

static void fz_facts(const fz_case *k) {
    qt_buf out;
    int32_t want = (k->fmt_index >= 0 && k->fmt_index < g_count) ? QS_OK : QS_ERR_INVALID_FORMAT, got;
    const char *msg = qs_status_string(k->status_probe);
    snprintf(g_args, sizeof g_args, "qs_status_string(%d)", k->status_probe);
    if (msg == NULL) fz_fail("qs_status_string returned NULL");
    if ((k->status_probe < 0 || k->status_probe >= QS_STATUS_COUNT_) && strcmp(msg, "unknown status") != 0)
        fz_fail("qs_status_string of a non-status says \"%s\"", msg);
    snprintf(g_args, sizeof g_args, "qs_format_get(%d, out%s)", k->fmt_index, k->null_params ? "=NULL" : "");
    g_entry = E_FMT;
    qt_buf_init(&out, sizeof(qs_format_info), 71u);
    got = qs_format_get(k->fmt_index, k->null_params ? NULL : (qs_format_info *)(void *)out.data);
    /* the index (an enum) is checked before the output pointer */
    fz_check_status(got, want != QS_OK ? want : (k->null_params ? QS_ERR_NULL_POINTER : QS_OK));
    fz_check_output(&out, got, 1, 1, 1, sizeof(qs_format_info), "format info");
    qt_buf_free(&out);
    if (qs_abi_version() != QS_ABI_VERSION || qs_sizeof_quant_params() != (int64_t)sizeof(qs_quant_params) ||
        qs_sizeof_format_info() != (int64_t)sizeof(qs_format_info) || (qs_capabilities() & QS_CAP_CUDA) != 0u)
        fz_fail("library facts changed");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_case k;
    g_input = data;
    g_input_len = size;
    g_count = qs_format_count();
    fz_decode(data, size, &k);
    fz_fake_quant(&k);
    fz_masks(&k);
    fz_codec(&k);
    fz_facts(&k);
    return 0;
}

/* ---- standalone driver ----------------------------------------------------------------------------------------- */

#ifdef QS_FUZZ_STANDALONE

static double fz_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int fz_replay(const char *path) {
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long len;
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fprintf(stderr, "fuzz_args: cannot read %s\n", path);
        if (f) fclose(f);
        return 1;
    }
    buf = (uint8_t *)malloc((size_t)len + 1u);
    if (buf == NULL || fread(buf, 1, (size_t)len, f) != (size_t)len) {
        fprintf(stderr, "fuzz_args: cannot read %s\n", path);
        free(buf);
        fclose(f);
        return 1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, (size_t)len);
    free(buf);
    printf("fuzz_args: %s ok\n", path);
    return 0;
}

int main(int argc, char **argv) {
    long n = 10000, i;
    uint64_t seed = 1, s;
    int a, files = 0, bad = 0;
    double t0 = fz_seconds();
    uint8_t buf[1024];
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (a = 1; a < argc; a++) {
        if (strcmp(argv[a], "-n") == 0 && a + 1 < argc) n = strtol(argv[++a], NULL, 10);
        else if (strcmp(argv[a], "-s") == 0 && a + 1 < argc) seed = strtoull(argv[++a], NULL, 10);
        else if (argv[a][0] == '-') {
            fprintf(stderr, "usage: fuzz_args [-n INPUTS] [-s SEED] [FILE...]\n");
            return 2;
        }
    }
    for (a = 1; a < argc; a++) {
        if (strcmp(argv[a], "-n") == 0 || strcmp(argv[a], "-s") == 0) {
            a++;
            continue;
        }
        files++;
        bad |= fz_replay(argv[a]);
    }
    if (files > 0) return bad;

    s = seed;
    for (i = 0; i < n; i++) {
        /* the arguments take about 60 bytes (a shorter input leaves the last fields at their zero-byte values),
           then a payload: mostly short, now and then up to about 900 bytes */
        size_t len = 40u + qt_below(&s, 80u) + (qt_below(&s, 8u) == 0u ? qt_below(&s, 900u) : 0u), j;
        for (j = 0; j < len; j++) buf[j] = (uint8_t)qt_next(&s);
        LLVMFuzzerTestOneInput(buf, len);
    }
    printf("fuzz_args: %ld inputs (seed %llu), %.1f s\n", n, (unsigned long long)seed, fz_seconds() - t0);
    printf("  %-22s %6s %9s %7s  statuses returned (0..%d)\n", "entry point", "calls", "OK,!empty", "skipped",
           QS_STATUS_COUNT_ - 1);
    {
        const char *names[E_COUNT] = {"qs_fake_quant_cpu", "qs_nm_mask_cpu", "qs_magnitude_mask_cpu",
                                      "qs_encode_cpu", "qs_decode_cpu", "qs_format_get"};
        int st;
        for (a = 0; a < E_COUNT; a++) {
            printf("  %-22s %6ld %9ld %7ld ", names[a], a == E_FMT ? n : g_calls[a], g_ok[a], g_skipped[a]);
            for (st = 0; st < QS_STATUS_COUNT_; st++) printf(" %ld", g_status[a][st]);
            printf("\n");
        }
    }
    printf("  thread-count comparisons on large tensors: %ld\n", g_parallel);
    return 0;
}

#endif /* QS_FUZZ_STANDALONE */
