// Shared device helpers: bf16 <-> f32, vector loads of any stored float
// dtype, block reductions, launch geometry.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include "td_kernels.h"

__device__ __forceinline__ float bf2f(td_bf16_bits h) { return __uint_as_float((uint32_t)h << 16); }
__device__ __forceinline__ td_bf16_bits f2bf(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }

// One element of a vector argument as f32 (the dtype is uniform per launch,
// so the switch never diverges).
__device__ __forceinline__ float vld(td_kvec v, int64_t i)
{
    switch (v.dt) {
    case TD_K_BF16: return bf2f(((const td_bf16_bits *)v.p)[i]);
    case TD_K_F16: return __half2float(((const __half *)v.p)[i]);
    default: return ((const float *)v.p)[i];
    }
}

__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum (or max) over the whole block; every thread gets the result. blockDim
// is a multiple of 32, at most 1024.
template <bool MAX>
__device__ float block_reduce(float v)
{
    __shared__ float part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = MAX ? warp_max(v) : warp_sum(v);
    __syncthreads();   // part[] may still be read by a previous call
    if (lane == 0) part[warp] = v;
    __syncthreads();
    v = lane < nw ? part[lane] : (MAX ? -INFINITY : 0.0f);
    return MAX ? warp_max(v) : warp_sum(v);
}

// Grid for a grid-stride loop over n elements.
static inline unsigned grid_for(int64_t n, int threads)
{
    int64_t b = (n + threads - 1) / threads;
    return (unsigned)(b < 65535 * 8 ? (b > 0 ? b : 1) : 65535 * 8);
}
