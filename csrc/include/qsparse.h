/*
 * qsparse.h -- the public C interface of the qsparse kernel libraries.
 *
 * Two shared libraries export this interface: the CPU library (C99 + OpenMP, built from csrc/) and the CUDA
 * library (built from cuda/). Neither links Python or torch; Python reaches both through ctypes (qsparse/_lib.py).
 *
 * Conventions, for every entry point:
 *   - Tensors are row-major 2-D views: `rows` x `cols` elements, the last dimension contiguous, consecutive rows
 *     `*_stride` elements apart (cols <= stride), sizes and strides int64_t, the view's extent
 *     (rows-1)*stride + cols at most INT64_MAX/4 elements. Groups and blocks run along a row.
 *   - The return value is a qs_status: 0 (QS_OK) on success; qs_status_string() gives the message. No entry point
 *     exits, aborts, prints or keeps global mutable state; a failed call writes nothing to its outputs.
 *   - Arguments are validated in a fixed order: parameter structs, sizes, strides, enums, then pointers (details in
 *     csrc/qs_validate.h). Pointers may be NULL only when the tensor they describe is empty (rows == 0 or
 *     cols == 0); a pointer (and stride) the call does not use, such as the mask with QS_MASK_NONE, is not read.
 *   - Results do not depend on the thread count (CPU) or the launch configuration (CUDA), and the CPU and CUDA
 *     libraries give bit-identical results: both use the scalar format math of csrc/qs_scalar.h.
 *   - `num_threads` <= 0 means the OpenMP default; more than 4096 is QS_ERR_INVALID_ARGUMENT; the kernels never
 *     start more threads than there are processors. CUDA entry points take the caller's device index and stream
 *     (a cudaStream_t passed as void*) and return once the work is enqueued.
 */
#ifndef QSPARSE_H
#define QSPARSE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define QS_API __declspec(dllexport)
#else
#define QS_API __attribute__((visibility("default")))
#endif

/* Bumped whenever a prototype, struct layout, enum value or format id changes; Python refuses a mismatch. */
#define QS_ABI_VERSION 6

typedef enum qs_status {
    QS_OK = 0,
    QS_ERR_NULL_POINTER = 1,     /* a required pointer is NULL */
    QS_ERR_INVALID_SIZE = 2,     /* rows or cols negative, rows * cols overflows int64, or the view's extent
                                    (rows-1)*stride + cols exceeds INT64_MAX/4 */
    QS_ERR_INVALID_STRIDE = 3,   /* a row stride smaller than cols or larger than INT64_MAX/4 */
    QS_ERR_INVALID_FORMAT = 4,   /* unknown format id */
    QS_ERR_INVALID_GROUP = 5,    /* group/block size not allowed for the format, or an N:M group out of range */
    QS_ERR_INVALID_ROUNDING = 6, /* unknown rounding mode */
    QS_ERR_INVALID_DTYPE = 7,    /* unknown storage dtype */
    QS_ERR_INVALID_ARGUMENT = 8, /* another argument out of range: keep > group, prune count > n, reserved != 0 ... */
    QS_ERR_UNSUPPORTED = 9,      /* a valid combination this build does not implement */
    QS_ERR_NO_MEMORY = 10,       /* a scratch allocation failed */
    QS_ERR_CUDA = 11,            /* a CUDA runtime call failed (CUDA library only) */
    QS_STATUS_COUNT_ = 12
} qs_status;

/* Storage dtypes of the tensors the kernels read and write. Output dtype always equals input dtype. */
typedef enum qs_dtype {
    QS_DTYPE_F32 = 0,
    QS_DTYPE_F16 = 1,
    QS_DTYPE_BF16 = 2,
    QS_DTYPE_COUNT_ = 3
} qs_dtype;

/* Rounding of a scaled value onto the integer grid of a format (FORMATS.md, conventions). */
typedef enum qs_rounding {
    QS_ROUND_RNE = 0,        /* round half to even */
    QS_ROUND_STOCHASTIC = 1, /* floor(v + u) (exactly), u = k * 2^-24 from qs_scalar.h's counter-based hash of
                                (seed, row * cols + col): the same on any thread count and on CPU and GPU */
    QS_ROUND_HALF_AWAY = 2,  /* sign(v) * floor(|v| + 0.5), the sum in binary32 (microxcaling's "nearest") */
    QS_ROUND_TIES_LOWER = 3, /* nearest; a tie goes to the lower value, toward -Inf (BitMoD's thresholds) */
    QS_ROUNDING_COUNT_ = 4
} qs_rounding;

/* Format families: how a format maps a group of values onto its grid. */
typedef enum qs_family {
    QS_FAMILY_INT_SYM = 0,  /* int{b}: s = amax/(2^(b-1)-1), q in [-(2^(b-1)-1), 2^(b-1)-1] */
    QS_FAMILY_INT_FULL = 1, /* int{b}_full: s = amax/(2^(b-1)-0.5), q in [-2^(b-1), 2^(b-1)-1] */
    QS_FAMILY_INT_ASYM = 2, /* int{b}_asym: GPTQ's asymmetric min/max quantizer with an integer zero point */
    QS_FAMILY_BFP = 3,      /* bfp{w}: HBFP, one unbounded shared exponent per block, w-1 magnitude bits */
    QS_FAMILY_FLOAT = 4,    /* element-wise floating point cast (fp16, bf16, fp8_e4m3, fp8_e5m2, fp{w}_e{E}m{M}) */
    QS_FAMILY_SCALED = 5,   /* a float element grid with a per-group scale (qs_scale_mode): OCP MX, NVFP4, and the
                               minifloat rows with a group scale */
    QS_FAMILY_LUT = 6,      /* a lookup grid of values in units of a per-group scale, or several grids of which each
                               group takes the best (ANT, BitMoD: flint4, fp4_er_pos, mixed_bitmod4, mx_fp4, ...) */
    QS_FAMILY_LLMQ = 7,     /* llm-mixed-q's quantizers (FORMATS.md sections 3 and 6): the exponent-first ones (the
                               exponent of each element from a binary32 log2, then its mantissa): log{w} and
                               dmf{w}_e{E}m{M} element-wise, bl{w} and bmf{w}_e{E}m{M} with an exponent bias per
                               block; and its fixed point `integer`, fixed{w}_f0 (QS_FMT_FIXED_POINT, element-wise,
                               fraction width from qs_quant_params.frac_bits) */
    QS_FAMILY_COUNT_ = 8
} qs_family;
/* Kernel-internal family (never in qs_format_info): QS_FAMILY_SCALED with a power-of-two scale, which divides by
   multiplying with the exact reciprocal. */
#define QS_FAMILY_SCALED_POW2 QS_FAMILY_COUNT_
/* Kernel-internal family: QS_FAMILY_SCALED under the fpquant profile (its scales and its E2M1 rounding), apart so
   that the element loops of the other scaled formats hold no test of the profile and vectorize. */
#define QS_FAMILY_SCALED_FPQ (QS_FAMILY_COUNT_ + 1)

/* How a group's scale is stored, for bits-per-element accounting. */
typedef enum qs_scale_kind {
    QS_SCALE_NONE = 0,       /* element-wise format, no scale */
    QS_SCALE_FLOAT = 1,      /* one floating point scale (and for asym an integer zero point) per group */
    QS_SCALE_SHARED_EXP = 2, /* one shared power-of-two exponent per block (HBFP, OCP MX's E8M0) */
    QS_SCALE_E4M3 = 3        /* one E4M3 scale per block and one binary32 scale per tensor (NVFP4) */
} qs_scale_kind;

/* How a QS_FAMILY_SCALED group finds its scale from its max |x| = amax (FORMATS.md sections 3-5). Every mode
   quantizes x / scale onto the element grid with saturation and outputs q * scale in binary32. */
typedef enum qs_scale_mode {
    QS_SCALE_MODE_DEFAULT = 0, /* the format's own: none for element rows, floor for MX rows, e4m3 for nvfp4 */
    QS_SCALE_MODE_NONE = 1,    /* element-wise, no scale (element rows only) */
    QS_SCALE_MODE_AMAX = 2,    /* binary32 scale amax / max_elem */
    QS_SCALE_MODE_FLOOR = 3,   /* E8M0 2^E, E = floor(log2 amax) - emax_elem, clamped to [-127, 127] (OCP MX) */
    QS_SCALE_MODE_CEIL = 4,    /* E8M0, E = ceil(log2 amax) - emax_elem */
    QS_SCALE_MODE_EVEN = 5,    /* E8M0, amax first rounded to the element's mantissa width, then floor */
    QS_SCALE_MODE_RCEIL = 6,   /* E8M0 2^E, E = ceil(log2(amax * (1 / max_elem))) (cuBLAS, torchao RCEIL) */
    QS_SCALE_MODE_E4M3 = 7,    /* NVFP4: per tensor s_t = amax_tensor / (max_elem * 448), per block
                                  S = e4m3(clamp(amax / max_elem / s_t, 2^-6, 448)), scale s_t * S */
    QS_SCALE_MODE_E4M3_BLOCK = 8, /* NVFP4 without the tensor scale: S = e4m3(clamp(amax / max_elem, 2^-6, 448)) */
    QS_SCALE_MODE_COUNT_ = 9
} qs_scale_mode;

/* qs_format_info.flags */
#define QS_FMT_HAS_INF        (1u << 0) /* the element grid has +-Inf codes */
#define QS_FMT_HAS_NAN        (1u << 1) /* the element grid has NaN codes */
#define QS_FMT_HAS_SUBNORMALS (1u << 2) /* the element grid has subnormal values */
#define QS_FMT_SATURATES      (1u << 3) /* overflow saturates to +-max by default (else Inf, or NaN without Inf) */
#define QS_FMT_HAS_CODES      (1u << 4) /* element format of <= 8 bits: qs_encode/qs_decode accept it */
#define QS_FMT_FN_NAN         (1u << 5) /* only the all-ones exponent-and-mantissa code is NaN (OCP E4M3) */
#define QS_FMT_FIXED_POINT    (1u << 6) /* FLOAT, SCALED: the element grid is k * 2^-mbits, |k| <= 2^(mbits+1) - 1
                                           (MXINT8); LLMQ: llm-mixed-q's fixed point k * 2^-f, -2^(bits-1) <= k <=
                                           2^(bits-1) - 1, f = qs_quant_params.frac_bits (the row itself: f = 0) */
#define QS_FMT_LOG            (1u << 7) /* QS_FAMILY_LLMQ: powers of two only (log{w}, bl{w}) */
#define QS_FMT_DENORM         (1u << 8) /* QS_FAMILY_LLMQ: mantissas without an implicit bit (dmf) */
#define QS_FMT_BLOCK_BIAS     (1u << 9) /* QS_FAMILY_LLMQ: one 8-bit exponent bias per block (bl, bmf) */

/* group_size values with a special meaning (otherwise > 0: groups of that many consecutive elements of a row;
   a row whose length is not a multiple forms a partial last group). */
#define QS_GROUP_ROW 0     /* one group per row (per channel for a [out, in] weight); element formats use this */
#define QS_GROUP_TENSOR (-1) /* one group for the whole tensor */

/* One row of the format table. Every number is derived from (family, bits, ebits, mbits, flags) by the table. */
typedef struct qs_format_info {
    const char *name;      /* canonical name, e.g. "int4_asym", "bfp8", "fp8_e4m3" (static storage) */
    int32_t id;            /* the value to put in qs_quant_params.format */
    int32_t family;        /* qs_family */
    int32_t bits;          /* bits per element, sign included, scale excluded */
    int32_t ebits;         /* exponent bits of the element (FLOAT, SCALED), else 0 */
    int32_t mbits;         /* explicit mantissa bits (FLOAT, SCALED), magnitude bits (BFP: bits-1; INT: bits-1) */
    int32_t bias;          /* exponent bias of the element (FLOAT, SCALED), else 0 */
    int32_t emin;          /* unbiased exponent of the element's smallest normal (FLOAT, SCALED), else 0 */
    int32_t emax;          /* unbiased exponent of the element's largest finite value (FLOAT, SCALED), else 0 */
    int32_t scale_kind;    /* qs_scale_kind */
    uint32_t flags;        /* QS_FMT_* */
    int64_t default_group; /* group size used when the caller has no preference: > 0 or QS_GROUP_ROW */
    int32_t qmin;          /* integer families: smallest code value (asym: 0); BFP: -(2^mbits - 1) */
    int32_t qmax;          /* integer families: largest code value; BFP: 2^mbits - 1 */
    double max_normal;     /* FLOAT, SCALED: largest finite element magnitude; INT/BFP: qmax (units of the scale) */
    double min_normal;     /* FLOAT, SCALED: smallest normal element magnitude; INT/BFP: 1 */
    double min_subnormal;  /* FLOAT, SCALED: smallest subnormal magnitude (min_normal when none); INT/BFP: 1 */
    int32_t default_scale_mode; /* qs_scale_mode that QS_SCALE_MODE_DEFAULT stands for; QS_FAMILY_LUT: AMAX
                                   (s = amax / max|grid|) or FLOOR (BitMoD's MX: s = 2^floor(log2 amax) * 2 / max) */
    int32_t candidates;    /* QS_FAMILY_LUT: grids a group chooses from (qs_format_grid), else 0 */
} qs_format_info;

/* Parameters of one fake-quantization. All reserved fields must be zero (room to grow without an ABI break). */
typedef struct qs_quant_params {
    int32_t format;      /* qs_format_info.id */
    int32_t rounding;    /* qs_rounding */
    int64_t group_size;  /* > 0, QS_GROUP_ROW or QS_GROUP_TENSOR */
    uint64_t seed;       /* key of the stochastic rounding stream */
    int32_t saturate;    /* element-wise float formats: -1 the format's default, 0 overflow to Inf (NaN without
                            Inf), 1 clamp; scaled formats always saturate (-1 or 1) */
    int32_t scale_mode;  /* qs_scale_mode: element rows accept NONE (their default) and every scaled mode when
                            they have codes (<= 8 bits); MX and NVFP4 rows every scaled mode; INT and BFP rows
                            only DEFAULT */
    int32_t observer;    /* qs_observer */
    int32_t mse_grid;    /* QS_OBSERVER_MSE: candidates p = 1 - i / grid; 0 means 100 (else 1 .. 100000) */
    float mse_maxshrink; /* QS_OBSERVER_MSE: i < (int)(maxshrink * grid); 0 means 0.8 (else in (0, 1]) */
    float mse_norm;      /* QS_OBSERVER_MSE: error = sum |q(x) - x|^norm; 0 means 2.4 (else in (0, 16]) */
    int32_t compat;      /* qs_compat: reproduce another system's arithmetic where it differs from qsparse's */
    int32_t frac_bits;   /* fixed-point rows (QS_FAMILY_LLMQ with QS_FMT_FIXED_POINT): the fraction width f,
                            QS_FIXED_FRAC_MIN .. QS_FIXED_FRAC_MAX; every other format: 0 */
    int64_t reserved[1];
} qs_quant_params;

/* The fraction widths of the fixed-point rows: x_hat = clamp(round(x * 2^f), -2^(w-1), 2^(w-1) - 1) / 2^f is exact
   binary32 arithmetic for every f in this range (2^f and every grid value k * 2^-f, |k| <= 2^15, are normal
   binary32 numbers). */
#define QS_FIXED_FRAC_MIN (-16)
#define QS_FIXED_FRAC_MAX 32

/* Compatibility profiles (FORMATS.md, Profiles): the arithmetic of one source system, bit for bit. */
typedef enum qs_compat {
    QS_COMPAT_NONE = 0,         /* qsparse's definitions */
    QS_COMPAT_BITMOD = 1,       /* BitMoD (quant_weight.py): binary16 arithmetic, scales clamped to [1e-5, 1e4];
                                   int{b} (RNE), int{b}_asym (min/max not clipped at 0), minifloats of <= 6 bits with a
                                   group scale (ties to the lower value), and the QS_FAMILY_LUT formats; rounding RNE
                                   (the format's own) */
    QS_COMPAT_MICROXCALING = 2, /* microxcaling (mx_ops.py): E8M0 floor scales from the binary32 log2 of the block max
                                   (a max just below 2^k, k >= 2, takes exponent k); scaled formats with FLOOR only */
    QS_COMPAT_LLMQ = 3,         /* llm-mixed-q (its quantizers package), in its binary32 arithmetic: minifloats fp{w}_e{E}m{M}
                                   element-wise as its minifloat_ieee (all exponent codes finite, a mantissa that
                                   rounds up to 2 clamped), bfp{w} as its MSFP block_fp (8-bit shared exponent
                                   ceil(log2 max)), dmf, bmf, log and bl exactly; its output blend: |x| <= 1e-8 passes
                                   through, -0.0 becomes +0.0, Inf becomes NaN (dmf, bmf, minifloats, bfp); rounding
                                   RNE only */
    QS_COMPAT_FPQUANT = 4,      /* IST-DASLab/FP-Quant (fp_quant/module/triton/mxfp4.py, nvfp4.py, without the rotation):
                                   mxfp4: s = 2^(floor(log2 max(amax, 2^-126)) - 2) / 0.75 (binary32, not a power of
                                   two), y = x / s, output q * s; nvfp4: g = 2688 / amax_tensor, S = e4m3(g * amax / 6),
                                   y = x * g / S, output q * S / g; q by its thresholds (nearest, a tie toward zero)
                                   and the sign of y > 0 (+0 gives -0); rounding RNE (standing for that rule) */
    QS_COMPAT_COUNT_ = 5
} qs_compat;

/* How a group's range is chosen (FORMATS.md section 1). The mse fields of qs_quant_params must be 0 with
   QS_OBSERVER_MINMAX. */
typedef enum qs_observer {
    QS_OBSERVER_MINMAX = 0, /* the group's min/max (or max |x|) */
    QS_OBSERVER_MSE = 1,    /* GPTQ's shrink search: for i < maxshrink * grid, shrink the range by p = 1 - i/grid
                               (in binary32), quantize the group (RNE), error = sum |q - x|^norm in double; keep the
                               first p with the smallest error. INT formats and scaled formats with a binary32 or
                               E4M3 scale (amax, e4m3, e4m3_block); CPU library only (the CUDA library returns
                               QS_ERR_UNSUPPORTED) */
    QS_OBSERVER_COUNT_ = 2
} qs_observer;

/* Where a mask applies in a fused fake-quantization (the seed's `first:` key). Masked-out positions are +0.0. */
typedef enum qs_mask_mode {
    QS_MASK_NONE = 0,   /* no mask; the mask pointer is ignored */
    QS_MASK_BEFORE = 1, /* sparsify, then quantize: group statistics see the zeros ("first: s") */
    QS_MASK_AFTER = 2,  /* quantize, then sparsify: statistics see the dense values */
    QS_MASK_MODE_COUNT_ = 3
} qs_mask_mode;

/* Largest N:M group the mask kernels accept. */
#define QS_NM_MAX_GROUP 256

/* ---- library facts ------------------------------------------------------------------------------------------- */

/* QS_ABI_VERSION of the library actually loaded. */
QS_API int32_t qs_abi_version(void);
/* sizeof the structs above as compiled into the library (Python checks them against its ctypes mirrors). */
QS_API int64_t qs_sizeof_format_info(void);
QS_API int64_t qs_sizeof_quant_params(void);
/* Static English message for a status; "unknown status" for values outside qs_status. Never NULL. */
QS_API const char *qs_status_string(int32_t status);

#define QS_CAP_OPENMP (1u << 0) /* CPU library: built with OpenMP */
#define QS_CAP_CUDA   (1u << 1) /* CUDA library */
QS_API uint32_t qs_capabilities(void);

/* ---- the format table ---------------------------------------------------------------------------------------- */

QS_API int32_t qs_format_count(void);
/* Copies row `index` (0 <= index < qs_format_count(); index == id) into *out. */
QS_API int32_t qs_format_get(int32_t index, qs_format_info *out);

/* ---- CPU kernels ---------------------------------------------------------------------------------------------- */

/* y = fake_quant(x) in groups along each row; y may equal x (in place) but must not overlap it otherwise.
   mask (uint8 0/1, row stride mask_stride) is read only when mask_mode != QS_MASK_NONE. */
QS_API int32_t qs_fake_quant_cpu(const qs_quant_params *params, int32_t dtype, int64_t rows, int64_t cols,
                                 const void *x, int64_t x_stride, void *y, int64_t y_stride,
                                 const uint8_t *mask, int64_t mask_stride, int32_t mask_mode,
                                 int32_t num_threads);

/* mask = keep the `keep` largest scores of every `group` consecutive entries of a row (1 <= group <=
   QS_NM_MAX_GROUP, 0 <= keep <= group). Ties go to the lowest index; NaN ranks above +Inf; -0.0 equals +0.0.
   A partial last group of r < group entries keeps min(keep, r) (as if padded with scores below every value). */
QS_API int32_t qs_nm_mask_cpu(int32_t dtype, int64_t rows, int64_t cols, const void *scores, int64_t s_stride,
                              uint8_t *mask, int64_t m_stride, int32_t keep, int32_t group, int32_t num_threads);

/* mask = prune the `prune` smallest |w| (per tensor, or per row when per_row != 0, then 0 <= prune <= cols)
   and keep the rest. Ties keep the lowest index (in row-major order); NaN counts as the largest magnitude. */
QS_API int32_t qs_magnitude_mask_cpu(int32_t dtype, int64_t rows, int64_t cols, const void *w, int64_t w_stride,
                                     uint8_t *mask, int64_t m_stride, int64_t prune, int32_t per_row,
                                     int32_t num_threads);

/* Grid `candidate` (0 <= candidate < qs_format_info.candidates) of a QS_FAMILY_LUT format: its name (static
   storage) and its values in units of the scale, ascending; *count receives the number of values (at most 64), of
   which min(count, capacity) are written. */
QS_API int32_t qs_format_grid(int32_t format, int32_t candidate, const char **name, float *values, int32_t capacity,
                              int32_t *count);

/* The grid each group of a QS_FAMILY_LUT fake-quantization takes (the same call as qs_fake_quant_cpu, with the
   same groups, masks and choices): choice[row * choice_stride + k] for group k of a row, k < ceil(cols / G)
   (one group per row for QS_GROUP_ROW). QS_LUT_NO_CHOICE marks a group that takes none (bitmod profile: every
   error >= 1e3, outputs zero); a group of zeros or with NaN takes 0. */
#define QS_LUT_NO_CHOICE 255
QS_API int32_t qs_group_choice_cpu(const qs_quant_params *params, int32_t dtype, int64_t rows, int64_t cols,
                                   const void *x, int64_t x_stride, const uint8_t *mask, int64_t mask_stride,
                                   int32_t mask_mode, uint8_t *choice, int64_t choice_stride, int32_t num_threads);

/* Element codes of a QS_FMT_HAS_CODES format: codes[i] = the code of x[i] rounded to nearest-even (saturate as
   in qs_quant_params), and the inverse. A NaN encodes to the format's NaN code with x's sign. */
QS_API int32_t qs_encode_cpu(int32_t format, int32_t saturate, int64_t n, const float *x, uint8_t *codes);
QS_API int32_t qs_decode_cpu(int32_t format, int64_t n, const uint8_t *codes, float *x);

/* Largest group of the Hadamard transform. */
#define QS_HADAMARD_MAX_GROUP 8192

/* y = H x / sqrt(g) on every group of g consecutive elements of each row (FORMATS.md section 8): g a power of two,
   1 <= g <= QS_HADAMARD_MAX_GROUP, dividing cols. The Walsh-Hadamard matrix in Sylvester order, normalized: an
   orthonormal, symmetric transform that is its own inverse (up to rounding). Computed in binary32 with the
   butterflies in a fixed order (strides 1, 2, ..., g/2; (a, b) -> (a + b, a - b)), then one multiplication by
   (float)(1 / sqrt(g)); the output is rounded to x's dtype. y may equal x but must not overlap it otherwise. */
QS_API int32_t qs_hadamard_cpu(int32_t dtype, int64_t rows, int64_t cols, const void *x, int64_t x_stride, void *y,
                               int64_t y_stride, int64_t group, int32_t num_threads);

/* ---- quantization parameters (qparams) ------------------------------------------------------------------------ */

/* A group's quantization parameters as one record of QS_QPARAM_WORDS int32 words, so that a fake quantization can
   be repeated with parameters fitted elsewhere (GPTQ fits them on weights that it then changes; a model keeps them
   fixed while it fine-tunes):
     word 0: bits 0-7 the group's mode (0 quantize, 1 scale 0: signed zeros, 2 not finite: NaN), bits 8-15 the grid
             a QS_FAMILY_LUT group takes (QS_LUT_NO_CHOICE: none, zeros), other bits 0;
     word 1: the binary32 bits of the scale s (the multiplier of the element grid, the NVFP4 tensor scale included;
             BFP: the interval);
     word 2: the binary32 bits of the zero point (int{b}_asym and asymmetric grids; BFP: the clamp bound), else 0;
     word 3: the binary32 bits of 1 / s when s is a power of two (BFP, E8M0 scales), else 0.
   Records of one row follow each other: record k of row r at qp[r * qp_stride + QS_QPARAM_WORDS * k], for group k
   < ceil(cols / G) (k = 0 only for QS_GROUP_ROW); QS_GROUP_TENSOR uses one record, qp[0 .. 3]. Element-wise formats
   have no parameters: their records are zeros and are not read. */
#define QS_QPARAM_WORDS 4

/* The records of every group of the fake quantization qs_fake_quant_cpu would compute (same arguments, observer
   and mask included), without its output. qp_stride >= QS_QPARAM_WORDS * groups per row (any value for
   QS_GROUP_TENSOR). tensor_scale: NULL, or the NVFP4 tensor scale s_t (QS_SCALE_MODE_E4M3) to use instead of this
   tensor's own, so that windows of a weight can be fitted under the whole weight's tensor scale. */
QS_API int32_t qs_quant_qparams_cpu(const qs_quant_params *params, int32_t dtype, int64_t rows, int64_t cols,
                                    const void *x, int64_t x_stride, const uint8_t *mask, int64_t mask_stride,
                                    int32_t mask_mode, const float *tensor_scale, int32_t *qp, int64_t qp_stride,
                                    int32_t num_threads);

/* qs_fake_quant_cpu with every group's parameters read from records (qs_quant_qparams_cpu's layout) instead of
   fitted: a value already on a record's grid is returned unchanged. Stochastic rounding draws as in
   qs_fake_quant_cpu. The observer and mse fields of params are ignored (the records hold the outcome). */
QS_API int32_t qs_fake_quant_qparams_cpu(const qs_quant_params *params, int32_t dtype, int64_t rows, int64_t cols,
                                         const void *x, int64_t x_stride, void *y, int64_t y_stride,
                                         const uint8_t *mask, int64_t mask_stride, int32_t mask_mode,
                                         const int32_t *qp, int64_t qp_stride, int32_t num_threads);

/* Largest block of qs_gptq_block_*. */
#define QS_GPTQ_MAX_BLOCK 4096

/* One block of GPTQ / SparseGPT (FORMATS.md sections 11-12): for each column i < bcols in order, every row r
       q = 0 where the mask prunes (r, i), else quantize(w[r, i]) with record slot[i] of row r (w itself when params
           is NULL),
       e = (w[r, i] - q) / hinv[i, i],   loss[r] += (w[r, i] - q)^2 / hinv[i, i]^2,
       w[r, j] -= e * hinv[i, j]  for i < j < bcols   (one rounded product, one rounded difference),
   writing q[r * q_stride + i] and err[r * e_stride + i]; every operation in binary32 except the loss (binary64).
   w: rows x bcols, element (r, i) at w[r * w_rs + i * w_cs], float32, updated in place (w[r, i] itself is left as it
   was when column i was reached). hinv: the block's bcols x bcols part of the upper Cholesky factor of H^-1,
   row-major with row stride h_stride (only i <= j is read). params: NULL (no quantization: pruning only) or a
   fake quantization with RNE, half-away or ties-lower rounding (stochastic: QS_ERR_UNSUPPORTED) whose records are
   qp (row stride qp_stride words) and slot (host memory, bcols entries, 0 <= slot[i] < qp_stride / 4); element-wise
   formats read neither. mask: NULL (dense), or rows x bcols uint8 at mask[r * m_rs + i * m_cs]: read (0 prunes)
   when keep == 0; when keep > 0 (1 <= keep <= group <= QS_NM_MAX_GROUP, bcols a multiple of group) written:
   at each column i that is a multiple of group, row r keeps the `keep` columns of i .. i + group - 1 with the
   largest w^2 / hinv[j, j]^2 on its current (updated) weights, ties to the lowest index, NaN largest (SparseGPT's
   N:M rule). loss: rows doubles, accumulated. Rows are independent: one thread per row on either library. */
QS_API int32_t qs_gptq_block_cpu(const qs_quant_params *params, int64_t rows, int64_t bcols, float *w, int64_t w_rs,
                                 int64_t w_cs, const float *hinv, int64_t h_stride, const int32_t *qp,
                                 int64_t qp_stride, const int64_t *slot, uint8_t *mask, int64_t m_rs, int64_t m_cs,
                                 int32_t keep, int32_t group, float *q, int64_t q_stride, float *err,
                                 int64_t e_stride, double *loss, int32_t num_threads);

/* ---- CUDA kernels (CUDA library only; same semantics and results as the CPU versions) ------------------------- */

QS_API int32_t qs_fake_quant_cuda(const qs_quant_params *params, int32_t dtype, int64_t rows, int64_t cols,
                                  const void *x, int64_t x_stride, void *y, int64_t y_stride,
                                  const uint8_t *mask, int64_t mask_stride, int32_t mask_mode,
                                  int32_t device, void *stream);
QS_API int32_t qs_group_choice_cuda(const qs_quant_params *params, int32_t dtype, int64_t rows, int64_t cols,
                                    const void *x, int64_t x_stride, const uint8_t *mask, int64_t mask_stride,
                                    int32_t mask_mode, uint8_t *choice, int64_t choice_stride, int32_t device,
                                    void *stream);
QS_API int32_t qs_nm_mask_cuda(int32_t dtype, int64_t rows, int64_t cols, const void *scores, int64_t s_stride,
                               uint8_t *mask, int64_t m_stride, int32_t keep, int32_t group,
                               int32_t device, void *stream);
QS_API int32_t qs_hadamard_cuda(int32_t dtype, int64_t rows, int64_t cols, const void *x, int64_t x_stride, void *y,
                                int64_t y_stride, int64_t group, int32_t device, void *stream);
QS_API int32_t qs_magnitude_mask_cuda(int32_t dtype, int64_t rows, int64_t cols, const void *w, int64_t w_stride,
                                      uint8_t *mask, int64_t m_stride, int64_t prune, int32_t per_row,
                                      int32_t device, void *stream);
/* The CUDA versions of the qparams entry points take device pointers (tensor_scale and slot: host memory).
   qs_quant_qparams_cuda fits min/max observers of every family but QS_FAMILY_LUT (others: QS_ERR_UNSUPPORTED). */
QS_API int32_t qs_quant_qparams_cuda(const qs_quant_params *params, int32_t dtype, int64_t rows, int64_t cols,
                                     const void *x, int64_t x_stride, const uint8_t *mask, int64_t mask_stride,
                                     int32_t mask_mode, const float *tensor_scale, int32_t *qp, int64_t qp_stride,
                                     int32_t device, void *stream);
QS_API int32_t qs_fake_quant_qparams_cuda(const qs_quant_params *params, int32_t dtype, int64_t rows, int64_t cols,
                                          const void *x, int64_t x_stride, void *y, int64_t y_stride,
                                          const uint8_t *mask, int64_t mask_stride, int32_t mask_mode,
                                          const int32_t *qp, int64_t qp_stride, int32_t device, void *stream);
QS_API int32_t qs_gptq_block_cuda(const qs_quant_params *params, int64_t rows, int64_t bcols, float *w, int64_t w_rs,
                                  int64_t w_cs, const float *hinv, int64_t h_stride, const int32_t *qp,
                                  int64_t qp_stride, const int64_t *slot, uint8_t *mask, int64_t m_rs, int64_t m_cs,
                                  int32_t keep, int32_t group, float *q, int64_t q_stride, float *err,
                                  int64_t e_stride, double *loss, int32_t device, void *stream);

#ifdef __cplusplus
}
#endif

#endif /* QSPARSE_H */
