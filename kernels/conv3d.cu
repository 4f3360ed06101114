// 3-D convolution support: im2col of a chunk of output positions (the GEMM
// itself is cuBLASLt's, on the host side) and the per-channel bias.
#include "common.cuh"

// One thread per column element, tap index fastest so writes coalesce:
// decode the output position and the tap, read the input or a padding zero.
__global__ void im2col3d_kernel(const td_bf16_bits *x, td_kconv3d g, int64_t p0, int64_t np,
                                td_bf16_bits *col)
{
    int64_t kvol = g.kt * g.kh * g.kw, kc = g.ci * kvol;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < np * kc;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t p = p0 + i / kc, tap = i % kc;
        int64_t ow = p % g.wo, oh = (p / g.wo) % g.ho, ot = p / (g.wo * g.ho);
        int64_t c = tap / kvol, r = tap % kvol;
        int64_t ti = ot * g.st - g.pad_t + r / (g.kh * g.kw);
        int64_t hi = oh * g.sh - g.pad_h + (r / g.kw) % g.kh;
        int64_t wi = ow * g.sw - g.pad_w + r % g.kw;
        bool in = ti >= 0 && ti < g.t && hi >= 0 && hi < g.h && wi >= 0 && wi < g.w;
        col[i] = in ? x[((c * g.t + ti) * g.h + hi) * g.w + wi] : (td_bf16_bits)0;
    }
}

// Per-row bias: y[r, j] += b[r].
__global__ void bias_rows_kernel(td_bf16_bits *y, int64_t rows, int64_t n, td_kvec b)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < rows * n;
         i += (int64_t)gridDim.x * blockDim.x)
        y[i] = f2bf(bf2f(y[i]) + vld(b, i / n));
}

extern "C" cudaError_t tdk_im2col3d(cudaStream_t s, const td_bf16_bits *x, const td_kconv3d *g, int64_t p0,
                                    int64_t np, td_bf16_bits *col)
{
    int64_t n = np * g->ci * g->kt * g->kh * g->kw;
    if (n > 0) im2col3d_kernel<<<grid_for(n, 256), 256, 0, s>>>(x, *g, p0, np, col);
    return cudaGetLastError();
}

extern "C" cudaError_t tdk_bias_rows(cudaStream_t s, td_bf16_bits *y, int64_t rows, int64_t n, td_kvec b)
{
    if (rows * n > 0) bias_rows_kernel<<<grid_for(rows * n, 256), 256, 0, s>>>(y, rows, n, b);
    return cudaGetLastError();
}
