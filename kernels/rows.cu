/* Row kernels: one thread block per row of c values for the norms and the
 * softmax (block-wide reductions), one thread per position for the channel
 * norm and the rotary embedding. */
#include <math.h>

#include "tdk_common.cuh"

/* Sum over the block; every thread gets the total. Reductions run in f64
 * as the CPU backend's do: LayerNorm of activations with a large mean loses
 * the centred values' precision in f32. */
__device__ double block_sum(double v)
{
    __shared__ double part[32];
    for (int o = 16; o; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    if ((threadIdx.x & 31) == 0)
        part[threadIdx.x >> 5] = v;
    __syncthreads();
    v = threadIdx.x < (blockDim.x >> 5) ? part[threadIdx.x] : 0.0;
    if (threadIdx.x < 32)
        for (int o = 16; o; o >>= 1)
            v += __shfl_xor_sync(0xffffffffu, v, o);
    if (threadIdx.x == 0)
        part[0] = v;
    __syncthreads();
    v = part[0];
    __syncthreads();
    return v;
}

__device__ float block_max(float v)
{
    __shared__ float part[32];
    for (int o = 16; o; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if ((threadIdx.x & 31) == 0)
        part[threadIdx.x >> 5] = v;
    __syncthreads();
    v = threadIdx.x < (blockDim.x >> 5) ? part[threadIdx.x] : -INFINITY;
    if (threadIdx.x < 32)
        for (int o = 16; o; o >>= 1)
            v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (threadIdx.x == 0)
        part[0] = v;
    __syncthreads();
    v = part[0];
    __syncthreads();
    return v;
}

/* LayerNorm of one row: two passes (mean, then centred variance). */
__global__ void layernorm_k(const float *x, const void *w, const void *b, int wt, float eps, float *y,
                            int64_t c)
{
    const float *r = x + blockIdx.x * c;
    float *o = y + blockIdx.x * c;
    double s = 0, ss = 0, mean, rstd;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x)
        s += r[i];
    mean = block_sum(s) / (double)c;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x)
        ss += (r[i] - mean) * (r[i] - mean);
    rstd = 1.0 / sqrt(block_sum(ss) / (double)c + eps);
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) {
        float v = (float)((r[i] - mean) * rstd);
        if (w)
            v *= tdk_load(w, wt, i);
        if (b)
            v += tdk_load(b, wt, i);
        o[i] = v;
    }
}

/* RMSNorm of one row: x / sqrt(mean(x^2) + eps) * w. */
__global__ void rmsnorm_k(const float *x, const void *w, int wt, float eps, float *y, int64_t c)
{
    const float *r = x + blockIdx.x * c;
    float *o = y + blockIdx.x * c;
    double ss = 0;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x)
        ss += (double)r[i] * r[i];
    float rstd = (float)(1.0 / sqrt(block_sum(ss) / (double)c + eps));
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x)
        o[i] = r[i] * rstd * (w ? tdk_load(w, wt, i) : 1.0f);
}

/* Softmax of one row, max-subtracted. */
__global__ void softmax_k(const float *x, float *y, int64_t c)
{
    const float *r = x + blockIdx.x * c;
    float *o = y + blockIdx.x * c, m = -INFINITY;
    double s = 0;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x)
        m = fmaxf(m, r[i]);
    m = block_max(m);
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x)
        s += expf(r[i] - m);
    float inv = (float)(1.0 / block_sum(s));
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x)
        o[i] = expf(r[i] - m) * inv;
}

/* Wan VAE's channel RMS norm: position n's C values (stride n apart)
 * scaled to unit L2 norm times sqrt(C), then gamma and bias per channel. */
__global__ void channel_rmsnorm_k(const float *x, const void *g, const void *b, int wt, float *y,
                                  int64_t c, int64_t n)
{
    TDK_FOR(p, n) {
        double ss = 0;
        for (int64_t j = 0; j < c; j++)
            ss += (double)x[j * n + p] * x[j * n + p];
        double nrm = sqrt(ss);
        float inv = (float)(1.0 / (nrm > 1e-12 ? nrm : 1e-12)) * sqrtf((float)c);
        for (int64_t j = 0; j < c; j++)
            y[j * n + p] = x[j * n + p] * inv * tdk_load(g, wt, j) + (b ? tdk_load(b, wt, j) : 0.0f);
    }
}

/* Rotary embedding: pair i of head h at position s is a complex number
 * multiplied by cos + j sin of table row s (shared by the heads). */
__global__ void rope_k(const float *x, const float *ct, const float *st, float *y, int64_t s,
                       int64_t h, int64_t d)
{
    int64_t half = d / 2;
    TDK_FOR(i, s * h * half) {
        int64_t pair = i % half, pos = i / (h * half), base = (i / half) * d + 2 * pair;
        float re = x[base], im = x[base + 1], c = ct[pos * half + pair], sn = st[pos * half + pair];
        y[base] = re * c - im * sn;
        y[base + 1] = re * sn + im * c;
    }
}

extern "C" {

cudaError_t tdk_layernorm(const float *x, const void *w, const void *b, int wt, float eps, float *y,
                          int64_t m, int64_t c, cudaStream_t s)
{
    if (m > 0)
        layernorm_k<<<(unsigned)m, TDK_THREADS, 0, s>>>(x, w, b, wt, eps, y, c);
    return cudaGetLastError();
}

cudaError_t tdk_rmsnorm(const float *x, const void *w, int wt, float eps, float *y, int64_t m,
                        int64_t c, cudaStream_t s)
{
    if (m > 0)
        rmsnorm_k<<<(unsigned)m, TDK_THREADS, 0, s>>>(x, w, wt, eps, y, c);
    return cudaGetLastError();
}

cudaError_t tdk_softmax(const float *x, float *y, int64_t m, int64_t c, cudaStream_t s)
{
    if (m > 0)
        softmax_k<<<(unsigned)m, TDK_THREADS, 0, s>>>(x, y, c);
    return cudaGetLastError();
}

cudaError_t tdk_channel_rmsnorm(const float *x, const void *gamma, const void *bias, int wt, float *y,
                                int64_t c, int64_t n, cudaStream_t s)
{
    channel_rmsnorm_k<<<tdk_grid(n), TDK_THREADS, 0, s>>>(x, gamma, bias, wt, y, c, n);
    return cudaGetLastError();
}

cudaError_t tdk_rope(const float *x, const float *cos_t, const float *sin_t, float *y, int64_t s,
                     int64_t h, int64_t d, cudaStream_t stream)
{
    rope_k<<<tdk_grid(s * h * (d / 2)), TDK_THREADS, 0, stream>>>(x, cos_t, sin_t, y, s, h, d);
    return cudaGetLastError();
}

}
