/* qs_quant_scaled.c -- the CPU fake-quantization kernels of QS_FAMILY_SCALED (binary32 and E4M3 scales, a division
   per element), of its power-of-two-scale variant QS_FAMILY_SCALED_POW2 (a multiplication) and of the fpquant
   profile's QS_FAMILY_SCALED_FPQ (qs_quant_impl.h). */
#include "qs_quant_impl.h"

QS_DEFINE_RUN(qs_run_scaled, QS_FAMILY_SCALED)
QS_DEFINE_RUN(qs_run_scaled_pow2, QS_FAMILY_SCALED_POW2)
QS_DEFINE_RUN(qs_run_scaled_fpq, QS_FAMILY_SCALED_FPQ)
