/* qs_quant_scaled.c -- the CPU fake-quantization kernels of QS_FAMILY_SCALED (binary32 and E4M3 scales, a division
   per element; qs_quant_impl.h). Its variants have files of their own, so that the build compiles them in
   parallel: qs_quant_scaled_pow2.c, qs_quant_scaled_fpq.c. */
#include "qs_quant_impl.h"

QS_DEFINE_RUN(qs_run_scaled, QS_FAMILY_SCALED)
