/*
 * The CUDA kernels as plain C functions, for the host side in
 * engine/src/backend/cuda. Every function launches on the given stream and
 * returns cudaGetLastError() (the launch's error; execution errors surface
 * at the next synchronisation). Activations are bf16 (raw uint16_t bits),
 * contiguous and row-major; "vector" arguments (norm weights, biases, rope
 * tables, shift/scale/gate) may be f32, bf16 or f16, named by a
 * td_kdtype, and read as f32. Sizes are checked by the caller.
 */
#ifndef TD_KERNELS_H
#define TD_KERNELS_H

#include <stdint.h>
#include <cuda_runtime.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef uint16_t td_bf16_bits;
typedef enum td_kdtype { TD_K_F32 = 0, TD_K_BF16 = 1, TD_K_F16 = 2 } td_kdtype;

/* A vector argument: data, its dtype, and NULL = absent. */
typedef struct td_kvec {
    const void *p;
    td_kdtype dt;
} td_kvec;

/* --- conversion ---------------------------------------------------------- */
cudaError_t tdk_to_bf16(cudaStream_t s, td_kvec src, int64_t n, td_bf16_bits *dst);
cudaError_t tdk_bf16_to_f32(cudaStream_t s, const td_bf16_bits *src, int64_t n, float *dst);

/* --- data movement and small ops (copy.cu) ------------------------------- */
#define TD_K_MAX_DIMS 8
/* A float tensor of any strides (in elements), up to TD_K_MAX_DIMS dims. */
typedef struct td_kstrided {
    void *p;
    td_kdtype dt;
    int ndim;
    int64_t shape[TD_K_MAX_DIMS];
    int64_t stride[TD_K_MAX_DIMS];
} td_kstrided;
/* dst = src (accumulate 0) or dst += src, same shape (dst's), any strides,
 * converting dtypes through f32; dst must not overlap src. */
cudaError_t tdk_copy(cudaStream_t s, td_kstrided dst, td_kstrided src, int accumulate);
/* Every element of t set to v. */
cudaError_t tdk_fill(cudaStream_t s, td_kstrided t, float v);
/* y = min(max(x, lo), hi); NaN stays NaN. */
cudaError_t tdk_clamp(cudaStream_t s, const td_bf16_bits *x, int64_t n, float lo, float hi,
                      td_bf16_bits *y);
/* y[c, j] = x[c, j] * scale[c] + shift[c] over c channels of len elements. */
cudaError_t tdk_scale_shift(cudaStream_t s, const td_bf16_bits *x, int64_t c, int64_t len,
                            td_kvec scale, td_kvec shift, td_bf16_bits *y);
/* y[i, :] = table[ids[i], :], table [V, d]; ids (device memory) in range. */
cudaError_t tdk_embed(cudaStream_t s, td_kvec table, const int32_t *ids, int64_t n, int64_t d,
                      td_bf16_bits *y);
/* y[h, i, j] = table[bucket[j - i + n - 1], h], table [buckets, heads],
 * bucket (device memory, 2n - 1 entries) in range. */
cudaError_t tdk_rel_pos_bias(cudaStream_t s, td_kvec table, const int32_t *bucket, int64_t heads,
                             int64_t n, td_bf16_bits *y);

/* --- rows: [m, n] ------------------------------------------------------- */
/* LayerNorm; w, b may be absent. */
cudaError_t tdk_layernorm(cudaStream_t s, const td_bf16_bits *x, int64_t m, int64_t n,
                          td_kvec w, td_kvec b, float eps, td_bf16_bits *y);
cudaError_t tdk_rmsnorm(cudaStream_t s, const td_bf16_bits *x, int64_t m, int64_t n,
                        td_kvec w, float eps, td_bf16_bits *y);
cudaError_t tdk_softmax(cudaStream_t s, const td_bf16_bits *x, int64_t m, int64_t n,
                        td_bf16_bits *y);
/* x[c, n]: per column, y = x / max(||x[:, j]||, 1e-12) * sqrt(c) * gamma (+ bias). */
cudaError_t tdk_channel_rmsnorm(cudaStream_t s, const td_bf16_bits *x, int64_t c, int64_t n,
                                td_kvec gamma, td_kvec bias, td_bf16_bits *y);

/* --- pointwise ----------------------------------------------------------- */
typedef enum td_kunary { TD_K_GELU_TANH = 0, TD_K_SILU = 1 } td_kunary;
cudaError_t tdk_unary(cudaStream_t s, td_kunary f, const td_bf16_bits *x, int64_t n,
                      td_bf16_bits *y);
/* y[i] = a[i] (+ or *) b[i % nb]. */
typedef enum td_kbinary { TD_K_ADD = 0, TD_K_MUL = 1 } td_kbinary;
cudaError_t tdk_binary(cudaStream_t s, td_kbinary f, const td_bf16_bits *a, int64_t n,
                       td_kvec b, int64_t nb, td_bf16_bits *y);
/* y[m, c] = x * (1 + scale[c]) + shift[c]. */
cudaError_t tdk_modulate(cudaStream_t s, const td_bf16_bits *x, int64_t m, int64_t c,
                         td_kvec shift, td_kvec scale, td_bf16_bits *y);
/* x[m, c] += y * gate[c]. */
cudaError_t tdk_add_gated(cudaStream_t s, td_bf16_bits *x, const td_bf16_bits *y, int64_t m,
                          int64_t c, td_kvec gate);
/* x[S, H, D], tables [S, D/2]. */
cudaError_t tdk_rope(cudaStream_t s, const td_bf16_bits *x, int64_t S, int64_t H, int64_t D,
                     td_kvec cos_t, td_kvec sin_t, td_bf16_bits *y);
/* x[lead, H, W] -> y[lead, H*fh, W*fw]. */
cudaError_t tdk_upsample_nearest(cudaStream_t s, const td_bf16_bits *x, int64_t lead,
                                 int64_t h, int64_t w, int fh, int fw, td_bf16_bits *y);

/* --- convolution ------------------------------------------------------------ */
/* Geometry of a 3-D convolution: input [ci, t, h, w], kernel [kt, kh, kw],
 * strides, front padding (zeros), output plane [ho, wo]. */
typedef struct td_kconv3d {
    int64_t ci, t, h, w, kt, kh, kw, ho, wo;
    int st, sh, sw, pad_t, pad_h, pad_w;
} td_kconv3d;
/* col[j, kc] = the input under tap kc (ci, dt, dh, dw) for output position
 * p0 + j (to, ho, wo), zero in the padding; j < np, kc < ci*kt*kh*kw. */
cudaError_t tdk_im2col3d(cudaStream_t s, const td_bf16_bits *x, const td_kconv3d *g, int64_t p0,
                         int64_t np, td_bf16_bits *col);
/* y[r, j] += b[r] over [rows, n]. */
cudaError_t tdk_bias_rows(cudaStream_t s, td_bf16_bits *y, int64_t rows, int64_t n, td_kvec b);

/* --- W8A8 ------------------------------------------------------------------ */
/* x[m, k] -> q[m, k] int8 and scale[ceil(m/128), ceil(k/128)], TurboDiffusion's
 * per-128x128-block quantization (see cpu/w8a8.c). */
cudaError_t tdk_w8a8_quantize(cudaStream_t s, const td_bf16_bits *x, int64_t m, int64_t k,
                              int8_t *q, float *scale);
/* y[m, n] = sum over 128-wide K blocks of int32(xq . wq^T) * xs * ws (+ bias). */
cudaError_t tdk_w8a8_gemm(cudaStream_t s, const int8_t *xq, const float *xs, const int8_t *wq,
                          const float *ws, int64_t m, int64_t n, int64_t k, td_kvec bias,
                          td_bf16_bits *y);

/* --- attention --------------------------------------------------------------- */
/* out[sq, h, dv] = softmax(scale q k^T + bias) v over keys [0, kv); q[sq, h, d],
 * k[sk, h, d], v[sk, h, dv]; bias[h, sq, sk] or absent; d, dv even and <= 512.
 * A row whose keys are all masked (-inf bias) gives NaN, as PyTorch does. */
cudaError_t tdk_attention(cudaStream_t s, const td_bf16_bits *q, const td_bf16_bits *k,
                          const td_bf16_bits *v, td_kvec bias, float scale, int64_t sq,
                          int64_t sk, int64_t kv, int64_t h, int64_t d, int64_t dv,
                          td_bf16_bits *out);

/* --- SLA (sparse-linear attention, see cpu/sla.c) ---------------------------- */
/* q, k, v, out [S, h, d], d even and <= 128; blocks of blk_q query rows and
 * blk_k key rows, nq and nk of them (the last ones ragged). */
/* mean[h, d] = mean over S of k (f64). */
cudaError_t tdk_sla_kmean(cudaStream_t s, const td_bf16_bits *k, int64_t S, int64_t h, int64_t d, double *mean);
/* p[h, nb, d] = mean of x over each block of blk rows, minus mean[h, d]
 * when mean is set (f64, rows summed in order as the CPU does). */
cudaError_t tdk_sla_pool(cudaStream_t s, const td_bf16_bits *x, int64_t S, int64_t h, int64_t d, int blk,
                         const double *mean, double *p);
/* sel[h, nq, nsel]: per query block the nsel key blocks with the highest
 * pq . pk, ties to the lower index, in ascending order. nk <= 4096. */
cudaError_t tdk_sla_select(cudaStream_t s, const double *pq, const double *pk, int64_t h, int64_t nq,
                           int64_t nk, int64_t d, int nsel, int *sel);
/* out = softmax(scale q k^T) v over the selected key blocks only. */
cudaError_t tdk_sla_sparse(cudaStream_t s, const td_bf16_bits *q, const td_bf16_bits *k,
                           const td_bf16_bits *v, float scale, int64_t S, int64_t h, int64_t d,
                           const int *sel, int nsel, int blk_q, int blk_k, td_bf16_bits *out);
/* kv[h, d, d] += sum_s phi(k_s)^T v_s and ksum[h, d] += sum_s phi(k_s),
 * phi = softmax over d (both zeroed by the caller). */
cudaError_t tdk_sla_kv(cudaStream_t s, const td_bf16_bits *k, const td_bf16_bits *v, int64_t S, int64_t h,
                       int64_t d, float *kv, float *ksum);
/* ol[s, h, :] = phi(q) kv / (1e-5 + phi(q) . ksum). */
cudaError_t tdk_sla_linear(cudaStream_t s, const td_bf16_bits *q, const float *kv, const float *ksum,
                           int64_t S, int64_t h, int64_t d, td_bf16_bits *ol);

#ifdef __cplusplus
}
#endif

#endif
