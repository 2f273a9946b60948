/*
 * qs_common.c -- library facts: ABI version, struct sizes, status messages, capabilities, the format table.
 */
#include <stddef.h>

#include "include/qsparse.h"
#include "qs_format_table.h"
#include "qs_status.h"

/* Pin the layouts that Python mirrors with ctypes (qsparse/_lib.py): a change here must bump QS_ABI_VERSION. */
QS_STATIC_ASSERT(sizeof(qs_quant_params) == 64, "qs_quant_params layout");
QS_STATIC_ASSERT(offsetof(qs_quant_params, group_size) == 8, "qs_quant_params.group_size offset");
QS_STATIC_ASSERT(offsetof(qs_quant_params, seed) == 16, "qs_quant_params.seed offset");
QS_STATIC_ASSERT(offsetof(qs_quant_params, saturate) == 24, "qs_quant_params.saturate offset");
QS_STATIC_ASSERT(offsetof(qs_quant_params, observer) == 32, "qs_quant_params.observer offset");
QS_STATIC_ASSERT(offsetof(qs_quant_params, mse_norm) == 44, "qs_quant_params.mse_norm offset");
QS_STATIC_ASSERT(offsetof(qs_quant_params, compat) == 48, "qs_quant_params.compat offset");
QS_STATIC_ASSERT(offsetof(qs_quant_params, reserved) == 56, "qs_quant_params.reserved offset");
QS_STATIC_ASSERT(offsetof(qs_format_info, default_group) == 48, "qs_format_info.default_group offset");
QS_STATIC_ASSERT(offsetof(qs_format_info, max_normal) == 64, "qs_format_info.max_normal offset");
QS_STATIC_ASSERT(offsetof(qs_format_info, default_scale_mode) == 88, "qs_format_info.default_scale_mode offset");
QS_STATIC_ASSERT(sizeof(qs_format_info) == 96, "qs_format_info layout");
QS_STATIC_ASSERT(offsetof(qs_quant_params, scale_mode) == 28, "qs_quant_params.scale_mode offset");

int32_t qs_abi_version(void) { return QS_ABI_VERSION; }

int64_t qs_sizeof_format_info(void) { return (int64_t)sizeof(qs_format_info); }

int64_t qs_sizeof_quant_params(void) { return (int64_t)sizeof(qs_quant_params); }

const char *qs_status_string(int32_t status) { return qs_status_message(status); }

uint32_t qs_capabilities(void) {
#ifdef _OPENMP
    return QS_CAP_OPENMP;
#else
    return 0u;
#endif
}

int32_t qs_format_count(void) { return QS_FORMAT_COUNT; }

int32_t qs_format_get(int32_t index, qs_format_info *out) {
    if (index < 0 || index >= QS_FORMAT_COUNT) return QS_ERR_INVALID_FORMAT;
    if (out == NULL) return QS_ERR_NULL_POINTER;
    return qs_format_fill(index, out);
}

int32_t qs_format_grid(int32_t format, int32_t candidate, const char **name, float *values, int32_t capacity,
                       int32_t *count) {
    const qs_lut_set *set;
    int32_t i, n;
    if (format < 0 || format >= QS_FORMAT_COUNT) return QS_ERR_INVALID_FORMAT;
    if (qs_format_rows[format].family != QS_FAMILY_LUT) return QS_ERR_INVALID_ARGUMENT;
    set = &qs_lut_sets[qs_format_rows[format].ebits];
    if (candidate < 0 || candidate >= set->count || capacity < 0) return QS_ERR_INVALID_ARGUMENT;
    if (count == NULL || (capacity > 0 && values == NULL)) return QS_ERR_NULL_POINTER;
    n = set->grids[candidate]->n;
    for (i = 0; i < n && i < capacity; i++) values[i] = (float)set->grids[candidate]->v[i];
    *count = n;
    if (name != NULL) *name = set->grids[candidate]->name;
    return QS_OK;
}
