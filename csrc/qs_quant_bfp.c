/* qs_quant_bfp.c -- the CPU fake-quantization kernels of QS_FAMILY_BFP (qs_quant_impl.h). */
#include "qs_quant_impl.h"

QS_DEFINE_RUN(qs_run_bfp, QS_FAMILY_BFP)
