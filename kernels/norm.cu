// Row-wise kernels (LayerNorm + modulation, RMSNorm, softmax) and the Wan
// VAE's channel RMS norm. bf16 in and out, f32 statistics.
#include "common.cuh"

#define ROW_THREADS 256

// LayerNorm, one block per row: mean, then the variance of the centred row
// (two passes over the row, which sits in L1/L2, so a large mean with a
// small spread keeps its precision), then the optional affine.
__global__ void layernorm_kernel(const td_bf16_bits *x, int64_t n, td_kvec w, td_kvec b, float eps,
                                 td_bf16_bits *y)
{
    const td_bf16_bits *xr = x + blockIdx.x * n;
    td_bf16_bits *yr = y + blockIdx.x * n;
    float s = 0.0f, ss = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += bf2f(xr[i]);
    float mean = block_reduce<false>(s) / (float)n;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        float d = bf2f(xr[i]) - mean;
        ss += d * d;
    }
    float rstd = rsqrtf(block_reduce<false>(ss) / (float)n + eps);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        float v = (bf2f(xr[i]) - mean) * rstd;
        if (w.p) v *= vld(w, i);
        if (b.p) v += vld(b, i);
        yr[i] = f2bf(v);
    }
}

// RMSNorm, one block per row: x * rsqrt(mean(x^2) + eps) * w.
__global__ void rmsnorm_kernel(const td_bf16_bits *x, int64_t n, td_kvec w, float eps, td_bf16_bits *y)
{
    const td_bf16_bits *xr = x + blockIdx.x * n;
    td_bf16_bits *yr = y + blockIdx.x * n;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        float v = bf2f(xr[i]);
        ss += v * v;
    }
    float rstd = rsqrtf(block_reduce<false>(ss) / (float)n + eps);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        float v = bf2f(xr[i]) * rstd;
        yr[i] = f2bf(w.p ? v * vld(w, i) : v);
    }
}

// Softmax, one block per row: max, sum of exp(x - max), normalised write.
__global__ void softmax_kernel(const td_bf16_bits *x, int64_t n, td_bf16_bits *y)
{
    const td_bf16_bits *xr = x + blockIdx.x * n;
    td_bf16_bits *yr = y + blockIdx.x * n;
    float mx = -INFINITY, s = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) mx = fmaxf(mx, bf2f(xr[i]));
    mx = block_reduce<true>(mx);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += __expf(bf2f(xr[i]) - mx);
    float inv = 1.0f / block_reduce<false>(s);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) yr[i] = f2bf(__expf(bf2f(xr[i]) - mx) * inv);
}

// Channel RMS norm over x[c, n], one thread per position j: the walk down
// the channels reads consecutive j across a warp, so loads coalesce.
__global__ void channel_rmsnorm_kernel(const td_bf16_bits *x, int64_t c, int64_t n, td_kvec g,
                                       td_kvec b, td_bf16_bits *y)
{
    float sc = sqrtf((float)c);
    for (int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; j < n;
         j += (int64_t)gridDim.x * blockDim.x) {
        float ss = 0.0f;
        for (int64_t ch = 0; ch < c; ch++) {
            float v = bf2f(x[ch * n + j]);
            ss += v * v;
        }
        float inv = 1.0f / fmaxf(sqrtf(ss), 1e-12f);
        for (int64_t ch = 0; ch < c; ch++) {
            float v = bf2f(x[ch * n + j]) * inv * sc * vld(g, ch);
            y[ch * n + j] = f2bf(b.p ? v + vld(b, ch) : v);
        }
    }
}

extern "C" cudaError_t tdk_layernorm(cudaStream_t s, const td_bf16_bits *x, int64_t m, int64_t n,
                                     td_kvec w, td_kvec b, float eps, td_bf16_bits *y)
{
    if (m > 0) layernorm_kernel<<<(unsigned)m, ROW_THREADS, 0, s>>>(x, n, w, b, eps, y);
    return cudaGetLastError();
}

extern "C" cudaError_t tdk_rmsnorm(cudaStream_t s, const td_bf16_bits *x, int64_t m, int64_t n,
                                   td_kvec w, float eps, td_bf16_bits *y)
{
    if (m > 0) rmsnorm_kernel<<<(unsigned)m, ROW_THREADS, 0, s>>>(x, n, w, eps, y);
    return cudaGetLastError();
}

extern "C" cudaError_t tdk_softmax(cudaStream_t s, const td_bf16_bits *x, int64_t m, int64_t n,
                                   td_bf16_bits *y)
{
    if (m > 0) softmax_kernel<<<(unsigned)m, ROW_THREADS, 0, s>>>(x, n, y);
    return cudaGetLastError();
}

extern "C" cudaError_t tdk_channel_rmsnorm(cudaStream_t s, const td_bf16_bits *x, int64_t c, int64_t n,
                                           td_kvec gamma, td_kvec bias, td_bf16_bits *y)
{
    if (n > 0) channel_rmsnorm_kernel<<<grid_for(n, 256), 256, 0, s>>>(x, c, n, gamma, bias, y);
    return cudaGetLastError();
}
