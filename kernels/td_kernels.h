/*
 * The CUDA kernels of the turbodiff CUDA backend, as plain C launchers
 * (engine/src/backend/cuda calls them; nothing here knows about td_tensor).
 *
 * Conventions: activations are f32 in device memory (the same convention as
 * the CPU backend, so the models run unchanged); GEMMs take bf16 operands on
 * the tensor cores with f32 accumulation (cuda_gemm.c converts x with
 * tdk_f32_to_bf16). Small parameter vectors (norm weights, biases) may be
 * f32, bf16 or f16: `wt` gives their type (TDK_F32, TDK_BF16, TDK_F16) and
 * the kernels widen them as they read. Every launcher enqueues on `stream`
 * and returns cudaGetLastError() of the launch.
 */
#ifndef TD_KERNELS_H
#define TD_KERNELS_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { TDK_F32 = 0, TDK_BF16 = 1, TDK_F16 = 2 };

/* --- conversions ------------------------------------------------------- */
cudaError_t tdk_to_bf16(const void *x, int xt, uint16_t *y, int64_t n, cudaStream_t stream);
cudaError_t tdk_to_f32(const void *x, int xt, float *y, int64_t n, cudaStream_t stream);

/* --- pointwise (y may alias x) ------------------------------------------ */
cudaError_t tdk_gelu_tanh(const float *x, float *y, int64_t n, cudaStream_t stream);
cudaError_t tdk_silu(const float *x, float *y, int64_t n, cudaStream_t stream);
/* y[i] = a[i] (+ or *) b[i % nb] */
cudaError_t tdk_add(const float *a, const void *b, int bt, int64_t nb, float *y, int64_t n,
                    cudaStream_t stream);
cudaError_t tdk_mul(const float *a, const void *b, int bt, int64_t nb, float *y, int64_t n,
                    cudaStream_t stream);
/* y[m, c] = x * (1 + scale[c]) + shift[c] */
cudaError_t tdk_modulate(const float *x, const void *shift, const void *scale, int vt, float *y,
                         int64_t m, int64_t c, cudaStream_t stream);
/* x[m, c] += y[m, c] * gate[c] */
cudaError_t tdk_add_gated(float *x, const float *y, const void *gate, int gt, int64_t m, int64_t c,
                          cudaStream_t stream);

/* --- rows of c: norms and softmax ---------------------------------------- */
/* LayerNorm; w and b may be NULL (no affine). */
cudaError_t tdk_layernorm(const float *x, const void *w, const void *b, int wt, float eps, float *y,
                          int64_t m, int64_t c, cudaStream_t stream);
cudaError_t tdk_rmsnorm(const float *x, const void *w, int wt, float eps, float *y, int64_t m,
                        int64_t c, cudaStream_t stream);
cudaError_t tdk_softmax(const float *x, float *y, int64_t m, int64_t c, cudaStream_t stream);
/* x[C, N] per position n: x / max(||x[:, n]||, 1e-12) * sqrt(C) * gamma (+ bias) */
cudaError_t tdk_channel_rmsnorm(const float *x, const void *gamma, const void *bias, int wt, float *y,
                                int64_t c, int64_t n, cudaStream_t stream);

/* --- positional ------------------------------------------------------------ */
/* x[S, H, D], interleaved pairs rotated by cos/sin tables [S, D/2] (f32). */
cudaError_t tdk_rope(const float *x, const float *cos_t, const float *sin_t, float *y, int64_t s,
                     int64_t h, int64_t d, cudaStream_t stream);

/* --- attention ------------------------------------------------------------- */
/* out[Sq, H, Dv] = softmax(scale q k^T + bias) v per head; q [Sq, H, D],
 * k [Sk, H, D], v [Sk, H, Dv], bias [H, Sq, Sk] f32 or NULL; keys at or past
 * kv_len are masked. D and Dv at most 128. */
cudaError_t tdk_attention(const float *q, const float *k, const float *v, const float *bias,
                          float scale, int64_t sq, int64_t sk, int64_t kv_len, int64_t h, int64_t d,
                          int64_t dv, float *out, cudaStream_t stream);

/* --- W8A8 (TurboDiffusion's block quantization) ---------------------------- */
/* x[M, K] -> q int8 [M, K] and scale [ceil(M/128), ceil(K/128)]:
 * amax = max(1e-8, max |x| over the 128x128 block), q = rni_sat(x * 128 / amax),
 * scale = amax / 128. */
cudaError_t tdk_quantize_blocks(const float *x, int8_t *q, float *scale, int64_t m, int64_t k,
                                cudaStream_t stream);
/* y[M, N] = sum over K blocks of (int32 sum xq wq) * xs * ws, + bias[N] (wt). */
cudaError_t tdk_gemm_w8a8(const int8_t *xq, const float *xs, const int8_t *wq, const float *ws,
                          const void *bias, int bt, float *y, int64_t m, int64_t n, int64_t k,
                          cudaStream_t stream);

/* --- convolution and resampling ------------------------------------------ */
/* y[Co, To, Ho, Wo] = conv3d(x[Ci, T, H, W], w[Co, Ci, kt, kh, kw]) + bias; zero padding
 * pad_t_front/back, pad_h, pad_w; strides st, sh, sw. */
typedef struct tdk_conv3d_geom {
    int64_t ci, t, h, w, co, to, ho, wo;
    int kt, kh, kw, st, sh, sw, pad_t_front, pad_h, pad_w;
} tdk_conv3d_geom;
cudaError_t tdk_conv3d(const float *x, const void *w, const void *bias, int wt, float *y,
                       const tdk_conv3d_geom *p, cudaStream_t stream);
/* x[R, H, W] -> y[R, H*fh, W*fw] */
cudaError_t tdk_upsample_nearest(const float *x, float *y, int64_t r, int64_t h, int64_t w, int fh,
                                 int fw, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
