/*
 * qs_qparams.h -- quantization-parameter records (qsparse.h, QS_QPARAM_WORDS), shared by csrc/ and cuda/
 * (host+device).
 *
 * A record holds a group's constants exactly as the fake-quantization kernels compute them (qs_gparams of
 * qs_group.h, or the qs_lut_gp and grid choice of qs_lut.h), so that quantizing with a record gives the same bits as
 * the kernel that fitted it, and a value already on the record's grid comes back unchanged.
 */
#ifndef QS_QPARAMS_H
#define QS_QPARAMS_H

#include <stdint.h>

#include "include/qsparse.h"
#include "qs_format_table.h"
#include "qs_group.h"
#include "qs_lut.h"
#include "qs_scalar.h"

/* ---- records ------------------------------------------------------------------------------------------------- */

QS_HD void qs_qp_store(int32_t *rec, int32_t mode, int32_t choice, float s, float z, float r) {
    rec[0] = (int32_t)(((uint32_t)mode & 0xffu) | (((uint32_t)choice & 0xffu) << 8));
    rec[1] = (int32_t)qs_f2u(s);
    rec[2] = (int32_t)qs_f2u(z);
    rec[3] = (int32_t)qs_f2u(r);
}

QS_HD void qs_qp_store_g(int32_t *rec, const qs_gparams *g) { qs_qp_store(rec, g->mode, 0, g->s, g->z, g->r); }

QS_HD void qs_qp_store_lut(int32_t *rec, const qs_lut_gp *g, int32_t choice) {
    qs_qp_store(rec, g->mode, choice, g->s, g->zp, 0.0f);
}

/* A record's constants. A record no kernel writes (unknown mode, a grid the format lacks, nonzero spare bits)
   reads as a not-finite group (NaN outputs) rather than as undefined behaviour. */
QS_HD qs_gparams qs_qp_gparams(const int32_t *rec) {
    const uint32_t w0 = (uint32_t)rec[0];
    qs_gparams g;
    g.mode = (w0 >> 8) != 0u || (w0 & 0xffu) > (uint32_t)QS_GP_NAN ? QS_GP_NAN : (int32_t)(w0 & 0xffu);
    g.s = qs_u2f((uint32_t)rec[1]);
    g.z = qs_u2f((uint32_t)rec[2]);
    g.r = qs_u2f((uint32_t)rec[3]);
    return g;
}

QS_HD qs_lut_gp qs_qp_lut(const int32_t *rec, const qs_lut_traits *lt, int32_t *choice) {
    const uint32_t w0 = (uint32_t)rec[0], c = (w0 >> 8) & 0xffu;
    qs_lut_gp g;
    g.mode = (w0 >> 16) != 0u || (w0 & 0xffu) > (uint32_t)QS_GP_NAN ||
                     (c >= (uint32_t)lt->count && c != QS_LUT_NO_CHOICE)
                 ? QS_GP_NAN
                 : (int32_t)(w0 & 0xffu);
    g.s = qs_u2f((uint32_t)rec[1]);
    g.zp = qs_u2f((uint32_t)rec[2]);
    *choice = g.mode == QS_GP_NAN ? 0 : (int32_t)c;
    return g;
}

/* The quantized value of v under a record (masking is the caller's); u24: the stochastic-rounding draw. Element
   formats ignore the record. Under the bitmod profile v is first rounded to binary16, as its kernel loads it. */
QS_HD float qs_qp_quant(float v, const int32_t *rec, const qs_kernel_traits *kt, const qs_lut_traits *lt,
                        uint32_t u24, float ymax) {
    if (kt->family == QS_FAMILY_FLOAT) return qs_round_float(v, &kt->ft, kt->rounding, u24);
    if (kt->family == QS_FAMILY_LLMQ && !kt->lq_block) { /* element rows: the row's own bias, no record */
        qs_gparams g;
        g.mode = QS_GP_QUANT;
        g.s = kt->lq_bias;
        g.z = 0.0f;
        g.r = 0.0f;
        return qs_quant_elem(v, u24, &g, kt, kt->family, kt->rounding, ymax);
    }
    if (kt->family == QS_FAMILY_LUT) {
        int32_t c;
        const qs_lut_gp g = qs_qp_lut(rec, lt, &c);
        if (g.mode == QS_GP_NAN) return qs_qnan();
        if (g.mode == QS_GP_ZERO || c == QS_LUT_NO_CHOICE) return 0.0f;
        return qs_lut_elem(lt->f16 ? qs_f16r(v) : v, lt, &lt->g[c], &g, ymax);
    }
    {
        const qs_gparams g = qs_qp_gparams(rec);
        if (g.mode != QS_GP_QUANT) return qs_special_elem(v, &g);
        return qs_quant_elem(v, u24, &g, kt, kt->family, kt->rounding, ymax);
    }
}

#endif /* QS_QPARAMS_H */
