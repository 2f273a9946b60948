/*
 * qs_quant_lut.c -- CPU kernels of the lookup-grid formats (QS_FAMILY_LUT) and the bitmod profile: see qs_lut.h.
 *
 * The kernel computes the same operations in the same order as the CUDA kernel (one thread per group), so the bits
 * agree, in loops over the elements of a group that vectorize:
 * - a group is loaded once (in chunks of QS_LUT_FAST_CHUNK when it is longer), its max
 *   |x| is an integer reduction, and each element's grid value is the sum of the steps of the midpoints below it,
 *   a pair of midpoints +-m taken by one integer comparison of |y| (lut_split), with the midpoints of BitMoD's and
 *   ANT's 3- and 4-bit grids unrolled into registers; with several grids, each grid's outputs and squared errors
 *   come from that one load, and the outputs of the best grid so far are kept, so the chosen grid is not computed
 *   twice; grids of equal scale share one division, and grids with the same pairs their sum;
 * - the bitmod profile runs the same loops with its binary16 roundings (qs_lut.h) as a literal, and its int{b} and
 *   int{b}_asym grids as rint and clamp; its error sums are exact in double (qs_lut_total), so lanes may split them.
 */
#include "qs_quant_impl.h"
#include "qs_lut.h"

#define QS_LUT_FAST_CHUNK 256 /* a multiple of QS_LUT_LANES */
#define QS_LUT_EXACT_MAX 8192 /* 2^13: groups up to this size have exact double error sums in any order */

/* x[j] as the kernel sees it: a masked-before position 0; f16: rounded to binary16. */
QS_ALWAYS_INLINE float fast_elem(const char *xr, const uint8_t *mr, int64_t j, const int32_t dt, const int32_t before,
                                 const int32_t f16) {
    float v = qs_load(xr, j, dt);
    if (before) v = qs_select(mr[j], v, 0.0f);
    return f16 ? qs_f16r(v) : v;
}

/* buf[j] = fast_elem(x, c0 + j) for j < m. */
QS_ALWAYS_INLINE void fast_load(const char *xr, const uint8_t *mr, int64_t c0, int64_t m, float *buf,
                                const int32_t dt, const int32_t before, const int32_t f16) {
    int64_t j;
    for (j = 0; j < m; j++) buf[j] = fast_elem(xr, mr, c0 + j, dt, before, f16);
}

/* fast_load, and the largest |x| bit pattern of buf and amax (>= 0x7f800000: a NaN or Inf), in one loop: a float32
   load alone is a plain copy, which GCC turns into `rep movsq`, whose start-up took half the samples of mx_fp4's
   group function (groups of 32: 128 bytes). */
QS_ALWAYS_INLINE uint32_t fast_load_amax(const char *xr, const uint8_t *mr, int64_t c0, int64_t m, float *buf,
                                         const int32_t dt, const int32_t before, const int32_t f16, uint32_t amax) {
    int64_t j;
    for (j = 0; j < m; j++) {
        const float v = fast_elem(xr, mr, c0 + j, dt, before, f16);
        const uint32_t b = qs_f2u(v) & ~QS_F32_SIGN;
        buf[j] = v;
        amax = b > amax ? b : amax;
    }
    return amax;
}

/* What a midpoint adds to the grid value of quotient y: its step (bits) when y > mid, else +0. Every midpoint adds
   unconditionally, the step selected by an integer mask: a conditional addition, or a float select on a float
   comparison, is control flow that GCC if-converts only into masked vector instructions (AVX-512) under IEEE
   exception semantics, so the AVX2 and baseline clones ran these loops scalar with a branch per midpoint (25x
   slower). Adding +0 changes nothing but a -0 partial sum into +0, and no partial sum here can be -0. */
QS_ALWAYS_INLINE float lut_step(float y, float mid, uint32_t step) {
    return qs_u2f(step & (0u - (uint32_t)(y > mid)));
}

/* A nearest-value grid as this kernel evaluates qs_lut_nearest. Its midpoints are pairs +-m (m > 0, equal steps:
   all of a symmetric grid's but 0) and extras (0, and those of values on one side only, such as BitMoD's extra
   value). For y >= 0 a pair adds step + step [y > m], for y < 0 step - step [|y| >= m], so
       qs_lut_nearest(y) = base + sgn(y) A + B,
   base = lo + the pairs' steps, A = the steps of the pairs that |y| passes (>, or >= for y < 0), B = the steps of
   the extras below y. "|y| passes m" is one integer comparison, key(y) > bits(m) with key(y) = bits(|y|) + the sign
   bit: positive floats order as their bits, and bits(|y|) + 1 > bits(m) is |y| >= m. Every sum is a small integer,
   exact in any order; base is +0 rather than -0, A >= +0 and B >= +0, so a zero is +0 as in qs_lut_nearest. A
   symmetric grid takes half the comparisons, and grids with the same pairs (BitMoD's ER and EA pairs) one
   base + sgn(y) A for a quotient. */
typedef struct lut_split {
    int32_t np, nx; /* pairs, extras */
    int32_t core;   /* the first grid of the format with the same pairs */
    int32_t int_steps; /* every pair's step is an integer below 2^24 (BitMoD's and ANT's grids): lut_core's sums
                          in integers */
    float base;
    uint32_t pmid[QS_LUT_MAX_VALUES / 2], pstep[QS_LUT_MAX_VALUES / 2]; /* bits of m > 0 and of its step */
    int32_t istep[QS_LUT_MAX_VALUES / 2]; /* int_steps: the steps as integers */
    float xmid[QS_LUT_MAX_VALUES - 1];
    uint32_t xstep[QS_LUT_MAX_VALUES - 1];
} lut_split;

static void lut_split_make(const qs_lut_grid *g, lut_split *sp) {
    uint8_t paired[QS_LUT_MAX_VALUES - 1] = {0};
    float base = g->lo;
    double total;
    int32_t k, i;
    sp->np = sp->nx = 0;
    for (k = 0; k < g->n - 1; k++) { /* ascending: the pairs in the order of m */
        if (!(g->mid[k] > 0.0f)) continue;
        for (i = 0; i < k && !(g->mid[i] == -g->mid[k] && g->step[i] == g->step[k]); i++) {}
        if (i == k) continue;
        paired[k] = paired[i] = 1;
        sp->pmid[sp->np] = qs_f2u(g->mid[k]);
        sp->pstep[sp->np++] = qs_f2u(g->step[k]);
        base += g->step[k];
    }
    for (k = 0; k < g->n - 1; k++)
        if (!paired[k]) {
            sp->xmid[sp->nx] = g->mid[k];
            sp->xstep[sp->nx++] = qs_f2u(g->step[k]);
        }
    sp->base = base + 0.0f; /* +0 for a zero */
    sp->int_steps = 1;
    for (k = 0, total = 0.0; k < sp->np; k++) { /* (their sum too below 2^24: exact in binary32) */
        const float st = qs_u2f(sp->pstep[k]);
        total += st;
        sp->int_steps &= st >= 0.0f && total < 16777216.0 && st == (float)(int32_t)st;
        sp->istep[k] = sp->int_steps ? (int32_t)st : 0;
    }
}

/* The splits of a format's grids (only NEAREST grids have pairs and extras). */
static void lut_splits(const qs_lut_traits *lt, lut_split *sp) {
    int32_t c, d;
    for (c = 0; c < lt->count; c++) {
        const lut_split *s = &sp[c];
        sp[c].np = sp[c].nx = 0;
        sp[c].int_steps = 0;
        sp[c].base = 0.0f;
        sp[c].core = c;
        if (lt->g[c].kind != QS_LUT_NEAREST) continue;
        lut_split_make(&lt->g[c], &sp[c]);
        for (d = 0; d < c; d++)
            if (lt->g[d].kind == QS_LUT_NEAREST && sp[d].np == s->np && sp[d].base == s->base &&
                memcmp(sp[d].pmid, s->pmid, sizeof(uint32_t) * (size_t)s->np) == 0 &&
                memcmp(sp[d].pstep, s->pstep, sizeof(uint32_t) * (size_t)s->np) == 0) {
                sp[c].core = sp[d].core;
                break;
            }
    }
}

/* What pair (mid, step) adds to A for key(y). */
QS_ALWAYS_INLINE float pair_step(int32_t key, uint32_t mid, uint32_t step) {
    return qs_u2f(step & (0u - (uint32_t)(key > (int32_t)mid)));
}

QS_ALWAYS_INLINE int32_t pair_key(uint32_t u) { return (int32_t)((u & ~QS_F32_SIGN) + (u >> 31)); }

/* base + sgn(y) A, A >= +0 */
QS_ALWAYS_INLINE float pair_sum(float base, float a, uint32_t u) { return base + qs_u2f(qs_f2u(a) | (u & QS_F32_SIGN)); }

/* abuf[j] = base + sgn(y) A of quotient ybuf[j]. np: the pairs, a literal (2, 3, 6, 7: BitMoD's and ANT's 3- and
   4-bit grids, whose steps are integers: sp->int_steps), whose midpoints stay in registers while the loop over
   elements runs straight-line code, A summed in integers (a conditional integer addition is a compare and a masked
   add, where a float one took a compare, a mask and an add: lut_step); 0: any number, one pass over the chunk per
   pair, in binary32. Either sum is exact. */
QS_ALWAYS_INLINE void lut_core(const lut_split *sp, const float *ybuf, float *abuf, int64_t m, const int32_t np) {
    const float base = sp->base;
    uint32_t mid[QS_LUT_MAX_VALUES / 2], step[QS_LUT_MAX_VALUES / 2];
    int64_t j;
    int32_t k;
    if (np == 0) {
        for (j = 0; j < m; j++) abuf[j] = 0.0f;
        for (k = 0; k < sp->np; k++) {
            const uint32_t mk = sp->pmid[k], sk = sp->pstep[k];
            for (j = 0; j < m; j++) abuf[j] += pair_step(pair_key(qs_f2u(ybuf[j])), mk, sk);
        }
        for (j = 0; j < m; j++) abuf[j] = pair_sum(base, abuf[j], qs_f2u(ybuf[j]));
        return;
    }
    for (k = 0; k < np; k++) {
        mid[k] = sp->pmid[k];
        step[k] = (uint32_t)sp->istep[k];
    }
    for (j = 0; j < m; j++) {
        const uint32_t u = qs_f2u(ybuf[j]);
        const int32_t key = pair_key(u);
        int32_t a0 = 0, a1 = 0; /* the steps passed, in integers: a compare and a masked add per pair */
        QS_UNROLL
        for (k = 0; k + 2 <= np; k += 2) {
            a0 += key > (int32_t)mid[k] ? (int32_t)step[k] : 0;
            a1 += key > (int32_t)mid[k + 1] ? (int32_t)step[k + 1] : 0;
        }
        QS_UNROLL
        for (; k < np; k++) a0 += key > (int32_t)mid[k] ? (int32_t)step[k] : 0;
        abuf[j] = pair_sum(base, (float)(a0 + a1), u); /* exact: below 2^24 */
    }
}

/* out[j] = qs_lut_elem of the element whose quotient (fast_div) is ybuf[j] on nearest-value grid g, from its
   base + sgn(y) A (abuf[j], lut_core): plus B, times the scale (f16: rounded to binary16), clamped to +-ymax. nx:
   the extras, a literal (0, 1, 3), or -1: any number, one pass over the chunk per extra. vs: a literal, 1 when
   each group of n elements has its own scale sv[group] (a batch of groups, lut_batch) instead of p's. */
QS_ALWAYS_INLINE void lut_final(const lut_split *sp, const qs_lut_grid *g, const qs_lut_gp *p, float ymax,
                                const float *ybuf, const float *abuf, float *out, int64_t m, const int32_t nx,
                                const int32_t pow2, const int32_t f16, const float *sv, int64_t n,
                                const int32_t vs) {
    const float s = vs ? 0.0f : p->s, gc = g->c;
    const int64_t span = vs ? n : m; /* elements with one scale */
    float mid[3];
    uint32_t step[3];
    int64_t j, j0;
    int32_t k;
    if (nx < 0) {
        for (j = 0; j < m; j++) out[j] = abuf[j];
        for (k = 0; k < sp->nx; k++) {
            const float mk = sp->xmid[k];
            const uint32_t sk = sp->xstep[k];
            for (j = 0; j < m; j++) out[j] += lut_step(ybuf[j], mk, sk);
        }
    }
    for (k = 0; k < nx; k++) {
        mid[k] = sp->xmid[k];
        step[k] = sp->xstep[k];
    }
    for (j0 = 0; j0 < m; j0 += span) {
        const float sj = vs ? sv[j0 / span] : s;
        for (j = j0; j < j0 + span; j++) {
            float q = nx < 0 ? out[j] : abuf[j], o;
            QS_UNROLL
            for (k = 0; k < nx; k++) q += lut_step(ybuf[j], mid[k], step[k]);
            o = pow2 ? (q * gc) * sj : q * sj;
            if (f16) o = qs_f16r(o);
            out[j] = qs_clampf(o, -ymax, ymax);
        }
    }
}

/* The bitmod profile's int{b} (asym: int{b}_asym) of the quotients ybuf, as qs_lut_elem. */
QS_ALWAYS_INLINE void quant_int(const qs_lut_grid *g, const qs_lut_gp *p, float ymax, const float *ybuf, float *out,
                                int64_t m, const int32_t asym) {
    const float s = p->s, zp = p->zp, gmax = g->gmax;
    int64_t j;
    for (j = 0; j < m; j++) {
        const float r = qs_rint(ybuf[j]);
        const float o = asym ? (qs_clampf(r + zp, 0.0f, gmax) - zp) * s : qs_clampf(r, -gmax, gmax) * s;
        out[j] = qs_clampf(qs_f16r(o), -ymax, ymax);
    }
}

/* ybuf[j] = x / s, f16: rounded to binary16; pow2: (x / 2^E) / c, the first division as the multiplication by
   2^-E when that is a binary32 value (the same correctly rounded quotient), not rounded to binary16 (BitMoD). */
QS_ALWAYS_INLINE void fast_div(const qs_lut_grid *g, const qs_lut_gp *p, const float *buf, float *ybuf, int64_t m,
                               const int32_t pow2, const int32_t f16) {
    const float s = p->s, gc = g->c;
    int64_t j;
    if (pow2 && s >= 5.87747175411143754e-39f) { /* 2^-127: 1 / s <= 2^127 */
        const float r = 1.0f / s;
        for (j = 0; j < m; j++) ybuf[j] = (buf[j] * r) / gc;
    } else if (pow2) {
        for (j = 0; j < m; j++) ybuf[j] = (buf[j] / s) / gc;
    } else if (f16) {
        for (j = 0; j < m; j++) ybuf[j] = qs_f16r(buf[j] / s);
    } else {
        for (j = 0; j < m; j++) ybuf[j] = buf[j] / s;
    }
}

/* lut_core for each literal np and lut_final for each literal (nx, pow2, f16) as functions of their own (with
   their SIMD clones), called once per group and grid: inlined into every mask and dtype instantiation, such
   unrolled vector loops made this file take a quarter of an hour to compile. */
#define QS_CORE_FN(NP)                                                                                        \
    static QS_CLONES void lut_core_##NP(const lut_split *sp, const float *ybuf, float *abuf, int64_t m) {    \
        lut_core(sp, ybuf, abuf, m, NP);                                                                      \
    }
QS_CORE_FN(0)
QS_CORE_FN(2)
QS_CORE_FN(3)
QS_CORE_FN(6)
QS_CORE_FN(7)
#define QS_FINAL_FN(NAME, NX, POW2, F16)                                                                       \
    static QS_CLONES void lut_final_##NAME##_##POW2##_##F16(const lut_split *sp, const qs_lut_grid *g,          \
                                                              const qs_lut_gp *p, float ymax, const float *ybuf, \
                                                              const float *abuf, float *out, int64_t m) {       \
        lut_final(sp, g, p, ymax, ybuf, abuf, out, m, NX, POW2, F16, NULL, 0, 0);                                 \
    }
/* The same with a scale per element (lut_batch: no bitmod profile). */
#define QS_FINAL_VFN(NAME, NX, POW2)                                                                           \
    static QS_CLONES void lut_finalv_##NAME##_##POW2(const lut_split *sp, const qs_lut_grid *g, float ymax,     \
                                                     const float *ybuf, const float *abuf, float *out, int64_t m, \
                                                     const float *sv, int64_t n) {                              \
        lut_final(sp, g, NULL, ymax, ybuf, abuf, out, m, NX, POW2, 0, sv, n, 1);                               \
    }
#define QS_FINAL_FNS(POW2, F16) \
    QS_FINAL_FN(0, 0, POW2, F16) QS_FINAL_FN(1, 1, POW2, F16) QS_FINAL_FN(3, 3, POW2, F16) QS_FINAL_FN(any, -1, POW2, F16)
QS_FINAL_FNS(0, 0)
QS_FINAL_FNS(0, 1)
QS_FINAL_FNS(1, 0)
QS_FINAL_FNS(1, 1)
#define QS_FINAL_VFNS(POW2) \
    QS_FINAL_VFN(0, 0, POW2) QS_FINAL_VFN(1, 1, POW2) QS_FINAL_VFN(3, 3, POW2) QS_FINAL_VFN(any, -1, POW2)
QS_FINAL_VFNS(0)
QS_FINAL_VFNS(1)

#define QS_FINAL_CALL(POW2, F16)                                                                 \
    do {                                                                                         \
        switch (sp->nx) {                                                                        \
        case 0: lut_final_0_##POW2##_##F16(sp, g, p, ymax, ybuf, abuf, out, m); break;           \
        case 1: lut_final_1_##POW2##_##F16(sp, g, p, ymax, ybuf, abuf, out, m); break;           \
        case 3: lut_final_3_##POW2##_##F16(sp, g, p, ymax, ybuf, abuf, out, m); break;           \
        default: lut_final_any_##POW2##_##F16(sp, g, p, ymax, ybuf, abuf, out, m); break;        \
        }                                                                                        \
    } while (0)

/* lut_core of the grid's number of pairs. */
static void core_call(const lut_split *sp, const float *ybuf, float *abuf, int64_t m) {
    switch (sp->int_steps ? sp->np : 0) {
    case 2: lut_core_2(sp, ybuf, abuf, m); break;
    case 3: lut_core_3(sp, ybuf, abuf, m); break;
    case 6: lut_core_6(sp, ybuf, abuf, m); break;
    case 7: lut_core_7(sp, ybuf, abuf, m); break;
    default: lut_core_0(sp, ybuf, abuf, m); break;
    }
}

#define QS_FINAL_VCALL(POW2)                                                                    \
    do {                                                                                        \
        switch (sp->nx) {                                                                       \
        case 0: lut_finalv_0_##POW2(sp, g, ymax, ybuf, abuf, out, m, sv, n); break;                 \
        case 1: lut_finalv_1_##POW2(sp, g, ymax, ybuf, abuf, out, m, sv, n); break;                 \
        case 3: lut_finalv_3_##POW2(sp, g, ymax, ybuf, abuf, out, m, sv, n); break;                 \
        default: lut_finalv_any_##POW2(sp, g, ymax, ybuf, abuf, out, m, sv, n); break;              \
        }                                                                                       \
    } while (0)

/* out = grid g's values of the quotients ybuf; core: abuf does not hold this grid's base + sgn(y) A of them yet. */
QS_ALWAYS_INLINE void fast_quant(const qs_lut_grid *g, const lut_split *sp, const qs_lut_gp *p, float ymax,
                                 const float *ybuf, float *abuf, float *out, int64_t m, int32_t core,
                                 const int32_t pow2, const int32_t f16) {
    if (f16 && g->kind != QS_LUT_NEAREST) {
        if (g->kind == QS_LUT_ASYM) quant_int(g, p, ymax, ybuf, out, m, 1);
        else quant_int(g, p, ymax, ybuf, out, m, 0);
        return;
    }
    if (core) core_call(sp, ybuf, abuf, m);
    if (pow2 && f16) QS_FINAL_CALL(1, 1);
    else if (pow2) QS_FINAL_CALL(1, 0);
    else if (f16) QS_FINAL_CALL(0, 1);
    else QS_FINAL_CALL(0, 0);
}

/* lanes[j % 8] += (out[j] - buf[j])^2 over a chunk that starts at a multiple of 8 in its group. (As scalars, GCC
   kept the eight sums scalar and, in the AVX-512 clone, shuffled each square out of a vector: a third of mixed
   BitMoD's kernel time.) */
QS_ALWAYS_INLINE void fast_sqerr(const float *buf, const float *out, int64_t m, float *lanes) {
    int64_t j = 0;
    int32_t l;
#if defined(QS_HAVE_F32X8) && QS_LUT_LANES == 8
    qs_f32x8 acc, o, b, d;
    memcpy(&acc, lanes, sizeof acc);
    for (; j + QS_LUT_LANES <= m; j += QS_LUT_LANES) {
        memcpy(&o, out + j, sizeof o);
        memcpy(&b, buf + j, sizeof b);
        d = o - b;
        acc += d * d;
    }
    memcpy(lanes, &acc, sizeof acc);
#else
    for (; j + QS_LUT_LANES <= m; j += QS_LUT_LANES)
        for (l = 0; l < QS_LUT_LANES; l++) {
            const float d = out[j + l] - buf[j + l];
            lanes[l] += d * d;
        }
#endif
    for (l = 0; j + l < m; l++) {
        const float d = out[j + l] - buf[j + l];
        lanes[l] += d * d;
    }
}

/* The bitmod profile's errors, qs_lut_sqerr in binary16, summed in double: in 8 lanes when the group has at most
   QS_LUT_EXACT_MAX elements (every sum is then exact, see qs_lut_total, so the lanes give the sequential sum),
   else into lanes[0] in order. */
QS_ALWAYS_INLINE void fast_sqerr16(const float *buf, const float *out, int64_t m, double *lanes, int32_t split) {
    int64_t j;
    int32_t l;
    if (!split) {
        for (j = 0; j < m; j++) lanes[0] += (double)qs_lut_sqerr(out[j], buf[j], 1);
        return;
    }
    for (j = 0; j + QS_LUT_LANES <= m; j += QS_LUT_LANES)
        for (l = 0; l < QS_LUT_LANES; l++) lanes[l] += (double)qs_lut_sqerr(out[j + l], buf[j + l], 1);
    for (l = 0; j + l < m; l++) lanes[l] += (double)qs_lut_sqerr(out[j + l], buf[j + l], 1);
}

/* min and max of buf as qs_lut_params wants them (the bitmod profile's int{b}_asym): the first of equal values,
   as the CUDA kernel's loop keeps it. */
static void minmax_scan(const float *buf, int64_t m, float *vmin, float *vmax) {
    int64_t j;
    for (j = 0; j < m; j++) {
        const float v = buf[j];
        *vmin = v < *vmin ? v : *vmin;
        *vmax = v > *vmax ? v : *vmax;
    }
}

/* One group: its statistics, its grid (the first with the strictly smallest error: from +Inf, or from BitMoD's
   1e3, which may leave no grid, QS_LUT_NO_CHOICE, and zeros), its choice (jb->choice), record (jb->qp_out) and
   outputs (jb->y). mm: qs_mask_mode; pow2: BitMoD's MX scale; f16: the bitmod profile. */
QS_ALWAYS_INLINE void lut_group(const qs_job *jb, const lut_split *sp, int64_t row, int64_t c0, int64_t n, int64_t k,
                                const int32_t dt, const int32_t mm, const int32_t pow2, const int32_t f16) {
    const qs_lut_traits *lt = jb->lut;
    const float ymax = qs_dtype_max(dt);
    const char *xr = jb->x + row * jb->x_stride;
    const uint8_t *mr = mm != QS_MASK_NONE ? jb->mask + row * jb->m_stride : NULL;
    const int32_t before = mm == QS_MASK_BEFORE;
    const int32_t once = n <= QS_LUT_FAST_CHUNK; /* the whole group fits the buffer: one load */
    float buf[QS_LUT_FAST_CHUNK], ybuf[QS_LUT_FAST_CHUNK], abuf[QS_LUT_FAST_CHUNK], out[2][QS_LUT_FAST_CHUNK];
    int32_t choice = 0, kept = -1, slot = 0, loaded = 0;
    qs_lut_gp gp;
    int64_t j0, j;
    if (jb->qp_in != NULL) {
        gp = qs_qp_lut(jb->qp_in + row * jb->qp_stride + QS_QPARAM_WORDS * k, lt, &choice);
    } else {
        const int32_t asym = f16 && lt->g[0].kind == QS_LUT_ASYM;
        float vmin = qs_u2f(QS_F32_INF_BITS), vmax = -qs_u2f(QS_F32_INF_BITS); /* n >= 1 replaces these */
        uint32_t amax = 0u;
        for (j0 = 0; j0 < n; j0 += QS_LUT_FAST_CHUNK) {
            const int64_t m = n - j0 < QS_LUT_FAST_CHUNK ? n - j0 : QS_LUT_FAST_CHUNK;
            amax = fast_load_amax(xr, mr, c0 + j0, m, buf, dt, before, f16, amax);
            if (asym) minmax_scan(buf, m, &vmin, &vmax);
        }
        loaded = once;
        if (amax >= QS_F32_INF_BITS) { /* a NaN or Inf: NaN outputs */
            gp.mode = QS_GP_NAN;
            gp.s = 0.0f;
            gp.zp = 0.0f;
        } else {
            gp = qs_lut_params(lt, &lt->g[0], qs_u2f(amax), vmin, vmax);
        }
        if (gp.mode != QS_GP_NAN && lt->count > 1) {
            float best = f16 ? 1e3f : qs_u2f(QS_F32_INF_BITS), ys = 0.0f; /* ys: the scale ybuf holds */
            int32_t c, held = -1; /* the core whose base + sgn(y) A of ybuf abuf holds */
            choice = f16 ? QS_LUT_NO_CHOICE : 0;
            for (c = 0; c < lt->count; c++) {
                const qs_lut_gp p = qs_lut_params(lt, &lt->g[c], qs_u2f(amax), vmin, vmax);
                float lanes[QS_LUT_LANES] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
                double exact[QS_LUT_LANES] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
                double sum = 0.0;
                float total;
                int32_t l;
                if (p.mode != QS_GP_QUANT) { /* a zero group: choice 0 with the constants chosen so far */
                    choice = 0;
                    kept = -1;
                    break;
                }
                for (j0 = 0; j0 < n; j0 += QS_LUT_FAST_CHUNK) {
                    const int64_t m = n - j0 < QS_LUT_FAST_CHUNK ? n - j0 : QS_LUT_FAST_CHUNK;
                    if (!once) fast_load(xr, mr, c0 + j0, m, buf, dt, before, f16);
                    const int32_t fresh = !once || p.s != ys;
                    if (fresh) fast_div(&lt->g[c], &p, buf, ybuf, m, pow2, f16);
                    fast_quant(&lt->g[c], &sp[c], &p, ymax, ybuf, abuf, out[slot], m, fresh || sp[c].core != held,
                               pow2, f16);
                    if (f16) fast_sqerr16(buf, out[slot], m, exact, n <= QS_LUT_EXACT_MAX);
                    else fast_sqerr(buf, out[slot], m, lanes);
                }
                ys = once ? p.s : 0.0f;
                held = once && lt->g[c].kind == QS_LUT_NEAREST ? sp[c].core : -1;
                for (l = 0; l < QS_LUT_LANES; l++) sum += exact[l];
                total = qs_lut_total(lanes, sum, n, f16);
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
        } else if (gp.mode == QS_GP_ZERO || choice == QS_LUT_NO_CHOICE) {
            for (j = 0; j < m; j++) out[0][j] = 0.0f;
        } else if (kept >= 0) {
            o = out[kept];
        } else {
            if (!loaded) fast_load(xr, mr, c0 + j0, m, buf, dt, before, f16);
            fast_div(&lt->g[choice], &gp, buf, ybuf, m, pow2, f16);
            fast_quant(&lt->g[choice], &sp[choice], &gp, ymax, ybuf, abuf, out[0], m, 1, pow2, f16);
        }
        /* the outputs are finite or qs_qnan, which the NaN-less bfloat16 rounding keeps a NaN */
        if (mm != QS_MASK_NONE)
            for (j = 0; j < m; j++) qs_store_notnan(yr, c0 + j0 + j, dt, qs_select(mr[c0 + j0 + j], o[j], 0.0f));
        else
            for (j = 0; j < m; j++) qs_store_notnan(yr, c0 + j0 + j, dt, o[j]);
    }
}

/* Elements of the groups that lut_batch takes together: its six buffers take 24 KB of stack (2048 elements, 48 KB,
   Zen 5's whole L1, ran mx_fp4 bfloat16 on 16M elements 25% slower; 512, 30% slower). */
#define QS_LUT_BATCH 1024

/* Whether a job's groups may be taken QS_LUT_BATCH elements at a time (lut_batch): one nearest-value grid, no
   records or choices, groups of 16 or more (lut_batch's gp holds QS_LUT_BATCH / 16) that divide QS_LUT_BATCH. The
   mask mode and the bitmod profile are the caller's literals. */
static int32_t lut_batchable(const qs_job *jb) {
    const qs_lut_traits *lt = jb->lut;
    return lt->count == 1 && lt->g[0].kind == QS_LUT_NEAREST && jb->qp_in == NULL && jb->qp_out == NULL &&
           jb->choice == NULL && jb->group >= 16 && jb->group <= QS_LUT_BATCH && QS_LUT_BATCH % jb->group == 0;
}

/* lut_group of nb (<= QS_LUT_BATCH / n) groups of n elements, consecutive in memory from unit *c1: each group's
   load, max |x|, constants and quotients, then the grid's sums over the whole batch (one call of lut_core and of
   lut_final instead of one per group, whose set-up took most of the time of groups of 32), then the stores. The
   same operations per element. */
QS_ALWAYS_INLINE void lut_batch(const qs_job *jb, const lut_split *sp, const qs_unit *c1, int32_t nb, int64_t n,
                                const int32_t dt, const int32_t pow2) {
    const qs_lut_traits *lt = jb->lut;
    const qs_lut_grid *g = &lt->g[0];
    const float ymax = qs_dtype_max(dt);
    const int64_t es = (int64_t)qs_esize(dt), m = (int64_t)nb * n;
    const char *xp = jb->x + c1->row * jb->x_stride + c1->c0 * es;
    char *yp = jb->y + c1->row * jb->y_stride + c1->c0 * es;
    float buf[QS_LUT_BATCH], ybuf[QS_LUT_BATCH], abuf[QS_LUT_BATCH], out[QS_LUT_BATCH], sv[QS_LUT_BATCH / 16];
    qs_lut_gp gp[QS_LUT_BATCH / 16];
    int32_t b, special = 0;
    int64_t j;
    for (b = 0; b < nb; b++) {
        float *bb = buf + b * n, *yb = ybuf + b * n;
        const uint32_t amax = fast_load_amax(xp + b * n * es, NULL, 0, n, bb, dt, 0, 0, 0u);
        qs_lut_gp p;
        if (amax >= QS_F32_INF_BITS) {
            p.mode = QS_GP_NAN;
            p.s = 0.0f;
            p.zp = 0.0f;
        } else {
            p = qs_lut_params(lt, g, qs_u2f(amax), 0.0f, 0.0f);
        }
        gp[b] = p;
        special |= p.mode != QS_GP_QUANT;
        if (p.mode == QS_GP_QUANT) fast_div(g, &p, bb, yb, n, pow2, 0);
        else for (j = 0; j < n; j++) yb[j] = 0.0f;
        sv[b] = p.s;
    }
    core_call(sp, ybuf, abuf, m);
    if (pow2) QS_FINAL_VCALL(1);
    else QS_FINAL_VCALL(0);
    if (special) /* lut_group's outputs of a NaN or zero group */
        for (b = 0; b < nb; b++)
            if (gp[b].mode != QS_GP_QUANT)
                for (j = 0; j < n; j++) out[b * n + j] = gp[b].mode == QS_GP_NAN ? qs_qnan() : 0.0f;
    /* finite or qs_qnan, which the NaN-less bfloat16 rounding keeps a NaN */
    for (j = 0; j < m; j++) qs_store_bits(yp, j, dt, qs_dtype_bits(out[j], dt, 0));
}

/* Units [u0, u1). (Group sizes 32 and 128 used to be literals here; once the AVX2 and baseline loops vectorized
   they made this file 1.5x as long to compile, and quant_nm, where the time goes, runs on a length at run time
   anyway.) */
QS_ALWAYS_INLINE void lut_units(const qs_job *jb, int64_t u0, int64_t u1, const int32_t dt, const int32_t mm,
                                const int32_t pow2, const int32_t f16) {
    lut_split sp[QS_LUT_MAX_CANDIDATES];
    qs_unit c = unit_first(jb, u0);
    int64_t u;
    lut_splits(jb->lut, sp);
    if (mm == QS_MASK_NONE && !f16 && lut_batchable(jb)) {
        const int64_t n = jb->group;
        const int32_t flat = qs_runs_cross_rows(jb, n, dt);
        const int32_t most = (int32_t)(QS_LUT_BATCH / n);
        while (u0 < u1) {
            const qs_unit c1 = c;
            int32_t nb = 0;
            for (; u0 < u1 && nb < most && c.n == n && (flat || c.row == c1.row); u0++, unit_next(jb, &c), nb++) {}
            if (nb > 0) {
                lut_batch(jb, sp, &c1, nb, n, dt, pow2);
            } else { /* a shorter last group of a row */
                lut_group(jb, sp, c.row, c.c0, c.n, u0 % jb->units_per_row, dt, mm, pow2, f16);
                u0++;
                unit_next(jb, &c);
            }
        }
        return;
    }
    for (u = u0; u < u1; u++, unit_next(jb, &c))
        lut_group(jb, sp, c.row, c.c0, c.n, u % jb->units_per_row, dt, mm, pow2, f16);
}

#define QS_LUT_MM(DT, POW2, F16)                                                                  \
    do {                                                                                          \
        if (jb->mask_mode == QS_MASK_NONE) lut_units(jb, u0, u1, DT, QS_MASK_NONE, POW2, F16);  \
        else if (jb->mask_mode == QS_MASK_BEFORE) lut_units(jb, u0, u1, DT, QS_MASK_BEFORE, POW2, F16); \
        else lut_units(jb, u0, u1, DT, QS_MASK_AFTER, POW2, F16);                              \
    } while (0)
#ifdef QS_LEAN /* qs_cpu.h: one instantiation per dtype */
#define QS_LUT_DT(DT) \
    lut_units(jb, u0, u1, DT, jb->mask_mode, jb->lut->scale == QS_LUT_SCALE_POW2, jb->lut->f16)
QS_CLONES void qs_run_lut(const qs_job *jb, int64_t u0, int64_t u1) { QS_DISPATCH_DT(QS_LUT_DT) }
#else
/* One function (with its SIMD clones) per dtype, scale and profile, each instantiating the mask modes: as one
   function, the 108 instantiations took the compiler's loop-invariant motion over 20 minutes once
   the AVX2 and baseline loops vectorized (its cost grows faster than the function). */
#define QS_LUT_FN(NAME, DT, POW2, F16) \
    static QS_CLONES void NAME(const qs_job *jb, int64_t u0, int64_t u1) { QS_LUT_MM(DT, POW2, F16); }
#define QS_LUT_FNS(SUFFIX, DT)                          \
    QS_LUT_FN(lut_##SUFFIX##_pow2_f16, DT, 1, 1)        \
    QS_LUT_FN(lut_##SUFFIX##_f16, DT, 0, 1)             \
    QS_LUT_FN(lut_##SUFFIX##_pow2, DT, 1, 0)            \
    QS_LUT_FN(lut_##SUFFIX, DT, 0, 0)
QS_LUT_FNS(f32, QS_DTYPE_F32)
QS_LUT_FNS(f16, QS_DTYPE_F16)
QS_LUT_FNS(bf16, QS_DTYPE_BF16)
#define QS_LUT_CALL(SUFFIX)                                                          \
    do {                                                                             \
        const int32_t pow2 = jb->lut->scale == QS_LUT_SCALE_POW2;                    \
        if (jb->lut->f16 && pow2) lut_##SUFFIX##_pow2_f16(jb, u0, u1);               \
        else if (jb->lut->f16) lut_##SUFFIX##_f16(jb, u0, u1);                       \
        else if (pow2) lut_##SUFFIX##_pow2(jb, u0, u1);                              \
        else lut_##SUFFIX(jb, u0, u1);                                               \
    } while (0)

void qs_run_lut(const qs_job *jb, int64_t u0, int64_t u1) {
    switch (jb->dtype) {
    case QS_DTYPE_F32: QS_LUT_CALL(f32); break;
    case QS_DTYPE_F16: QS_LUT_CALL(f16); break;
    default: QS_LUT_CALL(bf16); break;
    }
}
#endif
