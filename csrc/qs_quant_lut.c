/*
 * qs_quant_lut.c -- CPU kernels of the lookup-grid formats (QS_FAMILY_LUT) and the bitmod profile: see qs_lut.h.
 *
 * Two paths compute the same operations in the same order as the CUDA kernel (one thread per group), so the bits
 * agree:
 * - the vectorized path (binary32 arithmetic with nearest-value grids: every ANT and BitMoD row, MX ones included,
 *   outside the bitmod profile): a group is loaded once (in chunks of QS_LUT_FAST_CHUNK when it is longer), its max
 *   |x| is an integer reduction, and each element's grid value is the sum of the steps of the midpoints below it,
 *   with the grid's midpoints unrolled into registers (grids of 7, 8, 15 and 16 values); with several grids, each
 *   grid's outputs and squared errors come from that one load, and the outputs of the best grid so far are kept,
 *   so the chosen grid is not computed twice;
 * - the scalar path (the bitmod profile's binary16 arithmetic, its int and minifloat grids): the functions of
 *   qs_lut.h per element, in chunks of QS_LUT_CHUNK.
 */
#include "qs_quant_impl.h"
#include "qs_lut.h"


/* ---- the vectorized path ------------------------------------------------------------------------------------- */

#define QS_LUT_FAST_CHUNK 256 /* a multiple of QS_LUT_LANES */

/* buf[j] = x[c0 + j] for j < m, masked-before positions 0. */
QS_ALWAYS_INLINE void fast_load(const char *xr, const uint8_t *mr, int64_t c0, int64_t m, float *buf,
                                const int32_t dt, const int32_t before) {
    int64_t j;
    for (j = 0; j < m; j++) {
        const float v = qs_load(xr, c0 + j, dt);
        buf[j] = before ? qs_select(mr[c0 + j], v, 0.0f) : v;
    }
}

/* The largest |x| bit pattern of buf (>= 0x7f800000: a NaN or Inf). */
QS_ALWAYS_INLINE uint32_t fast_amax(const float *buf, int64_t m, uint32_t amax) {
    int64_t j;
    for (j = 0; j < m; j++) {
        const uint32_t b = qs_f2u(buf[j]) & ~QS_F32_SIGN;
        amax = b > amax ? b : amax;
    }
    return amax;
}

/* out[j] = qs_lut_elem of the element whose quotient (fast_div) is ybuf[j] on grid g: lo plus the steps of the
   midpoints below it, as qs_lut_nearest, times the scale, clamped to +-ymax. nm: the grid's midpoints, a literal for the grid sizes of the table (7, 8, 15 or 16 values), so that they
   stay in registers and the loop over elements is straight-line code; 0: any size. pow2: BitMoD's MX scale. */
QS_ALWAYS_INLINE void quant_nm(const qs_lut_grid *g, const qs_lut_gp *p, float ymax, const float *ybuf, float *out,
                               int64_t m, const int32_t pow2, const int32_t nm) {
    const float s = p->s, gc = g->c, lo = g->lo;
    const int32_t count = nm ? nm : g->n - 1;
    float mid[QS_LUT_MAX_VALUES - 1], step[QS_LUT_MAX_VALUES - 1];
    int64_t j;
    int32_t k;
    for (k = 0; k < count; k++) {
        mid[k] = g->mid[k];
        step[k] = g->step[k];
    }
    for (j = 0; j < m; j++) {
        const float y = ybuf[j];
        float q, o;
        if (nm) { /* four partial sums: short dependency chains; every sum is a small integer, so exact */
            float a0 = lo, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
            QS_UNROLL
            for (k = 0; k + 4 <= nm; k += 4) {
                a0 = y > mid[k] ? a0 + step[k] : a0;
                a1 = y > mid[k + 1] ? a1 + step[k + 1] : a1;
                a2 = y > mid[k + 2] ? a2 + step[k + 2] : a2;
                a3 = y > mid[k + 3] ? a3 + step[k + 3] : a3;
            }
            QS_UNROLL
            for (; k < nm; k++) a0 = y > mid[k] ? a0 + step[k] : a0;
            q = (a0 + a1) + (a2 + a3);
        } else {
            q = lo;
            for (k = 0; k < count; k++) q += y > mid[k] ? step[k] : 0.0f;
        }
        o = pow2 ? (q * gc) * s : q * s;
        out[j] = qs_clampf(o, -ymax, ymax);
    }
}

/* ybuf[j] = x / s (pow2: (x / 2^E) / c, the first division as the multiplication by 2^-E when that is a binary32
   value: the same correctly rounded quotient). */
QS_ALWAYS_INLINE void fast_div(const qs_lut_grid *g, const qs_lut_gp *p, const float *buf, float *ybuf, int64_t m,
                               const int32_t pow2) {
    const float s = p->s, gc = g->c;
    int64_t j;
    if (pow2 && s >= 5.87747175411143754e-39f) { /* 2^-127: 1 / s <= 2^127 */
        const float r = 1.0f / s;
        for (j = 0; j < m; j++) ybuf[j] = (buf[j] * r) / gc;
    } else if (pow2) {
        for (j = 0; j < m; j++) ybuf[j] = (buf[j] / s) / gc;
    } else {
        for (j = 0; j < m; j++) ybuf[j] = buf[j] / s;
    }
}

/* out = grid g's values of ybuf. */
QS_ALWAYS_INLINE void fast_quant(const qs_lut_grid *g, const qs_lut_gp *p, float ymax, const float *buf, float *out,
                                 int64_t m, const int32_t pow2) {
    switch (g->n - 1) {
    case 6: quant_nm(g, p, ymax, buf, out, m, pow2, 6); break;
    case 7: quant_nm(g, p, ymax, buf, out, m, pow2, 7); break;
    case 14: quant_nm(g, p, ymax, buf, out, m, pow2, 14); break;
    case 15: quant_nm(g, p, ymax, buf, out, m, pow2, 15); break;
    default: quant_nm(g, p, ymax, buf, out, m, pow2, 0); break;
    }
}

/* lanes[j % 8] += (out[j] - buf[j])^2 over a chunk that starts at a multiple of 8 in its group. */
QS_ALWAYS_INLINE void fast_sqerr(const float *buf, const float *out, int64_t m, float *lanes) {
    int64_t j;
    int32_t l;
    for (j = 0; j + QS_LUT_LANES <= m; j += QS_LUT_LANES)
        for (l = 0; l < QS_LUT_LANES; l++) {
            const float d = out[j + l] - buf[j + l];
            lanes[l] += d * d;
        }
    for (l = 0; j + l < m; l++) {
        const float d = out[j + l] - buf[j + l];
        lanes[l] += d * d;
    }
}

/* One group on the vectorized path: the same decisions as lut_group below. mm: qs_mask_mode. */
QS_ALWAYS_INLINE void fast_group(const qs_job *jb, int64_t row, int64_t c0, int64_t n, int64_t k, const int32_t dt,
                                 const int32_t mm, const int32_t pow2) {
    const qs_lut_traits *lt = jb->lut;
    const float ymax = qs_dtype_max(dt);
    const char *xr = jb->x + row * jb->x_stride;
    const uint8_t *mr = mm != QS_MASK_NONE ? jb->mask + row * jb->m_stride : NULL;
    const int32_t once = n <= QS_LUT_FAST_CHUNK; /* the whole group fits the buffer: one load */
    float buf[QS_LUT_FAST_CHUNK], ybuf[QS_LUT_FAST_CHUNK], out[2][QS_LUT_FAST_CHUNK];
    int32_t choice = 0, kept = -1, slot = 0, loaded = 0;
    qs_lut_gp gp;
    int64_t j0, j;
    if (jb->qp_in != NULL) {
        gp = qs_qp_lut(jb->qp_in + row * jb->qp_stride + QS_QPARAM_WORDS * k, lt, &choice);
    } else {
        uint32_t amax = 0u;
        for (j0 = 0; j0 < n; j0 += QS_LUT_FAST_CHUNK) {
            const int64_t m = n - j0 < QS_LUT_FAST_CHUNK ? n - j0 : QS_LUT_FAST_CHUNK;
            fast_load(xr, mr, c0 + j0, m, buf, dt, mm == QS_MASK_BEFORE);
            amax = fast_amax(buf, m, amax);
        }
        loaded = once;
        gp = qs_lut_params(lt, &lt->g[0], qs_u2f(amax), 0.0f, 0.0f); /* nearest grids use max |x| only */
        if (amax >= QS_F32_INF_BITS) {
            gp.mode = QS_GP_NAN;
        } else if (lt->count > 1) {
            float best = qs_u2f(QS_F32_INF_BITS), ys = 0.0f; /* ys: the scale of ybuf (grids of one max share it) */
            int32_t c;
            for (c = 0; c < lt->count; c++) {
                const qs_lut_gp p = qs_lut_params(lt, &lt->g[c], qs_u2f(amax), 0.0f, 0.0f);
                float lanes[QS_LUT_LANES] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
                float total = 0.0f;
                int32_t l;
                if (p.mode != QS_GP_QUANT) { /* as lut_choose: choice 0, the constants chosen so far */
                    choice = 0;
                    kept = -1;
                    break;
                }
                for (j0 = 0; j0 < n; j0 += QS_LUT_FAST_CHUNK) {
                    const int64_t m = n - j0 < QS_LUT_FAST_CHUNK ? n - j0 : QS_LUT_FAST_CHUNK;
                    if (!once) fast_load(xr, mr, c0 + j0, m, buf, dt, mm == QS_MASK_BEFORE);
                    if (!once || p.s != ys) fast_div(&lt->g[c], &p, buf, ybuf, m, pow2);
                    fast_quant(&lt->g[c], &p, ymax, ybuf, out[slot], m, pow2);
                    fast_sqerr(buf, out[slot], m, lanes);
                }
                ys = once ? p.s : 0.0f;
                for (l = 0; l < QS_LUT_LANES; l++) total += lanes[l];
                if (total < best) {
                    best = total;
                    choice = c;
                    gp = p;
                    if (once) { /* keep these outputs; the next grid writes the other buffer */
                        kept = slot;
                        slot ^= 1;
                    }
                }
            }
        }
    }
    if (jb->choice != NULL) jb->choice[row * jb->c_stride + k] = (uint8_t)choice;
    if (jb->qp_out != NULL) qs_qp_store_lut(jb->qp_out + row * jb->qp_stride + QS_QPARAM_WORDS * k, &gp, choice);
    if (jb->y == NULL) return;
    for (j0 = 0; j0 < n; j0 += QS_LUT_FAST_CHUNK) {
        const int64_t m = n - j0 < QS_LUT_FAST_CHUNK ? n - j0 : QS_LUT_FAST_CHUNK;
        char *yr = jb->y + row * jb->y_stride;
        const float *o = out[0];
        if (gp.mode == QS_GP_NAN) {
            for (j = 0; j < m; j++) out[0][j] = qs_qnan();
        } else if (gp.mode == QS_GP_ZERO) {
            for (j = 0; j < m; j++) out[0][j] = 0.0f;
        } else if (kept >= 0) {
            o = out[kept];
        } else {
            if (!loaded) fast_load(xr, mr, c0 + j0, m, buf, dt, mm == QS_MASK_BEFORE);
            fast_div(&lt->g[choice], &gp, buf, ybuf, m, pow2);
            fast_quant(&lt->g[choice], &gp, ymax, ybuf, out[0], m, pow2);
        }
        if (mm != QS_MASK_NONE)
            for (j = 0; j < m; j++) qs_store(yr, c0 + j0 + j, dt, qs_select(mr[c0 + j0 + j], o[j], 0.0f));
        else
            for (j = 0; j < m; j++) qs_store(yr, c0 + j0 + j, dt, o[j]);
    }
}

QS_ALWAYS_INLINE void fast_units(const qs_job *jb, int64_t u0, int64_t u1, const int32_t dt, const int32_t mm,
                                 const int32_t pow2) {
    qs_unit c = unit_first(jb, u0);
    int64_t u;
    for (u = u0; u < u1; u++, unit_next(jb, &c)) {
        if (mm == QS_MASK_NONE && c.n == 128) fast_group(jb, c.row, c.c0, 128, u % jb->units_per_row, dt, mm, pow2);
        else if (mm == QS_MASK_NONE && c.n == 32) fast_group(jb, c.row, c.c0, 32, u % jb->units_per_row, dt, mm, pow2);
        else fast_group(jb, c.row, c.c0, c.n, u % jb->units_per_row, dt, mm, pow2);
    }
}

#define QS_FAST_MM(DT, POW2)                                                        \
    do {                                                                            \
        if (jb->mask_mode == QS_MASK_NONE) fast_units(jb, u0, u1, DT, QS_MASK_NONE, POW2);     \
        else if (jb->mask_mode == QS_MASK_BEFORE) fast_units(jb, u0, u1, DT, QS_MASK_BEFORE, POW2); \
        else fast_units(jb, u0, u1, DT, QS_MASK_AFTER, POW2);                       \
    } while (0)
#define QS_FAST_DT(DT)                                                              \
    do {                                                                            \
        if (jb->lut->scale == QS_LUT_SCALE_POW2) QS_FAST_MM(DT, 1);                 \
        else QS_FAST_MM(DT, 0);                                                     \
    } while (0)

/* The vectorized path applies: binary32 arithmetic (not the bitmod profile) and nearest-value grids. */
static int32_t lut_fast(const qs_lut_traits *lt) {
    int32_t c;
    if (lt->f16) return 0;
    for (c = 0; c < lt->count; c++)
        if (lt->g[c].kind != QS_LUT_NEAREST || lt->g[c].n < 1) return 0;
    return 1;
}

static QS_CLONES void qs_run_lut_fast(const qs_job *jb, int64_t u0, int64_t u1) { QS_DISPATCH_DT(QS_FAST_DT) }

/* ---- the scalar path ----------------------------------------------------------------------------------------- */

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
    if (lut_fast(jb->lut)) {
        qs_run_lut_fast(jb, u0, u1);
        return;
    }
    qs_unit c = unit_first(jb, u0);
    int64_t u;
    for (u = u0; u < u1; u++, unit_next(jb, &c)) lut_group(jb, c.row, c.c0, c.n, u % jb->units_per_row);
}
