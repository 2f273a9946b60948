/*
 * qs_codec.c -- element codes of the small floating point formats (QS_FMT_HAS_CODES): sign | exponent | mantissa
 * packed in the low `bits` bits of a byte, as OCP and IEEE lay them out. encode(x) = the code of x rounded to
 * nearest even (qs_round_float); decode(code) = its value. Used to check the grids exhaustively and to export.
 */
#include "include/qsparse.h"
#include "qs_cpu.h"
#include "qs_format_table.h"
#include "qs_scalar.h"
#include "qs_validate.h"

static int32_t codec_format(int32_t format, qs_format_info *info) {
    QS_TRY(qs_format_fill(format, info));
    if (!(info->flags & QS_FMT_HAS_CODES)) return QS_ERR_UNSUPPORTED;
    return QS_OK;
}

static uint8_t nan_code(const qs_format_info *f) {
    uint32_t exp_all = ((1u << f->ebits) - 1u) << f->mbits;
    uint32_t mant_all = (1u << f->mbits) - 1u;
    /* IEEE: quiet NaN (mantissa MSB set); OCP E4M3: the only NaN, S.1111.111 */
    return (uint8_t)(exp_all | ((f->flags & QS_FMT_FN_NAN) ? mant_all : (1u << (f->mbits - 1))));
}

static uint8_t encode_one(const qs_format_info *f, const qs_ftraits *ft, float x) {
    float r = qs_round_float(x, ft, QS_ROUND_RNE, 0u);
    uint32_t sign = (qs_f2u(r) >> 31) << (f->bits - 1);
    uint32_t a = qs_f2u(r) & ~QS_F32_SIGN;
    uint32_t e_field, m;
    if (a > QS_F32_INF_BITS) return (uint8_t)(((qs_f2u(x) >> 31) << (f->bits - 1)) | nan_code(f));
    if (a == QS_F32_INF_BITS) return (uint8_t)(sign | (((1u << f->ebits) - 1u) << f->mbits));
    if (a < ft->min_normal_bits) {
        e_field = 0u;
        /* an exact integer: r lies on the subnormal grid (spacing sub_quantum_x64 * 2^-64) */
        m = (uint32_t)((qs_u2f(a) * 18446744073709551616.0f) * ft->sub_inv_x64);
    } else {
        e_field = (uint32_t)((int32_t)(a >> 23) - 127 + f->bias);
        m = (a >> ft->shift) & ((1u << f->mbits) - 1u);
    }
    return (uint8_t)(sign | (e_field << f->mbits) | m);
}

static float decode_one(const qs_format_info *f, uint8_t code) {
    uint32_t c = code & ((1u << f->bits) - 1u);
    uint32_t sign = (c >> (f->bits - 1)) & 1u;
    uint32_t e_field = (c >> f->mbits) & ((1u << f->ebits) - 1u);
    uint32_t m = c & ((1u << f->mbits) - 1u);
    uint32_t e_top = (1u << f->ebits) - 1u, m_top = (1u << f->mbits) - 1u;
    float v;
    if ((f->flags & QS_FMT_HAS_INF) && e_field == e_top) {
        v = m == 0u ? qs_u2f(QS_F32_INF_BITS) : qs_qnan();
    } else if ((f->flags & QS_FMT_FN_NAN) && e_field == e_top && m == m_top) {
        v = qs_qnan();
    } else if (e_field == 0u) {
        v = (float)m * qs_exp2i(f->emin - f->mbits);
    } else {
        v = (float)((1u << f->mbits) + m) * qs_exp2i((int32_t)e_field - f->bias - f->mbits);
    }
    return sign ? -v : v;
}

int32_t qs_encode_cpu(int32_t format, int32_t saturate, int64_t n, const float *x, uint8_t *codes) {
    qs_format_info info;
    qs_quant_params p;
    qs_kernel_traits kt;
    qs_fpenv env;
    int64_t i;
    if (n < 0) return QS_ERR_INVALID_SIZE;
    QS_TRY(codec_format(format, &info));
    memset(&p, 0, sizeof p);
    p.format = format;
    p.rounding = QS_ROUND_RNE;
    p.saturate = saturate;
    QS_TRY(qs_kernel_traits_make(&p, &kt));
    if (n == 0) return QS_OK;
    if (x == NULL || codes == NULL) return QS_ERR_NULL_POINTER;
    if (!(info.flags & QS_FMT_HAS_NAN)) { /* no code for NaN: refuse before writing anything */
        for (i = 0; i < n; i++)
            if (qs_isnan(x[i])) return QS_ERR_INVALID_ARGUMENT;
    }
    env = qs_fpenv_enter();
    for (i = 0; i < n; i++) codes[i] = encode_one(&info, &kt.ft, x[i]);
    qs_fpenv_leave(env);
    return QS_OK;
}

int32_t qs_decode_cpu(int32_t format, int64_t n, const uint8_t *codes, float *x) {
    qs_format_info info;
    qs_fpenv env;
    int64_t i;
    if (n < 0) return QS_ERR_INVALID_SIZE;
    QS_TRY(codec_format(format, &info));
    if (n == 0) return QS_OK;
    if (x == NULL || codes == NULL) return QS_ERR_NULL_POINTER;
    env = qs_fpenv_enter();
    for (i = 0; i < n; i++) x[i] = decode_one(&info, codes[i]);
    qs_fpenv_leave(env);
    return QS_OK;
}
