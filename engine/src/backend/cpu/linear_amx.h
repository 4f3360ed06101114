/*
 * Linear layers with f32 or bf16 weights on Intel AMX tiles at f32 accuracy
 * (linear_amx.c), where td_amx_usable().
 */
#ifndef TD_BACKEND_CPU_LINEAR_AMX_H
#define TD_BACKEND_CPU_LINEAR_AMX_H

#include <stdint.h>

#include "backend/backend.h"

/* y[m][n] = x[m][k] w[n][k]^T, w TD_F32 or TD_BF16, rows ldx, ldw, ldy
 * elements apart, in the backend's scratch (w packed, 6 bytes per f32
 * weight, 2 per bf16; per thread 6 bytes per
 * element of a block of x's rows and 4 per element of a block of y's).
 * 0, or TD_ENOMEM from the scratch. Only where td_amx_usable(). */
int td_cpu_linear_amx(td_backend *be, const float *x, int64_t ldx, const void *w, td_dtype wdt,
                      int64_t ldw, int64_t m, int64_t n, int64_t k, float *y, int64_t ldy);
/* The bytes it asks td_cpu_scratch_bytes for at these sizes on nthreads threads. */
size_t td_cpu_linear_amx_bytes(int nthreads, int64_t m, int64_t n, int64_t k, td_dtype wdt);

#endif
