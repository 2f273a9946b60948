/*
 * qs_common.c -- library facts: ABI version, struct sizes, status messages, capabilities, the format table.
 */
#include <stddef.h>

#include "include/qsparse.h"
#include "qs_format_table.h"

/* Pin the layouts that Python mirrors with ctypes (qsparse/_lib.py): a change here must bump QS_ABI_VERSION. */
QS_STATIC_ASSERT(sizeof(qs_quant_params) == 64, "qs_quant_params layout");
QS_STATIC_ASSERT(offsetof(qs_quant_params, group_size) == 8, "qs_quant_params.group_size offset");
QS_STATIC_ASSERT(offsetof(qs_quant_params, seed) == 16, "qs_quant_params.seed offset");
QS_STATIC_ASSERT(offsetof(qs_quant_params, saturate) == 24, "qs_quant_params.saturate offset");
QS_STATIC_ASSERT(offsetof(qs_quant_params, reserved) == 32, "qs_quant_params.reserved offset");
QS_STATIC_ASSERT(offsetof(qs_format_info, default_group) == 48, "qs_format_info.default_group offset");
QS_STATIC_ASSERT(offsetof(qs_format_info, max_normal) == 64, "qs_format_info.max_normal offset");
QS_STATIC_ASSERT(sizeof(qs_format_info) == 88, "qs_format_info layout");

int32_t qs_abi_version(void) { return QS_ABI_VERSION; }

int64_t qs_sizeof_format_info(void) { return (int64_t)sizeof(qs_format_info); }

int64_t qs_sizeof_quant_params(void) { return (int64_t)sizeof(qs_quant_params); }

const char *qs_status_string(int32_t status) {
    switch (status) {
    case QS_OK: return "ok";
    case QS_ERR_NULL_POINTER: return "a required pointer is NULL";
    case QS_ERR_INVALID_SIZE: return "invalid size: rows and cols must be >= 0 and the view must fit in int64";
    case QS_ERR_INVALID_STRIDE: return "invalid row stride: it must be >= cols";
    case QS_ERR_INVALID_FORMAT: return "unknown format id";
    case QS_ERR_INVALID_GROUP: return "invalid group size for this format or mask";
    case QS_ERR_INVALID_ROUNDING: return "unknown rounding mode";
    case QS_ERR_INVALID_DTYPE: return "unknown dtype: expected f32, f16 or bf16";
    case QS_ERR_INVALID_ARGUMENT: return "invalid argument (keep/group, prune count, mask mode, saturate, "
                                         "thread count or a reserved field)";
    case QS_ERR_UNSUPPORTED: return "this combination of arguments is not supported";
    case QS_ERR_NO_MEMORY: return "out of memory";
    case QS_ERR_CUDA: return "a CUDA runtime call failed";
    default: return "unknown status";
    }
}

uint32_t qs_capabilities(void) {
#ifdef _OPENMP
    return QS_CAP_OPENMP;
#else
    return 0u;
#endif
}

int32_t qs_format_count(void) { return QS_FORMAT_COUNT; }

int32_t qs_format_get(int32_t index, qs_format_info *out) {
    if (out == NULL) return QS_ERR_NULL_POINTER;
    return qs_format_fill(index, out);
}
