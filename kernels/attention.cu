/* Attention without the score matrix (flash-style online softmax). */
#include <math.h>

#include "tdk_common.cuh"

#define ATT_WARPS 4      /* queries per block, one warp each */
#define ATT_TILE 32      /* keys staged in shared memory at a time */
#define ATT_DMAX 128     /* largest head dim: 4 values per lane */

/* One warp per (query, head): lane l holds q and the output accumulator for
 * dims l, l+32, l+64, l+96. The block's 4 warps share each tile of 32 keys
 * and values in shared memory; per key, the lanes' partial dot products are
 * summed by shuffles and folded into a running max m and sum l, rescaling
 * the accumulator whenever the max grows. Masked keys (>= kv_len) are
 * skipped; bias [H, Sq, Sk] is added to the scaled score. */
__global__ void attention_k(const float *q, const float *k, const float *v, const float *bias,
                            float scale, int64_t sq, int64_t sk, int64_t kv_len, int64_t h,
                            int64_t d, int64_t dv, float *out)
{
    __shared__ float ks[ATT_TILE][ATT_DMAX], vs[ATT_TILE][ATT_DMAX];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int64_t head = blockIdx.y, qi = (int64_t)blockIdx.x * ATT_WARPS + warp;
    int live = qi < sq;
    float qv[4], acc[4] = { 0, 0, 0, 0 }, m = -INFINITY, l = 0;

    for (int j = 0; j < 4; j++) {
        int64_t dd = lane + 32 * j;
        qv[j] = live && dd < d ? q[(qi * h + head) * d + dd] : 0.0f;
    }
    for (int64_t k0 = 0; k0 < kv_len; k0 += ATT_TILE) {
        int64_t n = kv_len - k0 < ATT_TILE ? kv_len - k0 : ATT_TILE;
        __syncthreads();
        for (int64_t i = threadIdx.x; i < n * ATT_DMAX; i += blockDim.x) {
            int64_t key = i / ATT_DMAX, dd = i % ATT_DMAX;
            ks[key][dd] = dd < d ? k[((k0 + key) * h + head) * d + dd] : 0.0f;
            vs[key][dd] = dd < dv ? v[((k0 + key) * h + head) * dv + dd] : 0.0f;
        }
        __syncthreads();
        if (!live)
            continue;
        for (int64_t key = 0; key < n; key++) {
            float s = 0, mn, corr, p;
            for (int j = 0; j < 4; j++)
                s += qv[j] * ks[key][lane + 32 * j];
            for (int o = 16; o; o >>= 1)
                s += __shfl_xor_sync(0xffffffffu, s, o);
            s *= scale;
            if (bias)
                s += bias[(head * sq + qi) * sk + k0 + key];
            mn = fmaxf(m, s);
            corr = expf(m - mn);
            p = expf(s - mn);
            l = l * corr + p;
            for (int j = 0; j < 4; j++)
                acc[j] = acc[j] * corr + p * vs[key][lane + 32 * j];
            m = mn;
        }
    }
    if (!live)
        return;
    for (int j = 0; j < 4; j++) {
        int64_t dd = lane + 32 * j;
        if (dd < dv)
            out[(qi * h + head) * dv + dd] = l > 0 ? acc[j] / l : 0.0f;
    }
}

extern "C" cudaError_t tdk_attention(const float *q, const float *k, const float *v, const float *bias,
                                     float scale, int64_t sq, int64_t sk, int64_t kv_len, int64_t h,
                                     int64_t d, int64_t dv, float *out, cudaStream_t s)
{
    dim3 grid((unsigned)((sq + ATT_WARPS - 1) / ATT_WARPS), (unsigned)h);
    if (d > ATT_DMAX || dv > ATT_DMAX)
        return cudaErrorInvalidValue;
    if (kv_len <= 0 || kv_len > sk)
        kv_len = sk;
    if (sq > 0 && h > 0)
        attention_k<<<grid, ATT_WARPS * 32, 0, s>>>(q, k, v, bias, scale, sq, sk, kv_len, h, d, dv, out);
    return cudaGetLastError();
}
