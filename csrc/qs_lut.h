/*
 * qs_lut.h -- lookup-grid formats (QS_FAMILY_LUT: ANT and BitMoD, FORMATS.md section 7) and the `bitmod` profile,
 * shared by csrc/ and cuda/ (host+device).
 *
 * A lookup grid is a sorted list of values in BitMoD's integer units (fp4: 0, +-1, +-2, +-3, +-4, +-6, +-8, +-12);
 * a group's scale maps its max |x| onto the grid's largest magnitude, and each element goes to the nearest grid value,
 * a tie to the lower one (BitMoD's `x <= mid` thresholds). A format holds 1 to QS_LUT_MAX_CANDIDATES grids; with
 * more than one, each group takes the first grid with the strictly smallest squared error (the choice is the
 * group's metadata). The same code runs the `bitmod` profile of int{b}, int{b}_asym and the scaled minifloats,
 * whose arithmetic BitMoD does in binary16.
 *
 * Everything is a pure function of its arguments, evaluated in the same order on CPU and GPU: one thread walks a
 * group; the squared errors are summed in QS_LUT_LANES partial sums (element j of a group into lane j % 8), then
 * the lanes in order (the bitmod profile: an exact sum), so the result does not depend on how a processor splits
 * the work.
 */
#ifndef QS_LUT_H
#define QS_LUT_H

#include <math.h>
#include <stdint.h>

#include "include/qsparse.h"
#include "qs_scalar.h"

#define QS_LUT_MAX_VALUES 64
#define QS_LUT_MAX_CANDIDATES 4
#define QS_LUT_LANES 8

enum {
    QS_LUT_NEAREST = 0, /* nearest grid value, a tie to the lower one (thresholds at the midpoints) */
    QS_LUT_RINT = 1,    /* BitMoD's int{b}: clamp(round_half_even(y), -gmax, gmax) */
    QS_LUT_ASYM = 2     /* BitMoD's int{b}_asym: zero point, clamp(round(y) + zp, 0, gmax) - zp */
};

enum {
    QS_LUT_SCALE_AMAX = 0, /* s = amax / gmax (asym: (max - min) / gmax) */
    QS_LUT_SCALE_POW2 = 1  /* BitMoD's MX: E = floor(log2 amax), y = x * 2^-E / c, x_hat = q * c * 2^E, c = 2 / gmax */
};

/* One grid. */
typedef struct qs_lut_grid {
    int32_t kind;  /* QS_LUT_* */
    int32_t n;     /* values (NEAREST), else 0 */
    float gmax;    /* largest magnitude of the grid */
    float c;       /* POW2: (float)(2 / gmax) */
    float lo;      /* NEAREST: the smallest value */
    float mid[QS_LUT_MAX_VALUES - 1];  /* NEAREST: midpoints of neighbours (exact: the values are integers) */
    float step[QS_LUT_MAX_VALUES - 1]; /* NEAREST: differences of neighbours */
} qs_lut_grid;

/* A lookup format as one call uses it. */
typedef struct qs_lut_traits {
    int32_t count;      /* grids (candidates), 1 .. QS_LUT_MAX_CANDIDATES */
    int32_t scale;      /* QS_LUT_SCALE_* */
    int32_t f16;        /* the bitmod profile: values, scale, quotient, products and errors rounded to binary16,
                           scale clamped to [binary16(1e-5), 1e4], error compared from 1e3 */
    int32_t log2_f32;   /* POW2 under the bitmod profile: E = floor(binary32 log2(amax)), as torch.log2 rounds */
    qs_lut_grid g[QS_LUT_MAX_CANDIDATES];
} qs_lut_traits;

/* floor(log2 a) of a finite a > 0, exactly from the bits (binary32 subnormals included). */
QS_HD int32_t qs_ilog2(float a) {
    const uint32_t b = qs_f2u(a) & ~QS_F32_SIGN;
    int32_t e = (int32_t)(b >> 23);
    if (e == 0) { /* subnormal: 2^-149 * mantissa */
        uint32_t m = b;
        e = -150;
        while (m) {
            m >>= 1;
            e++;
        }
        return e;
    }
    return e - 127;
}

/* ---- one grid ----------------------------------------------------------------------------------------------------- */

/* The nearest value of a NEAREST grid to y, a tie to the lower one: lo plus the steps of the midpoints below y. The
   sum is exact (small integers), so any order gives the same value. */
QS_HD float qs_lut_nearest(float y, const qs_lut_grid *g) {
    float q = g->lo;
    int32_t k;
    for (k = 0; k < g->n - 1; k++) q += y > g->mid[k] ? g->step[k] : 0.0f;
    return q;
}

/* A group's constants for one grid. */
typedef struct qs_lut_gp {
    int32_t mode; /* QS_GP_QUANT, QS_GP_ZERO, QS_GP_NAN (qs_group.h) */
    float s;      /* AMAX: the scale; POW2: 2^E */
    float zp;     /* ASYM: the zero point */
} qs_lut_gp;

/* The constants of grid g for a group with max |x| amax and min/max vmin/vmax (finite; binary16 values under f16). */
QS_HD qs_lut_gp qs_lut_params(const qs_lut_traits *lt, const qs_lut_grid *g, float amax, float vmin, float vmax) {
    qs_lut_gp p;
    p.mode = 0;
    p.s = 0.0f;
    p.zp = 0.0f;
    if (lt->scale == QS_LUT_SCALE_POW2) {
        int32_t e;
        if (amax == 0.0f) {
            p.mode = 1; /* BitMoD: 0 * 2^-inf... gives zeros */
            return p;
        }
        e = qs_ilog2(amax);
        if (lt->log2_f32) {
            /* torch.log2 in binary32 rounds log2 of a value just below 2^(e+1) up to e + 1 */
            const float l = (float)log2((double)amax);
            if (l >= (float)(e + 1)) e += 1;
        }
        p.s = qs_exp2i(e);
        return p;
    }
    if (g->kind == QS_LUT_ASYM) {
        float range = vmax - vmin;
        if (lt->f16) range = qs_f16r(range);
        p.s = range / g->gmax;
    } else {
        p.s = amax / g->gmax;
    }
    if (lt->f16) {
        p.s = qs_f16r(p.s);
        p.s = p.s < 1.00135803222656250e-05f ? 1.00135803222656250e-05f : (p.s > 1e4f ? 1e4f : p.s);
    } else if (p.s == 0.0f) {
        p.mode = 1;
        return p;
    }
    if (!qs_isfinite(p.s)) {
        p.mode = 2; /* the range overflows */
        return p;
    }
    if (g->kind == QS_LUT_ASYM) {
        float z = -vmin / p.s;
        if (lt->f16) z = qs_f16r(z);
        z = qs_rint(z);
        p.zp = z < 0.0f ? 0.0f : (z > g->gmax ? g->gmax : z);
    }
    return p;
}

/* The quantized value of one element v (a binary16 value under f16) of a QS_GP_QUANT group. */
QS_HD float qs_lut_elem(float v, const qs_lut_traits *lt, const qs_lut_grid *g, const qs_lut_gp *p, float ymax) {
    float y, out;
    if (lt->scale == QS_LUT_SCALE_POW2) {
        y = (v / p->s) / g->c; /* BitMoD divides by 2^E (exact) and by the binary32 c */
        out = (qs_lut_nearest(y, g) * g->c) * p->s;
    } else {
        y = v / p->s;
        if (lt->f16) y = qs_f16r(y);
        if (g->kind == QS_LUT_NEAREST) {
            out = qs_lut_nearest(y, g) * p->s;
        } else if (g->kind == QS_LUT_RINT) {
            out = qs_clampf(qs_rint(y), -g->gmax, g->gmax) * p->s;
        } else {
            out = (qs_clampf(qs_rint(y) + p->zp, 0.0f, g->gmax) - p->zp) * p->s;
        }
    }
    if (lt->f16) out = qs_f16r(out);
    return qs_clampf(out, -ymax, ymax);
}

/* The squared error of one element: binary32, or BitMoD's binary16 (w_q - w).pow(2). */
QS_HD float qs_lut_sqerr(float out, float v, int32_t f16) {
    float d = out - v;
    if (f16) {
        d = qs_f16r(d);
        return qs_f16r(d * d);
    }
    return d * d;
}

/* A grid's error over a group: the lanes summed in order; under f16, BitMoD's binary16 mean of the binary16 squares,
   whose sum `exact` is taken in double (exact in any order: every binary16 value is a multiple of 2^-24 below 2^16,
   so a sum of up to 2^13 of them fits in 53 bits; BitMoD's binary32 sum equals it whenever that sum is exact). */
QS_HD float qs_lut_total(const float *lanes, double exact, int64_t n, int32_t f16) {
    float t = 0.0f;
    int32_t j;
    if (f16) return qs_f16r((float)exact / (float)n);
    for (j = 0; j < QS_LUT_LANES; j++) t += lanes[j];
    return t;
}

#endif /* QS_LUT_H */
