/*
 * qs_hadamard.c -- CPU Walsh-Hadamard transform per group (qs_hadamard_cpu in include/qsparse.h).
 *
 * Each group is copied into binary32 scratch, transformed in place by log2(g) butterfly stages (stride h = 1, 2, ...,
 * g/2: (a, b) -> (a + b, a - b) on every pair (j, j + h) of each run of 2h), scaled once, and stored. Every output
 * is the same sequence of binary32 operations on the same inputs in any thread split, and in the CUDA kernel
 * (cuda/qs_hadamard.cu), which runs the same stages in shared memory.
 */
#include <stdlib.h>

#include "include/qsparse.h"
#include "qs_cpu.h"
#include "qs_scalar.h"
#include "qs_validate.h"

/* One group: buf[0..g) transformed in place. */
QS_ALWAYS_INLINE void fwht(float *buf, int64_t g) {
    int64_t h, i, j;
    for (h = 1; h < g; h <<= 1)
        for (i = 0; i < g; i += 2 * h)
            for (j = i; j < i + h; j++) {
                const float a = buf[j], b = buf[j + h];
                buf[j] = a + b;
                buf[j + h] = a - b;
            }
}

QS_ALWAYS_INLINE void groups_t(const char *x, int64_t xs, char *y, int64_t ys, int64_t cols, int64_t g, float scale,
                               int64_t u0, int64_t u1, float *buf, const int32_t dt) {
    const int64_t per_row = cols / g;
    int64_t u, k;
    for (u = u0; u < u1; u++) {
        const int64_t row = u / per_row, c0 = (u % per_row) * g;
        const void *xr = x + row * xs;
        void *yr = y + row * ys;
        for (k = 0; k < g; k++) buf[k] = qs_load(xr, c0 + k, dt);
        fwht(buf, g);
        for (k = 0; k < g; k++) qs_store(yr, c0 + k, dt, buf[k] * scale);
    }
}

static QS_CLONES void run_groups(int32_t dtype, const char *x, int64_t xs, char *y, int64_t ys, int64_t cols,
                                 int64_t g, float scale, int64_t u0, int64_t u1, float *buf) {
    switch (dtype) {
    case QS_DTYPE_F32: groups_t(x, xs, y, ys, cols, g, scale, u0, u1, buf, QS_DTYPE_F32); break;
    case QS_DTYPE_F16: groups_t(x, xs, y, ys, cols, g, scale, u0, u1, buf, QS_DTYPE_F16); break;
    default: groups_t(x, xs, y, ys, cols, g, scale, u0, u1, buf, QS_DTYPE_BF16); break;
    }
}

int32_t qs_hadamard_cpu(int32_t dtype, int64_t rows, int64_t cols, const void *x, int64_t x_stride, void *y,
                        int64_t y_stride, int64_t group, int32_t num_threads) {
    const int64_t esize = dtype == QS_DTYPE_F32 ? 4 : 2;
    int64_t units, per_chunk, chunks;
    int32_t failed = 0;
    float scale;
    int nt;
    QS_TRY(qs_check_hadamard(dtype, rows, cols, x, x_stride, y, y_stride, group));
    QS_TRY(qs_check_threads(num_threads));
    if (rows == 0 || cols == 0) return QS_OK;
    scale = qs_hadamard_scale(group);
    units = rows * (cols / group);
    per_chunk = ((int64_t)1 << 16) / group; /* chunks of about 64K elements */
    if (per_chunk < 1) per_chunk = 1;
    chunks = (units + per_chunk - 1) / per_chunk;
    nt = qs_thread_count(num_threads, rows * cols);
    (void)nt; /* only read by OpenMP pragmas */
#pragma omp parallel num_threads(nt)
    {
        qs_fpenv env = qs_fpenv_enter();
        float *buf = (float *)malloc((size_t)group * sizeof(float));
        int64_t k;
        if (buf == NULL) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp barrier
        if (!failed) {
#pragma omp for schedule(static)
            for (k = 0; k < chunks; k++) {
                const int64_t u0 = k * per_chunk;
                run_groups(dtype, (const char *)x, x_stride * esize, (char *)y, y_stride * esize, cols, group, scale,
                           u0, u0 + per_chunk < units ? u0 + per_chunk : units, buf);
            }
        }
        free(buf);
        qs_fpenv_leave(env);
    }
    return failed ? QS_ERR_NO_MEMORY : QS_OK;
}
