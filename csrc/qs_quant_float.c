/* qs_quant_float.c -- the CPU fake-quantization kernels of QS_FAMILY_FLOAT (qs_quant_impl.h): element-wise formats,
   whose units are always spans. */
#include "qs_quant_impl.h"

QS_DEFINE_RUN_ELEMENTWISE(qs_run_float, QS_FAMILY_FLOAT)
