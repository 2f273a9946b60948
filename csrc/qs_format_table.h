/*
 * qs_format_table.h -- the one table of number formats (host code, shared by csrc/ and cuda/).
 *
 * A format is one QS_FORMAT_ROWS entry: X(name, family, bits, ebits, mbits, flags, default_group, default_scale_mode).
 * For QS_FAMILY_SCALED rows ebits/mbits/flags describe the element grid. Everything else
 * (bias, exponent range, max/min values, integer code range) is derived by qs_format_fill(), and the kernels read
 * the derived qs_kernel_traits, never the name. Adding a format of an existing family is one row here plus its
 * tests; the Python table (qsparse/formats.py) is read from this one through qs_format_get().
 *
 * Row order is the format id (part of the ABI: append only, bump QS_ABI_VERSION when it changes).
 */
#ifndef QS_FORMAT_TABLE_H
#define QS_FORMAT_TABLE_H

#include "include/qsparse.h"
#include "qs_lut.h"
#include "qs_scalar.h"

#define QS_IEEE (QS_FMT_HAS_INF | QS_FMT_HAS_NAN | QS_FMT_HAS_SUBNORMALS)
#define QS_OCP_FN (QS_FMT_HAS_NAN | QS_FMT_FN_NAN | QS_FMT_HAS_SUBNORMALS)

#define QS_INT_ROWS(X, b)                                                                  \
    X("int" #b, QS_FAMILY_INT_SYM, b, 0, (b) - 1, 0u, QS_GROUP_ROW, QS_SCALE_MODE_DEFAULT)          \
    X("int" #b "_full", QS_FAMILY_INT_FULL, b, 0, (b) - 1, 0u, QS_GROUP_ROW, QS_SCALE_MODE_DEFAULT) \
    X("int" #b "_asym", QS_FAMILY_INT_ASYM, b, 0, (b) - 1, 0u, QS_GROUP_ROW, QS_SCALE_MODE_DEFAULT)

/* Minifloats fp{w}_e{E}m{M}, w = 1 + E + M (FORMATS.md section 3): bias 2^(E-1) - 1, subnormals, every code
   finite (no Inf, no NaN), saturating. fp8_e4m3 and fp8_e5m2 are OCP's, below, not of this kind. */
#define QS_MINI (QS_FMT_HAS_SUBNORMALS | QS_FMT_SATURATES | QS_FMT_HAS_CODES)
#define QS_MINIFLOAT_ROW(X, w, e, m) \
    X("fp" #w "_e" #e "m" #m, QS_FAMILY_FLOAT, w, e, m, QS_MINI, QS_GROUP_ROW, QS_SCALE_MODE_NONE)

/* HBFP: w bits per element including the sign, block 32 by default (FORMATS.md section 2). */
#define QS_BFP_ROW(X, w) X("bfp" #w, QS_FAMILY_BFP, w, 0, (w) - 1, 0u, 32, QS_SCALE_MODE_DEFAULT)

/* OCP MX (FORMATS.md section 4): block 32, E8M0 scale (floor by default); the elements saturate. MXINT8's element
   k * 2^-6, |k| <= 127, is the fixed-point grid of QS_FMT_FIXED_POINT with 1 + 6 bits. NVFP4 (section 5): E2M1
   elements, block 16, E4M3 block scale under a binary32 tensor scale. */
#define QS_MX_ROW(X, name, w, e, m, flags) \
    X(name, QS_FAMILY_SCALED, w, e, m, (flags) | QS_FMT_SATURATES, 32, QS_SCALE_MODE_FLOOR)

/* Lookup grids in BitMoD's integer units (FORMATS.md section 7; yc2367/BitMoD-HPCA-25 quant_weight.py), ascending.
   ER and EA replace FP's redundant -0 by one extra value. */
typedef struct qs_grid_def {
    const char *name;
    int32_t n;
    int8_t v[16];
} qs_grid_def;
static const qs_grid_def qs_grid_int3 = {"int3", 7, {-3, -2, -1, 0, 1, 2, 3}};
static const qs_grid_def qs_grid_fp3 = {"fp3", 7, {-4, -2, -1, 0, 1, 2, 4}};
static const qs_grid_def qs_grid_fp3_er_pos = {"fp3_er_pos", 8, {-4, -2, -1, 0, 1, 2, 3, 4}};
static const qs_grid_def qs_grid_fp3_er_neg = {"fp3_er_neg", 8, {-4, -3, -2, -1, 0, 1, 2, 4}};
static const qs_grid_def qs_grid_fp3_ea_pos = {"fp3_ea_pos", 8, {-4, -2, -1, 0, 1, 2, 4, 6}};
static const qs_grid_def qs_grid_fp3_ea_neg = {"fp3_ea_neg", 8, {-6, -4, -2, -1, 0, 1, 2, 4}};
static const qs_grid_def qs_grid_int4 = {"int4", 15, {-7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7}};
static const qs_grid_def qs_grid_flint4 = {"flint4", 15, {-16, -8, -6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6, 8, 16}};
static const qs_grid_def qs_grid_fp4 = {"fp4", 15, {-12, -8, -6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6, 8, 12}};
static const qs_grid_def qs_grid_fp4_er_pos = {"fp4_er_pos", 16, {-12, -8, -6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6, 8, 10, 12}};
static const qs_grid_def qs_grid_fp4_er_neg = {"fp4_er_neg", 16, {-12, -10, -8, -6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6, 8, 12}};
static const qs_grid_def qs_grid_fp4_ea_pos = {"fp4_ea_pos", 16, {-12, -8, -6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6, 8, 12, 16}};
static const qs_grid_def qs_grid_fp4_ea_neg = {"fp4_ea_neg", 16, {-16, -12, -8, -6, -4, -3, -2, -1, 0, 1, 2, 3, 4, 6, 8, 12}};

/* The grids of one QS_FAMILY_LUT row, in BitMoD's search order; pow2: BitMoD's MX scale. */
typedef struct qs_lut_set {
    int32_t count, pow2;
    const qs_grid_def *grids[4];
} qs_lut_set;
#define QS_LUT_SETS(X)                                                                                              \
    X(flint4, 1, 0, &qs_grid_flint4, 0, 0, 0)                                                                        \
    X(fp4_er_pos, 1, 0, &qs_grid_fp4_er_pos, 0, 0, 0) X(fp4_er_neg, 1, 0, &qs_grid_fp4_er_neg, 0, 0, 0)              \
    X(fp4_ea_pos, 1, 0, &qs_grid_fp4_ea_pos, 0, 0, 0) X(fp4_ea_neg, 1, 0, &qs_grid_fp4_ea_neg, 0, 0, 0)              \
    X(fp3_er_pos, 1, 0, &qs_grid_fp3_er_pos, 0, 0, 0) X(fp3_er_neg, 1, 0, &qs_grid_fp3_er_neg, 0, 0, 0)              \
    X(fp3_ea_pos, 1, 0, &qs_grid_fp3_ea_pos, 0, 0, 0) X(fp3_ea_neg, 1, 0, &qs_grid_fp3_ea_neg, 0, 0, 0)              \
    X(mixed_ant4, 2, 0, &qs_grid_int4, &qs_grid_flint4, 0, 0)                                                       \
    X(mixed_er4, 2, 0, &qs_grid_fp4_er_pos, &qs_grid_fp4_er_neg, 0, 0)                                              \
    X(mixed_ea4, 2, 0, &qs_grid_fp4_ea_pos, &qs_grid_fp4_ea_neg, 0, 0)                                              \
    X(mixed_bitmod4, 4, 0, &qs_grid_fp4_er_pos, &qs_grid_fp4_er_neg, &qs_grid_fp4_ea_pos, &qs_grid_fp4_ea_neg)       \
    X(mixed_ant3, 2, 0, &qs_grid_int3, &qs_grid_fp3, 0, 0)                                                          \
    X(mixed_er3, 2, 0, &qs_grid_fp3_er_pos, &qs_grid_fp3_er_neg, 0, 0)                                              \
    X(mixed_ea3, 2, 0, &qs_grid_fp3_ea_pos, &qs_grid_fp3_ea_neg, 0, 0)                                              \
    X(mixed_bitmod3, 4, 0, &qs_grid_fp3_er_pos, &qs_grid_fp3_er_neg, &qs_grid_fp3_ea_pos, &qs_grid_fp3_ea_neg)       \
    X(mx_fp4, 1, 1, &qs_grid_fp4, 0, 0, 0) X(mx_fp3, 1, 1, &qs_grid_fp3, 0, 0, 0)                                  \
    X(mx_int4, 1, 1, &qs_grid_int4, 0, 0, 0) X(mx_int3, 1, 1, &qs_grid_int3, 0, 0, 0)
#define QS_LUT_SET_INIT(name, count, pow2, a, b, c, d) {count, pow2, {a, b, c, d}},
static const qs_lut_set qs_lut_sets[] = {QS_LUT_SETS(QS_LUT_SET_INIT)};
#undef QS_LUT_SET_INIT
#define QS_LUT_SET_ID(name, count, pow2, a, b, c, d) QS_LUT_SET_##name,
enum { QS_LUT_SETS(QS_LUT_SET_ID) QS_LUT_SET_COUNT_ };
#undef QS_LUT_SET_ID

/* A QS_FAMILY_LUT row: `ebits` holds the index of its grid set (qs_lut_sets); bits per element, default group 128
   (BitMoD's), scale amax / max|grid|; BitMoD's MX rows use block 32 and its power-of-two scale. */
#define QS_LUT_ROW(X, set, bits) X(#set, QS_FAMILY_LUT, bits, QS_LUT_SET_##set, 0, 0u, 128, QS_SCALE_MODE_AMAX)
#define QS_LUT_MX_ROW(X, set, bits) X(#set, QS_FAMILY_LUT, bits, QS_LUT_SET_##set, 0, 0u, 32, QS_SCALE_MODE_FLOOR)

/* llm-mixed-q's formats (FORMATS.md sections 3 and 6), QS_FAMILY_LLMQ: log{w} = 1 sign + (w-1) exponent bits,
   element-wise, bias 2^(w-2) - 1; bl{w} the same with an 8-bit bias per block of 16; dmf{w}_e{E}m{M} the
   denormalized minifloat (no implicit bit, bias 2^(E-1) - 1, element-wise; M >= 1); bmf{w}_e{E}m{M} the IEEE-style
   minifloat with an 8-bit bias per block of 16. Appended after every older row (ids are ABI). */
#define QS_LOG_ROWS(X, w)                                                                                    \
    X("log" #w, QS_FAMILY_LLMQ, w, (w) - 1, 0, QS_FMT_LOG, QS_GROUP_ROW, QS_SCALE_MODE_DEFAULT)                \
    X("bl" #w, QS_FAMILY_LLMQ, w, (w) - 1, 0, QS_FMT_LOG | QS_FMT_BLOCK_BIAS, 16, QS_SCALE_MODE_DEFAULT)
#define QS_DMF_ROW(X, w, e, m) \
    X("dmf" #w "_e" #e "m" #m, QS_FAMILY_LLMQ, w, e, m, QS_FMT_DENORM, QS_GROUP_ROW, QS_SCALE_MODE_DEFAULT)
#define QS_BMF_ROW(X, w, e, m) \
    X("bmf" #w "_e" #e "m" #m, QS_FAMILY_LLMQ, w, e, m, QS_FMT_BLOCK_BIAS, 16, QS_SCALE_MODE_DEFAULT)
/* (w, E, M) with w = 1 + E + M, 3 <= w <= 8, E >= 1 */
#define QS_EM_M0(X, R) R(X, 3, 2, 0) R(X, 4, 3, 0) R(X, 5, 4, 0) R(X, 6, 5, 0) R(X, 7, 6, 0) R(X, 8, 7, 0)
#define QS_EM_M1(X, R)                                                                                        \
    R(X, 3, 1, 1) R(X, 4, 1, 2) R(X, 4, 2, 1) R(X, 5, 1, 3) R(X, 5, 2, 2) R(X, 5, 3, 1) R(X, 6, 1, 4)           \
    R(X, 6, 2, 3) R(X, 6, 3, 2) R(X, 6, 4, 1) R(X, 7, 1, 5) R(X, 7, 2, 4) R(X, 7, 3, 3) R(X, 7, 4, 2)           \
    R(X, 7, 5, 1) R(X, 8, 1, 6) R(X, 8, 2, 5) R(X, 8, 3, 4) R(X, 8, 4, 3) R(X, 8, 5, 2) R(X, 8, 6, 1)
#define QS_LLMQ_ROWS(X)                                                                                       \
    QS_LOG_ROWS(X, 2) QS_LOG_ROWS(X, 3) QS_LOG_ROWS(X, 4) QS_LOG_ROWS(X, 5) QS_LOG_ROWS(X, 6)                  \
    QS_LOG_ROWS(X, 7) QS_LOG_ROWS(X, 8) QS_EM_M1(X, QS_DMF_ROW) QS_EM_M1(X, QS_BMF_ROW) QS_EM_M0(X, QS_BMF_ROW)

/* llm-mixed-q's `integer` (quantizers/integer.py, signed): fixed point with w bits of which f are fraction bits,
   x_hat = clamp(round(x * 2^f), -2^(w-1), 2^(w-1) - 1) / 2^f, element-wise. One row per width; the row is f = 0
   and the fraction width is the call's (qs_quant_params.frac_bits), so that the table does not hold a row for
   every (w, f) pair. */
#define QS_FIXED_ROW(X, w) X("fixed" #w "_f0", QS_FAMILY_LLMQ, w, 0, 0, QS_FMT_FIXED_POINT, QS_GROUP_ROW, QS_SCALE_MODE_DEFAULT)
#define QS_FIXED_ROWS(X)                                                                                      \
    QS_FIXED_ROW(X, 2) QS_FIXED_ROW(X, 3) QS_FIXED_ROW(X, 4) QS_FIXED_ROW(X, 5) QS_FIXED_ROW(X, 6)               \
    QS_FIXED_ROW(X, 7) QS_FIXED_ROW(X, 8) QS_FIXED_ROW(X, 9) QS_FIXED_ROW(X, 10) QS_FIXED_ROW(X, 11)             \
    QS_FIXED_ROW(X, 12) QS_FIXED_ROW(X, 13) QS_FIXED_ROW(X, 14) QS_FIXED_ROW(X, 15) QS_FIXED_ROW(X, 16)

/* The 8-bit block bias of bl and bmf (llm-mixed-q's exponent_bias_width, 8 in its configurations). */
#define QS_LLMQ_BIAS_BITS 8

#define QS_FORMAT_ROWS(X)                                                                  \
    QS_INT_ROWS(X, 2) QS_INT_ROWS(X, 3) QS_INT_ROWS(X, 4) QS_INT_ROWS(X, 5)                \
    QS_INT_ROWS(X, 6) QS_INT_ROWS(X, 7) QS_INT_ROWS(X, 8)                                  \
    QS_BFP_ROW(X, 2) QS_BFP_ROW(X, 3) QS_BFP_ROW(X, 4) QS_BFP_ROW(X, 5) QS_BFP_ROW(X, 6)   \
    QS_BFP_ROW(X, 7) QS_BFP_ROW(X, 8) QS_BFP_ROW(X, 9) QS_BFP_ROW(X, 10)                  \
    QS_BFP_ROW(X, 11) QS_BFP_ROW(X, 12) QS_BFP_ROW(X, 13) QS_BFP_ROW(X, 14)               \
    QS_BFP_ROW(X, 15) QS_BFP_ROW(X, 16)                                                    \
    X("fp16", QS_FAMILY_FLOAT, 16, 5, 10, QS_IEEE, QS_GROUP_ROW, QS_SCALE_MODE_NONE)                     \
    X("bf16", QS_FAMILY_FLOAT, 16, 8, 7, QS_IEEE, QS_GROUP_ROW, QS_SCALE_MODE_NONE)                      \
    X("fp8_e4m3", QS_FAMILY_FLOAT, 8, 4, 3, QS_OCP_FN | QS_FMT_SATURATES | QS_FMT_HAS_CODES, QS_GROUP_ROW, \
      QS_SCALE_MODE_NONE)                                                                                \
    X("fp8_e5m2", QS_FAMILY_FLOAT, 8, 5, 2, QS_IEEE | QS_FMT_SATURATES | QS_FMT_HAS_CODES, QS_GROUP_ROW,  \
      QS_SCALE_MODE_NONE)                                                                                \
    QS_MINIFLOAT_ROW(X, 3, 1, 1) QS_MINIFLOAT_ROW(X, 3, 2, 0) QS_MINIFLOAT_ROW(X, 4, 1, 2)                          \
    QS_MINIFLOAT_ROW(X, 4, 2, 1) QS_MINIFLOAT_ROW(X, 4, 3, 0) QS_MINIFLOAT_ROW(X, 5, 1, 3)                          \
    QS_MINIFLOAT_ROW(X, 5, 2, 2) QS_MINIFLOAT_ROW(X, 5, 3, 1) QS_MINIFLOAT_ROW(X, 5, 4, 0)                          \
    QS_MINIFLOAT_ROW(X, 6, 1, 4) QS_MINIFLOAT_ROW(X, 6, 2, 3) QS_MINIFLOAT_ROW(X, 6, 3, 2)                          \
    QS_MINIFLOAT_ROW(X, 6, 4, 1) QS_MINIFLOAT_ROW(X, 6, 5, 0) QS_MINIFLOAT_ROW(X, 7, 1, 5)                          \
    QS_MINIFLOAT_ROW(X, 7, 2, 4) QS_MINIFLOAT_ROW(X, 7, 3, 3) QS_MINIFLOAT_ROW(X, 7, 4, 2)                          \
    QS_MINIFLOAT_ROW(X, 7, 5, 1) QS_MINIFLOAT_ROW(X, 7, 6, 0) QS_MINIFLOAT_ROW(X, 8, 1, 6)                          \
    QS_MINIFLOAT_ROW(X, 8, 2, 5) QS_MINIFLOAT_ROW(X, 8, 3, 4) QS_MINIFLOAT_ROW(X, 8, 6, 1)                          \
    QS_MINIFLOAT_ROW(X, 8, 7, 0)                                                                                    \
    QS_MX_ROW(X, "mxfp8_e4m3", 8, 4, 3, QS_OCP_FN) QS_MX_ROW(X, "mxfp8_e5m2", 8, 5, 2, QS_IEEE)                     \
    QS_MX_ROW(X, "mxfp6_e3m2", 6, 3, 2, QS_FMT_HAS_SUBNORMALS)                                                      \
    QS_MX_ROW(X, "mxfp6_e2m3", 6, 2, 3, QS_FMT_HAS_SUBNORMALS)                                                      \
    QS_MX_ROW(X, "mxfp4", 4, 2, 1, QS_FMT_HAS_SUBNORMALS)                                                           \
    QS_MX_ROW(X, "mxint8", 8, 1, 6, QS_FMT_FIXED_POINT | QS_FMT_HAS_SUBNORMALS)                                     \
    X("nvfp4", QS_FAMILY_SCALED, 4, 2, 1, QS_FMT_HAS_SUBNORMALS | QS_FMT_SATURATES, 16, QS_SCALE_MODE_E4M3)      \
    QS_LUT_ROW(X, flint4, 4) QS_LUT_ROW(X, fp4_er_pos, 4) QS_LUT_ROW(X, fp4_er_neg, 4)                              \
    QS_LUT_ROW(X, fp4_ea_pos, 4) QS_LUT_ROW(X, fp4_ea_neg, 4) QS_LUT_ROW(X, fp3_er_pos, 3)                          \
    QS_LUT_ROW(X, fp3_er_neg, 3) QS_LUT_ROW(X, fp3_ea_pos, 3) QS_LUT_ROW(X, fp3_ea_neg, 3)                          \
    QS_LUT_ROW(X, mixed_ant4, 4) QS_LUT_ROW(X, mixed_er4, 4) QS_LUT_ROW(X, mixed_ea4, 4)                            \
    QS_LUT_ROW(X, mixed_bitmod4, 4) QS_LUT_ROW(X, mixed_ant3, 3) QS_LUT_ROW(X, mixed_er3, 3)                        \
    QS_LUT_ROW(X, mixed_ea3, 3) QS_LUT_ROW(X, mixed_bitmod3, 3)                                                     \
    QS_LUT_MX_ROW(X, mx_fp4, 4) QS_LUT_MX_ROW(X, mx_fp3, 3) QS_LUT_MX_ROW(X, mx_int4, 4) QS_LUT_MX_ROW(X, mx_int3, 3) \
    QS_LLMQ_ROWS(X) QS_FIXED_ROWS(X)

typedef struct qs_format_row {
    const char *name;
    int32_t family, bits, ebits, mbits;
    uint32_t flags;
    int64_t default_group;
    int32_t default_scale_mode;
} qs_format_row;

#define QS_ROW_INIT(name, family, bits, ebits, mbits, flags, group, smode) \
    {name, family, bits, ebits, mbits, flags, group, smode},
static const qs_format_row qs_format_rows[] = {QS_FORMAT_ROWS(QS_ROW_INIT)};
#undef QS_ROW_INIT

#define QS_FORMAT_COUNT ((int32_t)(sizeof qs_format_rows / sizeof qs_format_rows[0]))

/* Powers of two as doubles, for the table's derived values (exact for |k| < 1023). */
static inline double qs_pow2d(int32_t k) {
    double r = 1.0;
    while (k > 0) { r *= 2.0; k--; }
    while (k < 0) { r *= 0.5; k++; }
    return r;
}

/* Fills *out from row `id`; returns QS_ERR_INVALID_FORMAT for an unknown id. */
static inline int32_t qs_format_fill(int32_t id, qs_format_info *out) {
    const qs_format_row *r;
    if (id < 0 || id >= QS_FORMAT_COUNT) return QS_ERR_INVALID_FORMAT;
    r = &qs_format_rows[id];
    memset(out, 0, sizeof *out);
    out->name = r->name;
    out->id = id;
    out->family = r->family;
    out->bits = r->bits;
    out->ebits = r->ebits;
    out->mbits = r->mbits;
    out->flags = r->flags;
    out->default_group = r->default_group;
    out->default_scale_mode = r->default_scale_mode;
    out->min_normal = 1.0;
    out->min_subnormal = 1.0;
    switch (r->family) {
    case QS_FAMILY_INT_SYM:
        out->qmax = (1 << (r->bits - 1)) - 1;
        out->qmin = -out->qmax;
        out->scale_kind = QS_SCALE_FLOAT;
        break;
    case QS_FAMILY_INT_FULL:
        out->qmax = (1 << (r->bits - 1)) - 1;
        out->qmin = -(1 << (r->bits - 1));
        out->scale_kind = QS_SCALE_FLOAT;
        break;
    case QS_FAMILY_INT_ASYM:
        out->qmax = (1 << r->bits) - 1;
        out->qmin = 0;
        out->scale_kind = QS_SCALE_FLOAT;
        break;
    case QS_FAMILY_BFP:
        out->qmax = (1 << r->mbits) - 1;
        out->qmin = -out->qmax;
        out->scale_kind = QS_SCALE_SHARED_EXP;
        break;
    case QS_FAMILY_LUT: {
        const qs_lut_set *set = &qs_lut_sets[r->ebits];
        int32_t c;
        out->ebits = 0;
        out->candidates = set->count;
        out->qmin = set->grids[0]->v[0];
        out->qmax = set->grids[0]->v[set->grids[0]->n - 1];
        out->max_normal = 0.0;
        for (c = 0; c < set->count; c++) { /* the largest magnitude of any of its grids */
            const qs_grid_def *g = set->grids[c];
            const double lo = -(double)g->v[0], hi = (double)g->v[g->n - 1];
            if (lo > out->max_normal) out->max_normal = lo;
            if (hi > out->max_normal) out->max_normal = hi;
        }
        out->scale_kind = set->pow2 ? QS_SCALE_SHARED_EXP : QS_SCALE_FLOAT;
        break;
    }
    case QS_FAMILY_LLMQ: {
        if (r->flags & QS_FMT_FIXED_POINT) { /* integer codes -2^(w-1) .. 2^(w-1) - 1 of 2^-f, f = 0 */
            out->qmax = (1 << (r->bits - 1)) - 1;
            out->qmin = -(1 << (r->bits - 1));
            out->max_normal = (double)out->qmax; /* as int{b}_full: the positive end (the grid has -qmax - 1) */
            out->scale_kind = QS_SCALE_NONE;
            break;
        }
        /* element rows: the fixed bias's grid; block rows: the grid in units of the block's scale (bl: 2^(top -
           bias), so that its largest value is 1; bmf: 2^-bias) */
        const int32_t block = (r->flags & QS_FMT_BLOCK_BIAS) != 0u;
        const int32_t log = (r->flags & QS_FMT_LOG) != 0u;
        const int32_t top = (1 << r->ebits) - 1; /* largest exponent code */
        out->bias = block ? 0 : (1 << (r->ebits - 1)) - 1;
        out->emin = -out->bias;
        out->emax = top - out->bias;
        if (log) {
            if (block) {
                out->emin = -top;
                out->emax = 0;
            }
            out->max_normal = qs_pow2d(out->emax);
            out->min_normal = qs_pow2d(out->emin);
            out->min_subnormal = out->min_normal;
        } else if (r->flags & QS_FMT_DENORM) {
            /* 2^e * mi / 2^M, 1 <= mi <= 2^M - 1; "normal": the top mantissa bit set */
            out->max_normal = qs_pow2d(out->emax) * (1.0 - qs_pow2d(-r->mbits));
            out->min_normal = qs_pow2d(out->emin - 1);
            out->min_subnormal = qs_pow2d(out->emin - r->mbits);
        } else {
            /* minifloat_ieee: the binade e = -bias is subnormal, normals from 2^(1 - bias) */
            out->max_normal = qs_pow2d(out->emax) * (2.0 - qs_pow2d(-r->mbits));
            out->min_normal = qs_pow2d(out->emin + 1);
            out->min_subnormal = qs_pow2d(out->emin + 1 - r->mbits);
            out->flags |= QS_FMT_HAS_SUBNORMALS;
        }
        out->scale_kind = block ? QS_SCALE_SHARED_EXP : QS_SCALE_NONE;
        break;
    }
    default: { /* QS_FAMILY_FLOAT and QS_FAMILY_SCALED: the element grid */
        int32_t top = (1 << r->ebits) - 1; /* all-ones exponent field */
        double frac_max;
        /* a fixed-point grid k * 2^-mbits is the 1-bit-exponent minifloat with bias 1 */
        out->bias = (r->flags & QS_FMT_FIXED_POINT) ? 1 : (1 << (r->ebits - 1)) - 1;
        out->emin = 1 - out->bias;
        if (r->flags & QS_FMT_HAS_INF) {
            /* IEEE: the all-ones exponent holds Inf and NaN */
            out->emax = top - 1 - out->bias;
            frac_max = 2.0 - qs_pow2d(-r->mbits);
        } else if (r->flags & QS_FMT_FN_NAN) {
            /* OCP E4M3: only S.1111.111 is NaN, so the top binade ends one mantissa step early */
            out->emax = top - out->bias;
            frac_max = 2.0 - qs_pow2d(1 - r->mbits);
        } else {
            out->emax = top - out->bias; /* every code finite */
            frac_max = 2.0 - qs_pow2d(-r->mbits);
        }
        out->max_normal = frac_max * qs_pow2d(out->emax);
        out->min_normal = qs_pow2d(out->emin);
        out->min_subnormal = (r->flags & QS_FMT_HAS_SUBNORMALS) ? qs_pow2d(out->emin - r->mbits) : out->min_normal;
        out->qmin = 0;
        out->qmax = 0;
        out->scale_kind = r->family == QS_FAMILY_FLOAT ? QS_SCALE_NONE
                          : r->default_scale_mode == QS_SCALE_MODE_E4M3 ? QS_SCALE_E4M3
                                                                        : QS_SCALE_SHARED_EXP;
        break;
    }
    }
    if (r->family != QS_FAMILY_FLOAT && r->family != QS_FAMILY_SCALED && r->family != QS_FAMILY_LUT &&
        r->family != QS_FAMILY_LLMQ) {
        out->max_normal = (double)out->qmax;
    }
    return QS_OK;
}

/* What a kernel needs for one call: the format's rounding constants with the call's options resolved. */
typedef struct qs_kernel_traits {
    int32_t family;     /* the row's family; scaled uses run as QS_FAMILY_SCALED, _POW2 or _FPQ */
    int32_t rounding;
    float qmin, qmax;   /* INT: code range; BFP: +-(2^mbits - 1) */
    float divisor;      /* INT_SYM: qmax; INT_FULL: qmax + 0.5; INT_ASYM: maxq = qmax */
    int32_t mbits;      /* BFP magnitude bits; FLOAT, SCALED: element mantissa bits */
    qs_ftraits ft;      /* FLOAT, SCALED: the element grid */
    /* SCALED */
    int32_t scale_mode; /* qs_scale_mode, resolved (never DEFAULT or NONE) */
    int32_t elem_emax;  /* unbiased exponent of the element's largest value */
    uint32_t even_add;  /* EVEN: 2^(22 - mbits), half a unit of the element's mantissa in binary32 bits */
    float rcp_max;      /* RCEIL: (float)(1 / max_elem), as torchao multiplies by it */
    float tdiv;         /* E4M3: max_elem * 448, the divisor of the tensor scale */
    float tscale;       /* E4M3: the tensor scale s_t (set per call from the tensor's amax; NaN: not finite) */
    /* QS_OBSERVER_MSE (observer 0: min/max) */
    int32_t observer;
    int32_t mse_count;  /* candidates: (int)(maxshrink * grid) */
    double mse_grid;
    double mse_norm;
    int32_t compat;     /* qs_compat */
    int32_t log2_f32;   /* QS_COMPAT_MICROXCALING: FLOOR exponents from the binary32 log2 of the block max */
    int32_t fpq;        /* QS_COMPAT_FPQUANT (mxfp4 FLOOR, nvfp4 E4M3); tscale then holds the global scale g */
    /* QS_FAMILY_LLMQ (also the llm-mixed-q profile of minifloats and bfp) */
    int32_t lq_kind;    /* QS_LQ_IEEE, QS_LQ_DENORM, QS_LQ_LOG, QS_LQ_MSFP, QS_LQ_FIXED */
    int32_t lq_block;   /* the bias (MSFP: the shared exponent) comes from each block's max */
    int32_t lq_src;     /* QS_COMPAT_LLMQ: the source's output blend and its NaN/Inf block behaviour */
    float lq_bias;      /* element rows: the exponent bias (fixed point: 2^f) */
    float lq_top;       /* the largest exponent code: 2^E - 1 (log: 2^(w-1) - 1; fixed point: 2^(w-1) - 1) */
    float lq_scale;     /* 2^M (fixed point: 2^-f) */
    float lq_bmax;      /* the largest block bias, 2^8 - 1 */
    uint32_t lq_zbits;  /* QS_COMPAT_LLMQ block rows: the max |x| (bits) a block of zeros takes, the source's
                           replacement (qs_lq_zero_bits, set per call); 0: none (the clamp's end) */
    int32_t lq_half;    /* QS_COMPAT_LLMQ on a binary16 / bfloat16 input: the source's torch arithmetic in that
                           dtype, each operation rounded to it (QS_DTYPE_F16 or QS_DTYPE_BF16; 0: binary32) */
    const uint32_t *lq_t; /* CPU only, else NULL: the rounded log2 of the elements' exponents from the
                             thresholds of qs_lq_ilog2 (QS_LQ_TABLE entries, set per call), not from libm */
} qs_kernel_traits;

/* The element grid of a FLOAT or SCALED row: rounding constants and overflow value. */
static inline void qs_ftraits_make(const qs_format_info *info, int32_t saturate, qs_ftraits *ft) {
    ft->shift = (uint32_t)(23 - info->mbits); /* >= 13 for every row: 1 <= shift keeps the RNE half defined */
    ft->drop_unit = qs_exp2i(info->mbits - 23);
    ft->min_normal_bits = qs_f2u(qs_exp2i(info->emin));
    ft->sub_quantum_x64 = qs_exp2i(info->emin - info->mbits + 64);
    ft->sub_inv_x64 = qs_exp2i(info->mbits - info->emin - 64);
    ft->max_normal = (float)info->max_normal;
    ft->odd_unit = info->mbits == 0;
    ft->overflow = saturate ? ft->max_normal
                            : ((info->flags & QS_FMT_HAS_INF) ? qs_u2f(QS_F32_INF_BITS) : qs_qnan());
}

/* qs_quant_params.frac_bits: 0, or for a fixed-point row a fraction width in [QS_FIXED_FRAC_MIN,
   QS_FIXED_FRAC_MAX]. Checked with the parameter structs (before sizes), for any format id. */
static inline int32_t qs_check_frac_bits(const qs_quant_params *p) {
    const int32_t fixed = p->format >= 0 && p->format < QS_FORMAT_COUNT &&
                          qs_format_rows[p->format].family == QS_FAMILY_LLMQ &&
                          (qs_format_rows[p->format].flags & QS_FMT_FIXED_POINT) != 0u;
    if (!fixed) return p->frac_bits == 0 ? QS_OK : QS_ERR_INVALID_ARGUMENT;
    return p->frac_bits >= QS_FIXED_FRAC_MIN && p->frac_bits <= QS_FIXED_FRAC_MAX ? QS_OK : QS_ERR_INVALID_ARGUMENT;
}

/* Resolves params into traits; validates the format id, rounding, saturate and scale mode (not sizes). */
static inline int32_t qs_kernel_traits_make(const qs_quant_params *p, qs_kernel_traits *kt) {
    qs_format_info info;
    int32_t st = qs_format_fill(p->format, &info);
    int32_t mode;
    if (st != QS_OK) return st;
    if (qs_check_frac_bits(p) != QS_OK) return QS_ERR_INVALID_ARGUMENT;
    if (p->rounding < 0 || p->rounding >= QS_ROUNDING_COUNT_) return QS_ERR_INVALID_ROUNDING;
    if (p->saturate < -1 || p->saturate > 1) return QS_ERR_INVALID_ARGUMENT;
    if (p->scale_mode < 0 || p->scale_mode >= QS_SCALE_MODE_COUNT_) return QS_ERR_INVALID_ARGUMENT;
    mode = p->scale_mode == QS_SCALE_MODE_DEFAULT ? info.default_scale_mode : p->scale_mode;
    if (info.family == QS_FAMILY_FLOAT || info.family == QS_FAMILY_SCALED) {
        const int32_t scaled = mode != QS_SCALE_MODE_NONE;
        /* a scale needs an element grid of <= 8 bits; a scaled row has no element-wise use */
        if (scaled && !(info.flags & QS_FMT_HAS_CODES) && info.family == QS_FAMILY_FLOAT) return QS_ERR_INVALID_ARGUMENT;
        if (!scaled && info.family == QS_FAMILY_SCALED) return QS_ERR_INVALID_ARGUMENT;
        /* an element grid without Inf and NaN has nothing to overflow to but its max; scaled grids always
           saturate */
        if (p->saturate == 0 && (scaled || !(info.flags & (QS_FMT_HAS_INF | QS_FMT_HAS_NAN))))
            return QS_ERR_INVALID_ARGUMENT;
    } else if (info.family == QS_FAMILY_LUT) {
        /* a lookup grid has its own scale and its own tie rule (to the lower value, which QS_ROUND_RNE stands for);
           nothing to saturate to but the grid */
        if (p->scale_mode != QS_SCALE_MODE_DEFAULT && p->scale_mode != info.default_scale_mode)
            return QS_ERR_INVALID_ARGUMENT;
        if (p->rounding != QS_ROUND_RNE && p->rounding != QS_ROUND_TIES_LOWER) return QS_ERR_INVALID_ROUNDING;
        if (p->saturate == 0 || p->observer != QS_OBSERVER_MINMAX) return QS_ERR_INVALID_ARGUMENT;
        if (p->group_size == QS_GROUP_TENSOR) return QS_ERR_INVALID_GROUP;
    } else if (p->scale_mode != QS_SCALE_MODE_DEFAULT) {
        return QS_ERR_INVALID_ARGUMENT; /* INT, BFP and LLMQ scales are fixed by the format */
    }
    if (info.family == QS_FAMILY_LLMQ) {
        /* the sources' torch.round: half to even, nothing else; every code finite */
        if (p->rounding != QS_ROUND_RNE) return QS_ERR_INVALID_ROUNDING;
        if (p->saturate == 0 || p->observer != QS_OBSERVER_MINMAX) return QS_ERR_INVALID_ARGUMENT;
    }
    if (p->compat < 0 || p->compat >= QS_COMPAT_COUNT_) return QS_ERR_INVALID_ARGUMENT;
    if (p->compat == QS_COMPAT_BITMOD) {
        /* BitMoD's quantizers: int{b} and int{b}_asym with min/max, minifloats of <= 6 bits with an amax scale,
           the lookup grids; its own rounding, per group or per row */
        const int32_t mini = (info.family == QS_FAMILY_FLOAT && (info.flags & QS_FMT_HAS_CODES) && info.bits <= 6 &&
                              mode == QS_SCALE_MODE_AMAX);
        if (!(info.family == QS_FAMILY_INT_SYM || info.family == QS_FAMILY_INT_ASYM || mini ||
              info.family == QS_FAMILY_LUT))
            return QS_ERR_INVALID_ARGUMENT;
        if (p->rounding != QS_ROUND_RNE || p->observer != QS_OBSERVER_MINMAX) return QS_ERR_INVALID_ARGUMENT;
        if (p->group_size == QS_GROUP_TENSOR) return QS_ERR_INVALID_GROUP;
    } else if (p->compat == QS_COMPAT_LLMQ) {
        /* its minifloats (element-wise, <= 8 bits), its MSFP (bfp{w}), its own formats; RNE */
        const int32_t mini = info.family == QS_FAMILY_FLOAT && (info.flags & QS_FMT_HAS_CODES) &&
                             mode == QS_SCALE_MODE_NONE;
        if (!(mini || info.family == QS_FAMILY_BFP || info.family == QS_FAMILY_LLMQ)) return QS_ERR_INVALID_ARGUMENT;
        if (p->rounding != QS_ROUND_RNE || p->observer != QS_OBSERVER_MINMAX || p->saturate == 0)
            return QS_ERR_INVALID_ARGUMENT;
    } else if (p->compat == QS_COMPAT_FPQUANT) {
        /* FP-Quant's E2M1 quantizers: mxfp4 with its FLOOR scale, nvfp4 with its E4M3 scale and global scale */
        if (!(info.family == QS_FAMILY_SCALED && info.ebits == 2 && info.mbits == 1 &&
              ((info.default_scale_mode == QS_SCALE_MODE_FLOOR && mode == QS_SCALE_MODE_FLOOR) ||
               (info.default_scale_mode == QS_SCALE_MODE_E4M3 && mode == QS_SCALE_MODE_E4M3))))
            return QS_ERR_INVALID_ARGUMENT;
        if (p->rounding != QS_ROUND_RNE || p->observer != QS_OBSERVER_MINMAX) return QS_ERR_INVALID_ARGUMENT;
    } else if (p->compat == QS_COMPAT_MICROXCALING) {
        if (!((info.family == QS_FAMILY_FLOAT || info.family == QS_FAMILY_SCALED) && mode == QS_SCALE_MODE_FLOOR))
            return QS_ERR_INVALID_ARGUMENT;
    }
    if (p->observer < 0 || p->observer >= QS_OBSERVER_COUNT_) return QS_ERR_INVALID_ARGUMENT;
    if (p->observer == QS_OBSERVER_MINMAX) {
        if (p->mse_grid != 0 || p->mse_maxshrink != 0.0f || p->mse_norm != 0.0f) return QS_ERR_INVALID_ARGUMENT;
    } else {
        /* a search over the range of a binary32 or E4M3 scale: INT and the scaled formats without E8M0 scales */
        const int32_t int_family = info.family == QS_FAMILY_INT_SYM || info.family == QS_FAMILY_INT_FULL ||
                                   info.family == QS_FAMILY_INT_ASYM;
        const int32_t float_scale = (info.family == QS_FAMILY_FLOAT || info.family == QS_FAMILY_SCALED) &&
                                    (mode == QS_SCALE_MODE_AMAX || mode == QS_SCALE_MODE_E4M3 ||
                                     mode == QS_SCALE_MODE_E4M3_BLOCK);
        if (!int_family && !float_scale) return QS_ERR_INVALID_ARGUMENT;
        if (p->mse_grid < 0 || p->mse_grid > 100000) return QS_ERR_INVALID_ARGUMENT;
        if (!(p->mse_maxshrink >= 0.0f && p->mse_maxshrink <= 1.0f)) return QS_ERR_INVALID_ARGUMENT;
        if (!(p->mse_norm >= 0.0f && p->mse_norm <= 16.0f)) return QS_ERR_INVALID_ARGUMENT;
    }
    memset(kt, 0, sizeof *kt);
    kt->family = info.family;
    kt->observer = p->observer;
    if (p->observer == QS_OBSERVER_MSE) {
        const double grid = p->mse_grid ? (double)p->mse_grid : 100.0;
        const double shrink = p->mse_maxshrink != 0.0f ? (double)p->mse_maxshrink : 0.8;
        kt->mse_grid = grid;
        kt->mse_count = (int32_t)(shrink * grid);
        kt->mse_norm = p->mse_norm != 0.0f ? (double)p->mse_norm : 2.4;
        if (kt->mse_count < 1) kt->mse_count = 1; /* p = 1 at least: the min/max range */
    }
    kt->rounding = p->rounding;
    kt->qmin = (float)info.qmin;
    kt->qmax = (float)info.qmax;
    kt->mbits = info.mbits;
    switch (info.family) {
    case QS_FAMILY_INT_SYM: kt->divisor = (float)info.qmax; break;
    case QS_FAMILY_INT_FULL: kt->divisor = (float)info.qmax + 0.5f; break;
    case QS_FAMILY_INT_ASYM: kt->divisor = (float)info.qmax; break;
    case QS_FAMILY_FLOAT:
    case QS_FAMILY_SCALED:
        if (mode == QS_SCALE_MODE_NONE) {
            qs_ftraits_make(&info, p->saturate < 0 ? (info.flags & QS_FMT_SATURATES) != 0u : p->saturate, &kt->ft);
            kt->family = QS_FAMILY_FLOAT;
        } else {
            qs_ftraits_make(&info, 1, &kt->ft);
            kt->family = mode >= QS_SCALE_MODE_FLOOR && mode <= QS_SCALE_MODE_RCEIL ? QS_FAMILY_SCALED_POW2
                                                                                     : QS_FAMILY_SCALED;
            kt->scale_mode = mode;
            kt->elem_emax = info.emax;
            kt->even_add = 1u << (22 - info.mbits);
            kt->rcp_max = (float)(1.0 / info.max_normal);
            kt->tdiv = (float)(info.max_normal * 448.0);
            kt->tscale = 1.0f;
        }
        break;
    default: break;
    }
    kt->compat = p->compat;
    kt->log2_f32 = p->compat == QS_COMPAT_MICROXCALING;
    if (p->compat == QS_COMPAT_FPQUANT) {
        kt->fpq = 1;
        kt->family = QS_FAMILY_SCALED_FPQ; /* its MX scale is not a power of two: a division per element */
    }
    if (info.family == QS_FAMILY_LUT || p->compat == QS_COMPAT_BITMOD) kt->family = QS_FAMILY_LUT;
    if (info.family == QS_FAMILY_LLMQ || p->compat == QS_COMPAT_LLMQ) {
        kt->family = QS_FAMILY_LLMQ;
        kt->lq_src = p->compat == QS_COMPAT_LLMQ;
        kt->lq_bmax = (float)((1 << QS_LLMQ_BIAS_BITS) - 1);
        kt->lq_scale = (float)qs_pow2d(info.mbits);
        if (info.family == QS_FAMILY_BFP) { /* MSFP: 8-bit shared exponent, bias 127 */
            kt->lq_kind = QS_LQ_MSFP;
            kt->lq_block = 1;
        } else if (info.family == QS_FAMILY_FLOAT) { /* minifloat_ieee with the default bias */
            kt->lq_kind = QS_LQ_IEEE;
            kt->lq_bias = (float)((1 << (info.ebits - 1)) - 1);
            kt->lq_top = (float)((1 << info.ebits) - 1);
        } else if (info.flags & QS_FMT_FIXED_POINT) { /* x * 2^f, clamp to [-(top + 1), top], times 2^-f */
            kt->lq_kind = QS_LQ_FIXED;
            kt->lq_bias = qs_exp2i(p->frac_bits);
            kt->lq_scale = qs_exp2i(-p->frac_bits);
            kt->lq_top = (float)info.qmax;
        } else {
            kt->lq_kind = (info.flags & QS_FMT_LOG) ? QS_LQ_LOG : (info.flags & QS_FMT_DENORM) ? QS_LQ_DENORM : QS_LQ_IEEE;
            kt->lq_block = (info.flags & QS_FMT_BLOCK_BIAS) != 0u;
            kt->lq_bias = (float)info.bias;
            kt->lq_top = (float)((1 << info.ebits) - 1);
        }
    }
    return QS_OK;
}

/* The lookup grids of a QS_FAMILY_LUT call (kt->family after qs_kernel_traits_make): the row's grids, or under the
   bitmod profile BitMoD's view of int{b} (RINT), int{b}_asym (ASYM) and a minifloat (its grid in units of the
   smallest subnormal, e.g. fp4_e2m1 as 0, +-1, ..., +-12). */
static inline void qs_lut_grid_fill(qs_lut_grid *g, const float *v, int32_t n) {
    int32_t k;
    g->kind = QS_LUT_NEAREST;
    g->n = n;
    g->lo = v[0];
    g->gmax = -v[0] > v[n - 1] ? -v[0] : v[n - 1];
    for (k = 0; k < n - 1; k++) {
        g->mid[k] = (v[k] + v[k + 1]) * 0.5f; /* exact: integers below 2^23 */
        g->step[k] = v[k + 1] - v[k];
    }
}

static inline int32_t qs_lut_traits_make(const qs_quant_params *p, qs_lut_traits *lt) {
    qs_format_info info;
    int32_t st = qs_format_fill(p->format, &info);
    float v[QS_LUT_MAX_VALUES] = {0.0f};
    if (st != QS_OK) return st;
    memset(lt, 0, sizeof *lt);
    lt->f16 = p->compat == QS_COMPAT_BITMOD;
    lt->count = 1;
    if (info.family == QS_FAMILY_LUT) {
        const qs_lut_set *set = &qs_lut_sets[qs_format_rows[p->format].ebits];
        int32_t c, k;
        lt->count = set->count;
        lt->scale = set->pow2 ? QS_LUT_SCALE_POW2 : QS_LUT_SCALE_AMAX;
        lt->log2_f32 = set->pow2 && lt->f16;
        for (c = 0; c < set->count; c++) {
            for (k = 0; k < set->grids[c]->n; k++) v[k] = (float)set->grids[c]->v[k];
            qs_lut_grid_fill(&lt->g[c], v, set->grids[c]->n);
            lt->g[c].c = (float)(2.0 / (double)lt->g[c].gmax);
        }
    } else if (info.family == QS_FAMILY_INT_SYM || info.family == QS_FAMILY_INT_ASYM) {
        lt->g[0].kind = info.family == QS_FAMILY_INT_SYM ? QS_LUT_RINT : QS_LUT_ASYM;
        lt->g[0].gmax = (float)info.qmax;
    } else { /* a minifloat of <= 6 bits: 2^(E+M) non-negative values, mirrored */
        const int32_t m = info.mbits, half = 1 << (info.ebits + info.mbits);
        int32_t k, n = 0;
        float pos[QS_LUT_MAX_VALUES / 2];
        for (k = 0; k < half; k++) {
            /* code k: exponent field k >> m, mantissa k & (2^m - 1); in units of 2^(emin - m) */
            const int32_t ef = k >> m, mant = k & ((1 << m) - 1);
            pos[k] = ef == 0 ? (float)mant : (float)((1 << m) + mant) * (float)(1 << (ef - 1));
        }
        for (k = half - 1; k > 0; k--) v[n++] = -pos[k];
        for (k = 0; k < half; k++) v[n++] = pos[k];
        qs_lut_grid_fill(&lt->g[0], v, n);
    }
    return QS_OK;
}

#endif /* QS_FORMAT_TABLE_H */
