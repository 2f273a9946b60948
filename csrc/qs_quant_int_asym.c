/* qs_quant_int_asym.c -- the CPU fake-quantization kernels of QS_FAMILY_INT_ASYM (qs_quant_impl.h). */
#include "qs_quant_impl.h"

QS_DEFINE_RUN(qs_run_int_asym, QS_FAMILY_INT_ASYM)
