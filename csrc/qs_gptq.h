/*
 * qs_gptq.h -- the GPTQ / SparseGPT column loop of one row (qsparse.h, qs_gptq_block_*), shared by csrc/qs_gptq.c and
 * cuda/qs_gptq.cu (host+device).
 *
 * The row loop (qs_gptq_row) is the inner block of GPTQ (IST-DASLab/gptq:gptq.py, `fasterquant`) and SparseGPT
 * (IST-DASLab/sparsegpt:sparsegpt.py, `fasterprune`), one row at a time: the rows of a block do not interact (the
 * rank-1 update W1[:, i:] -= err1 Hinv1[i, i:] changes each row by its own error), so the CPU runs rows on threads
 * and the GPU runs one thread per row, both through this function, with the same operations in the same order.
 */
#ifndef QS_GPTQ_H
#define QS_GPTQ_H

#include <stdint.h>

#include "qs_qparams.h"

/* ---- the GPTQ / SparseGPT column loop of one row --------------------------------------------------------------- */

typedef struct qs_gptq_job {
    const qs_kernel_traits *kt; /* NULL: no quantization */
    const qs_lut_traits *lt;
    int64_t rows, bcols;
    float *w;
    int64_t w_rs, w_cs;
    const float *hinv;
    int64_t h_stride;
    const int32_t *qp;
    int64_t qp_stride;
    const int64_t *slot;
    uint8_t *mask;
    int64_t m_rs, m_cs;
    int32_t keep, group;
    float *q;
    int64_t q_stride;
    float *err;
    int64_t e_stride;
    double *loss;
} qs_gptq_job;

/* A job from qs_gptq_block_*'s arguments (checked); kt/lt are the call's traits, NULL kt without quantization. */
static inline void qs_gptq_job_fill(qs_gptq_job *jb, const qs_kernel_traits *kt, const qs_lut_traits *lt,
                                    int64_t rows, int64_t bcols, float *w, int64_t w_rs, int64_t w_cs,
                                    const float *hinv, int64_t h_stride, const int32_t *qp, int64_t qp_stride,
                                    const int64_t *slot, uint8_t *mask, int64_t m_rs, int64_t m_cs, int32_t keep,
                                    int32_t group, float *q, int64_t q_stride, float *err, int64_t e_stride,
                                    double *loss) {
    const int32_t records = kt != NULL && kt->family != QS_FAMILY_FLOAT;
    jb->kt = kt;
    jb->lt = lt;
    jb->rows = rows;
    jb->bcols = bcols;
    jb->w = w;
    jb->w_rs = w_rs;
    jb->w_cs = w_cs;
    jb->hinv = hinv;
    jb->h_stride = h_stride;
    jb->qp = records ? qp : NULL;
    jb->qp_stride = qp_stride;
    jb->slot = records ? slot : NULL;
    jb->mask = mask;
    jb->m_rs = m_rs;
    jb->m_cs = m_cs;
    jb->keep = keep;
    jb->group = group;
    jb->q = q;
    jb->q_stride = q_stride;
    jb->err = err;
    jb->e_stride = e_stride;
    jb->loss = loss;
}

/* Whether score a (at index ia) ranks above score b (at ib < or > ia): larger first, NaN largest, ties to the lower
   index (qs_nm_mask_cpu's rule). */
QS_HD int32_t qs_ranks_above(float a, int64_t ia, float b, int64_t ib) {
    const int32_t na = qs_isnan(a), nb = qs_isnan(b);
    if (na || nb) return na && (!nb || ia < ib);
    return a > b || (a == b && ia < ib);
}

/* Row r of the block. w points at the row's first element, `cs` apart (a literal 1 lets the CPU vectorize the
   update); slot and hinv are the job's. */
QS_HD void qs_gptq_row(const qs_gptq_job *jb, int64_t r, float *w, const int64_t cs) {
    const int64_t n = jb->bcols, hs = jb->h_stride;
    const int32_t *rec = jb->qp != NULL ? jb->qp + r * jb->qp_stride : NULL;
    uint8_t *m = jb->mask != NULL ? jb->mask + r * jb->m_rs : NULL;
    const int64_t mcs = jb->m_cs;
    float *qo = jb->q + r * jb->q_stride, *eo = jb->err + r * jb->e_stride;
    double loss = 0.0;
    int64_t i, j, k;
    for (i = 0; i < n; i++) {
        const float *h = jb->hinv + i * hs;
        const float d = h[i];
        float v, q, e, t;
        if (m != NULL && jb->keep > 0 && i % jb->group == 0) {
            /* SparseGPT N:M: prune per row among the next `group` columns by w^2 / d^2 on the current weights */
            for (j = i; j < i + jb->group; j++) {
                const float dj = jb->hinv[j * hs + j];
                const float sj = (w[j * cs] * w[j * cs]) / (dj * dj);
                int32_t above = 0;
                for (k = i; k < i + jb->group; k++) {
                    const float dk = jb->hinv[k * hs + k];
                    const float sk = (w[k * cs] * w[k * cs]) / (dk * dk);
                    above += k != j && qs_ranks_above(sk, k, sj, j);
                }
                m[j * mcs] = (uint8_t)(above < jb->keep);
            }
        }
        v = w[i * cs];
        if (m != NULL && !m[i * mcs]) q = 0.0f;
        else if (jb->kt != NULL) /* element-wise formats have no records (rec == NULL): qs_qp_quant reads none */
            q = qs_qp_quant(v, rec != NULL ? rec + QS_QPARAM_WORDS * jb->slot[i] : NULL, jb->kt, jb->lt, 0u,
                            qs_u2f(QS_F32_MAX_BITS));
        else q = v;
        t = v - q;
        e = t / d;
        loss += (double)t * (double)t / ((double)d * (double)d);
        for (j = i + 1; j < n; j++) w[j * cs] -= e * h[j];
        qo[i] = q;
        eo[i] = e;
    }
    jb->loss[r] += loss;
}

#endif /* QS_GPTQ_H */
