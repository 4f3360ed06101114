/* TurboDiffusion's W8A8: per-128x128-block int8 quantization of the
 * activations, and the int8 GEMM that accumulates each 128-wide K block in
 * int32 before scaling it into an f32 sum (see cpu/w8a8.c for the facts). */
#include <math.h>

#include "tdk_common.cuh"

#define QB 128           /* quantization block edge */
#define GT 32            /* output tile edge of the GEMM */

/* One block per 128x128 tile of x: the tile's absolute max by a shared
 * reduction, then every value times 128 / amax rounded to nearest even and
 * saturated, as PTX cvt.rni.sat.s8.f32 (x == amax becomes 127). */
__global__ void quantize_k(const float *x, int8_t *q, float *scale, int64_t m, int64_t k)
{
    __shared__ float part[TDK_THREADS];
    int64_t r0 = (int64_t)blockIdx.y * QB, c0 = (int64_t)blockIdx.x * QB;
    int64_t rows = m - r0 < QB ? m - r0 : QB, cols = k - c0 < QB ? k - c0 : QB;
    float amax = 1e-8f;
    for (int64_t i = threadIdx.x; i < rows * cols; i += blockDim.x)
        amax = fmaxf(amax, fabsf(x[(r0 + i / cols) * k + c0 + i % cols]));
    part[threadIdx.x] = amax;
    __syncthreads();
    for (int o = blockDim.x / 2; o; o >>= 1) {
        if (threadIdx.x < o)
            part[threadIdx.x] = fmaxf(part[threadIdx.x], part[threadIdx.x + o]);
        __syncthreads();
    }
    amax = part[0];
    float mult = 128.0f / amax;
    for (int64_t i = threadIdx.x; i < rows * cols; i += blockDim.x) {
        int64_t at = (r0 + i / cols) * k + c0 + i % cols;
        int v = __float2int_rn(x[at] * mult);
        q[at] = (int8_t)(v > 127 ? 127 : v < -128 ? -128 : v);
    }
    if (threadIdx.x == 0)
        scale[blockIdx.y * gridDim.x + blockIdx.x] = amax / 128.0f;
}

/* A 32x32 tile of y per block, 16x16 threads with 2x2 outputs each. Per K
 * block, both operands' 32x128 int8 slices are staged in shared memory and
 * each output's int32 dot product is built 4 bytes at a time with __dp4a;
 * the block's integer sum then enters the f32 accumulator scaled by the
 * activation and weight block scales. */
__global__ void gemm_w8a8_k(const int8_t *xq, const float *xs, const int8_t *wq, const float *ws,
                            const void *bias, int bt, float *y, int64_t m, int64_t n, int64_t k)
{
    __shared__ int xt[GT][QB / 4 + 1], wt[GT][QB / 4 + 1];
    int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 16 + tx;
    int64_t row0 = (int64_t)blockIdx.y * GT, col0 = (int64_t)blockIdx.x * GT;
    int64_t nkb = (k + QB - 1) / QB;
    float acc[2][2] = { { 0, 0 }, { 0, 0 } };

    for (int64_t kb = 0; kb < nkb; kb++) {
        int isum[2][2] = { { 0, 0 }, { 0, 0 } };
        __syncthreads();
        for (int i = tid; i < GT * QB / 4; i += 256) {
            int r = i / (QB / 4), w4 = i % (QB / 4);
            int xv = 0, wv = 0;
            for (int b = 0; b < 4; b++) {
                int64_t kk = kb * QB + w4 * 4 + b;
                int8_t a = row0 + r < m && kk < k ? xq[(row0 + r) * k + kk] : 0;
                int8_t c = col0 + r < n && kk < k ? wq[(col0 + r) * k + kk] : 0;
                xv |= (int)(uint8_t)a << (8 * b);
                wv |= (int)(uint8_t)c << (8 * b);
            }
            xt[r][w4] = xv;
            wt[r][w4] = wv;
        }
        __syncthreads();
        for (int w4 = 0; w4 < QB / 4; w4++)
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++)
                    isum[i][j] = __dp4a(xt[ty + 16 * i][w4], wt[tx + 16 * j][w4], isum[i][j]);
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 2; j++) {
                int64_t r = row0 + ty + 16 * i, c = col0 + tx + 16 * j;
                if (r < m && c < n)
                    acc[i][j] += (float)isum[i][j] * (xs[(r / QB) * nkb + kb] * ws[(c / QB) * nkb + kb]);
            }
    }
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            int64_t r = row0 + ty + 16 * i, c = col0 + tx + 16 * j;
            if (r < m && c < n)
                y[r * n + c] = acc[i][j] + (bias ? tdk_load(bias, bt, c) : 0.0f);
        }
}

extern "C" {

cudaError_t tdk_quantize_blocks(const float *x, int8_t *q, float *scale, int64_t m, int64_t k,
                                cudaStream_t s)
{
    dim3 grid((unsigned)((k + QB - 1) / QB), (unsigned)((m + QB - 1) / QB));
    if (m > 0 && k > 0)
        quantize_k<<<grid, TDK_THREADS, 0, s>>>(x, q, scale, m, k);
    return cudaGetLastError();
}

cudaError_t tdk_gemm_w8a8(const int8_t *xq, const float *xs, const int8_t *wq, const float *ws,
                          const void *bias, int bt, float *y, int64_t m, int64_t n, int64_t k,
                          cudaStream_t s)
{
    dim3 grid((unsigned)((n + GT - 1) / GT), (unsigned)((m + GT - 1) / GT)), block(16, 16);
    if (m > 0 && n > 0)
        gemm_w8a8_k<<<grid, block, 0, s>>>(xq, xs, wq, ws, bias, bt, y, m, n, k);
    return cudaGetLastError();
}

}
