/*
 * The op interface every model is written against (ggml-style): models never
 * call BLAS or CUDA, they call these. A backend is a table of functions plus
 * its private state; the CPU backend computes in f32, the CUDA backend in
 * bf16 with f32 accumulation. A new backend is a new table.
 *
 * Conventions, unless an op says otherwise:
 *  - batch 1 everywhere; tensors are row-major and contiguous (matmul,
 *    copy, fill and attention also take strided views);
 *  - activations are in the backend's activation dtype be->act: TD_F32 on
 *    the CPU backend, TD_BF16 on CUDA. Models allocate every activation
 *    through the backend (alloc, tensor_new) in be->act and never read or
 *    write its memory: host data enters through write (and the host arrays
 *    of embed / rel_pos_bias) and leaves through read, nothing else;
 *  - weights enter once through upload, in a dtype the backend chooses
 *    (the CPU keeps the file's f32/bf16/f16 and widens inside the op, tile
 *    by tile; CUDA narrows floats to bf16 once);
 *  - "[M, K]" means: last dim K, all leading dims flattened into M;
 *  - outputs may alias inputs only where an op says "in place ok";
 *  - every op checks shapes and dtypes and returns TD_ESHAPE / TD_EINVAL
 *    with a message naming the op, never crashes on a mismatch.
 */
#ifndef TD_BACKEND_H
#define TD_BACKEND_H

#include "core/ctx.h"
#include "core/tensor.h"

typedef struct td_backend td_backend;

/* 3-D convolution geometry. Padding is zeros; time padding is split into a
 * front and a back amount so a causal conv (front 2*p, back 0) needs no copy. */
typedef struct td_conv3d_params {
    int stride[3];            /* t, h, w */
    int pad_t_front, pad_t_back;
    int pad_h, pad_w;         /* both sides */
} td_conv3d_params;

/* The ops that may hold memory beside their tensors (workspace below). */
typedef enum { TD_OP_LINEAR, TD_OP_LINEAR_W8A8, TD_OP_ATTENTION, TD_OP_SLA, TD_OP_CONV3D } td_op;

typedef struct td_backend_ops {
    const char *name;
    void (*destroy)(td_backend *be);
    /* Bytes that can still be allocated on the device now: what the job
     * estimate (pipeline/estimate.c) compares a job's peak with. Safe to
     * call while another thread runs ops. */
    int (*available)(td_backend *be, size_t *bytes);
    /* Bytes upload has placed since the backend was made. It never
     * decreases: the models take differences around their loads to size
     * their weights (models.c), on the thread that loads them. */
    size_t (*uploaded)(td_backend *be);
    /* The most bytes the backend held at once since it was made or since
     * the last peak_reset, which starts over from what it holds now: its
     * tensors (tensor_new and upload, so the weights it holds), the part
     * of its activation arena in use and its ops' workspace (below), as
     * the job estimate counts them (td_estimate.peak_bytes); not the
     * arena's reserved size, nor transient staging. The pipeline resets it when a job starts and
     * reports it when the job ends (td_progress.peak_bytes). peak may be
     * called from any thread; peak_reset by the thread that runs the ops.
     * NULL on a backend that does not measure it. */
    size_t (*peak)(td_backend *be);
    void (*peak_reset)(td_backend *be);
    /* Give back what the backend keeps for its next ops (the CPU's tile
     * scratch and freed tensors' blocks); the pipeline calls it when a job
     * ends, so that an idle engine holds its weights and little else.
     * NULL on a backend that keeps nothing. */
    void (*trim)(td_backend *be);
    /* The bytes op holds beside its tensors on these operands (tile
     * scratch, operands packed for the backend's kernels), which peak
     * counts: a, b and y as the op takes them (linear: x, w, y;
     * linear_w8a8: x, wq, y; attention and sla_attention: q, k, out;
     * conv3d: x, w, y and p,
     * NULL for the others); only their shapes and dtypes are read. The
     * backend may keep what one op took for the next ones until
     * peak_reset, so the job estimate holds a job's largest from the op
     * that takes it on. NULL on a backend whose ops hold none. */
    size_t (*workspace)(td_backend *be, td_op op, const td_tensor *a, const td_tensor *b,
                        const td_tensor *y, const td_conv3d_params *p);

    /* --- memory ------------------------------------------------------- */
    /* Scratch tensor from the backend's activation arena (uninitialised),
     * released in stack order by mark/reset. */
    int (*alloc)(td_backend *be, td_tensor *t, td_dtype dtype, int ndim, const int64_t *shape);
    size_t (*mark)(td_backend *be);
    void (*reset)(td_backend *be, size_t mark);
    /* A tensor of backend memory that lives until tensor_free, freed in any
     * order (causal caches, per-job tables, a sampler's state). Uninitialised;
     * t->owns is TD_OWNS_BACKEND: only tensor_free releases it. */
    int (*tensor_new)(td_backend *be, td_tensor *t, td_dtype dtype, int ndim, const int64_t *shape);
    /* Release a tensor from tensor_new or upload and zero *t; views (owns 0)
     * and zeroed tensors are left alone, so a model can free all it holds. */
    void (*tensor_free)(td_backend *be, td_tensor *t);
    /* Make a weight usable by this backend, in the dtype the backend chooses
     * for it (CPU: a view of the host tensor, no copy). Release with
     * tensor_free. */
    int (*upload)(td_backend *be, const td_tensor *host, td_tensor *dev);
    /* Host -> backend: host (contiguous, any dtype td_to_f32 reads) into
     * dst (backend memory, any strides) of the same shape, converting. */
    int (*write)(td_backend *be, td_tensor *dst, const td_tensor *host);
    /* Backend -> host: src (any strides) into host memory of the same shape
     * (contiguous f32, bf16 or f16), converting. */
    int (*read)(td_backend *be, const td_tensor *src, td_tensor *host);
    /* dst = src (accumulate 0) or dst += src (accumulate 1) between backend
     * tensors of the same shape, any strides and float dtypes (so a permuted
     * or sliced view copies into place: patchify, frame windows, tiles).
     * dst must not overlap src. */
    int (*copy)(td_backend *be, td_tensor *dst, const td_tensor *src, int accumulate);
    /* Every element of t (any strides, float dtype) set to value. */
    int (*fill)(td_backend *be, td_tensor *t, float value);

    /* --- GEMM ----------------------------------------------------------- */
    /* y[M, N] = x[M, K] . w[N, K]^T (+ bias[N]). PyTorch Linear layout. */
    int (*linear)(td_backend *be, const td_tensor *x, const td_tensor *w,
                  const td_tensor *bias, td_tensor *y);
    /* y = gelu_tanh(linear(x, w, bias)): the DiT's first FFN linear as one
     * op, so that a backend can apply the GELU in the GEMM's epilogue
     * (CUDA: cuBLASLt's) instead of a second pass over y. */
    int (*linear_gelu_tanh)(td_backend *be, const td_tensor *x, const td_tensor *w,
                            const td_tensor *bias, td_tensor *y);
    /* TurboDiffusion W8A8: wq[N, K] int8 with wscale[ceil(N/128), ceil(K/128)]
     * f32; x is quantized per 128x128 block (scale = amax/128, round to
     * nearest, saturate to [-128, 127]); int32 products are accumulated per
     * K-block and rescaled by xscale * wscale. */
    int (*linear_w8a8)(td_backend *be, const td_tensor *x, const td_tensor *wq,
                       const td_tensor *wscale, const td_tensor *bias, td_tensor *y);
    /* y[B, M, N] = alpha * a[B, M, K] . op(b) + beta * y, f32 accumulation;
     * op(b) = b[B, K, N], or b^T for b[B, N, K] when trans_b. a and y are
     * activations (be->act); b is an activation or a weight of any float
     * dtype (the CPU widens it tile by tile). Any leading dims flatten into
     * B (rank 2: one matrix); b may have B = 1 and is then shared by every
     * batch. Only the last dim must be contiguous: row and batch strides may
     * be larger (views into a fused projection, heads of [S, H, D] seen as
     * [H, S, D]), as long as each tensor's leading dims walk memory as one
     * and y's batches do not overlap. beta = 0 ignores y's values (NaN
     * included). y must not overlap a or b. */
    int (*matmul)(td_backend *be, const td_tensor *a, const td_tensor *b, int trans_b,
                  float alpha, float beta, td_tensor *y);

    /* --- norms and pointwise (in place ok) ------------------------------ */
    /* LayerNorm over the last dim; weight/bias may be NULL (no affine). */
    int (*layernorm)(td_backend *be, const td_tensor *x, const td_tensor *weight,
                     const td_tensor *bias, float eps, td_tensor *y);
    /* RMSNorm over the last dim: x / sqrt(mean(x^2) + eps) * weight. */
    int (*rmsnorm)(td_backend *be, const td_tensor *x, const td_tensor *weight,
                   float eps, td_tensor *y);
    /* Channel-first RMS norm (Wan VAE): x[C, N], per position n:
     * y = x / max(||x[:, n]||_2, 1e-12) * sqrt(C) * gamma[C] (+ bias[C]). */
    int (*channel_rmsnorm)(td_backend *be, const td_tensor *x, const td_tensor *gamma,
                           const td_tensor *bias, td_tensor *y);
    int (*gelu_tanh)(td_backend *be, const td_tensor *x, td_tensor *y);
    int (*silu)(td_backend *be, const td_tensor *x, td_tensor *y);
    /* Softmax over the last dim. */
    int (*softmax)(td_backend *be, const td_tensor *x, td_tensor *y);
    /* y = a + b; b is broadcast when its numel divides a's (e.g. a row). */
    int (*add)(td_backend *be, const td_tensor *a, const td_tensor *b, td_tensor *y);
    /* y = a * b, broadcast as add. */
    int (*mul)(td_backend *be, const td_tensor *a, const td_tensor *b, td_tensor *y);
    /* Modulation: y[M, C] = x * (1 + scale[C]) + shift[C]. */
    int (*modulate)(td_backend *be, const td_tensor *x, const td_tensor *shift,
                    const td_tensor *scale, td_tensor *y);
    /* Gated residual, in place on x: x[M, C] += y[M, C] * gate[C]. */
    int (*add_gated)(td_backend *be, td_tensor *x, const td_tensor *y, const td_tensor *gate);
    /* y = min(max(x, lo), hi) (in place ok). */
    int (*clamp)(td_backend *be, const td_tensor *x, float lo, float hi, td_tensor *y);
    /* Per channel of the leading dim: y[c, ...] = x[c, ...] * scale[c] +
     * shift[c], scale and shift float vectors [C] (in place ok). */
    int (*scale_shift)(td_backend *be, const td_tensor *x, const td_tensor *scale,
                       const td_tensor *shift, td_tensor *y);

    /* --- lookups (host index arrays: the token ids crossing in) --------- */
    /* y[i, :] = table[ids[i], :] for y [n, D], table [V, D] of any float
     * dtype; an id outside [0, V) is TD_EINVAL naming its position. */
    int (*embed)(td_backend *be, const td_tensor *table, const int32_t *ids, int64_t n,
                 td_tensor *y);
    /* T5 relative position bias: y[h, i, j] = table[bucket[j - i + n - 1], h]
     * for y [H, n, n], table [buckets, H] of any float dtype and the host
     * array bucket[2n - 1] (each in [0, buckets), else TD_EINVAL). */
    int (*rel_pos_bias)(td_backend *be, const td_tensor *table, const int32_t *bucket,
                        td_tensor *y);

    /* --- positional ----------------------------------------------------- */
    /* Rotate interleaved pairs (x[2i], x[2i+1]) of x[S, H, D] by the angle
     * whose cos/sin are tables[S, D/2] (shared by all heads). */
    int (*rope)(td_backend *be, const td_tensor *x, const td_tensor *cos_t,
                const td_tensor *sin_t, td_tensor *y);

    /* --- attention ------------------------------------------------------ */
    /* out[Sq, H, Dv] = softmax(scale * q k^T + bias) v per head, with
     * q[Sq, H, D], k[Sk, H, D], v[Sk, H, Dv]; bias[H, Sq, Sk] or NULL;
     * keys at index >= kv_len are masked out (kv_len <= 0: all keys). */
    int (*attention)(td_backend *be, const td_tensor *q, const td_tensor *k,
                     const td_tensor *v, const td_tensor *bias, float scale,
                     int64_t kv_len, td_tensor *out);

    /* --- convolution and resampling ------------------------------------- */
    /* y[Co, To, Ho, Wo] = conv3d(x[Ci, T, H, W], w[Co, Ci, kt, kh, kw]) + bias[Co]. */
    int (*conv3d)(td_backend *be, const td_tensor *x, const td_tensor *w,
                  const td_tensor *bias, const td_conv3d_params *p, td_tensor *y);
    /* Nearest upsampling of the last two dims: x[..., H, W] -> y[..., H*fh, W*fw]. */
    int (*upsample_nearest)(td_backend *be, const td_tensor *x, int fh, int fw, td_tensor *y);

    /* --- SLA (branch sla) ------------------------------------------------ */
    /* TurboDiffusion sparse-linear attention, per head h of q, k, v, out
     * [S, H, D] (TD_F32, contiguous, out not aliasing an input):
     *   sparse: each query block of blk_q rows attends, with softmax scale
     *     D^-0.5, only to the max(1, floor(topk * nk)) key blocks of blk_k
     *     rows whose mean-pooled smoothed keys (k - mean_S k) score highest
     *     against the block's mean query (ragged last blocks masked);
     *   linear: phi = softmax over D, o_l = phi(q) (sum phi(k)^T v) /
     *     (1e-5 + phi(q) . sum phi(k)) over all keys;
     *   out = sparse + o_l proj_w^T + proj_b  (proj_l: w [D, D], b [D] or
     *     NULL; any float dtype).
     * blk_q, blk_k in {64, 128}; topk in (0, 1]. See cpu/sla.c. */
    int (*sla_attention)(td_backend *be, const td_tensor *q, const td_tensor *k,
                         const td_tensor *v, const td_tensor *proj_w,
                         const td_tensor *proj_b, int blk_q, int blk_k, double topk,
                         td_tensor *out);
} td_backend_ops;

struct td_backend {
    const td_backend_ops *ops;
    td_ctx *ctx;     /* errors and logs go here; owned by the caller */
    td_dtype act;    /* activation dtype: TD_F32 on the CPU, TD_BF16 on CUDA */
    void *priv;      /* the implementation's state */
};

/* Raise *peak to live if it is below (backends' peak op: the thread that
 * allocates raises it, any thread may read it). */
static inline void td_peak_note(size_t *peak, size_t live)
{
    size_t p = __atomic_load_n(peak, __ATOMIC_RELAXED);
    while (live > p && !__atomic_compare_exchange_n(peak, &p, live, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

/* CPU backend: arena_bytes of activation scratch; threads from ctx->pool
 * (OpenBLAS is told to use the same count). */
int td_backend_cpu_create(td_ctx *ctx, size_t arena_bytes, td_backend **out);
void td_backend_destroy(td_backend **be);

/* Host memory a process may still allocate: MemAvailable of
 * /proc/meminfo, lowered to what the cgroup v2 limit (memory.max -
 * memory.current) leaves when one is set; sysconf's available pages where
 * /proc is not readable. */
size_t td_host_memory_available(void);

/* A backend that only counts, for dev (whose activation dtype it takes):
 * tensor_new, alloc and upload hand out addresses nothing may
 * dereference, and every compute op does nothing. Running a model's code
 * on it replays that code's allocations exactly (models touch backend
 * memory only through ops), which is how the job estimate sizes the VAE's
 * working set without running it. peak is the most bytes of tensors held
 * at once since creation (or the last td_count_reset); workspace the
 * largest workspace of dev's (backend_ops) that an op took since then. */
int td_backend_count_create(td_ctx *ctx, td_backend *dev, td_backend **out);
size_t td_count_peak(td_backend *be);
size_t td_count_workspace(td_backend *be);
/* Floating point operations of the GEMM-like ops called so far (linear,
 * matmul, attention, conv3d; a multiply-add is 2). */
double td_count_flops(td_backend *be);
size_t td_count_live(td_backend *be);
void td_count_reset(td_backend *be);

/* --- device selection (backend_select.c, cuda/) ---------------------------- */
/* CUDA backend on device_index (built with TD_HAVE_CUDA only): one stream,
 * arena_bytes of device memory for activations, bf16 activations. */
int td_backend_cuda_create(td_ctx *ctx, int device_index, size_t arena_bytes, td_backend **out);
/* CUDA devices present (0 when the driver or runtime reports none or fails). */
int td_cuda_device_count(void);
/* The device a string names, without creating anything: "cpu" (*cuda_index
 * -1), "cuda" (0), "cuda:N" or "cudaN" (N), "auto" / NULL / "" (0 when the
 * build has CUDA and a device is present, else -1). TD_EINVAL for any
 * other string or an N past the devices present, TD_EUNSUPPORTED for a
 * CUDA device in a build without CUDA, TD_EDEVICE when no CUDA device is
 * present. */
int td_device_parse(td_ctx *ctx, const char *device, int *cuda_index);
/* Makes the backend an engine runs on: td_backend_create_for_device, or in
 * tests another implementation of the same table (the fenced one). */
typedef int (*td_backend_factory)(td_ctx *ctx, const char *device, size_t arena_bytes,
                                  td_backend **out);

/* The backend a device string names (td_device_parse). */
int td_backend_create_for_device(td_ctx *ctx, const char *device, size_t arena_bytes, td_backend **out);

#endif
