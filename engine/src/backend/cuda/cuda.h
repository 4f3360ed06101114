/*
 * The CUDA backend's state and the helpers its op files share.
 *
 * Activations are f32 in device memory, the CPU backend's convention, so a
 * model runs unchanged on either; the GEMMs run bf16 operands on the tensor
 * cores with f32 accumulation (cuBLASLt) or TurboDiffusion's int8 W8A8.
 * Weights are uploaded once, in the dtype their file stored.
 */
#ifndef TD_BACKEND_CUDA_H
#define TD_BACKEND_CUDA_H

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "../backend.h"

typedef struct td_cuda_buf {
    void *ptr;
    size_t bytes;
} td_cuda_buf;

typedef struct td_cuda {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    cublasLtHandle_t lt;
    td_cuda_buf arena;          /* activations: bump allocation, mark/reset */
    size_t used, peak;
    td_cuda_buf scratch[3];     /* per-op temporaries (bf16 copies, int8 + scales) */
    td_cuda_buf lt_workspace;
    void **weights;             /* uploaded weights, freed with the backend */
    int n_weights, cap_weights;
} td_cuda;

static inline td_cuda *td_cuda_of(td_backend *be)
{
    return be->priv;
}

/* 0, or a TD_EDEVICE / TD_ENOMEM failure naming `what` and CUDA's reason. */
int td_cuda_check(td_backend *be, cudaError_t err, const char *what);
int td_cuda_check_blas(td_backend *be, cublasStatus_t st, const char *what);
/* Device memory of at least `bytes` in scratch slot i (grown, never shrunk). */
void *td_cuda_scratch(td_backend *be, int i, size_t bytes);
/* The kernels' code for a stored float dtype, or -1. */
int td_cuda_wtype(td_dtype t);

/* Argument checks: an f32 contiguous activation; a float vector of n. */
int td_cuda_check_act(td_backend *be, const char *op, const char *name, const td_tensor *t);
int td_cuda_check_vec(td_backend *be, const char *op, const char *name, const td_tensor *t, int64_t n);

int td_cuda_linear(td_backend *be, const td_tensor *x, const td_tensor *w, const td_tensor *bias,
                   td_tensor *y);
int td_cuda_linear_w8a8(td_backend *be, const td_tensor *x, const td_tensor *wq,
                        const td_tensor *wscale, const td_tensor *bias, td_tensor *y);
int td_cuda_gemm(td_backend *be, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                 float alpha, const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                 float *c, int64_t ldc);

/* cuda_ops.c */
int td_cuda_layernorm(td_backend *be, const td_tensor *x, const td_tensor *w, const td_tensor *b,
                      float eps, td_tensor *y);
int td_cuda_rmsnorm(td_backend *be, const td_tensor *x, const td_tensor *w, float eps, td_tensor *y);
int td_cuda_channel_rmsnorm(td_backend *be, const td_tensor *x, const td_tensor *gamma,
                            const td_tensor *bias, td_tensor *y);
int td_cuda_gelu_tanh(td_backend *be, const td_tensor *x, td_tensor *y);
int td_cuda_silu(td_backend *be, const td_tensor *x, td_tensor *y);
int td_cuda_softmax(td_backend *be, const td_tensor *x, td_tensor *y);
int td_cuda_add(td_backend *be, const td_tensor *a, const td_tensor *b, td_tensor *y);
int td_cuda_mul(td_backend *be, const td_tensor *a, const td_tensor *b, td_tensor *y);
int td_cuda_modulate(td_backend *be, const td_tensor *x, const td_tensor *shift,
                     const td_tensor *scale, td_tensor *y);
int td_cuda_add_gated(td_backend *be, td_tensor *x, const td_tensor *y, const td_tensor *gate);
int td_cuda_rope(td_backend *be, const td_tensor *x, const td_tensor *cos_t, const td_tensor *sin_t,
                 td_tensor *y);
int td_cuda_attention(td_backend *be, const td_tensor *q, const td_tensor *k, const td_tensor *v,
                      const td_tensor *bias, float scale, int64_t kv_len, td_tensor *out);
int td_cuda_conv3d(td_backend *be, const td_tensor *x, const td_tensor *w, const td_tensor *bias,
                   const td_conv3d_params *p, td_tensor *y);
int td_cuda_upsample_nearest(td_backend *be, const td_tensor *x, int fh, int fw, td_tensor *y);
int td_cuda_sla_attention(td_backend *be, const td_tensor *q, const td_tensor *k, const td_tensor *v,
                          const td_tensor *proj_w, const td_tensor *proj_b, int blk_q, int blk_k,
                          double topk, td_tensor *out);

#endif
