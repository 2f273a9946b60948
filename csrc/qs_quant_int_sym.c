/* qs_quant_int_sym.c -- the CPU fake-quantization kernels of QS_FAMILY_INT_SYM (qs_quant_impl.h). */
#include "qs_quant_impl.h"

QS_DEFINE_RUN(qs_run_int_sym, QS_FAMILY_INT_SYM)
