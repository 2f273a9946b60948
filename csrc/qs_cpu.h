/*
 * qs_cpu.h -- execution helpers of the CPU library: thread counts, the floating point environment, and
 * per-function SIMD clones. Nothing here changes a result; it only decides how fast and on how many threads.
 */
#ifndef QS_CPU_H
#define QS_CPU_H

#include <stdint.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#include <xmmintrin.h>
#define QS_HAVE_MXCSR 1
#endif

/* Hot loops are compiled three times on x86-64 Linux with GCC, for AVX-512 (x86-64-v4), AVX2 and the baseline,
   and the loader picks one (ifunc). The clones compute the same IEEE operations (no contraction, no fast-math), so
   results do not depend on the clone. */
/* QS_LEAN (a build option, used by the sanitizer build of tests/c): the kernels are instantiated once per dtype
   (and family, grid size), their rounding, mask mode and group size passed at run time instead of as literals.
   Same source and operations, the same results; slower loops, a fraction of the compile time. It implies
   QS_NO_CLONES. */
#if defined(QS_LEAN) && !defined(QS_NO_CLONES)
#define QS_NO_CLONES 1
#endif
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && !defined(QS_NO_CLONES)
#define QS_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define QS_CLONES
#endif

#if defined(__GNUC__)
#define QS_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define QS_ALWAYS_INLINE static inline
#endif

/* A function that stays one (the compiler may not merge it into its caller). */
#if defined(__GNUC__)
#define QS_NOINLINE __attribute__((noinline))
#else
#define QS_NOINLINE
#endif

/* Full unrolling of a short loop with a literal trip count, so that the loop around it sees straight-line code. */
#if defined(__GNUC__) && !defined(__clang__)
#define QS_UNROLL _Pragma("GCC unroll 16")
#else
#define QS_UNROLL
#endif

/* Eight binary32 lanes as one value, for loops whose sums must stay in eight lanes of a fixed order (GCC and
   Clang's vector extension: element-wise IEEE operations, lowered to whatever vectors the clone has). GCC does not
   vectorize eight such in-order sums written as scalars or as an array: it keeps them scalar. */
#if defined(__GNUC__)
typedef float qs_f32x8 __attribute__((vector_size(32)));
#define QS_HAVE_F32X8 1
#endif

/* Below this many elements a call runs on the calling thread only. */
#define QS_PARALLEL_MIN_ELEMS ((int64_t)1 << 15)

/* Threads for a call: the request (or the OpenMP default), at most one per processor (more gain nothing, and an
   OpenMP runtime that fails to create a thread ends the process), one for small work. */
static inline int qs_thread_count(int32_t requested, int64_t work) {
#ifdef _OPENMP
    int64_t n = requested > 0 ? (int64_t)requested : (int64_t)omp_get_max_threads();
    const int64_t procs = omp_get_num_procs();
    if (n > procs) n = procs;
    if (work < QS_PARALLEL_MIN_ELEMS) n = 1;
    return n < 1 ? 1 : (int)n; /* <= the processor count: fits an int, which OpenMP takes */
#else
    (void)requested;
    (void)work;
    return 1;
#endif
}

static inline int qs_thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* The format math assumes IEEE defaults: round to nearest even, subnormals neither flushed nor treated as zero.
   A host process may have set flush-to-zero (e.g. torch.set_flush_denormal(True)) on its threads; every
   parallel region saves the thread's state, sets the defaults, and restores the state on the way out. */
typedef struct qs_fpenv {
#ifdef QS_HAVE_MXCSR
    unsigned int mxcsr;
#else
    int unused;
#endif
} qs_fpenv;

static inline qs_fpenv qs_fpenv_enter(void) {
    qs_fpenv e;
#ifdef QS_HAVE_MXCSR
    e.mxcsr = _mm_getcsr();
    /* clear FTZ (bit 15), DAZ (bit 6) and the rounding control (bits 13-14: 00 = nearest) */
    _mm_setcsr(e.mxcsr & ~(0x8000u | 0x0040u | 0x6000u));
#else
    e.unused = 0;
#endif
    return e;
}

static inline void qs_fpenv_leave(qs_fpenv e) {
#ifdef QS_HAVE_MXCSR
    _mm_setcsr(e.mxcsr);
#else
    (void)e;
#endif
}

#endif /* QS_CPU_H */
