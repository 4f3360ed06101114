/*
 * Private to the CPU backend: its state, the shared argument checks and
 * scratch helpers, and one entry point per op (each defined in the file
 * named after its concern). Everything computes in f32.
 *
 * Threading: OpenBLAS always runs at one thread, and the pool's workers run
 * whole tiles, sgemm included, with no hand-off between threads until the
 * op ends. Every tile is fixed by the shape alone, never by the thread
 * count, so each sum is taken in the same order however many threads run
 * and results do not depend on the count (DESIGN.md). OpenBLAS's own
 * threading splits its work by its thread count and its edge kernels sum
 * in another order, so it is not used.
 */
#ifndef TD_BACKEND_CPU_H
#define TD_BACKEND_CPU_H

#include "backend/backend.h"
#include "backend/op_check.h"
#include "core/arena.h"
#include "core/pool.h"
#include "w8a8.h"

/* How attention runs its tiles (attention.c); picked once per backend from
 * the CPU (td_cpu_att_best), tests and benches may force another. The
 * paths agree to f32 rounding, not bit for bit. */
typedef enum {
    TD_ATT_SCALAR,   /* sgemm, softmax as gcc vectorises it (any CPU) */
    TD_ATT_AVX2,     /* sgemm, softmax on ymm with FMA */
    TD_ATT_AVX512,   /* zmm micro-kernels for the products and the softmax */
    TD_ATT_AMX,      /* AMX tiles on bf16 parts at f32 accuracy, zmm softmax */
} td_att_path;

td_att_path td_cpu_att_best(td_isa cap);
int td_cpu_att_supported(td_att_path path);

/* How linears with f32 and bf16 weights run (gemm.c); picked once per backend
 * from the CPU (td_cpu_lin_best), tests and benches may force another.
 * The paths agree to f32 rounding, not bit for bit. */
typedef enum {
    TD_LIN_BLAS,   /* OpenBLAS sgemm tiles (any CPU) */
    TD_LIN_AMX,    /* AMX tiles on bf16 parts at f32 accuracy, from 128 rows */
} td_lin_path;

td_lin_path td_cpu_lin_best(td_isa cap);
int td_cpu_lin_supported(td_lin_path path);

/* How stride-1 conv3d runs (conv3d.c); picked once per backend from the CPU
 * (td_cpu_conv_best), tests and benches may force another. The paths agree
 * to f32 rounding, not bit for bit. */
typedef enum {
    TD_CONV_GEMM,     /* implicit GEMM, one sgemm per tap (any CPU) */
    TD_CONV_AVX512,   /* direct zmm kernel on channel-blocked copies */
    TD_CONV_AMX,      /* AMX tiles at f32 accuracy from TD_CONV_AMX_MIN_CH channels,
                         the AVX-512 kernel below */
} td_conv_path;

td_conv_path td_cpu_conv_best(td_isa cap);
int td_cpu_conv_supported(td_conv_path path);

/* SLA's sparse part on attention's tiles: softmax(scale q k^T) v for rows
 * [r0, r0 + nr) (nr <= 256) of head `head` of q, k, v, out [s, h, d]
 * (contiguous), over the keys of blocks sel[0, nsel) of bk (64 or 128)
 * keys each, ascending (the last block of s may be short). buf holds
 * td_cpu_att_blocks_floats(path, nr, d) floats. Sums run in an order
 * fixed by the shape and the selection. Not for TD_ATT_AMX, which SLA
 * runs on attention_amx.h's packed heads. */
size_t td_cpu_att_blocks_floats(td_att_path path, int64_t nr, int64_t d);
void td_cpu_att_blocks(td_att_path path, const float *q, const float *k, const float *v,
                       int64_t s, int64_t h, int64_t d, float scale, int64_t head, int64_t r0,
                       int64_t nr, const int *sel, int64_t nsel, int64_t bk, float *out,
                       float *buf);

#define TD_CPU_KEEP 8

typedef struct td_cpu {
    td_arena arena;
    int nthreads;          /* pool threads */
    float *scratch;        /* tile buffers (widened weights, im2col, ...) */
    size_t scratch_floats;
    td_w8_path w8a8_path;  /* how linear_w8a8 runs its block products */
    td_att_path att_path;  /* how attention runs its tiles */
    td_lin_path lin_path;  /* how f32 and bf16 linears run */
    td_conv_path conv_path; /* how stride-1 conv3d runs */
    size_t uploaded;       /* bytes of the weights upload has viewed (backend.h's memory) */
    size_t heap_live;      /* bytes of the tensor_new tensors not yet freed */
    size_t heap_peak;      /* the most heap_live since peak_reset */
    void *kept[TD_CPU_KEEP];      /* freed tensors' blocks kept for reuse (cpu_backend.c) */
    size_t kept_bytes[TD_CPU_KEEP];
    int nkept;
    size_t peak;           /* the peak op's: most of uploaded + heap_live + arena used + scratch */
} td_cpu;

static inline td_cpu *td_cpu_of(td_backend *be) { return be->priv; }

/* The bytes of the kept blocks. */
static inline size_t td_cpu_kept_bytes(const td_cpu *c)
{
    size_t n = 0;
    for (int i = 0; i < c->nkept; i++)
        n += c->kept_bytes[i];
    return n;
}
static inline td_pool *td_cpu_pool(td_backend *be) { return be->ctx->pool; }

/* bytes of host memory, 64-byte aligned; from 4 MB on in whole 2 MB pages
 * where the OS gives them (the tile kernels walk large operands at strides
 * of many KB: 4 KB pages would take a TLB entry per row). free() frees it. */
void *td_cpu_alloc(size_t bytes);

/* The backend's tile scratch, grown to at least n floats. Ops carve it up
 * themselves; its content does not survive the op. It stays allocated for
 * the next ops (growing it costs page faults) and counts in the peak until
 * peak_reset frees it, so a job's peak holds what its own ops took.
 * NULL + TD_ENOMEM. */
float *td_cpu_scratch(td_backend *be, size_t n);
/* The same scratch for buffers that are not floats: bytes (> 0) rounded
 * up to whole floats, td_cpu_scratch_size(bytes), which is what an op that
 * asks for it answers as its workspace (backend.h). */
void *td_cpu_scratch_bytes(td_backend *be, size_t bytes);
static inline size_t td_cpu_scratch_size(size_t bytes)
{
    return (bytes + sizeof(float) - 1) / sizeof(float) * sizeof(float);
}

/* backend.h's workspace of each op that takes scratch: the bytes of
 * td_cpu_scratch it asks for on these operands (the op's own files). */
size_t td_cpu_linear_workspace(td_backend *be, const td_tensor *x, const td_tensor *w);
size_t td_cpu_linear_w8a8_workspace(td_backend *be, const td_tensor *x, const td_tensor *wq);
size_t td_cpu_attention_workspace(td_backend *be, const td_tensor *q, const td_tensor *k, const td_tensor *out);
size_t td_cpu_sla_workspace(td_backend *be, const td_tensor *q);
size_t td_cpu_conv3d_workspace(td_backend *be, const td_tensor *x, const td_tensor *w, const td_tensor *y,
                               const td_conv3d_params *p);

/* OpenBLAS's thread count is process-wide and other code may change it, so
 * each op sets it to one right before its sgemm calls (a few ns). */
void td_cpu_blas_serial(void);

/* c[m, n] = alpha op(a) op(b) + beta c (row-major, as cblas_sgemm) on tiles
 * fixed by m and n, each a single-threaded sgemm on the pool. */
void td_cpu_sgemm(td_backend *be, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                  float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                  float beta, float *c, int64_t ldc);

/* --- argument checks: 0 or TD_EINVAL/TD_ESHAPE with a message naming op ---
 * (the ones both backends need are op_check.h's) */
/* Contiguous f32/bf16/f16 weight. */
int td_cpu_check_weight(td_backend *be, const char *op, const char *name, const td_tensor *t);
/* y[M, N] = x[M, K] w[N, K]^T: x and y fit a weight of n x k (w_name and w
 * for the message), bias is NULL or [N], sizes fit sgemm's ints; *m out. */
int td_cpu_check_linear_io(td_backend *be, const char *op, const td_tensor *x, const char *w_name,
                           const td_tensor *w, const td_tensor *bias, const td_tensor *y, int64_t *m);
static inline int64_t td_cpu_lastdim(const td_tensor *t) { return t->ndim ? t->shape[t->ndim - 1] : 1; }

/* A float vector as f32: the tensor's own data when it already is f32,
 * otherwise widened into *owned (malloc'ed, caller frees). NULL on ENOMEM. */
const float *td_cpu_vec_f32(td_backend *be, const td_tensor *t, float **owned);

/* Widen rows [0, rows) x cols [0, cols) of a row-major weight (row stride
 * ld elements, any float dtype) into dst (row stride cols), on the pool. */
void td_cpu_widen_tile(td_backend *be, td_dtype dt, const void *src, int64_t ld,
                       int64_t rows, int64_t cols, float *dst);

/* W8A8 activation quantization, exactly TurboDiffusion's (see w8a8.c):
 * x[M, K] -> q[M, K] int8 and scale[ceil(M/128), ceil(K/128)]. */
void td_cpu_w8a8_quantize(td_pool *pool, const float *x, int64_t m, int64_t k,
                          int8_t *q, float *scale);

/* --- ops ------------------------------------------------------------------ */
int td_cpu_linear(td_backend *be, const td_tensor *x, const td_tensor *w,
                  const td_tensor *bias, td_tensor *y);
int td_cpu_linear_gelu_tanh(td_backend *be, const td_tensor *x, const td_tensor *w, const td_tensor *bias,
                            td_tensor *y);
int td_cpu_linear_w8a8(td_backend *be, const td_tensor *x, const td_tensor *wq,
                       const td_tensor *wscale, const td_tensor *bias, td_tensor *y);
int td_cpu_matmul(td_backend *be, const td_tensor *a, const td_tensor *b, int trans_b, float alpha, float beta,
                  td_tensor *y);
int td_cpu_layernorm(td_backend *be, const td_tensor *x, const td_tensor *weight,
                     const td_tensor *bias, float eps, td_tensor *y);
int td_cpu_rmsnorm(td_backend *be, const td_tensor *x, const td_tensor *weight,
                   float eps, td_tensor *y);
int td_cpu_channel_rmsnorm(td_backend *be, const td_tensor *x, const td_tensor *gamma,
                           const td_tensor *bias, td_tensor *y);
int td_cpu_gelu_tanh(td_backend *be, const td_tensor *x, td_tensor *y);
int td_cpu_silu(td_backend *be, const td_tensor *x, td_tensor *y);
int td_cpu_softmax(td_backend *be, const td_tensor *x, td_tensor *y);
int td_cpu_add(td_backend *be, const td_tensor *a, const td_tensor *b, td_tensor *y);
int td_cpu_mul(td_backend *be, const td_tensor *a, const td_tensor *b, td_tensor *y);
int td_cpu_modulate(td_backend *be, const td_tensor *x, const td_tensor *shift,
                    const td_tensor *scale, td_tensor *y);
int td_cpu_add_gated(td_backend *be, td_tensor *x, const td_tensor *y, const td_tensor *gate);
int td_cpu_rope(td_backend *be, const td_tensor *x, const td_tensor *cos_t,
                const td_tensor *sin_t, td_tensor *y);
int td_cpu_attention(td_backend *be, const td_tensor *q, const td_tensor *k,
                     const td_tensor *v, const td_tensor *bias, float scale,
                     int64_t kv_len, td_tensor *out);
int td_cpu_conv3d(td_backend *be, const td_tensor *x, const td_tensor *w,
                  const td_tensor *bias, const td_conv3d_params *p, td_tensor *y);
int td_cpu_upsample_nearest(td_backend *be, const td_tensor *x, int fh, int fw, td_tensor *y);
int td_cpu_write(td_backend *be, td_tensor *dst, const td_tensor *host);
int td_cpu_read(td_backend *be, const td_tensor *src, td_tensor *host);
int td_cpu_copy(td_backend *be, td_tensor *dst, const td_tensor *src, int accumulate);
int td_cpu_fill(td_backend *be, td_tensor *t, float value);
int td_cpu_clamp(td_backend *be, const td_tensor *x, float lo, float hi, td_tensor *y);
int td_cpu_scale_shift(td_backend *be, const td_tensor *x, const td_tensor *scale,
                       const td_tensor *shift, td_tensor *y);
int td_cpu_embed(td_backend *be, const td_tensor *table, const int32_t *ids, int64_t n, td_tensor *y);
int td_cpu_rel_pos_bias(td_backend *be, const td_tensor *table, const int32_t *bucket, td_tensor *y);

#endif
