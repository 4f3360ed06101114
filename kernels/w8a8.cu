// TurboDiffusion's W8A8 linear: per-128x128-block int8 quantization of the
// activations, then an int8 tensor-core GEMM (WMMA 16x16x16, int32
// accumulators) whose int32 sums over each 128-wide K block are rescaled by
// xscale * wscale into f32 accumulators. The rounding sequence is the CPU
// backend's (cpu/w8a8.c) operation for operation, with contraction into FMA
// forbidden, so results match it bit for bit before the bf16 store.
#include <mma.h>
#include "common.cuh"

using namespace nvcuda;

#define QB 128         // quantization block edge
#define GT 64          // GEMM tile edge (M and N); a tile lies inside one scale block
#define GK 16          // WMMA K step for int8

// One block per 128x128 block of x: amax (at least 1e-8) by block reduction,
// then q = saturate(round_half_even(x * (128 / amax))), scale = amax / 128.
__global__ void quantize_kernel(const td_bf16_bits *x, int64_t m, int64_t k, int8_t *q, float *scale)
{
    int64_t r0 = (int64_t)blockIdx.y * QB, c0 = (int64_t)blockIdx.x * QB;
    float amax = 1e-8f;
    for (int i = threadIdx.x; i < QB * QB; i += blockDim.x) {
        int64_t r = r0 + i / QB, c = c0 + i % QB;
        if (r < m && c < k) amax = fmaxf(amax, fabsf(bf2f(x[r * k + c])));
    }
    amax = block_reduce<true>(amax);
    float mult = __fdiv_rn(128.0f, amax);
    if (threadIdx.x == 0) scale[blockIdx.y * gridDim.x + blockIdx.x] = amax / 128.0f;
    for (int i = threadIdx.x; i < QB * QB; i += blockDim.x) {
        int64_t r = r0 + i / QB, c = c0 + i % QB;
        if (r < m && c < k) {
            float v = fminf(fmaxf(__fmul_rn(bf2f(x[r * k + c]), mult), -128.0f), 127.0f);
            q[r * k + c] = (int8_t)rintf(v);
        }
    }
}

// Copy rows [r0, r0+64) x cols [k0, k0+128) of an int8 [rows, k] matrix into
// shared memory as 8 slabs of [64 rows][16 bytes], so every WMMA fragment
// starts 256-bit aligned with ldm 16. Out-of-range bytes are zero and add
// nothing to the integer sums.
__device__ void load_tile(int8_t (*dst)[GT][GK], const int8_t *src, int64_t rows, int64_t k, int64_t r0,
                          int64_t k0)
{
    for (int i = threadIdx.x; i < GT * (QB / GK); i += blockDim.x) {
        int r = i % GT, kk = i / GT;
        int64_t row = r0 + r, col = k0 + kk * GK;
        int8_t *d = dst[kk][r];
        if (k % GK == 0 && row < rows && col + GK <= k) {
            *(int4 *)d = *(const int4 *)(src + row * k + col);
        } else {
            for (int b = 0; b < GK; b++)
                d[b] = row < rows && col + b < k ? src[row * k + col + b] : 0;
        }
    }
}

// One block (4 warps, 2x2, each 32x32 of the 64x64 output tile) per tile.
// Per K block: int8 tiles to shared, 8 WMMA steps into fresh int32
// fragments, fragments to shared, then each thread rescales its 32 outputs
// into f32 registers: acc += (float)i32 * (xs * ws), rounded as the CPU does.
__global__ void __launch_bounds__(128) w8a8_gemm_kernel(const int8_t *xq, const float *xs, const int8_t *wq,
                                                        const float *ws, int64_t m, int64_t n, int64_t k,
                                                        td_kvec bias, td_bf16_bits *y)
{
    __shared__ __align__(32) int8_t as[QB / GK][GT][GK];
    __shared__ __align__(32) int8_t bs[QB / GK][GT][GK];
    __shared__ __align__(32) int cs[GT][GT];
    int64_t m0 = (int64_t)blockIdx.y * GT, n0 = (int64_t)blockIdx.x * GT, nkb = (k + QB - 1) / QB;
    int warp = threadIdx.x >> 5, wr = (warp >> 1) * 32, wc = (warp & 1) * 32;
    float acc[GT * GT / 128];

    for (int e = 0; e < GT * GT / 128; e++) acc[e] = 0.0f;
    for (int64_t kb = 0; kb < nkb; kb++) {
        wmma::fragment<wmma::accumulator, 16, 16, 16, int> c[2][2];
        load_tile(as, xq, m, k, m0, kb * QB);
        load_tile(bs, wq, n, k, n0, kb * QB);
        __syncthreads();
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++) wmma::fill_fragment(c[i][j], 0);
        for (int kk = 0; kk < QB / GK; kk++) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, signed char, wmma::row_major> a[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, signed char, wmma::col_major> b[2];
            for (int i = 0; i < 2; i++) wmma::load_matrix_sync(a[i], &as[kk][wr + 16 * i][0], GK);
            for (int j = 0; j < 2; j++) wmma::load_matrix_sync(b[j], &bs[kk][wc + 16 * j][0], GK);
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) wmma::mma_sync(c[i][j], a[i], b[j], c[i][j]);
        }
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++)
                wmma::store_matrix_sync(&cs[wr + 16 * i][wc + 16 * j], c[i][j], GT, wmma::mem_row_major);
        __syncthreads();
        float sc = __fmul_rn(xs[(m0 / QB) * nkb + kb], ws[(n0 / QB) * nkb + kb]);
        for (int e = 0; e < GT * GT / 128; e++) {
            int idx = threadIdx.x + 128 * e;
            acc[e] = __fadd_rn(acc[e], __fmul_rn((float)cs[idx / GT][idx % GT], sc));
        }
        __syncthreads();   // as, bs, cs are refilled by the next K block
    }
    for (int e = 0; e < GT * GT / 128; e++) {
        int idx = threadIdx.x + 128 * e;
        int64_t r = m0 + idx / GT, col = n0 + idx % GT;
        if (r < m && col < n) y[r * n + col] = f2bf(bias.p ? __fadd_rn(acc[e], vld(bias, col)) : acc[e]);
    }
}

extern "C" cudaError_t tdk_w8a8_quantize(cudaStream_t s, const td_bf16_bits *x, int64_t m, int64_t k,
                                         int8_t *q, float *scale)
{
    dim3 grid((unsigned)((k + QB - 1) / QB), (unsigned)((m + QB - 1) / QB));
    if (m > 0 && k > 0) quantize_kernel<<<grid, 256, 0, s>>>(x, m, k, q, scale);
    return cudaGetLastError();
}

extern "C" cudaError_t tdk_w8a8_gemm(cudaStream_t s, const int8_t *xq, const float *xs, const int8_t *wq,
                                     const float *ws, int64_t m, int64_t n, int64_t k, td_kvec bias,
                                     td_bf16_bits *y)
{
    dim3 grid((unsigned)((n + GT - 1) / GT), (unsigned)((m + GT - 1) / GT));
    if (m > 0 && n > 0) w8a8_gemm_kernel<<<grid, 128, 0, s>>>(xq, xs, wq, ws, m, n, k, bias, y);
    return cudaGetLastError();
}
