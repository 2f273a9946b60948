/* qs_quant_llmq.c -- the CPU fake-quantization kernels of QS_FAMILY_LLMQ (qs_quant_impl.h): llm-mixed-q's log,
   block log, denormalized and block minifloats, and the llm-mixed-q profile of the minifloats and bfp. A log2 per
   element: these loops do not vectorize, so one instantiation per dtype serves (QS_DEFINE_RUN_SCALAR). */
#include "qs_quant_impl.h"

QS_DEFINE_RUN_SCALAR(qs_run_llmq, QS_FAMILY_LLMQ)
