/* Elementwise kernels: dtype conversions, activations, broadcast add/mul,
 * modulation, gated residual, nearest upsampling. One grid-stride loop each. */
#include <math.h>

#include "tdk_common.cuh"

/* Any stored float type to bf16 (round to nearest even), for GEMM operands. */
__global__ void to_bf16_k(const void *x, int xt, __nv_bfloat16 *y, int64_t n)
{
    TDK_FOR(i, n) y[i] = __float2bfloat16_rn(tdk_load(x, xt, i));
}

/* Any stored float type to f32. */
__global__ void to_f32_k(const void *x, int xt, float *y, int64_t n)
{
    TDK_FOR(i, n) y[i] = tdk_load(x, xt, i);
}

/* GELU with the tanh approximation, as Wan's FFN (and the CPU backend). */
__global__ void gelu_tanh_k(const float *x, float *y, int64_t n)
{
    TDK_FOR(i, n) {
        float v = x[i];
        y[i] = 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    }
}

__global__ void silu_k(const float *x, float *y, int64_t n)
{
    TDK_FOR(i, n) y[i] = x[i] / (1.0f + expf(-x[i]));
}

/* y = a op b with b repeated every nb elements (a row broadcast over rows). */
__global__ void binary_k(const float *a, const void *b, int bt, int64_t nb, float *y, int64_t n, int mul)
{
    TDK_FOR(i, n) {
        float v = tdk_load(b, bt, i % nb);
        y[i] = mul ? a[i] * v : a[i] + v;
    }
}

/* AdaLN modulation of rows: x * (1 + scale) + shift, per channel. */
__global__ void modulate_k(const float *x, const void *shift, const void *scale, int vt, float *y,
                           int64_t m, int64_t c)
{
    TDK_FOR(i, m * c) {
        int64_t j = i % c;
        y[i] = x[i] * (1.0f + tdk_load(scale, vt, j)) + tdk_load(shift, vt, j);
    }
}

/* Gated residual in place: x += y * gate, per channel. */
__global__ void add_gated_k(float *x, const float *y, const void *gate, int gt, int64_t m, int64_t c)
{
    TDK_FOR(i, m * c) x[i] += y[i] * tdk_load(gate, gt, i % c);
}

/* Nearest upsampling of the two last dims: output (r, y, x) reads (r, y/fh, x/fw). */
__global__ void upsample_k(const float *x, float *y, int64_t r, int64_t h, int64_t w, int fh, int fw)
{
    int64_t ho = h * fh, wo = w * fw;
    TDK_FOR(i, r * ho * wo) {
        int64_t xo = i % wo, yo = (i / wo) % ho, ro = i / (wo * ho);
        y[i] = x[(ro * h + yo / fh) * w + xo / fw];
    }
}

extern "C" {

cudaError_t tdk_to_bf16(const void *x, int xt, uint16_t *y, int64_t n, cudaStream_t s)
{
    to_bf16_k<<<tdk_grid(n), TDK_THREADS, 0, s>>>(x, xt, reinterpret_cast<__nv_bfloat16 *>(y), n);
    return cudaGetLastError();
}

cudaError_t tdk_to_f32(const void *x, int xt, float *y, int64_t n, cudaStream_t s)
{
    to_f32_k<<<tdk_grid(n), TDK_THREADS, 0, s>>>(x, xt, y, n);
    return cudaGetLastError();
}

cudaError_t tdk_gelu_tanh(const float *x, float *y, int64_t n, cudaStream_t s)
{
    gelu_tanh_k<<<tdk_grid(n), TDK_THREADS, 0, s>>>(x, y, n);
    return cudaGetLastError();
}

cudaError_t tdk_silu(const float *x, float *y, int64_t n, cudaStream_t s)
{
    silu_k<<<tdk_grid(n), TDK_THREADS, 0, s>>>(x, y, n);
    return cudaGetLastError();
}

cudaError_t tdk_add(const float *a, const void *b, int bt, int64_t nb, float *y, int64_t n, cudaStream_t s)
{
    binary_k<<<tdk_grid(n), TDK_THREADS, 0, s>>>(a, b, bt, nb, y, n, 0);
    return cudaGetLastError();
}

cudaError_t tdk_mul(const float *a, const void *b, int bt, int64_t nb, float *y, int64_t n, cudaStream_t s)
{
    binary_k<<<tdk_grid(n), TDK_THREADS, 0, s>>>(a, b, bt, nb, y, n, 1);
    return cudaGetLastError();
}

cudaError_t tdk_modulate(const float *x, const void *shift, const void *scale, int vt, float *y,
                         int64_t m, int64_t c, cudaStream_t s)
{
    modulate_k<<<tdk_grid(m * c), TDK_THREADS, 0, s>>>(x, shift, scale, vt, y, m, c);
    return cudaGetLastError();
}

cudaError_t tdk_add_gated(float *x, const float *y, const void *gate, int gt, int64_t m, int64_t c,
                          cudaStream_t s)
{
    add_gated_k<<<tdk_grid(m * c), TDK_THREADS, 0, s>>>(x, y, gate, gt, m, c);
    return cudaGetLastError();
}

cudaError_t tdk_upsample_nearest(const float *x, float *y, int64_t r, int64_t h, int64_t w, int fh,
                                 int fw, cudaStream_t s)
{
    upsample_k<<<tdk_grid(r * h * fh * w * fw), TDK_THREADS, 0, s>>>(x, y, r, h, w, fh, fw);
    return cudaGetLastError();
}

}
