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
    X("nvfp4", QS_FAMILY_SCALED, 4, 2, 1, QS_FMT_HAS_SUBNORMALS | QS_FMT_SATURATES, 16, QS_SCALE_MODE_E4M3)

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
    if (r->family != QS_FAMILY_FLOAT && r->family != QS_FAMILY_SCALED) {
        out->max_normal = (double)out->qmax;
    }
    return QS_OK;
}

/* What a kernel needs for one call: the format's rounding constants with the call's options resolved. */
typedef struct qs_kernel_traits {
    int32_t family;     /* the row's family; scaled uses run as QS_FAMILY_SCALED or QS_FAMILY_SCALED_POW2 */
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

/* Resolves params into traits; validates the format id, rounding, saturate and scale mode (not sizes). */
static inline int32_t qs_kernel_traits_make(const qs_quant_params *p, qs_kernel_traits *kt) {
    qs_format_info info;
    int32_t st = qs_format_fill(p->format, &info);
    int32_t mode;
    if (st != QS_OK) return st;
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
    } else if (p->scale_mode != QS_SCALE_MODE_DEFAULT) {
        return QS_ERR_INVALID_ARGUMENT; /* INT and BFP scales are fixed by the format */
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
    return QS_OK;
}

#endif /* QS_FORMAT_TABLE_H */
