/*
 * qs_quant_lut.c -- CPU kernels of the lookup-grid formats (QS_FAMILY_LUT) and the bitmod profile: see qs_lut.h.
 *
 * A group is processed in chunks of QS_LUT_CHUNK elements: (1) its statistics; (2) with several grids, each grid's
 * squared error; (3) its outputs with the chosen grid. The common case (nearest-value grids with a binary32 amax
 * scale: every ANT and BitMoD row but the MX ones) runs as loops over a chunk whose inner loop is over elements, so
 * that they vectorize; every other case calls the scalar functions of qs_lut.h per element. Both evaluate the same
 * operations in the same order as the CUDA kernel (one thread per group), so the bits agree.
 */
#include "qs_quant_impl.h"
#include "qs_lut.h"

#define QS_LUT_CHUNK 64 /* a multiple of QS_LUT_LANES: lane = index in the group % 8 */

typedef struct lut_stats {
    float amax, vmin, vmax;
    int32_t bad; /* a NaN or Inf (after the binary16 rounding of the bitmod profile) */
} lut_stats;

/* x[c0 + j] for j < n as the kernel sees it: masked-before positions 0, binary16 values under the bitmod profile. */
static void lut_load(const qs_job *jb, int64_t row, int64_t c0, int64_t n, float *out) {
    const char *xr = jb->x + row * jb->x_stride;
    const uint8_t *mr = jb->mask_mode == QS_MASK_BEFORE ? jb->mask + row * jb->m_stride : NULL;
    int64_t j;
    for (j = 0; j < n; j++) out[j] = qs_load(xr, c0 + j, jb->dtype);
    if (mr != NULL)
        for (j = 0; j < n; j++) out[j] = mr[c0 + j] ? out[j] : 0.0f;
    if (jb->lut->f16)
        for (j = 0; j < n; j++) out[j] = qs_f16r(out[j]);
}

static lut_stats lut_scan(const qs_job *jb, int64_t row, int64_t c0, int64_t n) {
    float buf[QS_LUT_CHUNK];
    lut_stats st;
    int64_t j0, j;
    st.amax = 0.0f;
    st.vmin = qs_u2f(QS_F32_INF_BITS); /* n >= 1: the group's own min and max replace these */
    st.vmax = -st.vmin;
    st.bad = 0;
    for (j0 = 0; j0 < n; j0 += QS_LUT_CHUNK) {
        const int64_t m = n - j0 < QS_LUT_CHUNK ? n - j0 : QS_LUT_CHUNK;
        lut_load(jb, row, c0 + j0, m, buf);
        for (j = 0; j < m; j++) {
            const float v = buf[j], a = qs_abs(v);
            if (!qs_isfinite(v)) st.bad = 1;
            st.amax = a > st.amax ? a : st.amax;
            st.vmin = v < st.vmin ? v : st.vmin;
            st.vmax = v > st.vmax ? v : st.vmax;
        }
    }
    return st;
}

/* out[j] = the grid's value of buf[j] (nearest grid, binary32 amax scale): the vectorizable form of qs_lut_elem. */
static void lut_nearest_chunk(const qs_lut_grid *g, float s, float ymax, const float *buf, float *out, int64_t m) {
    float q[QS_LUT_CHUNK];
    int64_t j;
    int32_t k;
    for (j = 0; j < m; j++) {
        out[j] = buf[j] / s;
        q[j] = g->lo;
    }
    for (k = 0; k < g->n - 1; k++) {
        const float mid = g->mid[k], step = g->step[k];
        for (j = 0; j < m; j++) q[j] += out[j] > mid ? step : 0.0f;
    }
    for (j = 0; j < m; j++) out[j] = qs_clampf(q[j] * s, -ymax, ymax);
}

static void lut_chunk(const qs_lut_traits *lt, int32_t c, const qs_lut_gp *p, float ymax, const float *buf,
                      float *out, int64_t m) {
    int64_t j;
    if (!lt->f16 && lt->scale == QS_LUT_SCALE_AMAX && lt->g[c].kind == QS_LUT_NEAREST) {
        lut_nearest_chunk(&lt->g[c], p->s, ymax, buf, out, m);
        return;
    }
    for (j = 0; j < m; j++) out[j] = qs_lut_elem(buf[j], lt, &lt->g[c], p, ymax);
}

/* The grid a group takes: the first with the strictly smallest error (from +Inf, or BitMoD's 1e3), or
   QS_LUT_NO_CHOICE; *gp receives its constants. */
static int32_t lut_choose(const qs_job *jb, int64_t row, int64_t c0, int64_t n, const lut_stats *st, float ymax,
                          qs_lut_gp *gp) {
    const qs_lut_traits *lt = jb->lut;
    float buf[QS_LUT_CHUNK], out[QS_LUT_CHUNK];
    float best = lt->f16 ? 1e3f : qs_u2f(QS_F32_INF_BITS);
    int32_t c, choice = lt->f16 ? QS_LUT_NO_CHOICE : 0;
    *gp = qs_lut_params(lt, &lt->g[0], st->amax, st->vmin, st->vmax);
    if (lt->count == 1) return 0;
    for (c = 0; c < lt->count; c++) {
        const qs_lut_gp p = qs_lut_params(lt, &lt->g[c], st->amax, st->vmin, st->vmax);
        float lanes[QS_LUT_LANES] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
        double exact = 0.0;
        float total;
        int64_t j0, j;
        int32_t l;
        if (p.mode != QS_GP_QUANT) return 0; /* a zero group: every grid gives zeros */
        for (j0 = 0; j0 < n; j0 += QS_LUT_CHUNK) {
            const int64_t m = n - j0 < QS_LUT_CHUNK ? n - j0 : QS_LUT_CHUNK;
            lut_load(jb, row, c0 + j0, m, buf);
            lut_chunk(lt, c, &p, ymax, buf, out, m);
            for (j = 0; j < m; j++) out[j] = qs_lut_sqerr(out[j], buf[j], lt->f16);
            if (lt->f16) {
                for (j = 0; j < m; j++) exact += (double)out[j];
                continue;
            }
            for (j = 0; j + QS_LUT_LANES <= m; j += QS_LUT_LANES)
                for (l = 0; l < QS_LUT_LANES; l++) lanes[l] += out[j + l];
            for (l = 0; j + l < m; l++) lanes[l] += out[j + l];
        }
        total = qs_lut_total(lanes, exact, n, lt->f16);
        if (total < best) {
            best = total;
            choice = c;
            *gp = p;
        }
    }
    return choice;
}

/* One group: its choice (jb->choice) and/or its outputs (jb->y). */
static void lut_group(const qs_job *jb, int64_t row, int64_t c0, int64_t n, int64_t k) {
    const qs_lut_traits *lt = jb->lut;
    const float ymax = qs_dtype_max(jb->dtype);
    const lut_stats st = jb->qp_in != NULL ? (lut_stats){0.0f, 0.0f, 0.0f, 0} : lut_scan(jb, row, c0, n);
    float buf[QS_LUT_CHUNK], out[QS_LUT_CHUNK];
    qs_lut_gp gp;
    int32_t choice = 0;
    int64_t j0, j;
    if (jb->qp_in != NULL) gp = qs_qp_lut(jb->qp_in + row * jb->qp_stride + QS_QPARAM_WORDS * k, jb->lut, &choice);
    else if (st.bad) gp.mode = QS_GP_NAN;
    else choice = lut_choose(jb, row, c0, n, &st, ymax, &gp);
    if (jb->choice != NULL) jb->choice[row * jb->c_stride + k] = (uint8_t)choice;
    if (jb->qp_out != NULL) qs_qp_store_lut(jb->qp_out + row * jb->qp_stride + QS_QPARAM_WORDS * k, &gp, choice);
    if (jb->y == NULL) return;
    for (j0 = 0; j0 < n; j0 += QS_LUT_CHUNK) {
        const int64_t m = n - j0 < QS_LUT_CHUNK ? n - j0 : QS_LUT_CHUNK;
        char *yr = jb->y + row * jb->y_stride;
        if (gp.mode == QS_GP_NAN) {
            for (j = 0; j < m; j++) out[j] = qs_qnan();
        } else if (gp.mode == QS_GP_ZERO || choice == QS_LUT_NO_CHOICE) {
            for (j = 0; j < m; j++) out[j] = 0.0f;
        } else {
            lut_load(jb, row, c0 + j0, m, buf);
            lut_chunk(lt, choice, &gp, ymax, buf, out, m);
        }
        if (jb->mask_mode != QS_MASK_NONE) {
            const uint8_t *mr = jb->mask + row * jb->m_stride;
            for (j = 0; j < m; j++) out[j] = mr[c0 + j0 + j] ? out[j] : 0.0f;
        }
        for (j = 0; j < m; j++) qs_store(yr, c0 + j0 + j, jb->dtype, out[j]);
    }
}

QS_CLONES void qs_run_lut(const qs_job *jb, int64_t u0, int64_t u1) {
    qs_unit c = unit_first(jb, u0);
    int64_t u;
    for (u = u0; u < u1; u++, unit_next(jb, &c)) lut_group(jb, c.row, c.c0, c.n, u % jb->units_per_row);
}
