/*
 * qs_format_table.h -- the one table of number formats (host code, shared by csrc/ and cuda/).
 *
 * A format is one QS_FORMAT_ROWS entry: X(name, family, bits, ebits, mbits, flags, default_group). Everything else
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
    X("int" #b, QS_FAMILY_INT_SYM, b, 0, (b) - 1, 0u, QS_GROUP_ROW)                      \
    X("int" #b "_full", QS_FAMILY_INT_FULL, b, 0, (b) - 1, 0u, QS_GROUP_ROW)             \
    X("int" #b "_asym", QS_FAMILY_INT_ASYM, b, 0, (b) - 1, 0u, QS_GROUP_ROW)

/* Minifloats fp{w}_e{E}m{M}, w = 1 + E + M (FORMATS.md section 3): bias 2^(E-1) - 1, subnormals, every code
   finite (no Inf, no NaN), saturating. fp8_e4m3 and fp8_e5m2 are OCP's, below, not of this kind. */
#define QS_MINI (QS_FMT_HAS_SUBNORMALS | QS_FMT_SATURATES | QS_FMT_HAS_CODES)
#define QS_MINIFLOAT_ROW(X, w, e, m) X("fp" #w "_e" #e "m" #m, QS_FAMILY_FLOAT, w, e, m, QS_MINI, QS_GROUP_ROW)

/* HBFP: w bits per element including the sign, block 32 by default (FORMATS.md section 2). */
#define QS_BFP_ROW(X, w) X("bfp" #w, QS_FAMILY_BFP, w, 0, (w) - 1, 0u, 32)

#define QS_FORMAT_ROWS(X)                                                                  \
    QS_INT_ROWS(X, 2) QS_INT_ROWS(X, 3) QS_INT_ROWS(X, 4) QS_INT_ROWS(X, 5)                \
    QS_INT_ROWS(X, 6) QS_INT_ROWS(X, 7) QS_INT_ROWS(X, 8)                                  \
    QS_BFP_ROW(X, 2) QS_BFP_ROW(X, 3) QS_BFP_ROW(X, 4) QS_BFP_ROW(X, 5) QS_BFP_ROW(X, 6)   \
    QS_BFP_ROW(X, 7) QS_BFP_ROW(X, 8) QS_BFP_ROW(X, 9) QS_BFP_ROW(X, 10)                  \
    QS_BFP_ROW(X, 11) QS_BFP_ROW(X, 12) QS_BFP_ROW(X, 13) QS_BFP_ROW(X, 14)               \
    QS_BFP_ROW(X, 15) QS_BFP_ROW(X, 16)                                                    \
    X("fp16", QS_FAMILY_FLOAT, 16, 5, 10, QS_IEEE, QS_GROUP_ROW)                           \
    X("bf16", QS_FAMILY_FLOAT, 16, 8, 7, QS_IEEE, QS_GROUP_ROW)                            \
    X("fp8_e4m3", QS_FAMILY_FLOAT, 8, 4, 3, QS_OCP_FN | QS_FMT_SATURATES | QS_FMT_HAS_CODES, QS_GROUP_ROW) \
    X("fp8_e5m2", QS_FAMILY_FLOAT, 8, 5, 2, QS_IEEE | QS_FMT_SATURATES | QS_FMT_HAS_CODES, QS_GROUP_ROW) \
    QS_MINIFLOAT_ROW(X, 3, 1, 1) QS_MINIFLOAT_ROW(X, 3, 2, 0) QS_MINIFLOAT_ROW(X, 4, 1, 2)                          \
    QS_MINIFLOAT_ROW(X, 4, 2, 1) QS_MINIFLOAT_ROW(X, 4, 3, 0) QS_MINIFLOAT_ROW(X, 5, 1, 3)                          \
    QS_MINIFLOAT_ROW(X, 5, 2, 2) QS_MINIFLOAT_ROW(X, 5, 3, 1) QS_MINIFLOAT_ROW(X, 5, 4, 0)                          \
    QS_MINIFLOAT_ROW(X, 6, 1, 4) QS_MINIFLOAT_ROW(X, 6, 2, 3) QS_MINIFLOAT_ROW(X, 6, 3, 2)                          \
    QS_MINIFLOAT_ROW(X, 6, 4, 1) QS_MINIFLOAT_ROW(X, 6, 5, 0) QS_MINIFLOAT_ROW(X, 7, 1, 5)                          \
    QS_MINIFLOAT_ROW(X, 7, 2, 4) QS_MINIFLOAT_ROW(X, 7, 3, 3) QS_MINIFLOAT_ROW(X, 7, 4, 2)                          \
    QS_MINIFLOAT_ROW(X, 7, 5, 1) QS_MINIFLOAT_ROW(X, 7, 6, 0) QS_MINIFLOAT_ROW(X, 8, 1, 6)                          \
    QS_MINIFLOAT_ROW(X, 8, 2, 5) QS_MINIFLOAT_ROW(X, 8, 3, 4) QS_MINIFLOAT_ROW(X, 8, 6, 1)                          \
    QS_MINIFLOAT_ROW(X, 8, 7, 0)

typedef struct qs_format_row {
    const char *name;
    int32_t family, bits, ebits, mbits;
    uint32_t flags;
    int64_t default_group;
} qs_format_row;

#define QS_ROW_INIT(name, family, bits, ebits, mbits, flags, group) {name, family, bits, ebits, mbits, flags, group},
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
    default: { /* QS_FAMILY_FLOAT */
        int32_t top = (1 << r->ebits) - 1; /* all-ones exponent field */
        double frac_max;
        out->bias = (1 << (r->ebits - 1)) - 1;
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
        out->scale_kind = QS_SCALE_NONE;
        break;
    }
    }
    if (r->family != QS_FAMILY_FLOAT) {
        out->max_normal = (double)out->qmax;
    }
    return QS_OK;
}

/* What a kernel needs for one call: the format's rounding constants with the call's options resolved. */
typedef struct qs_kernel_traits {
    int32_t family;
    int32_t rounding;
    float qmin, qmax;   /* INT: code range; BFP: +-(2^mbits - 1) */
    float divisor;      /* INT_SYM: qmax; INT_FULL: qmax + 0.5; INT_ASYM: maxq = qmax */
    int32_t mbits;      /* BFP magnitude bits */
    qs_ftraits ft;      /* FLOAT */
} qs_kernel_traits;

/* Resolves params into traits; validates the format id, rounding and saturate (not sizes). */
static inline int32_t qs_kernel_traits_make(const qs_quant_params *p, qs_kernel_traits *kt) {
    qs_format_info info;
    int32_t st = qs_format_fill(p->format, &info);
    if (st != QS_OK) return st;
    if (p->rounding < 0 || p->rounding >= QS_ROUNDING_COUNT_) return QS_ERR_INVALID_ROUNDING;
    if (p->saturate < -1 || p->saturate > 1) return QS_ERR_INVALID_ARGUMENT;
    /* an element grid without Inf and NaN has nothing to overflow to but its max */
    if (p->saturate == 0 && info.family == QS_FAMILY_FLOAT && !(info.flags & (QS_FMT_HAS_INF | QS_FMT_HAS_NAN)))
        return QS_ERR_INVALID_ARGUMENT;
    memset(kt, 0, sizeof *kt);
    kt->family = info.family;
    kt->rounding = p->rounding;
    kt->qmin = (float)info.qmin;
    kt->qmax = (float)info.qmax;
    kt->mbits = info.mbits;
    switch (info.family) {
    case QS_FAMILY_INT_SYM: kt->divisor = (float)info.qmax; break;
    case QS_FAMILY_INT_FULL: kt->divisor = (float)info.qmax + 0.5f; break;
    case QS_FAMILY_INT_ASYM: kt->divisor = (float)info.qmax; break;
    case QS_FAMILY_FLOAT:
        kt->ft.shift = (uint32_t)(23 - info.mbits); /* >= 13 for every row: 1 <= shift keeps the RNE half defined */
        kt->ft.drop_unit = qs_exp2i(info.mbits - 23);
        kt->ft.min_normal_bits = qs_f2u(qs_exp2i(info.emin));
        kt->ft.sub_quantum_x64 = qs_exp2i(info.emin - info.mbits + 64);
        kt->ft.sub_inv_x64 = qs_exp2i(info.mbits - info.emin - 64);
        kt->ft.max_normal = (float)info.max_normal;
        {
            int32_t saturate = p->saturate < 0 ? (info.flags & QS_FMT_SATURATES) != 0u : p->saturate;
            int32_t has_inf = (info.flags & QS_FMT_HAS_INF) != 0u;
            kt->ft.overflow = saturate ? kt->ft.max_normal : (has_inf ? qs_u2f(QS_F32_INF_BITS) : qs_qnan());
        }
        break;
    default: break;
    }
    return QS_OK;
}

#endif /* QS_FORMAT_TABLE_H */
