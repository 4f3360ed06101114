// Data movement and the small ops the models need besides the maths:
// strided copy with dtype conversion and accumulate (patchify, frame
// windows, transposes, host transfers through a contiguous stage), fill,
// clamp, per-channel scale/shift, embedding rows and T5's relative
// position bias. Grid-stride loops over the output, f32 math.
#include "common.cuh"

#define CP_THREADS 256
#define GRID_STRIDE(i, n) \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)
#define LAUNCH(n, kernel, ...) \
    do { if ((n) > 0) kernel<<<grid_for((n), CP_THREADS), CP_THREADS, 0, s>>>(__VA_ARGS__); } while (0)

__device__ __forceinline__ float ld_any(td_kdtype dt, const void *p, int64_t i)
{
    return vld(td_kvec{ p, dt }, i);
}

__device__ __forceinline__ void st_any(td_kdtype dt, void *p, int64_t i, float v)
{
    switch (dt) {
    case TD_K_BF16: ((td_bf16_bits *)p)[i] = f2bf(v); break;
    case TD_K_F16: ((__half *)p)[i] = __float2half_rn(v); break;
    default: ((float *)p)[i] = v; break;
    }
}

// Element offset of linear (row-major) index i in a strided tensor.
__device__ __forceinline__ int64_t offset_of(const td_kstrided &t, int64_t i)
{
    int64_t off = 0;
#pragma unroll
    for (int d = TD_K_MAX_DIMS - 1; d >= 0; d--) {
        if (d < t.ndim) {
            int64_t n = t.shape[d];
            off += (i % n) * t.stride[d];
            i /= n;
        }
    }
    return off;
}

// dst (+)= src, same shape, any strides and float dtypes (shape read off dst).
__global__ void copy_kernel(td_kstrided dst, td_kstrided src, int64_t n, int accumulate)
{
    GRID_STRIDE(i, n) {
        int64_t so = offset_of(src, i), d = offset_of(dst, i);
        float v = ld_any(src.dt, src.p, so);
        if (accumulate) v += ld_any(dst.dt, dst.p, d);
        st_any(dst.dt, dst.p, d, v);
    }
}

__global__ void fill_kernel(td_kstrided t, int64_t n, float v)
{
    GRID_STRIDE(i, n) st_any(t.dt, t.p, offset_of(t, i), v);
}

// fminf/fmaxf would turn a NaN into a bound; the CPU's compares keep it.
__global__ void clamp_kernel(const td_bf16_bits *x, int64_t n, float lo, float hi, td_bf16_bits *y)
{
    GRID_STRIDE(i, n) {
        float v = bf2f(x[i]);
        y[i] = v < lo ? f2bf(lo) : v > hi ? f2bf(hi) : x[i];
    }
}

// y[c, j] = x[c, j] * scale[c] + shift[c] over channels of len elements.
__global__ void scale_shift_kernel(const td_bf16_bits *x, int64_t n, int64_t len, td_kvec scale,
                                   td_kvec shift, td_bf16_bits *y)
{
    GRID_STRIDE(i, n) {
        int64_t c = i / len;
        y[i] = f2bf(bf2f(x[i]) * vld(scale, c) + vld(shift, c));
    }
}

__global__ void embed_kernel(td_kvec table, const int32_t *ids, int64_t n, int64_t d, td_bf16_bits *y)
{
    GRID_STRIDE(i, n * d) y[i] = f2bf(vld(table, (int64_t)ids[i / d] * d + i % d));
}

// y[h, i, j] = table[bucket[j - i + n - 1], h], table [buckets, heads].
__global__ void rel_pos_bias_kernel(td_kvec table, const int32_t *bucket, int64_t heads, int64_t n,
                                    td_bf16_bits *y)
{
    GRID_STRIDE(o, heads * n * n) {
        int64_t j = o % n, i = (o / n) % n, h = o / (n * n);
        y[o] = f2bf(vld(table, (int64_t)bucket[j - i + n - 1] * heads + h));
    }
}

extern "C" cudaError_t tdk_copy(cudaStream_t s, td_kstrided dst, td_kstrided src, int accumulate)
{
    int64_t n = 1;
    for (int d = 0; d < dst.ndim; d++) n *= dst.shape[d];
    LAUNCH(n, copy_kernel, dst, src, n, accumulate);
    return cudaGetLastError();
}

extern "C" cudaError_t tdk_fill(cudaStream_t s, td_kstrided t, float v)
{
    int64_t n = 1;
    for (int d = 0; d < t.ndim; d++) n *= t.shape[d];
    LAUNCH(n, fill_kernel, t, n, v);
    return cudaGetLastError();
}

extern "C" cudaError_t tdk_clamp(cudaStream_t s, const td_bf16_bits *x, int64_t n, float lo, float hi,
                                 td_bf16_bits *y)
{
    LAUNCH(n, clamp_kernel, x, n, lo, hi, y);
    return cudaGetLastError();
}

extern "C" cudaError_t tdk_scale_shift(cudaStream_t s, const td_bf16_bits *x, int64_t c, int64_t len,
                                       td_kvec scale, td_kvec shift, td_bf16_bits *y)
{
    LAUNCH(c * len, scale_shift_kernel, x, c * len, len, scale, shift, y);
    return cudaGetLastError();
}

extern "C" cudaError_t tdk_embed(cudaStream_t s, td_kvec table, const int32_t *ids, int64_t n, int64_t d,
                                 td_bf16_bits *y)
{
    LAUNCH(n * d, embed_kernel, table, ids, n, d, y);
    return cudaGetLastError();
}

extern "C" cudaError_t tdk_rel_pos_bias(cudaStream_t s, td_kvec table, const int32_t *bucket, int64_t heads,
                                        int64_t n, td_bf16_bits *y)
{
    LAUNCH(heads * n * n, rel_pos_bias_kernel, table, bucket, heads, n, y);
    return cudaGetLastError();
}
