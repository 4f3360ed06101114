/*
 * Stride-1 conv3d on Intel AMX tiles at f32 accuracy (conv3d_amx.c), where
 * td_amx_usable().
 */
#ifndef TD_BACKEND_CPU_CONV3D_AMX_H
#define TD_BACKEND_CPU_CONV3D_AMX_H

#include "backend/backend.h"

/* Below this many input or output channels the AVX-512 kernel is as fast
 * (bench/NOTES.md), so td_cpu_conv3d keeps it there. */
#define TD_CONV_AMX_MIN_CH 32

/* y = conv3d(x, w) without bias for stride 1 in every dim, shapes already
 * checked by td_cpu_conv3d; in the backend's scratch (kt padded input
 * frames packed, 6 bytes per element; the weights packed, 6 bytes per
 * weight; per thread one block of output rows of every channel). 0, or
 * the error. */
int td_cpu_conv3d_amx(td_backend *be, const td_tensor *x, const td_tensor *w,
                      const td_conv3d_params *p, td_tensor *y);
/* The bytes it asks td_cpu_scratch_bytes for, for these shapes on nthreads threads. */
size_t td_cpu_conv3d_amx_bytes(int nthreads, const td_tensor *x, const td_tensor *w, const td_tensor *y,
                               const td_conv3d_params *p);

#endif
