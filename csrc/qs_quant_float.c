/* qs_quant_float.c -- the CPU fake-quantization kernels of QS_FAMILY_FLOAT (qs_quant_impl.h). */
#include "qs_quant_impl.h"

QS_DEFINE_RUN(qs_run_float, QS_FAMILY_FLOAT)
