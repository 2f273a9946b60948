/* qs_quant_int_full.c -- the CPU fake-quantization kernels of QS_FAMILY_INT_FULL (qs_quant_impl.h). */
#include "qs_quant_impl.h"

QS_DEFINE_RUN(qs_run_int_full, QS_FAMILY_INT_FULL)
