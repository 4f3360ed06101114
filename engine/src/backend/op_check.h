/*
 * Argument checks that do not depend on where a backend keeps its data:
 * shapes, ranks, leading dimensions, quantization-scale layouts. Both
 * backends call them, so a bad call fails with the same message on either.
 * Each returns 0 or a td_fail code naming the op and the tensor.
 */
#ifndef TD_BACKEND_OP_CHECK_H
#define TD_BACKEND_OP_CHECK_H

#include "backend.h"

/* The matmul op's operands as sgemm / cuBLAS see them: B matrices each,
 * row strides (ld*) and batch strides (s*) in elements. sb is 0 where b is
 * shared by every batch (and sa, sy where B is 1). */
typedef struct td_matmul_dims {
    int64_t batch, m, n, k;
    int64_t lda, ldb, ldy;
    int64_t sa, sb, sy;
} td_matmul_dims;

/* matmul (backend.h): a and y present in the activation dtype act, b f32,
 * bf16 or f16; each of rank >= 2 with its last dim contiguous, rows not
 * overlapping and its leading dims flattening into one batch stride; the
 * shapes fit (b's B equal to a's or 1, y's to a's); every size within
 * 32 bits; y's batches do not overlap each other. *d out. */
int td_check_matmul(td_ctx *ctx, td_dtype act, const td_tensor *a, const td_tensor *b, int trans_b,
                    const td_tensor *y, td_matmul_dims *d);

/* A W8A8 weight: contiguous int8 wq [N, K] with f32 wscale
 * [ceil(N/128), ceil(K/128)]. */
int td_check_w8a8_weight(td_ctx *ctx, const char *op, const td_tensor *wq, const td_tensor *wscale);

/* conv3d: positive strides, non-negative padding, x [Ci, T, H, W],
 * w [Co, Ci, kt, kh, kw], y [Co, To, Ho, Wo] with To from the front and
 * back time padding, Ho and Wo from the padding of both sides. */
int td_check_conv3d(td_ctx *ctx, const char *op, const td_tensor *x, const td_tensor *w,
                     const td_tensor *y, const td_conv3d_params *p);

/* y[M, N] = x[M, K] w[N, K]^T: x's last dim is K, y's is N and y holds
 * M x N values; *m receives M. */
int td_check_linear_shapes(td_ctx *ctx, const char *op, const td_tensor *x, const char *w_name,
                           const td_tensor *w, const td_tensor *y, int64_t *m);

/* attention: q [Sq, H, D], k [Sk, H, D], v [Sk, H, Dv], out [Sq, H, Dv]
 * fit together (each already checked to be 3-D), bias (if given) is
 * [H, Sq, Sk] and kv_len is not past the keys. */
int td_check_attention(td_ctx *ctx, const td_tensor *q, const td_tensor *k, const td_tensor *v,
                       const td_tensor *bias, int64_t kv_len, const td_tensor *out);

/* An activation: present, contiguous, in the backend's activation dtype
 * (the message names the backend). */
int td_check_act(td_backend *be, const char *op, const char *name, const td_tensor *t);
/* A float vector (f32, bf16 or f16), contiguous, of exactly n elements. */
int td_check_float_vec(td_ctx *ctx, const char *op, const char *name, const td_tensor *t, int64_t n);
/* A row-wise op's input and output: same element count and last dim. */
int td_check_same_rows(td_ctx *ctx, const char *op, const td_tensor *x, const td_tensor *y);

/* clamp: activations x and y of the same rows, lo <= hi. */
int td_check_clamp(td_backend *be, const td_tensor *x, float lo, float hi, const td_tensor *y);
/* scale_shift: activations x and y [C, ...] of one shape, float vectors
 * scale and shift [C]. */
int td_check_scale_shift(td_backend *be, const td_tensor *x, const td_tensor *scale,
                         const td_tensor *shift, const td_tensor *y);

/* write / read / copy: src and dst present with the same shape. */
int td_check_transfer(td_ctx *ctx, const char *op, const td_tensor *src, const td_tensor *dst);

/* Every one of the n host indices idx lies in [0, rows of table). */
int td_check_lookup(td_ctx *ctx, const char *op, const td_tensor *table, const int32_t *idx,
                    int64_t n, const char *what);
/* embed: table [V, D], y [n, D], ids in range. */
int td_check_embed(td_ctx *ctx, const td_tensor *table, const int32_t *ids, int64_t n,
                   const td_tensor *y);
/* rel_pos_bias: table [buckets, H], y [H, n, n], the 2n - 1 buckets in range. */
int td_check_rel_pos_bias(td_ctx *ctx, const td_tensor *table, const int32_t *bucket,
                          const td_tensor *y);

#endif
