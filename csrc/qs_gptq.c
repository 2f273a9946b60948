/*
 * qs_gptq.c -- the CPU block of GPTQ / SparseGPT (qsparse.h, qs_gptq_block_cpu): rows on threads, each row's block
 * copied into a contiguous buffer so that the rank-1 update vectorizes, then the shared row loop of qs_qparams.h.
 *
 * w: rows x bcols float32 at w[r * w_rs + i * w_cs]; hinv: bcols x bcols, row-major; q, err: rows x bcols,
 * row-major; mask: rows x bcols uint8 at mask[r * m_rs + i * m_cs]; loss: rows doubles.
 */
#include <stdlib.h>

#include "include/qsparse.h"
#include "qs_cpu.h"
#include "qs_gptq.h"
#include "qs_validate.h"

/* Rows [r0, r1) of the block with buf (bcols floats) as the row's working copy. */
static QS_CLONES void gptq_rows(const qs_gptq_job *jb, int64_t r0, int64_t r1, float *buf) {
    int64_t r, i;
    for (r = r0; r < r1; r++) {
        float *wr = jb->w + r * jb->w_rs;
        for (i = 0; i < jb->bcols; i++) buf[i] = wr[i * jb->w_cs];
        qs_gptq_row(jb, r, buf, 1);
        for (i = 0; i < jb->bcols; i++) wr[i * jb->w_cs] = buf[i];
    }
}

int32_t qs_gptq_block_cpu(const qs_quant_params *params, int64_t rows, int64_t bcols, float *w, int64_t w_rs,
                          int64_t w_cs, const float *hinv, int64_t h_stride, const int32_t *qp, int64_t qp_stride,
                          const int64_t *slot, uint8_t *mask, int64_t m_rs, int64_t m_cs, int32_t keep, int32_t group,
                          float *q, int64_t q_stride, float *err, int64_t e_stride, double *loss,
                          int32_t num_threads) {
    qs_kernel_traits kt;
    qs_lut_traits lt;
    qs_gptq_job jb;
    int32_t status = QS_OK;
    int nt;
    QS_TRY(qs_check_gptq_block(params, rows, bcols, w, w_rs, w_cs, hinv, h_stride, qp, qp_stride, slot, mask, m_rs,
                               m_cs, keep, group, q, q_stride, err, e_stride, loss, &kt, &lt));
    QS_TRY(qs_check_threads(num_threads));
    if (rows == 0 || bcols == 0) return QS_OK;
    qs_gptq_job_fill(&jb, params != NULL ? &kt : NULL, &lt, rows, bcols, w, w_rs, w_cs, hinv, h_stride, qp,
                     qp_stride, slot, mask, m_rs, m_cs, keep, group, q, q_stride, err, e_stride, loss);
    /* about bcols^2 / 2 updates per row */
    nt = qs_thread_count(num_threads, rows * (bcols > 64 ? bcols : 64) * 8);
    (void)nt; /* only read by OpenMP pragmas */
#pragma omp parallel num_threads(nt)
    {
        qs_fpenv env = qs_fpenv_enter();
        float *buf = (float *)malloc((size_t)bcols * sizeof(float));
        if (buf == NULL) {
#pragma omp atomic write
            status = QS_ERR_NO_MEMORY;
        }
#pragma omp barrier
        if (status == QS_OK) {
            int64_t k;
            const int64_t chunk = 16, chunks = (rows + chunk - 1) / chunk;
#pragma omp for schedule(static)
            for (k = 0; k < chunks; k++)
                gptq_rows(&jb, k * chunk, (k + 1) * chunk < rows ? (k + 1) * chunk : rows, buf);
        }
        free(buf);
        qs_fpenv_leave(env);
    }
    return status;
}
