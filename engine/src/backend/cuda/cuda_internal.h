/*
 * Private to the CUDA backend: its state, the error mapping every CUDA and
 * cuBLAS call goes through, the argument checks, and one entry point per op
 * (each defined in the file named after its concern). Activations are bf16
 * in device memory; the kernels are in kernels/ behind td_kernels.h.
 */
#ifndef TD_BACKEND_CUDA_INTERNAL_H
#define TD_BACKEND_CUDA_INTERNAL_H

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#ifdef TD_HAVE_CUDNN
#include <cudnn.h>
#endif

#include "backend/backend.h"
#include "backend/op_check.h"
#include "td_kernels.h"

/* How conv3d runs (cuda_conv3d.c): picked when the backend is made (cuDNN
 * when it was built in and its library loaded), tests and benches may force
 * im2col. The paths agree to bf16 rounding, not bit for bit. */
typedef enum {
    TD_CUDA_CONV_IM2COL,   /* chunked im2col + cuBLASLt GEMM (always there) */
    TD_CUDA_CONV_CUDNN,    /* cuDNN's forward convolution, im2col where it declines */
} td_cuda_conv_path;

#ifdef TD_HAVE_CUDNN
/* cuDNN's algorithms for one conv3d geometry, asked for once (conv_plans);
 * n == 0: cuDNN has none for it, so that geometry runs im2col. */
#define TD_CUDA_CONV_ALGOS 4
#define TD_CUDA_CONV_PLANS 64
#define TD_CUDA_CONV_KEY 18
typedef struct td_cuda_conv_plan {
    int64_t key[TD_CUDA_CONV_KEY]; /* the geometry, as cuda_conv3d.c lays it out */
    int n;
    cudnnConvolutionFwdAlgo_t algo[TD_CUDA_CONV_ALGOS];   /* cuDNN's order, fastest first */
    cudnnMathType_t math[TD_CUDA_CONV_ALGOS];
    size_t workspace[TD_CUDA_CONV_ALGOS];
} td_cuda_conv_plan;
#endif

typedef struct td_cuda {
    int device;
    cudaStream_t stream;           /* every op runs here, in order */
    cublasHandle_t blas;           /* matmul, and linears cuBLASLt has no kernel for */
    cublasLtHandle_t lt;           /* bf16 linears */
    void *lt_workspace;
    size_t lt_workspace_bytes;
    unsigned char *arena;          /* activations: bump allocation, mark/reset */
    size_t arena_size, arena_used;
    cudaMemPool_t pool;            /* tensor_new, uploads and staging, stream ordered */
    int64_t live;                  /* tensors from tensor_new/upload not yet freed */
    size_t uploaded;               /* bytes upload has placed (backend.h's memory) */
    size_t tensor_bytes;           /* bytes of the tensor_new/upload tensors not yet freed */
    size_t peak;                   /* the peak op's: most of tensor_bytes + arena_used */
    int sync_each;                 /* debug: synchronise after every step to name a failing kernel */
    td_cuda_conv_path conv_path;
#ifdef TD_HAVE_CUDNN
    cudnnHandle_t dnn;             /* NULL when libcudnn would not start: conv3d runs im2col */
    td_cuda_conv_plan conv_plans[TD_CUDA_CONV_PLANS];   /* a ring: the oldest goes first */
    int conv_nplans, conv_next;
#endif
} td_cuda;

static inline td_cuda *td_cuda_of(td_backend *be) { return be->priv; }

/* Make the backend's device current on the calling thread (jobs may run
 * ops from another thread than the one that created the backend); every
 * op starts with it. */
int td_cuda_enter(td_backend *be);
/* 0, or td_fail(TD_ENOMEM / TD_EDEVICE) naming what failed and CUDA's reason.
 * With sync_each (Debug builds, or TURBODIFF_CUDA_SYNC=1) a success also
 * waits for the stream, so a kernel that faults is named by its own step
 * rather than by whichever later call happens to synchronise. */
int td_cuda_check(td_backend *be, cudaError_t e, const char *what);
int td_cuda_blas_check(td_backend *be, cublasStatus_t st, const char *what);
#ifdef TD_HAVE_CUDNN
/* 0, or td_fail naming what failed and cuDNN's reason (TD_ENOMEM for its
 * allocation failures, else TD_EDEVICE); sync_each as td_cuda_check. */
int td_cuda_dnn_check(td_backend *be, cudnnStatus_t st, const char *what);
#endif
/* Device memory that may fail for size: ENOMEM names the bytes and the free memory. */
int td_cuda_malloc(td_ctx *ctx, void **p, size_t bytes, const char *what);
/* Scratch bytes from the arena for one op (the op resets to its mark). */
void *td_cuda_scratch(td_backend *be, size_t bytes, const char *op);
/* The most bytes td_cuda_scratch could give now. */
size_t td_cuda_scratch_room(td_backend *be);

/* bf16 y[M, N] (row stride ldy) = x[M, K] w[N, K]^T (+ bias[N], bf16),
 * then gelu_tanh when gelu, by cuBLASLt with f32 accumulation (in
 * row-major terms; cuBLASLt sees the column-major transpose y^T = w x^T). */
int td_cuda_lt_linear(td_backend *be, const void *w, const void *x, const void *bias, int gelu, void *y,
                      int64_t m, int64_t n, int64_t k, int64_t ldy);

/* Stream-ordered device memory from the backend's pool (freed with
 * td_cuda_pool_free, also in stream order). */
int td_cuda_pool_alloc(td_backend *be, void **p, size_t bytes, const char *what);
void td_cuda_pool_free(td_backend *be, void *p);
/* A GEMM weight (linear, conv3d, proj_l): contiguous bf16, which upload
 * made of any float weight. */
int td_cuda_check_weight(td_backend *be, const char *op, const char *name, const td_tensor *w);
/* The kernels' view of a float tensor with its strides (up to 8 dims). */
td_kstrided td_cuda_strided(const td_tensor *t);

static inline int64_t td_cuda_lastdim(const td_tensor *t) { return t->ndim ? t->shape[t->ndim - 1] : 1; }
/* The kernels' view of an optional float tensor. */
td_kvec td_cuda_vec(const td_tensor *t);
/* An op's shape or dtype the CUDA backend does not run yet. */
int td_cuda_unsupported(td_backend *be, const char *op, const char *what);

/* --- ops ------------------------------------------------------------------ */
int td_cuda_write(td_backend *be, td_tensor *dst, const td_tensor *host);
int td_cuda_read(td_backend *be, const td_tensor *src, td_tensor *host);
int td_cuda_copy(td_backend *be, td_tensor *dst, const td_tensor *src, int accumulate);
int td_cuda_fill(td_backend *be, td_tensor *t, float value);
int td_cuda_clamp(td_backend *be, const td_tensor *x, float lo, float hi, td_tensor *y);
int td_cuda_scale_shift(td_backend *be, const td_tensor *x, const td_tensor *scale,
                        const td_tensor *shift, td_tensor *y);
int td_cuda_embed(td_backend *be, const td_tensor *table, const int32_t *ids, int64_t n, td_tensor *y);
int td_cuda_rel_pos_bias(td_backend *be, const td_tensor *table, const int32_t *bucket, td_tensor *y);
int td_cuda_linear(td_backend *be, const td_tensor *x, const td_tensor *w,
                   const td_tensor *bias, td_tensor *y);
int td_cuda_linear_gelu_tanh(td_backend *be, const td_tensor *x, const td_tensor *w, const td_tensor *bias,
                             td_tensor *y);
int td_cuda_linear_w8a8(td_backend *be, const td_tensor *x, const td_tensor *wq,
                        const td_tensor *wscale, const td_tensor *bias, td_tensor *y);
int td_cuda_matmul(td_backend *be, const td_tensor *a, const td_tensor *b, int trans_b, float alpha, float beta,
                   td_tensor *y);
int td_cuda_layernorm(td_backend *be, const td_tensor *x, const td_tensor *weight,
                      const td_tensor *bias, float eps, td_tensor *y);
int td_cuda_rmsnorm(td_backend *be, const td_tensor *x, const td_tensor *weight,
                    float eps, td_tensor *y);
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
int td_cuda_rope(td_backend *be, const td_tensor *x, const td_tensor *cos_t,
                 const td_tensor *sin_t, td_tensor *y);
int td_cuda_upsample_nearest(td_backend *be, const td_tensor *x, int fh, int fw, td_tensor *y);
int td_cuda_attention(td_backend *be, const td_tensor *q, const td_tensor *k,
                      const td_tensor *v, const td_tensor *bias, float scale,
                      int64_t kv_len, td_tensor *out);
int td_cuda_conv3d(td_backend *be, const td_tensor *x, const td_tensor *w,
                   const td_tensor *bias, const td_conv3d_params *p, td_tensor *y);
int td_cuda_sla_attention(td_backend *be, const td_tensor *q, const td_tensor *k,
                          const td_tensor *v, const td_tensor *proj_w,
                          const td_tensor *proj_b, int blk_q, int blk_k, double topk,
                          td_tensor *out);

#endif
