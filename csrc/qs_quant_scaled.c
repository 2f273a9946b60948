/* qs_quant_scaled.c -- the CPU fake-quantization kernels of QS_FAMILY_SCALED (qs_quant_impl.h). */
#include "qs_quant_impl.h"

QS_DEFINE_RUN(qs_run_scaled, QS_FAMILY_SCALED)
