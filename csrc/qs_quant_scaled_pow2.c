/* qs_quant_scaled_pow2.c -- the CPU fake-quantization kernels of QS_FAMILY_SCALED_POW2, the power-of-two-scale
   variant of QS_FAMILY_SCALED (a multiplication per element; qs_quant_impl.h). */
#include "qs_quant_impl.h"

QS_DEFINE_RUN(qs_run_scaled_pow2, QS_FAMILY_SCALED_POW2)
