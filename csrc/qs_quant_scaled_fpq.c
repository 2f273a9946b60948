/* qs_quant_scaled_fpq.c -- the CPU fake-quantization kernels of the fpquant profile's QS_FAMILY_SCALED_FPQ
   (qs_quant_impl.h). */
#include "qs_quant_impl.h"

QS_DEFINE_RUN(qs_run_scaled_fpq, QS_FAMILY_SCALED_FPQ)
