/*
 * test_boundary.c -- the C boundary of the CPU library (RELIABILITY.md items 12 and 22).
 *
 * Part 1 calls every CPU entry point of qsparse.h with bad arguments, one at a time and in pairs that pin the
 * validation order of csrc/qs_validate.h (structs, sizes, strides, enums, then pointers; the thread count last),
 * and checks the exact status each time. Every call whose output pointer is a real buffer checks afterwards that
 * a failed call left that buffer byte-for-byte unchanged, and that no call modified its inputs.
 *
 * Part 2 runs valid calls on small padded tensors held in guarded buffers (qs_test_util.h) for every format id,
 * every dtype, group sizes 1, 3, 32, QS_GROUP_ROW and QS_GROUP_TENSOR (element formats: QS_GROUP_ROW only), every
 * mask mode, both rounding modes and thread counts 1 and 3, and checks that nothing outside the output cells
 * changed (canaries and the padding between rows), that the results do not depend on the thread count (memcmp;
 * one shape is large enough for the library to actually use several threads), that in-place equals out-of-place,
 * and a few invariants cheap enough to check everywhere (mask counts, masked outputs +0.0, code round trips).
 *
 * Prints one line per failure (the first 60) and a summary; exits 1 on any failure. Built with
 * -fsanitize=address,undefined -fno-sanitize-recover=all by tests/c/Makefile, so a sanitizer report also fails
 * the run.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qs_test_util.h"
#include "qsparse.h"

/* ---- reporting ---------------------------------------------------------------------------------------------- */

static long g_checks, g_failures;

static void fail_line(int line, const char *fmt, ...) {
    va_list ap;
    g_failures++;
    if (g_failures > 60) return;
    fprintf(stderr, "FAIL test_boundary.c:%d: ", line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

#define CHECK(cond, ...)                                 \
    do {                                                 \
        g_checks++;                                      \
        if (!(cond)) fail_line(__LINE__, __VA_ARGS__);   \
    } while (0)

static const char *status_name(int32_t s) {
    static const char *names[] = {"QS_OK", "QS_ERR_NULL_POINTER", "QS_ERR_INVALID_SIZE", "QS_ERR_INVALID_STRIDE",
                                  "QS_ERR_INVALID_FORMAT", "QS_ERR_INVALID_GROUP", "QS_ERR_INVALID_ROUNDING",
                                  "QS_ERR_INVALID_DTYPE", "QS_ERR_INVALID_ARGUMENT", "QS_ERR_UNSUPPORTED",
                                  "QS_ERR_NO_MEMORY", "QS_ERR_CUDA"};
    return (s >= 0 && s < QS_STATUS_COUNT_) ? names[s] : "(not a qs_status)";
}

#define BIG ((int64_t)1 << 40)

/* ---- fixtures for the bad-argument calls --------------------------------------------------------------------- */

/* A 4 x 8 tensor: inputs with row stride 10, outputs 11, masks 9, room for f32 (the widest dtype). */
enum { FX_ROWS = 4, FX_COLS = 8, FX_XS = 10, FX_YS = 11, FX_MS = 9 };

static qt_buf fx_x, fx_y, fx_mask_in, fx_mask_out, fx_codes, fx_floats;
static int32_t g_count, id_int4, id_bfp8, id_e4m3, id_e5m2, id_fp16, id_mxfp4;

static void fixtures_init(void) {
    uint64_t s = 12345u;
    qt_buf_init(&fx_x, FX_ROWS * FX_XS * 4, 1u);
    qt_buf_init(&fx_y, FX_ROWS * FX_YS * 4, 2u);
    qt_buf_init(&fx_mask_in, FX_ROWS * FX_MS, 3u);
    qt_buf_init(&fx_mask_out, FX_ROWS * FX_YS, 4u);
    qt_buf_init(&fx_codes, 64, 5u);
    qt_buf_init(&fx_floats, 64 * 4, 6u);
    qt_fill_tensor(fx_x.data, QS_DTYPE_F32, FX_ROWS, FX_COLS, FX_XS, &s, QT_VALUES_FINITE);
    qt_fill_mask(fx_mask_in.data, FX_ROWS, FX_COLS, FX_MS, &s, 60u);
    qt_fill_tensor(fx_floats.data, QS_DTYPE_F32, 1, 64, 64, &s, QT_VALUES_SPECIAL);
    qt_snap(&fx_x);
    qt_snap(&fx_mask_in);
    qt_snap(&fx_floats);
}

static void fixtures_free(void) {
    qt_buf_free(&fx_x);
    qt_buf_free(&fx_y);
    qt_buf_free(&fx_mask_in);
    qt_buf_free(&fx_mask_out);
    qt_buf_free(&fx_codes);
    qt_buf_free(&fx_floats);
}

/* Checks shared by every bad-argument call. `out` is the output buffer the call may write (NULL when the output
   pointer is not one of the fixtures), (rows, cols, stride, esize) the view a successful call writes. */
static void check_call(int line, const char *what, int32_t got, int32_t want, qt_buf *out, int64_t rows,
                       int64_t cols, int64_t stride, size_t esize, qt_buf *const *inputs, int n_inputs) {
    int i;
    CHECK(got == want, "line %d: %s: got %d %s, expected %d %s", line, what, got, status_name(got), want,
          status_name(want));
    CHECK(got >= 0 && got < QS_STATUS_COUNT_ && got != QS_ERR_CUDA, "line %d: %s: status %d is not a CPU status",
          line, what, got);
    for (i = 0; i < n_inputs; i++) {
        int64_t d = qt_first_change(inputs[i]);
        CHECK(d == QT_CLEAN, "line %d: %s: an input buffer changed at byte %lld", line, what, (long long)d);
    }
    if (out != NULL) {
        int64_t d;
        if (got != QS_OK || rows <= 0 || cols <= 0) {
            d = qt_first_change(out);
            CHECK(d == QT_CLEAN, "line %d: %s: %s call wrote its output at byte %lld", line, what,
                  got != QS_OK ? "failed" : "empty", (long long)d);
        } else {
            CHECK(qt_extent(rows, cols, stride) * (int64_t)esize <= (int64_t)out->bytes,
                  "line %d: %s: test bug, the view does not fit its fixture", line, what);
            d = qt_first_stray(out, rows, cols, stride, esize);
            CHECK(d == QT_CLEAN, "line %d: %s: write outside the output view at byte %lld", line, what,
                  (long long)d);
        }
        qt_fill_pattern(out);
        qt_snap(out);
    }
}

/* ---- library facts -------------------------------------------------------------------------------------------- */

static void test_facts(void) {
    int32_t s, i;
    const int32_t outside[] = {QS_STATUS_COUNT_, QS_STATUS_COUNT_ + 1, -1, 1000, INT32_MAX, INT32_MIN};
    uint32_t caps = qs_capabilities();

    CHECK(qs_abi_version() == QS_ABI_VERSION, "qs_abi_version() = %d, header says %d", qs_abi_version(),
          QS_ABI_VERSION);
    CHECK(qs_sizeof_format_info() == (int64_t)sizeof(qs_format_info), "qs_sizeof_format_info() = %lld",
          (long long)qs_sizeof_format_info());
    CHECK(qs_sizeof_quant_params() == (int64_t)sizeof(qs_quant_params), "qs_sizeof_quant_params() = %lld",
          (long long)qs_sizeof_quant_params());

    for (s = 0; s < QS_STATUS_COUNT_; s++) {
        const char *m = qs_status_string(s);
        CHECK(m != NULL && m[0] != '\0', "qs_status_string(%d) is NULL or empty", s);
        if (m == NULL) continue;
        CHECK(strcmp(m, "unknown status") != 0, "qs_status_string(%d) = \"unknown status\" for a real status", s);
        for (i = 0; i < s; i++) {
            const char *o = qs_status_string(i);
            CHECK(o == NULL || strcmp(m, o) != 0, "statuses %d and %d share the message \"%s\"", i, s, m);
        }
    }
    for (i = 0; i < (int32_t)(sizeof outside / sizeof outside[0]); i++) {
        const char *m = qs_status_string(outside[i]);
        CHECK(m != NULL && strcmp(m, "unknown status") == 0, "qs_status_string(%d) = %s%s%s, expected \"unknown "
              "status\"", outside[i], m ? "\"" : "", m ? m : "NULL", m ? "\"" : "");
    }

#ifdef _OPENMP
    CHECK((caps & QS_CAP_OPENMP) != 0u, "qs_capabilities() = %#x lacks QS_CAP_OPENMP in an OpenMP build", caps);
#endif
    CHECK((caps & QS_CAP_CUDA) == 0u, "the CPU library claims QS_CAP_CUDA (%#x)", caps);
    CHECK((caps & ~(QS_CAP_OPENMP | QS_CAP_CUDA)) == 0u, "qs_capabilities() = %#x has undefined bits", caps);

    g_count = qs_format_count();
    CHECK(g_count > 0 && g_count < 256, "qs_format_count() = %d", g_count);
    for (i = 0; i < g_count; i++) {
        qs_format_info f;
        int32_t j, st;
        memset(&f, 0xcd, sizeof f);
        st = qs_format_get(i, &f);
        CHECK(st == QS_OK, "qs_format_get(%d) = %d", i, st);
        if (st != QS_OK) continue;
        CHECK(f.id == i, "qs_format_get(%d).id = %d (index == id is documented)", i, f.id);
        CHECK(f.name != NULL && f.name[0] != '\0', "format %d has no name", i);
        CHECK(f.family >= 0 && f.family < QS_FAMILY_COUNT_, "format %d family %d", i, f.family);
        CHECK(f.scale_kind >= QS_SCALE_NONE && f.scale_kind <= QS_SCALE_E4M3, "format %d scale_kind %d", i,
              f.scale_kind);
        CHECK(f.default_group > 0 || f.default_group == QS_GROUP_ROW, "format %d default_group %lld", i,
              (long long)f.default_group);
        CHECK((f.family == QS_FAMILY_FLOAT || (f.family == QS_FAMILY_LLMQ && !(f.flags & QS_FMT_BLOCK_BIAS))) ==
                  (f.scale_kind == QS_SCALE_NONE),
              "format %d: element formats, and only they, have no scale", i);
        CHECK(!(f.flags & QS_FMT_HAS_CODES) || (f.bits <= 8 && f.family == QS_FAMILY_FLOAT),
              "format %d has codes but is not an element format of <= 8 bits", i);
        for (j = 0; j < i && f.name != NULL; j++) {
            qs_format_info g;
            if (qs_format_get(j, &g) == QS_OK)
                CHECK(strcmp(f.name, g.name) != 0, "formats %d and %d are both named %s", j, i, f.name);
        }
    }
    {
        const int32_t bad[] = {-1, g_count, g_count + 1, 1000, INT32_MAX, INT32_MIN};
        qs_format_info f, before;
        for (i = 0; i < (int32_t)(sizeof bad / sizeof bad[0]); i++) {
            memset(&f, 0xa7, sizeof f);
            memcpy(&before, &f, sizeof f);
            s = qs_format_get(bad[i], &f);
            CHECK(s == QS_ERR_INVALID_FORMAT, "qs_format_get(%d) = %d %s, expected QS_ERR_INVALID_FORMAT", bad[i],
                  s, status_name(s));
            CHECK(memcmp(&f, &before, sizeof f) == 0, "failed qs_format_get(%d) wrote its output", bad[i]);
        }
        s = qs_format_get(0, NULL);
        CHECK(s == QS_ERR_NULL_POINTER, "qs_format_get(0, NULL) = %d %s", s, status_name(s));
        /* Enums before pointers: the index is checked first. */
        s = qs_format_get(-1, NULL);
        CHECK(s == QS_ERR_INVALID_FORMAT, "qs_format_get(-1, NULL) = %d %s", s, status_name(s));
    }
}

/* ---- qs_fake_quant_cpu ---------------------------------------------------------------------------------------- */

typedef struct fq_args {
    qs_quant_params p;
    int params_null;
    int32_t dtype;
    int64_t rows, cols;
    const void *x;
    int64_t xs;
    void *y;
    int64_t ys;
    const uint8_t *mask;
    int64_t ms;
    int32_t mm;
    int32_t nt;
} fq_args;

static fq_args fq_base(void) {
    fq_args a;
    memset(&a, 0, sizeof a);
    a.p.format = id_int4;
    a.p.rounding = QS_ROUND_RNE;
    a.p.group_size = 3;
    a.p.seed = 7u;
    a.p.saturate = -1;
    a.dtype = QS_DTYPE_F32;
    a.rows = FX_ROWS;
    a.cols = FX_COLS;
    a.x = fx_x.data;
    a.xs = FX_XS;
    a.y = fx_y.data;
    a.ys = FX_YS;
    a.mask = fx_mask_in.data;
    a.ms = FX_MS;
    a.mm = QS_MASK_BEFORE;
    a.nt = 1;
    return a;
}

static void fq_expect(int line, const char *what, fq_args a, int32_t want) {
    qt_buf *inputs[2] = {&fx_x, &fx_mask_in};
    int32_t got = qs_fake_quant_cpu(a.params_null ? NULL : &a.p, a.dtype, a.rows, a.cols, a.x, a.xs, a.y, a.ys,
                                    a.mask, a.ms, a.mm, a.nt);
    check_call(line, what, got, want, a.y == fx_y.data ? &fx_y : NULL, a.rows, a.cols, a.ys,
               qt_esize(a.dtype), inputs, 2);
}

#define FQ(what, mutation, want)          \
    do {                                  \
        fq_args a_ = fq_base();           \
        { mutation; }                     \
        fq_expect(__LINE__, what, a_, want); \
    } while (0)

static void test_fake_quant_args(void) {
    int32_t i, f;
    char what[160];

    FQ("valid baseline", (void)0, QS_OK);
    FQ("mask mode none", a_.mm = QS_MASK_NONE, QS_OK);
    FQ("mask mode after", a_.mm = QS_MASK_AFTER, QS_OK);
    FQ("f16", a_.dtype = QS_DTYPE_F16, QS_OK);
    FQ("bf16", a_.dtype = QS_DTYPE_BF16, QS_OK);
    FQ("stochastic", a_.p.rounding = QS_ROUND_STOCHASTIC, QS_OK);
    FQ("bfp8 per tensor", (a_.p.format = id_bfp8, a_.p.group_size = QS_GROUP_TENSOR), QS_OK);
    FQ("num_threads 0 (OpenMP default)", a_.nt = 0, QS_OK);
    FQ("num_threads -1 (OpenMP default)", a_.nt = -1, QS_OK);
    FQ("num_threads INT32_MIN (OpenMP default)", a_.nt = INT32_MIN, QS_OK);
    FQ("num_threads 4096 (the largest accepted)", a_.nt = 4096, QS_OK);
    FQ("strides exactly cols", (a_.xs = FX_COLS, a_.ys = FX_COLS, a_.ms = FX_COLS), QS_OK);

    /* parameter struct first */
    FQ("params NULL", a_.params_null = 1, QS_ERR_NULL_POINTER);
    FQ("params NULL and rows < 0", (a_.params_null = 1, a_.rows = -1), QS_ERR_NULL_POINTER);
    FQ("params NULL and x NULL", (a_.params_null = 1, a_.x = NULL), QS_ERR_NULL_POINTER);
    FQ("params NULL on an empty tensor", (a_.params_null = 1, a_.rows = 0), QS_ERR_NULL_POINTER);
    FQ("scale_mode -1", a_.p.scale_mode = -1, QS_ERR_INVALID_ARGUMENT);
    FQ("scale_mode COUNT", a_.p.scale_mode = QS_SCALE_MODE_COUNT_, QS_ERR_INVALID_ARGUMENT);
    FQ("scale_mode INT32_MIN", a_.p.scale_mode = INT32_MIN, QS_ERR_INVALID_ARGUMENT);
    FQ("scale_mode on an INT format", a_.p.scale_mode = QS_SCALE_MODE_FLOOR, QS_ERR_INVALID_ARGUMENT);
    FQ("scale_mode on fp16", (a_.p.format = id_fp16, a_.p.scale_mode = QS_SCALE_MODE_AMAX), QS_ERR_INVALID_ARGUMENT);
    FQ("scale_mode none on mxfp4", (a_.p.format = id_mxfp4, a_.p.scale_mode = QS_SCALE_MODE_NONE),
       QS_ERR_INVALID_ARGUMENT);
    FQ("mxfp4 saturate 0", (a_.p.format = id_mxfp4, a_.p.saturate = 0), QS_ERR_INVALID_ARGUMENT);
    FQ("scaled fp8_e5m2 saturate 0", (a_.p.format = id_e5m2, a_.p.scale_mode = QS_SCALE_MODE_AMAX, a_.p.saturate = 0),
       QS_ERR_INVALID_ARGUMENT);
    FQ("scaled e4m3 group 32", (a_.p.format = id_e4m3, a_.p.scale_mode = QS_SCALE_MODE_E4M3, a_.p.group_size = 32),
       QS_OK);
    FQ("element-wise e4m3 group 32", (a_.p.format = id_e4m3, a_.p.scale_mode = QS_SCALE_MODE_NONE,
       a_.p.group_size = 32), QS_ERR_INVALID_GROUP);
    FQ("mxfp4 per tensor", (a_.p.format = id_mxfp4, a_.p.group_size = QS_GROUP_TENSOR), QS_OK);
    for (i = 0; i < 1; i++) {
        snprintf(what, sizeof what, "reserved[%d] = 1", i);
        FQ(what, a_.p.reserved[i] = 1, QS_ERR_INVALID_ARGUMENT);
        snprintf(what, sizeof what, "reserved[%d] = INT64_MIN", i);
        FQ(what, a_.p.reserved[i] = INT64_MIN, QS_ERR_INVALID_ARGUMENT);
    }
    FQ("frac_bits = 1 on int4", a_.p.frac_bits = 1, QS_ERR_INVALID_ARGUMENT);
    FQ("frac_bits != 0 before sizes", (a_.p.frac_bits = 1, a_.rows = -1), QS_ERR_INVALID_ARGUMENT);
    FQ("reserved != 0 before sizes", (a_.p.reserved[0] = 1, a_.rows = -1), QS_ERR_INVALID_ARGUMENT);
    /* rounding modes, compat profiles and the lookup-grid rows */
    FQ("rounding half away", a_.p.rounding = QS_ROUND_HALF_AWAY, QS_OK);
    FQ("rounding ties lower", a_.p.rounding = QS_ROUND_TIES_LOWER, QS_OK);
    FQ("rounding COUNT", a_.p.rounding = QS_ROUNDING_COUNT_, QS_ERR_INVALID_ROUNDING);
    FQ("compat -1", a_.p.compat = -1, QS_ERR_INVALID_ARGUMENT);
    FQ("compat COUNT", a_.p.compat = QS_COMPAT_COUNT_, QS_ERR_INVALID_ARGUMENT);
    FQ("compat bitmod on int", a_.p.compat = QS_COMPAT_BITMOD, QS_OK);
    FQ("compat bitmod stochastic", (a_.p.compat = QS_COMPAT_BITMOD, a_.p.rounding = QS_ROUND_STOCHASTIC),
       QS_ERR_INVALID_ARGUMENT);
    FQ("compat bitmod per tensor", (a_.p.compat = QS_COMPAT_BITMOD, a_.p.group_size = QS_GROUP_TENSOR),
       QS_ERR_INVALID_GROUP);
    FQ("compat bitmod on mxfp4", (a_.p.format = id_mxfp4, a_.p.compat = QS_COMPAT_BITMOD), QS_ERR_INVALID_ARGUMENT);
    FQ("compat microxcaling on mxfp4", (a_.p.format = id_mxfp4, a_.p.compat = QS_COMPAT_MICROXCALING), QS_OK);
    FQ("compat microxcaling on int", a_.p.compat = QS_COMPAT_MICROXCALING, QS_ERR_INVALID_ARGUMENT);
    /* FP-Quant's quantizers: mxfp4 (floor) and nvfp4 (e4m3) only, RNE standing for its thresholds */
    FQ("compat fpquant on mxfp4", (a_.p.format = id_mxfp4, a_.p.compat = QS_COMPAT_FPQUANT), QS_OK);
    FQ("compat fpquant on mxfp4 per tensor", (a_.p.format = id_mxfp4, a_.p.compat = QS_COMPAT_FPQUANT,
       a_.p.group_size = QS_GROUP_TENSOR), QS_OK);
    FQ("compat fpquant on mxfp4 rceil", (a_.p.format = id_mxfp4, a_.p.compat = QS_COMPAT_FPQUANT,
       a_.p.scale_mode = QS_SCALE_MODE_RCEIL), QS_ERR_INVALID_ARGUMENT);
    FQ("compat fpquant stochastic", (a_.p.format = id_mxfp4, a_.p.compat = QS_COMPAT_FPQUANT,
       a_.p.rounding = QS_ROUND_STOCHASTIC), QS_ERR_INVALID_ARGUMENT);
    FQ("compat fpquant on int", a_.p.compat = QS_COMPAT_FPQUANT, QS_ERR_INVALID_ARGUMENT);
    FQ("compat fpquant on scaled e4m3", (a_.p.format = id_e4m3, a_.p.compat = QS_COMPAT_FPQUANT,
       a_.p.scale_mode = QS_SCALE_MODE_E4M3, a_.p.group_size = 16), QS_ERR_INVALID_ARGUMENT);
    /* llm-mixed-q's formats and profile */
    FQ("compat llmq on int", a_.p.compat = QS_COMPAT_LLMQ, QS_ERR_INVALID_ARGUMENT);
    FQ("compat llmq on bfp8", (a_.p.format = id_bfp8, a_.p.compat = QS_COMPAT_LLMQ), QS_OK);
    FQ("compat llmq on bfp8 per tensor", (a_.p.format = id_bfp8, a_.p.compat = QS_COMPAT_LLMQ,
       a_.p.group_size = QS_GROUP_TENSOR), QS_OK);
    FQ("compat llmq on bfp8 stochastic", (a_.p.format = id_bfp8, a_.p.compat = QS_COMPAT_LLMQ,
       a_.p.rounding = QS_ROUND_STOCHASTIC), QS_ERR_INVALID_ARGUMENT);
    FQ("compat llmq on e4m3", (a_.p.format = id_e4m3, a_.p.compat = QS_COMPAT_LLMQ, a_.p.group_size = QS_GROUP_ROW),
       QS_OK);
    FQ("compat llmq on scaled e4m3", (a_.p.format = id_e4m3, a_.p.compat = QS_COMPAT_LLMQ,
       a_.p.scale_mode = QS_SCALE_MODE_AMAX, a_.p.group_size = 32), QS_ERR_INVALID_ARGUMENT);
    FQ("compat llmq on e5m2 saturate 0", (a_.p.format = id_e5m2, a_.p.compat = QS_COMPAT_LLMQ, a_.p.saturate = 0,
       a_.p.group_size = QS_GROUP_ROW), QS_ERR_INVALID_ARGUMENT);
    FQ("compat llmq on fp16", (a_.p.format = id_fp16, a_.p.compat = QS_COMPAT_LLMQ, a_.p.group_size = QS_GROUP_ROW),
       QS_ERR_INVALID_ARGUMENT);
    {
        int32_t lg = -1, bl = -1, f;
        qs_format_info fi;
        for (f = 0; f < qs_format_count(); f++) {
            if (qs_format_get(f, &fi) != QS_OK || fi.family != QS_FAMILY_LLMQ) continue;
            if (lg < 0 && !(fi.flags & QS_FMT_BLOCK_BIAS)) lg = f;
            if (bl < 0 && (fi.flags & QS_FMT_BLOCK_BIAS)) bl = f;
        }
        CHECK(lg >= 0 && bl >= 0, "llm-mixed-q element and block rows");
        FQ("llmq element row", (a_.p.format = lg, a_.p.group_size = QS_GROUP_ROW), QS_OK);
        FQ("llmq element row compat", (a_.p.format = lg, a_.p.compat = QS_COMPAT_LLMQ, a_.p.group_size = QS_GROUP_ROW),
           QS_OK);
        FQ("llmq element row group 16", (a_.p.format = lg, a_.p.group_size = 16), QS_ERR_INVALID_GROUP);
        FQ("llmq element row per tensor", (a_.p.format = lg, a_.p.group_size = QS_GROUP_TENSOR), QS_ERR_INVALID_GROUP);
        FQ("llmq block row group 16", (a_.p.format = bl, a_.p.group_size = 16), QS_OK);
        FQ("llmq block row per tensor", (a_.p.format = bl, a_.p.group_size = QS_GROUP_TENSOR), QS_OK);
        FQ("llmq block row masked after", (a_.p.format = bl, a_.mm = QS_MASK_AFTER), QS_OK);
        FQ("llmq stochastic", (a_.p.format = bl, a_.p.rounding = QS_ROUND_STOCHASTIC), QS_ERR_INVALID_ROUNDING);
        FQ("llmq half away", (a_.p.format = lg, a_.p.rounding = QS_ROUND_HALF_AWAY, a_.p.group_size = QS_GROUP_ROW),
           QS_ERR_INVALID_ROUNDING);
        FQ("llmq saturate 0", (a_.p.format = bl, a_.p.saturate = 0), QS_ERR_INVALID_ARGUMENT);
        FQ("llmq saturate 1", (a_.p.format = bl, a_.p.saturate = 1), QS_OK);
        FQ("llmq scale mode floor", (a_.p.format = bl, a_.p.scale_mode = QS_SCALE_MODE_FLOOR), QS_ERR_INVALID_ARGUMENT);
        FQ("llmq mse", (a_.p.format = bl, a_.p.observer = QS_OBSERVER_MSE), QS_ERR_INVALID_ARGUMENT);
        FQ("llmq bitmod", (a_.p.format = bl, a_.p.compat = QS_COMPAT_BITMOD), QS_ERR_INVALID_ARGUMENT);
    }
    {
        /* llm-mixed-q's fixed point: element rows whose fraction width is frac_bits, -16 .. 32 */
        int32_t fx = -1, f;
        qs_format_info fi;
        for (f = 0; f < qs_format_count(); f++)
            if (fx < 0 && qs_format_get(f, &fi) == QS_OK && fi.family == QS_FAMILY_LLMQ &&
                (fi.flags & QS_FMT_FIXED_POINT))
                fx = f;
        CHECK(fx >= 0, "a fixed-point row");
        FQ("fixed f 0", (a_.p.format = fx, a_.p.group_size = QS_GROUP_ROW), QS_OK);
        FQ("fixed f -16", (a_.p.format = fx, a_.p.group_size = QS_GROUP_ROW, a_.p.frac_bits = QS_FIXED_FRAC_MIN), QS_OK);
        FQ("fixed f 32", (a_.p.format = fx, a_.p.group_size = QS_GROUP_ROW, a_.p.frac_bits = QS_FIXED_FRAC_MAX), QS_OK);
        FQ("fixed f -17", (a_.p.format = fx, a_.p.group_size = QS_GROUP_ROW, a_.p.frac_bits = QS_FIXED_FRAC_MIN - 1),
           QS_ERR_INVALID_ARGUMENT);
        FQ("fixed f 33", (a_.p.format = fx, a_.p.group_size = QS_GROUP_ROW, a_.p.frac_bits = QS_FIXED_FRAC_MAX + 1),
           QS_ERR_INVALID_ARGUMENT);
        FQ("fixed f INT32_MIN", (a_.p.format = fx, a_.p.group_size = QS_GROUP_ROW, a_.p.frac_bits = INT32_MIN),
           QS_ERR_INVALID_ARGUMENT);
        FQ("fixed bad f before sizes", (a_.p.format = fx, a_.p.frac_bits = 99, a_.rows = -1), QS_ERR_INVALID_ARGUMENT);
        FQ("fixed group 16", (a_.p.format = fx, a_.p.group_size = 16, a_.p.frac_bits = 4), QS_ERR_INVALID_GROUP);
        FQ("fixed stochastic", (a_.p.format = fx, a_.p.group_size = QS_GROUP_ROW, a_.p.rounding = QS_ROUND_STOCHASTIC),
           QS_ERR_INVALID_ROUNDING);
        FQ("fixed compat llmq", (a_.p.format = fx, a_.p.group_size = QS_GROUP_ROW, a_.p.compat = QS_COMPAT_LLMQ,
                                 a_.p.frac_bits = 4), QS_OK);
    }
    {
        int32_t lut = -1, f;
        qs_format_info fi;
        for (f = 0; f < qs_format_count(); f++)
            if (lut < 0 && qs_format_get(f, &fi) == QS_OK && fi.family == QS_FAMILY_LUT && fi.candidates == 4) lut = f;
        CHECK(lut >= 0, "a lookup-grid row with four grids");
        FQ("lut", a_.p.format = lut, QS_OK);
        FQ("lut stochastic", (a_.p.format = lut, a_.p.rounding = QS_ROUND_STOCHASTIC), QS_ERR_INVALID_ROUNDING);
        FQ("lut ties lower", (a_.p.format = lut, a_.p.rounding = QS_ROUND_TIES_LOWER), QS_OK);
        FQ("lut per tensor", (a_.p.format = lut, a_.p.group_size = QS_GROUP_TENSOR), QS_ERR_INVALID_GROUP);
        FQ("lut scale floor", (a_.p.format = lut, a_.p.scale_mode = QS_SCALE_MODE_FLOOR), QS_ERR_INVALID_ARGUMENT);
        FQ("lut mse", (a_.p.format = lut, a_.p.observer = QS_OBSERVER_MSE), QS_ERR_INVALID_ARGUMENT);
        FQ("lut saturate 0", (a_.p.format = lut, a_.p.saturate = 0), QS_ERR_INVALID_ARGUMENT);
        {
            const char *gname = NULL;
            float vals[64];
            int32_t cnt = -1;
            CHECK(qs_format_grid(lut, 0, &gname, vals, 64, &cnt) == QS_OK && cnt == 16 && gname != NULL,
                  "qs_format_grid");
            CHECK(qs_format_grid(lut, 4, &gname, vals, 64, &cnt) == QS_ERR_INVALID_ARGUMENT, "grid index 4");
            CHECK(qs_format_grid(lut, -1, &gname, vals, 64, &cnt) == QS_ERR_INVALID_ARGUMENT, "grid index -1");
            CHECK(qs_format_grid(0, 0, &gname, vals, 64, &cnt) == QS_ERR_INVALID_ARGUMENT, "grid of int2");
            CHECK(qs_format_grid(999, 0, &gname, vals, 64, &cnt) == QS_ERR_INVALID_FORMAT, "grid of 999");
            CHECK(qs_format_grid(lut, 0, &gname, NULL, 64, &cnt) == QS_ERR_NULL_POINTER, "grid values NULL");
            CHECK(qs_format_grid(lut, 0, &gname, vals, 64, NULL) == QS_ERR_NULL_POINTER, "grid count NULL");
            CHECK(qs_format_grid(lut, 0, NULL, NULL, 0, &cnt) == QS_OK && cnt == 16, "grid count only");
        }
    }
    FQ("observer 2", a_.p.observer = 2, QS_ERR_INVALID_ARGUMENT);
    FQ("observer -1", a_.p.observer = -1, QS_ERR_INVALID_ARGUMENT);
    FQ("mse_grid with minmax", a_.p.mse_grid = 10, QS_ERR_INVALID_ARGUMENT);
    FQ("mse_norm with minmax", a_.p.mse_norm = 2.0f, QS_ERR_INVALID_ARGUMENT);
    FQ("mse on int4", a_.p.observer = QS_OBSERVER_MSE, QS_OK);
    FQ("mse on int4, grid 100001", (a_.p.observer = QS_OBSERVER_MSE, a_.p.mse_grid = 100001), QS_ERR_INVALID_ARGUMENT);
    FQ("mse on int4, maxshrink 1.5", (a_.p.observer = QS_OBSERVER_MSE, a_.p.mse_maxshrink = 1.5f),
       QS_ERR_INVALID_ARGUMENT);
    FQ("mse on int4, norm NaN", (a_.p.observer = QS_OBSERVER_MSE, a_.p.mse_norm = (float)NAN), QS_ERR_INVALID_ARGUMENT);
    FQ("mse on bfp8", (a_.p.format = id_bfp8, a_.p.observer = QS_OBSERVER_MSE), QS_ERR_INVALID_ARGUMENT);
    FQ("mse on mxfp4 (E8M0 scale)", (a_.p.format = id_mxfp4, a_.p.observer = QS_OBSERVER_MSE), QS_ERR_INVALID_ARGUMENT);
    FQ("mse on mxfp4 with an amax scale", (a_.p.format = id_mxfp4, a_.p.scale_mode = QS_SCALE_MODE_AMAX,
       a_.p.observer = QS_OBSERVER_MSE), QS_OK);
    FQ("mse on element-wise fp8", (a_.p.format = id_e4m3, a_.p.observer = QS_OBSERVER_MSE), QS_ERR_INVALID_ARGUMENT);
    FQ("reserved != 0 before format", (a_.p.reserved[0] = 1, a_.p.format = -1), QS_ERR_INVALID_ARGUMENT);
    FQ("reserved != 0 on an empty tensor", (a_.p.reserved[0] = 1, a_.cols = 0), QS_ERR_INVALID_ARGUMENT);
    FQ("format before scale_mode", (a_.p.scale_mode = -1, a_.p.format = -1), QS_ERR_INVALID_FORMAT);

    /* sizes */
    FQ("rows -1", a_.rows = -1, QS_ERR_INVALID_SIZE);
    FQ("cols -1", a_.cols = -1, QS_ERR_INVALID_SIZE);
    FQ("rows INT64_MIN", a_.rows = INT64_MIN, QS_ERR_INVALID_SIZE);
    FQ("cols INT64_MIN", a_.cols = INT64_MIN, QS_ERR_INVALID_SIZE);
    FQ("rows -1 with cols 0", (a_.rows = -1, a_.cols = 0), QS_ERR_INVALID_SIZE);
    FQ("rows 0 with cols -1", (a_.rows = 0, a_.cols = -1), QS_ERR_INVALID_SIZE);
    FQ("rows * cols overflows", (a_.rows = (int64_t)1 << 32, a_.cols = (int64_t)1 << 32, a_.xs = a_.cols,
                                 a_.ys = a_.cols, a_.ms = a_.cols), QS_ERR_INVALID_SIZE);
    FQ("rows INT64_MAX, cols 2", (a_.rows = INT64_MAX, a_.cols = 2), QS_ERR_INVALID_SIZE);
    FQ("rows * x_stride overflows", (a_.rows = BIG, a_.xs = (int64_t)1 << 24), QS_ERR_INVALID_SIZE);
    FQ("rows * y_stride overflows", (a_.rows = BIG, a_.ys = (int64_t)1 << 24), QS_ERR_INVALID_SIZE);
    FQ("rows * mask_stride overflows", (a_.rows = BIG, a_.ms = (int64_t)1 << 24), QS_ERR_INVALID_SIZE);
    /* qsparse.h: a view's extent (rows-1)*stride + cols may not exceed INT64_MAX/4 elements (byte offsets of any
       dtype fit int64), and no stride may exceed INT64_MAX/4. */
    FQ("(rows-1) * stride overflows", (a_.rows = 3, a_.cols = 4, a_.xs = INT64_MAX / 8), QS_ERR_INVALID_SIZE);
    FQ("extent just over INT64_MAX/4", (a_.rows = 2, a_.cols = 2, a_.xs = INT64_MAX / 4 - 1), QS_ERR_INVALID_SIZE);
    FQ("extent exactly INT64_MAX/4",
       (a_.rows = 2, a_.cols = 1, a_.xs = INT64_MAX / 4 - 1, a_.dtype = 99), QS_ERR_INVALID_DTYPE);
    FQ("stride over INT64_MAX/4", (a_.rows = 1, a_.cols = 1, a_.xs = INT64_MAX / 4 + 1), QS_ERR_INVALID_STRIDE);
    FQ("stride INT64_MAX with one row", (a_.rows = 1, a_.cols = 8, a_.xs = INT64_MAX), QS_ERR_INVALID_STRIDE);
    FQ("mask_stride ignored in the size check without a mask",
       (a_.rows = BIG, a_.xs = a_.ys = FX_COLS, a_.ms = (int64_t)1 << 24, a_.mm = QS_MASK_NONE, a_.dtype = 99),
       QS_ERR_INVALID_DTYPE);
    FQ("sizes before strides", (a_.rows = -1, a_.xs = 1), QS_ERR_INVALID_SIZE);
    FQ("sizes before dtype", (a_.cols = -5, a_.dtype = -1), QS_ERR_INVALID_SIZE);
    FQ("sizes before pointers", (a_.rows = -1, a_.x = NULL, a_.y = NULL), QS_ERR_INVALID_SIZE);

    /* strides */
    FQ("x_stride < cols", a_.xs = FX_COLS - 1, QS_ERR_INVALID_STRIDE);
    FQ("y_stride < cols", a_.ys = FX_COLS - 1, QS_ERR_INVALID_STRIDE);
    FQ("mask_stride < cols (mask before)", a_.ms = FX_COLS - 1, QS_ERR_INVALID_STRIDE);
    FQ("mask_stride < cols (mask after)", (a_.ms = FX_COLS - 1, a_.mm = QS_MASK_AFTER), QS_ERR_INVALID_STRIDE);
    FQ("mask_stride < cols ignored without a mask", (a_.ms = FX_COLS - 1, a_.mm = QS_MASK_NONE), QS_OK);
    FQ("x_stride 0", a_.xs = 0, QS_ERR_INVALID_STRIDE);
    FQ("x_stride -1", a_.xs = -1, QS_ERR_INVALID_STRIDE);
    FQ("y_stride INT64_MIN", a_.ys = INT64_MIN, QS_ERR_INVALID_STRIDE);
    FQ("x_stride < cols with one row", (a_.rows = 1, a_.xs = FX_COLS - 1), QS_ERR_INVALID_STRIDE);
    FQ("x_stride < cols on an empty tensor (rows 0)", (a_.rows = 0, a_.xs = FX_COLS - 1), QS_ERR_INVALID_STRIDE);
    FQ("x_stride -1 on an empty tensor (cols 0)", (a_.cols = 0, a_.xs = -1), QS_ERR_INVALID_STRIDE);
    FQ("strides before dtype", (a_.ys = 0, a_.dtype = 99), QS_ERR_INVALID_STRIDE);
    FQ("strides before format", (a_.xs = 0, a_.p.format = -1), QS_ERR_INVALID_STRIDE);
    FQ("strides before pointers", (a_.xs = 0, a_.x = NULL), QS_ERR_INVALID_STRIDE);
    /* The mask stride is checked after the mask mode (it is read only when a mask is used). */
    FQ("unknown mask mode before its mask stride", (a_.ms = 0, a_.mm = 3), QS_ERR_INVALID_ARGUMENT);
    FQ("mask stride before pointers", (a_.ms = 0, a_.mask = NULL), QS_ERR_INVALID_STRIDE);

    /* dtype */
    FQ("dtype -1", a_.dtype = -1, QS_ERR_INVALID_DTYPE);
    FQ("dtype QS_DTYPE_COUNT_", a_.dtype = QS_DTYPE_COUNT_, QS_ERR_INVALID_DTYPE);
    FQ("dtype INT32_MAX", a_.dtype = INT32_MAX, QS_ERR_INVALID_DTYPE);
    FQ("dtype INT32_MIN", a_.dtype = INT32_MIN, QS_ERR_INVALID_DTYPE);
    FQ("dtype before format", (a_.dtype = 3, a_.p.format = g_count), QS_ERR_INVALID_DTYPE);
    FQ("dtype before pointers", (a_.dtype = 3, a_.y = NULL), QS_ERR_INVALID_DTYPE);

    /* format, rounding, saturate (qs_kernel_traits_make), then the group size */
    FQ("format -1", a_.p.format = -1, QS_ERR_INVALID_FORMAT);
    FQ("format == count", a_.p.format = g_count, QS_ERR_INVALID_FORMAT);
    FQ("format INT32_MAX", a_.p.format = INT32_MAX, QS_ERR_INVALID_FORMAT);
    FQ("format INT32_MIN", a_.p.format = INT32_MIN, QS_ERR_INVALID_FORMAT);
    FQ("format before rounding", (a_.p.format = -1, a_.p.rounding = 5), QS_ERR_INVALID_FORMAT);
    FQ("format on an empty tensor", (a_.p.format = g_count, a_.rows = 0, a_.x = NULL, a_.y = NULL),
       QS_ERR_INVALID_FORMAT);
    FQ("rounding -1", a_.p.rounding = -1, QS_ERR_INVALID_ROUNDING);
    FQ("rounding QS_ROUNDING_COUNT_", a_.p.rounding = QS_ROUNDING_COUNT_, QS_ERR_INVALID_ROUNDING);
    FQ("rounding INT32_MAX", a_.p.rounding = INT32_MAX, QS_ERR_INVALID_ROUNDING);
    FQ("rounding INT32_MIN", a_.p.rounding = INT32_MIN, QS_ERR_INVALID_ROUNDING);
    FQ("rounding before saturate", (a_.p.rounding = 4, a_.p.saturate = 2), QS_ERR_INVALID_ROUNDING);
    FQ("rounding before group", (a_.p.rounding = 4, a_.p.group_size = -2), QS_ERR_INVALID_ROUNDING);
    for (f = 0; f < g_count; f++) {
        /* saturate is checked for every family (it only matters to element formats) */
        const int32_t sat[] = {-2, 2, INT32_MIN, INT32_MAX};
        for (i = 0; i < 4; i++) {
            snprintf(what, sizeof what, "format %d saturate %d", f, sat[i]);
            FQ(what, (a_.p.format = f, a_.p.group_size = QS_GROUP_ROW, a_.p.saturate = sat[i]),
               QS_ERR_INVALID_ARGUMENT);
        }
        for (i = -1; i <= 1; i++) {
            qs_format_info fi;
            int32_t finite_grid;
            CHECK(qs_format_get(f, &fi) == QS_OK, "qs_format_get(%d)", f);
            /* saturate = 0 is refused where an element grid has no Inf or NaN to overflow to */
            finite_grid = (fi.family == QS_FAMILY_FLOAT && !(fi.flags & (QS_FMT_HAS_INF | QS_FMT_HAS_NAN))) ||
                          fi.family == QS_FAMILY_SCALED || /* scaled grids always saturate */
                          fi.family == QS_FAMILY_LUT ||    /* nor do lookup grids overflow */
                          fi.family == QS_FAMILY_LLMQ;     /* nor llm-mixed-q's formats (every code finite) */
            snprintf(what, sizeof what, "format %d saturate %d", f, i);
            FQ(what, (a_.p.format = f, a_.p.group_size = QS_GROUP_ROW, a_.p.saturate = i),
               finite_grid && i == 0 ? QS_ERR_INVALID_ARGUMENT : QS_OK);
        }
    }
    FQ("saturate before group", (a_.p.saturate = 2, a_.p.group_size = -2), QS_ERR_INVALID_ARGUMENT);
    for (f = 0; f < g_count; f++) {
        qs_format_info info;
        const int64_t never[] = {-2, -3, INT64_MIN};
        const int64_t grouped[] = {1, 2, 3, 32, FX_COLS, FX_COLS + 1, INT64_MAX, QS_GROUP_TENSOR};
        qs_format_get(f, &info);
        for (i = 0; i < 3; i++) {
            snprintf(what, sizeof what, "%s group_size %lld", info.name, (long long)never[i]);
            FQ(what, (a_.p.format = f, a_.p.group_size = never[i]), QS_ERR_INVALID_GROUP);
        }
        snprintf(what, sizeof what, "%s QS_GROUP_ROW", info.name);
        FQ(what, (a_.p.format = f, a_.p.group_size = QS_GROUP_ROW), QS_OK);
        for (i = 0; i < 8; i++) {
            /* element formats have no groups: only the neutral QS_GROUP_ROW; lookup grids no per-tensor group */
            int32_t want = info.family == QS_FAMILY_FLOAT ||
                                   (info.family == QS_FAMILY_LLMQ && !(info.flags & QS_FMT_BLOCK_BIAS)) ||
                                   (info.family == QS_FAMILY_LUT && grouped[i] == QS_GROUP_TENSOR)
                               ? QS_ERR_INVALID_GROUP
                               : QS_OK;
            snprintf(what, sizeof what, "%s group_size %lld", info.name, (long long)grouped[i]);
            FQ(what, (a_.p.format = f, a_.p.group_size = grouped[i]), want);
        }
    }
    FQ("element-format group checked on an empty tensor", (a_.p.format = id_e4m3, a_.p.group_size = 32,
       a_.rows = 0), QS_ERR_INVALID_GROUP);
    FQ("group before mask mode", (a_.p.group_size = -2, a_.mm = 7), QS_ERR_INVALID_GROUP);

    /* mask mode */
    FQ("mask mode -1", a_.mm = -1, QS_ERR_INVALID_ARGUMENT);
    FQ("mask mode QS_MASK_MODE_COUNT_", a_.mm = QS_MASK_MODE_COUNT_, QS_ERR_INVALID_ARGUMENT);
    FQ("mask mode INT32_MAX", a_.mm = INT32_MAX, QS_ERR_INVALID_ARGUMENT);
    FQ("mask mode INT32_MIN", a_.mm = INT32_MIN, QS_ERR_INVALID_ARGUMENT);
    FQ("mask mode before pointers", (a_.mm = 3, a_.x = NULL, a_.mask = NULL), QS_ERR_INVALID_ARGUMENT);
    FQ("mask mode on an empty tensor", (a_.mm = 3, a_.rows = 0), QS_ERR_INVALID_ARGUMENT);

    /* pointers */
    FQ("x NULL", a_.x = NULL, QS_ERR_NULL_POINTER);
    FQ("y NULL", a_.y = NULL, QS_ERR_NULL_POINTER);
    FQ("x and y NULL", (a_.x = NULL, a_.y = NULL), QS_ERR_NULL_POINTER);
    FQ("mask NULL (mask before)", a_.mask = NULL, QS_ERR_NULL_POINTER);
    FQ("mask NULL (mask after)", (a_.mask = NULL, a_.mm = QS_MASK_AFTER), QS_ERR_NULL_POINTER);
    /* ignored without a mask; mask_stride 0 as qsparse/ops.py passes it (test_regressions tries other strides) */
    FQ("mask NULL without a mask", (a_.mask = NULL, a_.ms = 0, a_.mm = QS_MASK_NONE), QS_OK);
    FQ("mask NULL without a mask, per tensor",
       (a_.mask = NULL, a_.ms = 0, a_.mm = QS_MASK_NONE, a_.p.group_size = QS_GROUP_TENSOR), QS_OK);
    FQ("in place (y == x)", (a_.y = (void *)fx_y.data, a_.x = fx_y.data, a_.xs = a_.ys), QS_OK);

    /* thread count: checked after everything else */
    FQ("num_threads 4097", a_.nt = 4097, QS_ERR_INVALID_ARGUMENT);
    FQ("num_threads INT32_MAX", a_.nt = INT32_MAX, QS_ERR_INVALID_ARGUMENT);
    FQ("pointers before num_threads", (a_.nt = 4097, a_.x = NULL), QS_ERR_NULL_POINTER);
    FQ("num_threads checked on an empty tensor", (a_.nt = 4097, a_.rows = 0), QS_ERR_INVALID_ARGUMENT);

    /* empty tensors: NULL pointers allowed, nothing written */
    FQ("rows 0, NULL pointers", (a_.rows = 0, a_.x = NULL, a_.y = NULL, a_.mask = NULL), QS_OK);
    FQ("cols 0, NULL pointers", (a_.cols = 0, a_.x = NULL, a_.y = NULL, a_.mask = NULL), QS_OK);
    FQ("cols 0, strides 0", (a_.cols = 0, a_.xs = a_.ys = a_.ms = 0, a_.x = NULL, a_.y = NULL, a_.mask = NULL),
       QS_OK);
    FQ("rows 0 and cols 0, NULL pointers",
       (a_.rows = 0, a_.cols = 0, a_.xs = a_.ys = a_.ms = 0, a_.x = NULL, a_.y = NULL, a_.mask = NULL), QS_OK);
    FQ("rows 0, cols INT64_MAX/4, NULL pointers", (a_.rows = 0, a_.cols = INT64_MAX / 4,
       a_.xs = a_.ys = a_.ms = INT64_MAX / 4, a_.x = NULL, a_.y = NULL, a_.mask = NULL), QS_OK);
    FQ("rows 0, cols over INT64_MAX/4", (a_.rows = 0, a_.cols = INT64_MAX / 4 + 1,
       a_.xs = a_.ys = a_.ms = INT64_MAX / 4 + 1, a_.x = NULL, a_.y = NULL, a_.mask = NULL), QS_ERR_INVALID_STRIDE);
    FQ("huge rows, cols 0, NULL pointers", (a_.rows = INT64_MAX, a_.cols = 0, a_.xs = a_.ys = a_.ms = 0,
       a_.x = NULL, a_.y = NULL, a_.mask = NULL), QS_OK);
    FQ("rows 0 with real buffers writes nothing", a_.rows = 0, QS_OK);
    FQ("cols 0 with real buffers writes nothing", a_.cols = 0, QS_OK);
    FQ("empty per-tensor element format", (a_.rows = 0, a_.p.format = id_fp16, a_.p.group_size = 0,
       a_.x = NULL, a_.y = NULL), QS_OK);
}

/* ---- qs_nm_mask_cpu ------------------------------------------------------------------------------------------- */

typedef struct nm_args {
    int32_t dtype;
    int64_t rows, cols;
    const void *s;
    int64_t ss;
    uint8_t *m;
    int64_t ms;
    int32_t keep, group, nt;
} nm_args;

static nm_args nm_base(void) {
    nm_args a;
    a.dtype = QS_DTYPE_F32;
    a.rows = FX_ROWS;
    a.cols = FX_COLS;
    a.s = fx_x.data;
    a.ss = FX_XS;
    a.m = fx_mask_out.data;
    a.ms = FX_YS;
    a.keep = 2;
    a.group = 4;
    a.nt = 1;
    return a;
}

static void nm_expect(int line, const char *what, nm_args a, int32_t want) {
    qt_buf *inputs[1] = {&fx_x};
    int32_t got = qs_nm_mask_cpu(a.dtype, a.rows, a.cols, a.s, a.ss, a.m, a.ms, a.keep, a.group, a.nt);
    check_call(line, what, got, want, a.m == fx_mask_out.data ? &fx_mask_out : NULL, a.rows, a.cols, a.ms, 1u,
               inputs, 1);
}

#define NM(what, mutation, want)          \
    do {                                  \
        nm_args a_ = nm_base();           \
        { mutation; }                     \
        nm_expect(__LINE__, what, a_, want); \
    } while (0)

static void test_nm_mask_args(void) {
    NM("valid baseline", (void)0, QS_OK);
    NM("f16", a_.dtype = QS_DTYPE_F16, QS_OK);
    NM("bf16", a_.dtype = QS_DTYPE_BF16, QS_OK);
    NM("keep 0", a_.keep = 0, QS_OK);
    NM("keep == group", a_.keep = 4, QS_OK);
    NM("group 1", (a_.keep = 1, a_.group = 1), QS_OK);
    NM("group QS_NM_MAX_GROUP, keep all", (a_.keep = QS_NM_MAX_GROUP, a_.group = QS_NM_MAX_GROUP), QS_OK);
    NM("group > cols (one partial group)", (a_.keep = 3, a_.group = 100), QS_OK);
    NM("num_threads 0", a_.nt = 0, QS_OK);
    NM("num_threads 4096", a_.nt = 4096, QS_OK);

    NM("rows -1", a_.rows = -1, QS_ERR_INVALID_SIZE);
    NM("cols -1", a_.cols = -1, QS_ERR_INVALID_SIZE);
    NM("rows INT64_MIN", a_.rows = INT64_MIN, QS_ERR_INVALID_SIZE);
    NM("rows * cols overflows", (a_.rows = INT64_MAX / 2, a_.cols = 3, a_.ss = a_.ms = 3), QS_ERR_INVALID_SIZE);
    NM("rows * s_stride overflows", (a_.rows = BIG, a_.ss = (int64_t)1 << 24), QS_ERR_INVALID_SIZE);
    NM("rows * m_stride overflows", (a_.rows = BIG, a_.ss = FX_COLS, a_.ms = (int64_t)1 << 24),
       QS_ERR_INVALID_SIZE);
    NM("sizes before strides", (a_.rows = -1, a_.ss = 0), QS_ERR_INVALID_SIZE);
    NM("sizes before group", (a_.cols = -1, a_.group = 0), QS_ERR_INVALID_SIZE);

    NM("s_stride < cols", a_.ss = FX_COLS - 1, QS_ERR_INVALID_STRIDE);
    NM("m_stride < cols", a_.ms = FX_COLS - 1, QS_ERR_INVALID_STRIDE);
    NM("s_stride -1", a_.ss = -1, QS_ERR_INVALID_STRIDE);
    NM("m_stride INT64_MIN", a_.ms = INT64_MIN, QS_ERR_INVALID_STRIDE);
    NM("m_stride < cols with rows 0", (a_.rows = 0, a_.ms = 1), QS_ERR_INVALID_STRIDE);
    NM("strides before dtype", (a_.ss = 0, a_.dtype = -1), QS_ERR_INVALID_STRIDE);
    NM("strides before pointers", (a_.ms = 0, a_.m = NULL), QS_ERR_INVALID_STRIDE);

    NM("dtype -1", a_.dtype = -1, QS_ERR_INVALID_DTYPE);
    NM("dtype 3", a_.dtype = 3, QS_ERR_INVALID_DTYPE);
    NM("dtype INT32_MIN", a_.dtype = INT32_MIN, QS_ERR_INVALID_DTYPE);
    NM("dtype before group", (a_.dtype = 3, a_.group = 0), QS_ERR_INVALID_DTYPE);

    NM("group 0", a_.group = 0, QS_ERR_INVALID_GROUP);
    NM("group -1", a_.group = -1, QS_ERR_INVALID_GROUP);
    NM("group QS_NM_MAX_GROUP + 1", (a_.group = QS_NM_MAX_GROUP + 1, a_.keep = 1), QS_ERR_INVALID_GROUP);
    NM("group INT32_MAX", a_.group = INT32_MAX, QS_ERR_INVALID_GROUP);
    NM("group INT32_MIN", a_.group = INT32_MIN, QS_ERR_INVALID_GROUP);
    NM("group before keep", (a_.group = 0, a_.keep = -1), QS_ERR_INVALID_GROUP);
    NM("group on an empty tensor", (a_.rows = 0, a_.group = 0, a_.s = NULL, a_.m = NULL), QS_ERR_INVALID_GROUP);

    NM("keep > group", a_.keep = 5, QS_ERR_INVALID_ARGUMENT);
    NM("keep -1", a_.keep = -1, QS_ERR_INVALID_ARGUMENT);
    NM("keep INT32_MAX", a_.keep = INT32_MAX, QS_ERR_INVALID_ARGUMENT);
    NM("keep INT32_MIN", a_.keep = INT32_MIN, QS_ERR_INVALID_ARGUMENT);
    NM("keep > group at the largest group", (a_.group = QS_NM_MAX_GROUP, a_.keep = QS_NM_MAX_GROUP + 1),
       QS_ERR_INVALID_ARGUMENT);
    NM("keep before pointers", (a_.keep = 5, a_.s = NULL), QS_ERR_INVALID_ARGUMENT);
    NM("keep on an empty tensor", (a_.cols = 0, a_.keep = 5), QS_ERR_INVALID_ARGUMENT);

    NM("scores NULL", a_.s = NULL, QS_ERR_NULL_POINTER);
    NM("mask NULL", a_.m = NULL, QS_ERR_NULL_POINTER);
    NM("both NULL", (a_.s = NULL, a_.m = NULL), QS_ERR_NULL_POINTER);

    NM("num_threads 4097", a_.nt = 4097, QS_ERR_INVALID_ARGUMENT);
    NM("num_threads INT32_MAX", a_.nt = INT32_MAX, QS_ERR_INVALID_ARGUMENT);
    NM("pointers before num_threads", (a_.nt = 4097, a_.m = NULL), QS_ERR_NULL_POINTER);

    NM("rows 0, NULL pointers", (a_.rows = 0, a_.s = NULL, a_.m = NULL), QS_OK);
    NM("cols 0, NULL pointers", (a_.cols = 0, a_.ss = a_.ms = 0, a_.s = NULL, a_.m = NULL), QS_OK);
    NM("rows 0 with real buffers writes nothing", a_.rows = 0, QS_OK);
    NM("cols 0 with real buffers writes nothing", a_.cols = 0, QS_OK);
}

/* ---- qs_magnitude_mask_cpu ------------------------------------------------------------------------------------ */

typedef struct mg_args {
    int32_t dtype;
    int64_t rows, cols;
    const void *w;
    int64_t ws;
    uint8_t *m;
    int64_t ms;
    int64_t prune;
    int32_t per_row, nt;
} mg_args;

static mg_args mg_base(void) {
    mg_args a;
    a.dtype = QS_DTYPE_F32;
    a.rows = FX_ROWS;
    a.cols = FX_COLS;
    a.w = fx_x.data;
    a.ws = FX_XS;
    a.m = fx_mask_out.data;
    a.ms = FX_YS;
    a.prune = 5;
    a.per_row = 0;
    a.nt = 1;
    return a;
}

static void mg_expect(int line, const char *what, mg_args a, int32_t want) {
    qt_buf *inputs[1] = {&fx_x};
    int32_t got = qs_magnitude_mask_cpu(a.dtype, a.rows, a.cols, a.w, a.ws, a.m, a.ms, a.prune, a.per_row, a.nt);
    check_call(line, what, got, want, a.m == fx_mask_out.data ? &fx_mask_out : NULL, a.rows, a.cols, a.ms, 1u,
               inputs, 1);
}

#define MG(what, mutation, want)          \
    do {                                  \
        mg_args a_ = mg_base();           \
        { mutation; }                     \
        mg_expect(__LINE__, what, a_, want); \
    } while (0)

static void test_magnitude_mask_args(void) {
    MG("valid baseline", (void)0, QS_OK);
    MG("per row", (a_.per_row = 1, a_.prune = 3), QS_OK);
    MG("f16", a_.dtype = QS_DTYPE_F16, QS_OK);
    MG("bf16", a_.dtype = QS_DTYPE_BF16, QS_OK);
    MG("prune 0", a_.prune = 0, QS_OK);
    MG("prune 0 per row", (a_.prune = 0, a_.per_row = 1), QS_OK);
    MG("prune everything", a_.prune = FX_ROWS * FX_COLS, QS_OK);
    MG("prune a whole row per row", (a_.prune = FX_COLS, a_.per_row = 1), QS_OK);
    MG("prune > cols per tensor", a_.prune = FX_COLS + 1, QS_OK);
    MG("num_threads -1", a_.nt = -1, QS_OK);

    MG("rows -1", a_.rows = -1, QS_ERR_INVALID_SIZE);
    MG("cols -1", a_.cols = -1, QS_ERR_INVALID_SIZE);
    MG("cols INT64_MIN", a_.cols = INT64_MIN, QS_ERR_INVALID_SIZE);
    MG("rows * cols overflows", (a_.rows = (int64_t)1 << 33, a_.cols = (int64_t)1 << 31,
                                 a_.ws = a_.ms = (int64_t)1 << 31), QS_ERR_INVALID_SIZE);
    MG("rows * w_stride overflows", (a_.rows = BIG, a_.ws = (int64_t)1 << 24), QS_ERR_INVALID_SIZE);
    MG("rows * m_stride overflows", (a_.rows = BIG, a_.ws = FX_COLS, a_.ms = (int64_t)1 << 24),
       QS_ERR_INVALID_SIZE);
    MG("sizes before per_row", (a_.rows = -1, a_.per_row = 5), QS_ERR_INVALID_SIZE);

    MG("w_stride < cols", a_.ws = FX_COLS - 1, QS_ERR_INVALID_STRIDE);
    MG("m_stride < cols", a_.ms = FX_COLS - 1, QS_ERR_INVALID_STRIDE);
    MG("w_stride INT64_MIN", a_.ws = INT64_MIN, QS_ERR_INVALID_STRIDE);
    MG("strides before dtype", (a_.ms = 0, a_.dtype = 3), QS_ERR_INVALID_STRIDE);

    MG("dtype -1", a_.dtype = -1, QS_ERR_INVALID_DTYPE);
    MG("dtype 3", a_.dtype = 3, QS_ERR_INVALID_DTYPE);
    MG("dtype before per_row", (a_.dtype = 3, a_.per_row = 2), QS_ERR_INVALID_DTYPE);
    MG("dtype before pointers", (a_.dtype = 3, a_.w = NULL), QS_ERR_INVALID_DTYPE);

    MG("per_row 2", a_.per_row = 2, QS_ERR_INVALID_ARGUMENT);
    MG("per_row -1", a_.per_row = -1, QS_ERR_INVALID_ARGUMENT);
    MG("per_row INT32_MIN", a_.per_row = INT32_MIN, QS_ERR_INVALID_ARGUMENT);
    MG("prune -1", a_.prune = -1, QS_ERR_INVALID_ARGUMENT);
    MG("prune INT64_MIN", a_.prune = INT64_MIN, QS_ERR_INVALID_ARGUMENT);
    MG("prune > rows * cols", a_.prune = FX_ROWS * FX_COLS + 1, QS_ERR_INVALID_ARGUMENT);
    MG("prune > cols per row", (a_.prune = FX_COLS + 1, a_.per_row = 1), QS_ERR_INVALID_ARGUMENT);
    MG("prune INT64_MAX", a_.prune = INT64_MAX, QS_ERR_INVALID_ARGUMENT);
    MG("prune before pointers", (a_.prune = -1, a_.m = NULL), QS_ERR_INVALID_ARGUMENT);
    MG("prune > 0 on an empty tensor (per tensor)", (a_.rows = 0, a_.prune = 1, a_.w = NULL, a_.m = NULL),
       QS_ERR_INVALID_ARGUMENT);
    /* per row, the bound is cols, even when there are no rows */
    MG("prune <= cols on a tensor with no rows (per row)",
       (a_.rows = 0, a_.prune = 3, a_.per_row = 1, a_.w = NULL, a_.m = NULL), QS_OK);

    MG("w NULL", a_.w = NULL, QS_ERR_NULL_POINTER);
    MG("mask NULL", a_.m = NULL, QS_ERR_NULL_POINTER);
    MG("both NULL per row", (a_.w = NULL, a_.m = NULL, a_.per_row = 1), QS_ERR_NULL_POINTER);
    MG("mask NULL with prune 0", (a_.m = NULL, a_.prune = 0), QS_ERR_NULL_POINTER);

    MG("num_threads 4097", a_.nt = 4097, QS_ERR_INVALID_ARGUMENT);
    MG("num_threads 4097 per row", (a_.nt = 4097, a_.per_row = 1, a_.prune = 1), QS_ERR_INVALID_ARGUMENT);
    MG("pointers before num_threads", (a_.nt = 4097, a_.w = NULL), QS_ERR_NULL_POINTER);

    MG("rows 0, NULL pointers", (a_.rows = 0, a_.prune = 0, a_.w = NULL, a_.m = NULL), QS_OK);
    MG("cols 0, NULL pointers", (a_.cols = 0, a_.ws = a_.ms = 0, a_.prune = 0, a_.w = NULL, a_.m = NULL), QS_OK);
    MG("rows 0 with real buffers writes nothing", (a_.rows = 0, a_.prune = 0), QS_OK);
    MG("cols 0 with real buffers writes nothing", (a_.cols = 0, a_.prune = 0, a_.per_row = 1), QS_OK);
}

/* qs_gptq_block_cpu, qs_quant_qparams_cpu, qs_fake_quant_qparams_cpu: argument checks in the documented order, a
   hand-worked block, records written for every group and nothing else. */
static void test_gptq_and_qparams(void) {
    /* 2 x 4 block; hinv = identity / 2 on the diagonal plus one off-diagonal entry */
    float w[2 * 4], q[2 * 4], e[2 * 4], h[16];
    double loss[2];
    int32_t qp[2 * 4 * QS_QPARAM_WORDS];
    int64_t slot[4] = {0, 0, 0, 0};
    uint8_t mask[2 * 4];
    qs_quant_params p;
    int32_t st;
    int i;
    memset(&p, 0, sizeof p);
    p.format = id_int4;
    p.group_size = QS_GROUP_ROW;
    p.saturate = -1;
    memset(h, 0, sizeof h);
    for (i = 0; i < 4; i++) h[i * 4 + i] = 0.5f;
    h[0 * 4 + 1] = 0.25f;
#define GB(PARAMS, ROWS, B, W, RS, CS, HS, QP, QS, SL, M, K, G)                                               \
    qs_gptq_block_cpu(PARAMS, ROWS, B, W, RS, CS, h, HS, QP, QS, SL, M, 4, 1, K, G, q, 4, e, 4, loss, 1)
    {
        const float w0[8] = {0.0625f, 0.125f, 0.1875f, 0.4375f, 0.625f, 0.75f, 0.875f, 1.0f};
        memcpy(w, w0, sizeof w);
    }
    CHECK(GB(NULL, 2, 4, w, 4, 1, 4, NULL, 0, NULL, NULL, 0, 0) == QS_OK, "gptq pruning-free baseline");
    CHECK(GB(NULL, -1, 4, w, 4, 1, 4, NULL, 0, NULL, NULL, 0, 0) == QS_ERR_INVALID_SIZE, "gptq rows -1");
    CHECK(GB(NULL, 2, QS_GPTQ_MAX_BLOCK + 1, w, 4, 1, QS_GPTQ_MAX_BLOCK + 1, NULL, 0, NULL, NULL, 0, 0) ==
              QS_ERR_INVALID_SIZE, "gptq block above the max");
    CHECK(GB(NULL, 2, 4, w, 0, 1, 4, NULL, 0, NULL, NULL, 0, 0) == QS_ERR_INVALID_STRIDE, "gptq w_rs 0");
    CHECK(GB(NULL, 2, 4, w, 4, 1, 3, NULL, 0, NULL, NULL, 0, 0) == QS_ERR_INVALID_STRIDE, "gptq h_stride < bcols");
    CHECK(GB(NULL, 2, 4, NULL, 4, 1, 4, NULL, 0, NULL, NULL, 0, 0) == QS_ERR_NULL_POINTER, "gptq w NULL");
    CHECK(GB(NULL, 0, 4, NULL, 4, 1, 4, NULL, 0, NULL, NULL, 0, 0) == QS_OK, "gptq empty, NULL pointers");
    CHECK(GB(&p, 2, 4, w, 4, 1, 4, NULL, 4, slot, NULL, 0, 0) == QS_ERR_NULL_POINTER, "gptq records NULL");
    CHECK(GB(NULL, 2, 4, w, 4, 1, 4, NULL, 0, NULL, NULL, 2, 4) == QS_ERR_NULL_POINTER, "gptq N:M without a mask");
    CHECK(GB(NULL, 2, 4, w, 4, 1, 4, NULL, 0, NULL, mask, 5, 4) == QS_ERR_INVALID_ARGUMENT, "gptq keep > group");
    CHECK(GB(NULL, 2, 4, w, 4, 1, 4, NULL, 0, NULL, mask, 2, 3) == QS_ERR_INVALID_ARGUMENT,
          "gptq bcols not a multiple of group");
    CHECK(GB(NULL, 2, 4, w, 4, 1, 4, NULL, 0, NULL, mask, 2, 300) == QS_ERR_INVALID_GROUP, "gptq group 300");
    p.rounding = QS_ROUND_STOCHASTIC;
    CHECK(GB(&p, 2, 4, w, 4, 1, 4, qp, 4, slot, NULL, 0, 0) == QS_ERR_UNSUPPORTED, "gptq stochastic");
    p.rounding = 99;
    CHECK(GB(&p, 2, 4, w, 4, 1, 4, qp, 4, slot, NULL, 0, 0) == QS_ERR_INVALID_ROUNDING, "gptq rounding 99");
    p.rounding = QS_ROUND_RNE;
    p.format = -1;
    CHECK(GB(&p, 2, 4, w, 4, 1, 4, qp, 4, slot, NULL, 0, 0) == QS_ERR_INVALID_FORMAT, "gptq format -1");
    p.format = id_int4;
    slot[3] = 1; /* beyond the one record per row */
    CHECK(GB(&p, 2, 4, w, 4, 1, 4, qp, 4, slot, NULL, 0, 0) == QS_ERR_INVALID_ARGUMENT, "gptq slot out of range");
    slot[3] = 0;
    CHECK(qs_gptq_block_cpu(&p, 2, 4, w, 4, 1, h, 4, qp, 4, slot, NULL, 4, 1, 0, 0, q, 4, e, 4, loss, 4097) ==
              QS_ERR_INVALID_ARGUMENT, "gptq threads 4097");

    /* records: int4 per row: scale amax / 7, 0.0625 (exact) and 1/7 */
    st = qs_quant_qparams_cpu(&p, QS_DTYPE_F32, 2, 4, w, 4, NULL, 0, QS_MASK_NONE, NULL, qp, 1, 1);
    CHECK(st == QS_ERR_INVALID_STRIDE, "qparams stride below one record: %d", st);
    CHECK(qs_quant_qparams_cpu(&p, QS_DTYPE_F32, 2, 4, w, 4, NULL, 0, QS_MASK_NONE, NULL, NULL, 4, 1) ==
              QS_ERR_NULL_POINTER, "qparams records NULL");
    memset(qp, 0x5a, sizeof qp);
    st = qs_quant_qparams_cpu(&p, QS_DTYPE_F32, 2, 4, w, 4, NULL, 0, QS_MASK_NONE, NULL, qp, 8, 1);
    CHECK(st == QS_OK, "qparams: %d", st);
    {
        float s0, s1;
        memcpy(&s0, &qp[1], 4);
        memcpy(&s1, &qp[8 + 1], 4);
        CHECK(qp[0] == 0 && s0 == 0.0625f && s1 == 1.0f / 7.0f, "qparams values %d %g %g", qp[0], (double)s0,
              (double)s1);
        CHECK(qp[4] == 0x5a5a5a5a && qp[12] == 0x5a5a5a5a, "qparams wrote past a row's records");
    }
    /* the block with those records: row 0 is on its grid (1, 2, 3, 7 times 0.0625), so q = w, no error and no
       update */
    loss[0] = loss[1] = 0.0;
    st = qs_gptq_block_cpu(&p, 2, 4, w, 4, 1, h, 4, qp, 8, slot, NULL, 4, 1, 0, 0, q, 4, e, 4, loss, 1);
    CHECK(st == QS_OK, "gptq int4 block: %d", st);
    {
        const float want[4] = {0.0625f, 0.125f, 0.1875f, 0.4375f};
        for (i = 0; i < 4; i++)
            CHECK(q[i] == want[i] && e[i] == 0.0f && w[i] == want[i], "gptq row 0 col %d: %g %g", i, (double)q[i],
                  (double)e[i]);
    }
    CHECK(loss[0] == 0.0, "gptq row 0 loss %g", loss[0]);
    /* row 1: s = 1/7; w = 0.625 -> 4/7 (4.375 rounds to 4), err = (0.625 - 4/7) / 0.5, and column 1 moves by
       err * 0.25 before it is quantized */
    {
        const float q0 = 4.0f * (1.0f / 7.0f), e0 = (0.625f - q0) / 0.5f;
        CHECK(q[4] == q0 && e[4] == e0, "gptq row 1 col 0: %g %g, want %g %g", (double)q[4], (double)e[4],
              (double)q0, (double)e0);
        CHECK(w[5] == 0.75f - e0 * 0.25f, "gptq row 1 col 1 updated: %g", (double)w[5]);
    }
    /* invalid records read as NaN groups, no undefined behaviour */
    qp[0] = 7;
    st = qs_fake_quant_qparams_cpu(&p, QS_DTYPE_F32, 2, 4, w, 4, q, 4, NULL, 0, QS_MASK_NONE, qp, 8, 1);
    CHECK(st == QS_OK && q[0] != q[0] && q[4] == q[4], "fake_quant_qparams invalid record: %d %g", st, (double)q[0]);
    CHECK(qs_fake_quant_qparams_cpu(&p, QS_DTYPE_F32, 2, 4, w, 4, q, 4, NULL, 0, QS_MASK_NONE, NULL, 8, 1) ==
              QS_ERR_NULL_POINTER, "fake_quant_qparams records NULL");
#undef GB
}

/* ---- qs_encode_cpu / qs_decode_cpu ---------------------------------------------------------------------------- */

static void enc_expect(int line, const char *what, int32_t fmt, int32_t sat, int64_t n, const float *x,
                       uint8_t *codes, int32_t want) {
    qt_buf *inputs[1] = {&fx_floats};
    int32_t got = qs_encode_cpu(fmt, sat, n, x, codes);
    check_call(line, what, got, want, codes == fx_codes.data ? &fx_codes : NULL, 1, n, n, 1u, inputs, 1);
}

static void dec_expect(int line, const char *what, int32_t fmt, int64_t n, const uint8_t *codes, float *x,
                       int32_t want) {
    qt_buf *inputs[1] = {&fx_codes};
    int32_t got;
    qt_snap(&fx_codes);
    got = qs_decode_cpu(fmt, n, codes, x);
    check_call(line, what, got, want, x == (float *)(void *)fx_floats.data ? &fx_floats : NULL, 1, n, n, 4u,
               inputs, 1);
}

/* qs_hadamard_cpu: argument order, hand values, in place, strided rows with untouched padding. */
static void test_hadamard(void) {
    float x[2 * 12], y[2 * 12];
    int32_t st;
    int i;
    const struct {
        const char *what;
        int32_t dtype;
        int64_t rows, cols, xs, ys, group;
        int null_x;
        int32_t nt, want;
    } cases[] = {
        {"rows -1", 0, -1, 8, 8, 8, 4, 0, 1, QS_ERR_INVALID_SIZE},
        {"x_stride < cols", 0, 2, 8, 4, 8, 4, 0, 1, QS_ERR_INVALID_STRIDE},
        {"y_stride < cols", 0, 2, 8, 8, 7, 4, 0, 1, QS_ERR_INVALID_STRIDE},
        {"dtype 3", 3, 2, 8, 8, 8, 4, 0, 1, QS_ERR_INVALID_DTYPE},
        {"group 0", 0, 2, 8, 8, 8, 0, 0, 1, QS_ERR_INVALID_GROUP},
        {"group -4", 0, 2, 8, 8, 8, -4, 0, 1, QS_ERR_INVALID_GROUP},
        {"group 3", 0, 2, 6, 6, 6, 3, 0, 1, QS_ERR_INVALID_GROUP},
        {"group not dividing cols", 0, 2, 12, 12, 12, 8, 0, 1, QS_ERR_INVALID_GROUP},
        {"group above the max", 0, 1, 16384, 16384, 16384, 16384, 0, 1, QS_ERR_INVALID_GROUP},
        {"group checked on an empty tensor", 0, 0, 8, 8, 8, 3, 0, 1, QS_ERR_INVALID_GROUP},
        {"x NULL", 0, 2, 8, 8, 8, 4, 1, 1, QS_ERR_NULL_POINTER},
        {"x NULL on an empty tensor", 0, 0, 8, 8, 8, 4, 1, 1, QS_OK},
        {"threads 4097", 0, 2, 8, 8, 8, 4, 0, 4097, QS_ERR_INVALID_ARGUMENT},
        {"group checked before threads", 0, 2, 8, 8, 8, 5, 0, 4097, QS_ERR_INVALID_GROUP},
    };
    for (i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
        memset(y, 0x5a, sizeof y);
        for (int k = 0; k < 24; k++) x[k] = (float)(k + 1);
        st = qs_hadamard_cpu(cases[i].dtype, cases[i].rows, cases[i].cols, cases[i].null_x ? NULL : x, cases[i].xs,
                             y, cases[i].ys, cases[i].group, cases[i].nt);
        CHECK(st == cases[i].want, "hadamard %s: %d %s, want %d", cases[i].what, st, status_name(st), cases[i].want);
        if (st != QS_OK) CHECK(((const uint8_t *)y)[0] == 0x5a, "hadamard %s: wrote its output", cases[i].what);
    }
    /* H_4 / 2 of [1, 2, 3, 4] = [5, -1, -2, 0]; rows 2 of stride 12 (only 8 columns used): padding untouched */
    memset(y, 0x5a, sizeof y);
    for (i = 0; i < 24; i++) x[i] = (float)(i % 12 + 1);
    st = qs_hadamard_cpu(QS_DTYPE_F32, 2, 8, x, 12, y, 12, 4, 2);
    CHECK(st == QS_OK, "hadamard 2x8 stride 12: %d", st);
    {
        const float want[8] = {5.0f, -1.0f, -2.0f, 0.0f, 13.0f, -1.0f, -2.0f, 0.0f};
        for (i = 0; i < 8; i++) {
            CHECK(y[i] == want[i] && y[12 + i] == want[i], "hadamard value %d: %g %g, want %g", i, (double)y[i],
                  (double)y[12 + i], (double)want[i]);
        }
        for (i = 8; i < 12; i++) CHECK(((const uint8_t *)&y[i])[0] == 0x5a, "hadamard wrote padding at %d", i);
        /* in place, twice: back to x (exact here: small integers and a power-of-four group) */
        st = qs_hadamard_cpu(QS_DTYPE_F32, 2, 8, x, 12, x, 12, 4, 1);
        st |= qs_hadamard_cpu(QS_DTYPE_F32, 2, 8, x, 12, x, 12, 4, 1);
        CHECK(st == QS_OK, "hadamard in place: %d", st);
        for (i = 0; i < 8; i++) CHECK(x[i] == (float)(i + 1), "hadamard twice %d: %g", i, (double)x[i]);
    }
}

static void test_codec_args(void) {
    const float *xin = (const float *)(void *)fx_floats.data;
    uint8_t *codes = fx_codes.data;
    float xout[64];
    int32_t f;
    const int32_t bad_fmt[] = {-1, g_count, g_count + 1, INT32_MAX, INT32_MIN};
    char what[160];
    int i;

#define ENC(what, fmt, sat, n, x, c, want) enc_expect(__LINE__, what, fmt, sat, n, x, c, want)
    ENC("valid e4m3", id_e4m3, -1, 64, xin, codes, QS_OK);
    ENC("valid e5m2, overflow to Inf", id_e5m2, 0, 64, xin, codes, QS_OK);
    ENC("valid e4m3, clamp", id_e4m3, 1, 64, xin, codes, QS_OK);
    ENC("n -1", id_e4m3, -1, -1, xin, codes, QS_ERR_INVALID_SIZE);
    ENC("n INT64_MIN", id_e4m3, -1, INT64_MIN, xin, codes, QS_ERR_INVALID_SIZE);
    ENC("n < 0 before format", -1, -1, -1, xin, codes, QS_ERR_INVALID_SIZE);
    ENC("n < 0 before pointers", id_e4m3, -1, -1, NULL, NULL, QS_ERR_INVALID_SIZE);
    ENC("n < 0 before unsupported", id_int4, -1, -1, xin, codes, QS_ERR_INVALID_SIZE);
    for (i = 0; i < 5; i++) {
        snprintf(what, sizeof what, "encode format %d", bad_fmt[i]);
        ENC(what, bad_fmt[i], -1, 64, xin, codes, QS_ERR_INVALID_FORMAT);
        snprintf(what, sizeof what, "encode format %d, n 0, NULL pointers", bad_fmt[i]);
        ENC(what, bad_fmt[i], -1, 0, NULL, NULL, QS_ERR_INVALID_FORMAT);
    }
    ENC("format before saturate", -1, 7, 64, xin, codes, QS_ERR_INVALID_FORMAT);
    for (f = 0; f < g_count; f++) {
        qs_format_info info;
        qs_format_get(f, &info);
        if (info.flags & QS_FMT_HAS_CODES) {
            const int32_t sat[] = {-2, 2, INT32_MIN, INT32_MAX};
            for (i = 0; i < 4; i++) {
                snprintf(what, sizeof what, "encode %s saturate %d", info.name, sat[i]);
                ENC(what, f, sat[i], 64, xin, codes, QS_ERR_INVALID_ARGUMENT);
            }
            snprintf(what, sizeof what, "encode %s saturate checked when n is 0", info.name);
            ENC(what, f, 2, 0, NULL, NULL, QS_ERR_INVALID_ARGUMENT);
            snprintf(what, sizeof what, "encode %s x NULL", info.name);
            ENC(what, f, -1, 64, NULL, codes, QS_ERR_NULL_POINTER);
            snprintf(what, sizeof what, "encode %s codes NULL", info.name);
            ENC(what, f, -1, 64, xin, NULL, QS_ERR_NULL_POINTER);
            snprintf(what, sizeof what, "encode %s n 0, NULL pointers", info.name);
            ENC(what, f, -1, 0, NULL, NULL, QS_OK);
            snprintf(what, sizeof what, "encode %s n 0 writes nothing", info.name);
            ENC(what, f, -1, 0, xin, codes, QS_OK);
        } else {
            snprintf(what, sizeof what, "encode %s (no codes)", info.name);
            ENC(what, f, -1, 64, xin, codes, QS_ERR_UNSUPPORTED);
            snprintf(what, sizeof what, "encode %s (no codes) before saturate", info.name);
            ENC(what, f, 2, 64, xin, codes, QS_ERR_UNSUPPORTED);
            snprintf(what, sizeof what, "encode %s (no codes), n 0, NULL pointers", info.name);
            ENC(what, f, -1, 0, NULL, NULL, QS_ERR_UNSUPPORTED);
        }
    }
#undef ENC

    /* decode: codes come from fx_codes (any byte is a valid code); outputs into fx_floats */
    qt_fill_pattern(&fx_floats);
    qt_snap(&fx_floats);
#define DEC(what, fmt, n, c, x, want) dec_expect(__LINE__, what, fmt, n, c, x, want)
    DEC("valid e4m3", id_e4m3, 64, codes, (float *)(void *)fx_floats.data, QS_OK);
    DEC("valid e5m2 into a stack buffer", id_e5m2, 64, codes, xout, QS_OK);
    DEC("n -1", id_e4m3, -1, codes, (float *)(void *)fx_floats.data, QS_ERR_INVALID_SIZE);
    DEC("n INT64_MIN before format", INT32_MIN, INT64_MIN, codes, (float *)(void *)fx_floats.data,
        QS_ERR_INVALID_SIZE);
    DEC("n < 0 before pointers", id_e4m3, -1, NULL, NULL, QS_ERR_INVALID_SIZE);
    for (i = 0; i < 5; i++) {
        snprintf(what, sizeof what, "decode format %d", bad_fmt[i]);
        DEC(what, bad_fmt[i], 64, codes, (float *)(void *)fx_floats.data, QS_ERR_INVALID_FORMAT);
        snprintf(what, sizeof what, "decode format %d, n 0, NULL pointers", bad_fmt[i]);
        DEC(what, bad_fmt[i], 0, NULL, NULL, QS_ERR_INVALID_FORMAT);
    }
    for (f = 0; f < g_count; f++) {
        qs_format_info info;
        qs_format_get(f, &info);
        if (info.flags & QS_FMT_HAS_CODES) {
            snprintf(what, sizeof what, "decode %s codes NULL", info.name);
            DEC(what, f, 64, NULL, (float *)(void *)fx_floats.data, QS_ERR_NULL_POINTER);
            snprintf(what, sizeof what, "decode %s x NULL", info.name);
            DEC(what, f, 64, codes, NULL, QS_ERR_NULL_POINTER);
            snprintf(what, sizeof what, "decode %s n 0, NULL pointers", info.name);
            DEC(what, f, 0, NULL, NULL, QS_OK);
            snprintf(what, sizeof what, "decode %s n 0 writes nothing", info.name);
            DEC(what, f, 0, codes, (float *)(void *)fx_floats.data, QS_OK);
        } else {
            snprintf(what, sizeof what, "decode %s (no codes)", info.name);
            DEC(what, f, 64, codes, (float *)(void *)fx_floats.data, QS_ERR_UNSUPPORTED);
            snprintf(what, sizeof what, "decode %s (no codes), n 0, NULL pointers", info.name);
            DEC(what, f, 0, NULL, NULL, QS_ERR_UNSUPPORTED);
        }
    }
#undef DEC
}

/* ---- part 2: valid calls in guarded buffers ------------------------------------------------------------------- */

typedef struct shape {
    int64_t rows, cols, xs, ys, ms;
} shape;

/* Small padded views, and one large one (the last) of 67 x 1003 = 67,201 elements: above the library's
   2^15-element threshold for going parallel and above its 2^16-element work chunks, so that thread count 3 really
   splits the work. The large shape runs a reduced matrix (see guard_fake_quant) to keep the run short. */
#define BIG_SHAPE (N_SHAPES - 1)
static const shape g_shapes[] = {
    {1, 1, 1, 1, 1}, {1, 37, 37, 41, 40}, {3, 5, 7, 6, 9}, {2, 33, 40, 35, 33}, {5, 64, 64, 70, 66},
    {4, 3, 3, 3, 3}, {67, 1003, 1007, 1005, 1009},
};
#define N_SHAPES ((int)(sizeof g_shapes / sizeof g_shapes[0]))
static const int32_t g_threads[2] = {1, 3};

/* For QS_MASK_BEFORE/AFTER: every masked-out output is +0.0 (all bits zero, any dtype). */
static int64_t first_unzeroed(const qt_buf *y, const uint8_t *m, const shape *sh, int32_t dtype) {
    int64_t r, c;
    for (r = 0; r < sh->rows; r++)
        for (c = 0; c < sh->cols; c++)
            if (m[r * sh->ms + c] == 0u && qt_load_bits(y->data, r * sh->ys + c, dtype) != 0u) return r * sh->cols + c;
    return -1;
}

static void guard_fake_quant(void) {
    int32_t f, dt, mm, rnd, sat;
    int si, t, gi;
    uint64_t s = 99u;
    long calls = 0;
    for (si = 0; si < N_SHAPES; si++) {
        const shape *sh = &g_shapes[si];
        qt_buf x, y, y1, m, xin;
        qt_buf_init(&x, (size_t)qt_extent(sh->rows, sh->cols, sh->xs) * 4u, 11u);
        qt_buf_init(&y, (size_t)qt_extent(sh->rows, sh->cols, sh->ys) * 4u, 12u);
        qt_buf_init(&y1, y.bytes, 12u);
        qt_buf_init(&m, (size_t)qt_extent(sh->rows, sh->cols, sh->ms), 13u);
        qt_buf_init(&xin, y.bytes, 12u); /* y's size and salt: the same padding bytes as y */
        for (f = 0; f < g_count; f++) {
            qs_format_info info;
            const int64_t grouped[5] = {1, 3, 32, QS_GROUP_ROW, QS_GROUP_TENSOR};
            const int64_t element[1] = {QS_GROUP_ROW};
            const int64_t *groups;
            int n_groups;
            qs_format_get(f, &info);
            {
                /* element formats (also llm-mixed-q's element rows) take no groups */
                const int elem = info.family == QS_FAMILY_FLOAT ||
                                 (info.family == QS_FAMILY_LLMQ && !(info.flags & QS_FMT_BLOCK_BIAS));
                groups = elem ? element : grouped;
                n_groups = elem ? 1 : 5;
            }
            for (gi = 0; gi < n_groups; gi++)
                for (dt = 0; dt < QS_DTYPE_COUNT_; dt++)
                    for (mm = 0; mm < QS_MASK_MODE_COUNT_; mm++)
                        for (rnd = 0; rnd < QS_ROUNDING_COUNT_; rnd++)
                            for (sat = -1; sat <= (info.family == QS_FAMILY_FLOAT ? 1 : -1); sat++) {
                                qs_quant_params p;
                                /* large shape: every format, group and dtype, but only the (mask mode, rounding)
                                   pairs (none, rne), (before, stochastic), (after, rne), default saturation */
                                const int big = si == BIG_SHAPE;
                                if (big && (((mm + rnd) & 1) != 0 || sat != -1 || rnd >= 2)) continue;
                                /* lookup grids round by their own rule (RNE or ties lower), per group or row */
                                if (info.family == QS_FAMILY_LUT &&
                                    (rnd == QS_ROUND_STOCHASTIC || rnd == QS_ROUND_HALF_AWAY ||
                                     groups[gi] == QS_GROUP_TENSOR))
                                    continue;
                                /* llm-mixed-q's formats round half to even only */
                                if (info.family == QS_FAMILY_LLMQ && rnd != QS_ROUND_RNE) continue;
                                /* saturate = 0 is refused on element grids without Inf and NaN (checked above) */
                                if (sat == 0 && !(info.flags & (QS_FMT_HAS_INF | QS_FMT_HAS_NAN))) continue;
                                const uint8_t *mp = mm == QS_MASK_NONE ? NULL : m.data;
                                int64_t msx = mm == QS_MASK_NONE ? 0 : sh->ms;
                                char ctx[200];
                                snprintf(ctx, sizeof ctx, "%s group %lld dtype %d mask %d rounding %d saturate %d "
                                         "shape %lldx%lld", info.name, (long long)groups[gi], dt, mm, rnd, sat,
                                         (long long)sh->rows, (long long)sh->cols);
                                memset(&p, 0, sizeof p);
                                /* scaled rows: every scale mode in turn across the combinations */
                                if (info.family == QS_FAMILY_SCALED)
                                    p.scale_mode = QS_SCALE_MODE_FLOOR + (int32_t)((gi + dt + mm + rnd) % 6);
                                /* the mse observer on INT formats and e4m3 / e4m3_block scales (small shapes) */
                                if (!big && ((info.family <= QS_FAMILY_INT_ASYM && ((gi + dt) & 1)) ||
                                             (info.family == QS_FAMILY_SCALED &&
                                              p.scale_mode >= QS_SCALE_MODE_E4M3)))
                                    p.observer = QS_OBSERVER_MSE;
                                p.format = f;
                                p.rounding = rnd;
                                p.group_size = groups[gi];
                                p.seed = qt_next(&s);
                                p.saturate = sat;
                                /* fixed-point rows: fraction widths across the range (-16, 0, 16, 32) */
                                if (info.family == QS_FAMILY_LLMQ && (info.flags & QS_FMT_FIXED_POINT))
                                    p.frac_bits = -16 + 16 * (int32_t)((dt + mm) % 4);
                                qt_fill_pattern(&x);
                                qt_fill_tensor(x.data, dt, sh->rows, sh->cols, sh->xs, &s,
                                               (calls & 3) ? QT_VALUES_FINITE : QT_VALUES_SPECIAL);
                                qt_fill_mask(m.data, sh->rows, sh->cols, sh->ms, &s, 50u);
                                qt_snap(&x);
                                qt_snap(&m);
                                for (t = 0; t < 2; t++) {
                                    int32_t st;
                                    int64_t d;
                                    qt_buf *out = t == 0 ? &y1 : &y;
                                    qt_fill_pattern(out);
                                    qt_snap(out);
                                    st = qs_fake_quant_cpu(&p, dt, sh->rows, sh->cols, x.data, sh->xs, out->data,
                                                           sh->ys, mp, msx, mm, g_threads[t]);
                                    calls++;
                                    CHECK(st == QS_OK, "%s threads %d: status %d %s", ctx, g_threads[t], st,
                                          status_name(st));
                                    d = qt_first_stray(out, sh->rows, sh->cols, sh->ys, qt_esize(dt));
                                    CHECK(d == QT_CLEAN, "%s threads %d: write outside y at byte %lld", ctx,
                                          g_threads[t], (long long)d);
                                    d = qt_first_change(&x);
                                    CHECK(d == QT_CLEAN, "%s threads %d: x changed at byte %lld", ctx, g_threads[t],
                                          (long long)d);
                                    d = qt_first_change(&m);
                                    CHECK(d == QT_CLEAN, "%s threads %d: mask changed at byte %lld", ctx,
                                          g_threads[t], (long long)d);
                                    if (mm != QS_MASK_NONE) {
                                        d = first_unzeroed(out, m.data, sh, dt);
                                        CHECK(d < 0, "%s: masked element %lld is not +0.0", ctx, (long long)d);
                                    }
                                }
                                CHECK(memcmp(y.block, y1.block, qt_total(&y)) == 0,
                                      "%s: 1 and 3 threads give different bytes", ctx);
                                /* in place, on a copy of x laid out with y's stride */
                                if (!big) {
                                    int64_t r, d;
                                    int32_t st;
                                    qt_fill_pattern(&xin);
                                    for (r = 0; r < sh->rows; r++)
                                        memcpy(xin.data + (size_t)(r * sh->ys) * qt_esize(dt),
                                               x.data + (size_t)(r * sh->xs) * qt_esize(dt),
                                               (size_t)sh->cols * qt_esize(dt));
                                    qt_snap(&xin);
                                    st = qs_fake_quant_cpu(&p, dt, sh->rows, sh->cols, xin.data, sh->ys, xin.data,
                                                           sh->ys, mp, msx, mm, 3);
                                    CHECK(st == QS_OK, "%s in place: status %d", ctx, st);
                                    d = qt_first_stray(&xin, sh->rows, sh->cols, sh->ys, qt_esize(dt));
                                    CHECK(d == QT_CLEAN, "%s in place: write outside the view at byte %lld", ctx,
                                          (long long)d);
                                    CHECK(memcmp(xin.data, y.data, y.bytes) == 0,
                                          "%s: in place differs from out of place", ctx);
                                }
                            }
        }
        qt_buf_free(&x);
        qt_buf_free(&y);
        qt_buf_free(&y1);
        qt_buf_free(&m);
        qt_buf_free(&xin);
    }
    printf("  fake_quant guarded calls: %ld\n", calls);
}

/* Checks an N:M mask: 0/1 entries, and min(keep, r) ones in each group of r entries. */
static int64_t nm_mask_bad_group(const uint8_t *m, const shape *sh, int32_t keep, int32_t group) {
    int64_t r, c0, c;
    for (r = 0; r < sh->rows; r++)
        for (c0 = 0; c0 < sh->cols; c0 += group) {
            int64_t n = sh->cols - c0 < group ? sh->cols - c0 : group, ones = 0;
            for (c = c0; c < c0 + n; c++) {
                uint8_t v = m[r * sh->ys + c];
                if (v > 1u) return r * sh->cols + c;
                ones += v;
            }
            if (ones != (keep < n ? keep : n)) return r * sh->cols + c0;
        }
    return -1;
}

static void guard_masks(void) {
    static const int32_t kg[][2] = {{2, 4}, {1, 4}, {3, 4}, {0, 4}, {4, 4}, {2, 8}, {4, 8}, {1, 1}, {0, 1},
                                    {5, 7}, {3, 3}, {100, 256}, {256, 256}, {1, 256}};
    int si, k, t, pr;
    int32_t dt, kind;
    uint64_t s = 4242u;
    long calls = 0;
    for (si = 0; si < N_SHAPES; si++) {
        const shape *sh = &g_shapes[si];
        qt_buf w, m, m1;
        qt_buf_init(&w, (size_t)qt_extent(sh->rows, sh->cols, sh->xs) * 4u, 21u);
        qt_buf_init(&m, (size_t)qt_extent(sh->rows, sh->cols, sh->ys), 22u);
        qt_buf_init(&m1, m.bytes, 22u);
        for (dt = 0; dt < QS_DTYPE_COUNT_; dt++)
            for (kind = QT_VALUES_SPECIAL; kind <= QT_VALUES_TIES; kind++) {
                char ctx[160];
                qt_fill_pattern(&w);
                qt_fill_tensor(w.data, dt, sh->rows, sh->cols, sh->xs, &s, kind);
                qt_snap(&w);
                /* N:M */
                for (k = 0; k < (int)(sizeof kg / sizeof kg[0]); k++) {
                    snprintf(ctx, sizeof ctx, "nm_mask %d:%d dtype %d values %d shape %lldx%lld", kg[k][0],
                             kg[k][1], dt, kind, (long long)sh->rows, (long long)sh->cols);
                    for (t = 0; t < 2; t++) {
                        qt_buf *out = t == 0 ? &m1 : &m;
                        int32_t st;
                        int64_t d;
                        qt_fill_pattern(out);
                        qt_snap(out);
                        st = qs_nm_mask_cpu(dt, sh->rows, sh->cols, w.data, sh->xs, out->data, sh->ys, kg[k][0],
                                            kg[k][1], g_threads[t]);
                        calls++;
                        CHECK(st == QS_OK, "%s threads %d: status %d", ctx, g_threads[t], st);
                        d = qt_first_stray(out, sh->rows, sh->cols, sh->ys, 1u);
                        CHECK(d == QT_CLEAN, "%s threads %d: write outside the mask at byte %lld", ctx,
                              g_threads[t], (long long)d);
                        d = qt_first_change(&w);
                        CHECK(d == QT_CLEAN, "%s: scores changed at byte %lld", ctx, (long long)d);
                        d = nm_mask_bad_group(out->data, sh, kg[k][0], kg[k][1]);
                        CHECK(d < 0, "%s threads %d: wrong count of kept entries at element %lld", ctx,
                              g_threads[t], (long long)d);
                    }
                    CHECK(memcmp(m.block, m1.block, qt_total(&m)) == 0, "%s: 1 and 3 threads differ", ctx);
                }
                /* magnitude, per tensor and per row */
                for (pr = 0; pr < 2; pr++) {
                    const int64_t n = pr ? sh->cols : sh->rows * sh->cols;
                    const int64_t prunes[5] = {0, 1, n / 2, n - 1, n};
                    int pi;
                    for (pi = 0; pi < 5; pi++) {
                        snprintf(ctx, sizeof ctx, "magnitude_mask prune %lld per_row %d dtype %d values %d shape "
                                 "%lldx%lld", (long long)prunes[pi], pr, dt, kind, (long long)sh->rows,
                                 (long long)sh->cols);
                        for (t = 0; t < 2; t++) {
                            qt_buf *out = t == 0 ? &m1 : &m;
                            int32_t st;
                            int64_t d, r, c, zeros = 0, bad = -1;
                            qt_fill_pattern(out);
                            qt_snap(out);
                            st = qs_magnitude_mask_cpu(dt, sh->rows, sh->cols, w.data, sh->xs, out->data, sh->ys,
                                                       prunes[pi], pr, g_threads[t]);
                            calls++;
                            CHECK(st == QS_OK, "%s threads %d: status %d", ctx, g_threads[t], st);
                            d = qt_first_stray(out, sh->rows, sh->cols, sh->ys, 1u);
                            CHECK(d == QT_CLEAN, "%s threads %d: write outside the mask at byte %lld", ctx,
                                  g_threads[t], (long long)d);
                            d = qt_first_change(&w);
                            CHECK(d == QT_CLEAN, "%s: weights changed at byte %lld", ctx, (long long)d);
                            for (r = 0; r < sh->rows; r++) {
                                int64_t row_zeros = 0;
                                for (c = 0; c < sh->cols; c++) {
                                    uint8_t v = out->data[r * sh->ys + c];
                                    if (v > 1u && bad < 0) bad = r * sh->cols + c;
                                    row_zeros += v == 0u;
                                }
                                if (pr && row_zeros != prunes[pi] && bad < 0) bad = r * sh->cols;
                                zeros += row_zeros;
                            }
                            if (!pr && zeros != prunes[pi] && bad < 0) bad = 0;
                            CHECK(bad < 0, "%s threads %d: not exactly `prune` zeros, or a value > 1 (at %lld)",
                                  ctx, g_threads[t], (long long)bad);
                        }
                        CHECK(memcmp(m.block, m1.block, qt_total(&m)) == 0, "%s: 1 and 3 threads differ", ctx);
                    }
                }
            }
        qt_buf_free(&w);
        qt_buf_free(&m);
        qt_buf_free(&m1);
    }
    printf("  mask guarded calls: %ld\n", calls);
}

static void guard_codec(void) {
    int32_t f, sat;
    uint64_t s = 777u;
    long calls = 0;
    for (f = 0; f < g_count; f++) {
        qs_format_info info;
        const int64_t sizes[4] = {1, 5, 256, 263};
        int si;
        qs_format_get(f, &info);
        if (!(info.flags & QS_FMT_HAS_CODES)) continue;
        for (si = 0; si < 4; si++) {
            const int64_t n = sizes[si];
            qt_buf x, c, back;
            int64_t i, d;
            int32_t st;
            qt_buf_init(&x, (size_t)n * 4u, 31u);
            qt_buf_init(&c, (size_t)n, 32u);
            qt_buf_init(&back, (size_t)n * 4u, 33u);
            /* decode every code (cycled), with guards */
            for (i = 0; i < n; i++) c.data[i] = (uint8_t)(i & ((1 << info.bits) - 1));
            qt_snap(&c);
            st = qs_decode_cpu(f, n, c.data, (float *)(void *)x.data);
            calls++;
            CHECK(st == QS_OK, "decode %s n %lld: status %d", info.name, (long long)n, st);
            d = qt_first_stray(&x, 1, n, n, 4u);
            CHECK(d == QT_CLEAN, "decode %s n %lld: write outside at byte %lld", info.name, (long long)n,
                  (long long)d);
            d = qt_first_change(&c);
            CHECK(d == QT_CLEAN, "decode %s: codes changed at byte %lld", info.name, (long long)d);
            /* round trip (overflow to Inf, so that an Inf code maps back to itself) */
            qt_snap(&x);
            qt_fill_pattern(&c);
            qt_snap(&c);
            /* (a finite grid refuses saturate = 0: it has nothing to overflow to) */
            st = qs_encode_cpu(f, (info.flags & (QS_FMT_HAS_INF | QS_FMT_HAS_NAN)) ? 0 : 1, n,
                               (const float *)(void *)x.data, c.data);
            calls++;
            CHECK(st == QS_OK, "encode %s n %lld: status %d", info.name, (long long)n, st);
            d = qt_first_stray(&c, 1, n, n, 1u);
            CHECK(d == QT_CLEAN, "encode %s n %lld: write outside at byte %lld", info.name, (long long)n,
                  (long long)d);
            d = qt_first_change(&x);
            CHECK(d == QT_CLEAN, "encode %s: x changed at byte %lld", info.name, (long long)d);
            for (i = 0; i < n; i++) {
                uint8_t code = (uint8_t)(i & ((1 << info.bits) - 1));
                float v;
                memcpy(&v, x.data + i * 4, 4);
                if (qt_isnan_f32(v)) {
                    float v2;
                    int32_t st2 = qs_decode_cpu(f, 1, c.data + i, &v2);
                    CHECK(st2 == QS_OK && qt_isnan_f32(v2), "%s: NaN code %#x re-encodes to non-NaN %#x",
                          info.name, code, c.data[i]);
                } else {
                    CHECK(c.data[i] == code, "%s: code %#x decodes to %a, which encodes to %#x", info.name, code,
                          (double)v, c.data[i]);
                }
            }
            /* encode arbitrary values, every saturate mode the grid accepts, with guards. A grid without NaN
               refuses NaN input (status, codes untouched); its NaNs are then replaced by zeros and encoded. */
            for (sat = -1; sat <= 1; sat++) {
                const int has_nan = (info.flags & QS_FMT_HAS_NAN) != 0;
                int64_t nans = 0;
                if (sat == 0 && !(info.flags & (QS_FMT_HAS_INF | QS_FMT_HAS_NAN))) continue;
                qt_fill_tensor(back.data, QS_DTYPE_F32, 1, n, n, &s, QT_VALUES_SPECIAL);
                if (!has_nan) {
                    for (i = 0; i < n; i++) {
                        float v;
                        memcpy(&v, back.data + i * 4, 4);
                        if (qt_isnan_f32(v)) nans++;
                    }
                    if (nans > 0) {
                        qt_snap(&back);
                        qt_fill_pattern(&c);
                        qt_snap(&c);
                        st = qs_encode_cpu(f, sat, n, (const float *)(void *)back.data, c.data);
                        calls++;
                        CHECK(st == QS_ERR_INVALID_ARGUMENT, "encode %s with NaN: status %d, want refusal",
                              info.name, st);
                        d = qt_first_change(&c);
                        CHECK(d == QT_CLEAN, "encode %s with NaN: codes changed at byte %lld", info.name,
                              (long long)d);
                        for (i = 0; i < n; i++) {
                            float v;
                            memcpy(&v, back.data + i * 4, 4);
                            if (qt_isnan_f32(v)) memset(back.data + i * 4, 0, 4);
                        }
                    }
                }
                qt_snap(&back);
                qt_fill_pattern(&c);
                qt_snap(&c);
                st = qs_encode_cpu(f, sat, n, (const float *)(void *)back.data, c.data);
                calls++;
                CHECK(st == QS_OK, "encode %s saturate %d: status %d", info.name, sat, st);
                d = qt_first_stray(&c, 1, n, n, 1u);
                CHECK(d == QT_CLEAN, "encode %s saturate %d: write outside at byte %lld", info.name, sat,
                      (long long)d);
                d = qt_first_change(&back);
                CHECK(d == QT_CLEAN, "encode %s saturate %d: x changed", info.name, sat);
                for (i = 0; i < n && info.bits < 8; i++)
                    CHECK((c.data[i] >> info.bits) == 0u, "encode %s: code %#x has bits above %d", info.name,
                          c.data[i], info.bits);
            }
            qt_buf_free(&x);
            qt_buf_free(&c);
            qt_buf_free(&back);
        }
    }
    printf("  codec guarded calls: %ld\n", calls);
}

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- regressions ----------------------------------------------------------------------------------------------- */

/* Calls that once reached undefined behaviour (found by these tests and the fuzzer): a row stride so large that its
   byte size overflows int64 (now refused: strides are at most INT64_MAX/4), and the unused mask pointer and stride
   of a QS_MASK_NONE call being offset (now never read). Run under the sanitizers, each must return its documented
   status without a report. */
static void test_regressions(void) {
    float x[8] = {1.0f, -2.0f, 3.0f, -4.0f, 0.5f, 0.25f, -8.0f, 16.0f}, y[8], y_ref[8];
    uint8_t m[8];
    qs_quant_params p;
    int32_t s;
    memset(&p, 0, sizeof p);
    p.format = id_int4;
    p.group_size = 4;
    p.saturate = -1;
    s = qs_fake_quant_cpu(&p, QS_DTYPE_F32, 1, 8, x, INT64_MAX, y, 8, NULL, 0, QS_MASK_NONE, 1);
    CHECK(s == QS_ERR_INVALID_STRIDE, "fake_quant one row, x_stride INT64_MAX: %d %s", s, status_name(s));
    s = qs_fake_quant_cpu(&p, QS_DTYPE_F32, 1, 8, x, 8, y, INT64_MAX, NULL, 0, QS_MASK_NONE, 1);
    CHECK(s == QS_ERR_INVALID_STRIDE, "fake_quant one row, y_stride INT64_MAX: %d %s", s, status_name(s));
    s = qs_nm_mask_cpu(QS_DTYPE_F32, 1, 8, x, INT64_MAX, m, 8, 2, 4, 1);
    CHECK(s == QS_ERR_INVALID_STRIDE, "nm_mask one row, stride INT64_MAX: %d %s", s, status_name(s));
    s = qs_magnitude_mask_cpu(QS_DTYPE_F32, 1, 8, x, INT64_MAX, m, 8, 3, 1, 1);
    CHECK(s == QS_ERR_INVALID_STRIDE, "magnitude_mask per row, stride INT64_MAX: %d %s", s, status_name(s));
    s = qs_magnitude_mask_cpu(QS_DTYPE_F16, 1, 4, x, INT64_MAX / 2 + 1, m, 8, 3, 0, 1);
    CHECK(s == QS_ERR_INVALID_STRIDE, "magnitude_mask per tensor, f16 stride INT64_MAX/2+1: %d %s", s,
          status_name(s));

    /* QS_MASK_NONE: the mask pointer and stride are not read, whatever they are */
    p.group_size = 1;
    s = qs_fake_quant_cpu(&p, QS_DTYPE_F32, 3, 1, x, 1, y_ref, 1, NULL, 0, QS_MASK_NONE, 1);
    CHECK(s == QS_OK, "fake_quant 3x1 groups of 1: %d %s", s, status_name(s));
    {
        const int64_t strides[] = {INT64_MAX, -1, INT64_MIN, 0};
        const int64_t groups[] = {1, QS_GROUP_ROW, QS_GROUP_TENSOR};
        size_t i, j;
        for (j = 0; j < sizeof groups / sizeof groups[0]; j++) {
            p.group_size = groups[j];
            qs_fake_quant_cpu(&p, QS_DTYPE_F32, 3, 1, x, 1, y_ref, 1, NULL, 0, QS_MASK_NONE, 1);
            for (i = 0; i < sizeof strides / sizeof strides[0]; i++) {
                memset(y, 0xA5, sizeof y);
                s = qs_fake_quant_cpu(&p, QS_DTYPE_F32, 3, 1, x, 1, y, 1, NULL, strides[i], QS_MASK_NONE, 1);
                CHECK(s == QS_OK && memcmp(y, y_ref, 3 * sizeof(float)) == 0,
                      "fake_quant without a mask, mask stride %lld, group %lld: %d %s", (long long)strides[i],
                      (long long)groups[j], s, status_name(s));
            }
        }
    }
}

int main(void) {
    double t0 = seconds(), t1;
    setvbuf(stdout, NULL, _IOLBF, 0); /* lines out before a sanitizer ends the process */
    fixtures_init();
    g_count = qs_format_count();
    id_int4 = qt_format_id("int4");
    id_bfp8 = qt_format_id("bfp8");
    id_e4m3 = qt_format_id("fp8_e4m3");
    id_e5m2 = qt_format_id("fp8_e5m2");
    id_fp16 = qt_format_id("fp16");
    id_mxfp4 = qt_format_id("mxfp4");

    printf("test_boundary: %d formats\n", g_count);
    test_facts();
    test_fake_quant_args();
    test_nm_mask_args();
    test_magnitude_mask_args();
    test_codec_args();
    test_hadamard();
    test_gptq_and_qparams();
    test_regressions();
    t1 = seconds();
    printf("  argument checks: %ld, %.1f s (failures so far: %ld)\n", g_checks, t1 - t0, g_failures);
    guard_fake_quant();
    printf("    %.1f s\n", seconds() - t1);
    t1 = seconds();
    guard_masks();
    printf("    %.1f s\n", seconds() - t1);
    guard_codec();
    fixtures_free();

    printf("test_boundary: %ld checks, %ld failures, %.1f s\n", g_checks, g_failures, seconds() - t0);
    return g_failures == 0 ? 0 : 1;
}
