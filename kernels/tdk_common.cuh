/* What every turbodiff kernel file shares: typed loads of parameter vectors
 * and the launch geometry of grid-stride loops. */
#ifndef TDK_COMMON_CUH
#define TDK_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "td_kernels.h"

/* Parameter vectors keep the dtype their file stored; widen on read. The
 * switch is uniform across a launch, so it costs no divergence. */
__device__ __forceinline__ float tdk_load(const void *p, int t, int64_t i)
{
    if (t == TDK_BF16)
        return __bfloat162float(static_cast<const __nv_bfloat16 *>(p)[i]);
    if (t == TDK_F16)
        return __half2float(static_cast<const __half *>(p)[i]);
    return static_cast<const float *>(p)[i];
}

#define TDK_THREADS 256

/* Enough blocks to cover n with grid-stride loops, capped so the grid stays
 * in range for any tensor size. */
static inline unsigned tdk_grid(int64_t n)
{
    int64_t b = (n + TDK_THREADS - 1) / TDK_THREADS;
    return (unsigned)(b < 1 ? 1 : b > (1 << 20) ? (1 << 20) : b);
}

#define TDK_FOR(i, n) \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (int64_t)gridDim.x * blockDim.x)

#endif
