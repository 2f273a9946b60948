/*
 * qs_status.h -- the message of every qs_status, shared by the CPU library (qs_common.c) and the CUDA library
 * (cuda/qs_common.cu), so that both say the same thing for the same status. Static strings, never NULL.
 */
#ifndef QS_STATUS_H
#define QS_STATUS_H

#include <stdint.h>

#include "include/qsparse.h"

static inline const char *qs_status_message(int32_t status) {
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

#endif /* QS_STATUS_H */
