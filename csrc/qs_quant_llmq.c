/* qs_quant_llmq.c -- the CPU fake-quantization kernels of QS_FAMILY_LLMQ (qs_quant_impl.h): llm-mixed-q's log,
   block log, denormalized and block minifloats, fixed point, and the llm-mixed-q profile of the minifloats and
   bfp. One instantiation per dtype; without a mask, each quantizer's element loop is straight-line (llmq_span,
   with the exponents from qs_lq_ilog2's table) and vectorizes in the SIMD clones. */
#define QS_LLMQ_SPANS 1
#include "qs_quant_impl.h"

QS_DEFINE_RUN_LEAN(qs_run_llmq, QS_FAMILY_LLMQ)
