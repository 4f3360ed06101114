// Elementwise kernels: activations, broadcast add/mul, modulation, gated
// residual, rotary embedding, nearest upsampling, dtype conversion. All are
// grid-stride loops over the output; bf16 in and out, f32 math.
#include "common.cuh"

#define PW_THREADS 256
#define GRID_STRIDE(i, n) \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

// GELU(tanh) as x / (1 + exp(-2u)) (identical to 0.5 x (1 + tanh u), without
// the cancellation for negative x), and SiLU x / (1 + exp(-x)).
__global__ void unary_kernel(td_kunary f, const td_bf16_bits *x, int64_t n, td_bf16_bits *y)
{
    const float k2 = 2.0f * 0.7978845608028654f;
    GRID_STRIDE(i, n) {
        float v = bf2f(x[i]);
        float u = f == TD_K_GELU_TANH ? k2 * (v + 0.044715f * v * v * v) : v;
        y[i] = f2bf(v / (1.0f + __expf(-u)));
    }
}

// y = a (+|*) b with b repeated every nb elements (a row, a channel vector).
__global__ void binary_kernel(td_kbinary f, const td_bf16_bits *a, int64_t n, td_kvec b, int64_t nb,
                              td_bf16_bits *y)
{
    GRID_STRIDE(i, n) {
        float u = bf2f(a[i]), v = vld(b, i % nb);
        y[i] = f2bf(f == TD_K_ADD ? u + v : u * v);
    }
}

// adaLN modulation x * (1 + scale[c]) + shift[c].
__global__ void modulate_kernel(const td_bf16_bits *x, int64_t n, int64_t c, td_kvec shift,
                                td_kvec scale, td_bf16_bits *y)
{
    GRID_STRIDE(i, n) {
        int64_t j = i % c;
        y[i] = f2bf(bf2f(x[i]) * (1.0f + vld(scale, j)) + vld(shift, j));
    }
}

// Gated residual x += y * gate[c], in place on x.
__global__ void add_gated_kernel(td_bf16_bits *x, const td_bf16_bits *y, int64_t n, int64_t c, td_kvec gate)
{
    GRID_STRIDE(i, n) x[i] = f2bf(bf2f(x[i]) + bf2f(y[i]) * vld(gate, i % c));
}

// RoPE on interleaved pairs: one thread per pair (s, h, i), rotated by the
// angle of table row s, column i (shared by all heads).
__global__ void rope_kernel(const td_bf16_bits *x, int64_t S, int64_t H, int64_t half, td_kvec c,
                            td_kvec sn, td_bf16_bits *y)
{
    GRID_STRIDE(p, S * H * half) {
        int64_t i = p % half, s = p / (H * half);
        float re = bf2f(x[2 * p]), im = bf2f(x[2 * p + 1]);
        float cv = vld(c, s * half + i), sv = vld(sn, s * half + i);
        y[2 * p] = f2bf(re * cv - im * sv);
        y[2 * p + 1] = f2bf(re * sv + im * cv);
    }
}

// Nearest upsampling of the last two dims, one thread per output element.
__global__ void upsample_kernel(const td_bf16_bits *x, int64_t lead, int64_t h, int64_t w, int fh,
                                int fw, td_bf16_bits *y)
{
    int64_t ho = h * fh, wo = w * fw;
    GRID_STRIDE(o, lead * ho * wo) {
        int64_t c = o % wo, r = (o / wo) % ho, l = o / (wo * ho);
        y[o] = x[(l * h + r / fh) * w + c / fw];
    }
}

__global__ void to_bf16_kernel(td_kvec src, int64_t n, td_bf16_bits *dst)
{
    GRID_STRIDE(i, n) dst[i] = f2bf(vld(src, i));
}

__global__ void bf16_to_f32_kernel(const td_bf16_bits *src, int64_t n, float *dst)
{
    GRID_STRIDE(i, n) dst[i] = bf2f(src[i]);
}

#define LAUNCH(n, kernel, ...) \
    do { if ((n) > 0) kernel<<<grid_for((n), PW_THREADS), PW_THREADS, 0, s>>>(__VA_ARGS__); } while (0)

extern "C" cudaError_t tdk_unary(cudaStream_t s, td_kunary f, const td_bf16_bits *x, int64_t n, td_bf16_bits *y)
{
    LAUNCH(n, unary_kernel, f, x, n, y);
    return cudaGetLastError();
}

extern "C" cudaError_t tdk_binary(cudaStream_t s, td_kbinary f, const td_bf16_bits *a, int64_t n, td_kvec b,
                                  int64_t nb, td_bf16_bits *y)
{
    LAUNCH(n, binary_kernel, f, a, n, b, nb, y);
    return cudaGetLastError();
}

extern "C" cudaError_t tdk_modulate(cudaStream_t s, const td_bf16_bits *x, int64_t m, int64_t c,
                                    td_kvec shift, td_kvec scale, td_bf16_bits *y)
{
    LAUNCH(m * c, modulate_kernel, x, m * c, c, shift, scale, y);
    return cudaGetLastError();
}

extern "C" cudaError_t tdk_add_gated(cudaStream_t s, td_bf16_bits *x, const td_bf16_bits *y, int64_t m,
                                     int64_t c, td_kvec gate)
{
    LAUNCH(m * c, add_gated_kernel, x, y, m * c, c, gate);
    return cudaGetLastError();
}

extern "C" cudaError_t tdk_rope(cudaStream_t s, const td_bf16_bits *x, int64_t S, int64_t H, int64_t D,
                                td_kvec cos_t, td_kvec sin_t, td_bf16_bits *y)
{
    LAUNCH(S * H * (D / 2), rope_kernel, x, S, H, D / 2, cos_t, sin_t, y);
    return cudaGetLastError();
}

extern "C" cudaError_t tdk_upsample_nearest(cudaStream_t s, const td_bf16_bits *x, int64_t lead, int64_t h,
                                            int64_t w, int fh, int fw, td_bf16_bits *y)
{
    LAUNCH(lead * h * fh * w * fw, upsample_kernel, x, lead, h, w, fh, fw, y);
    return cudaGetLastError();
}

extern "C" cudaError_t tdk_to_bf16(cudaStream_t s, td_kvec src, int64_t n, td_bf16_bits *dst)
{
    LAUNCH(n, to_bf16_kernel, src, n, dst);
    return cudaGetLastError();
}

extern "C" cudaError_t tdk_bf16_to_f32(cudaStream_t s, const td_bf16_bits *src, int64_t n, float *dst)
{
    LAUNCH(n, bf16_to_f32_kernel, src, n, dst);
    return cudaGetLastError();
}
