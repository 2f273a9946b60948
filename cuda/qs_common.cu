/*
 * qs_common.cu -- the library facts that the CUDA library exports as the CPU library does (qsparse.h, "library
 * facts"): ABI version, struct sizes, status messages (the same text, from csrc/qs_status.h) and capabilities.
 * The format table itself is read through the CPU library only.
 */
#include <stddef.h>

#include "include/qsparse.h"
#include "qs_status.h"

/* The layouts Python mirrors with ctypes, pinned here too: both libraries must agree with qsparse/_lib.py. */
static_assert(sizeof(qs_quant_params) == 64, "qs_quant_params layout");
static_assert(offsetof(qs_quant_params, seed) == 16, "qs_quant_params.seed offset");
static_assert(offsetof(qs_quant_params, scale_mode) == 28, "qs_quant_params.scale_mode offset");
static_assert(sizeof(qs_format_info) == 96, "qs_format_info layout");

int32_t qs_abi_version(void) { return QS_ABI_VERSION; }

int64_t qs_sizeof_format_info(void) { return (int64_t)sizeof(qs_format_info); }

int64_t qs_sizeof_quant_params(void) { return (int64_t)sizeof(qs_quant_params); }

const char *qs_status_string(int32_t status) { return qs_status_message(status); }

uint32_t qs_capabilities(void) { return QS_CAP_CUDA; }
