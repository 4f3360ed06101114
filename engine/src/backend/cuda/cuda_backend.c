/*
 * The CUDA backend's table, its device, stream and memory: an activation
 * arena carved from one cudaMalloc (alloc, mark, reset), weights uploaded
 * once in their stored dtype and freed with the backend, downloads widened
 * to host f32. Every CUDA and cuBLAS status becomes a td_fail.
 */
#include <stdlib.h>
#include <string.h>

#include "cuda.h"

#define ARENA_ALIGN 256
#define LT_WORKSPACE (32u << 20)   /* cuBLASLt's recommended size for Hopper */

int td_cuda_check(td_backend *be, cudaError_t e, const char *what)
{
    if (e == cudaSuccess)
        return 0;
    return td_fail(be->ctx, e == cudaErrorMemoryAllocation ? TD_ENOMEM : TD_EDEVICE,
                   "cuda: %s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

int td_cuda_blas_check(td_backend *be, cublasStatus_t st, const char *what)
{
    if (st == CUBLAS_STATUS_SUCCESS)
        return 0;
    return td_fail(be->ctx, st == CUBLAS_STATUS_ALLOC_FAILED ? TD_ENOMEM : TD_EDEVICE,
                   "cublas: %s: %s", what, cublasGetStatusString(st));
}

int td_cuda_enter(td_backend *be)
{
    return td_cuda_check(be, cudaSetDevice(td_cuda_of(be)->device), "select the device");
}

int td_cuda_malloc(td_ctx *ctx, void **p, size_t bytes, const char *what)
{
    cudaError_t e = cudaMalloc(p, bytes ? bytes : 1);
    size_t free_b = 0, total_b = 0;
    if (e == cudaSuccess)
        return 0;
    *p = NULL;
    (void)cudaGetLastError();   /* an allocation failure is not sticky; clear it */
    cudaMemGetInfo(&free_b, &total_b);
    return td_fail(ctx, e == cudaErrorMemoryAllocation ? TD_ENOMEM : TD_EDEVICE,
                   "cuda: cannot allocate %zu bytes for %s: %zu of %zu bytes free on the device (%s)",
                   bytes, what, free_b, total_b, cudaGetErrorString(e));
}

static void *arena_take(td_backend *be, size_t bytes, const char *what)
{
    td_cuda *c = td_cuda_of(be);
    size_t start = (c->arena_used + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (start > c->arena_size || bytes > c->arena_size - start) {
        td_fail(be->ctx, TD_ENOMEM, "cuda arena: %s needs %zu bytes, %zu of %zu left",
                what, bytes, c->arena_size - (c->arena_used < c->arena_size ? c->arena_used : c->arena_size),
                c->arena_size);
        return NULL;
    }
    c->arena_used = start + bytes;
    if (c->arena_used > c->arena_peak)
        c->arena_peak = c->arena_used;
    return c->arena + start;
}

void *td_cuda_scratch(td_backend *be, size_t bytes, const char *op)
{
    return arena_take(be, bytes, op);
}

static int cuda_alloc(td_backend *be, td_tensor *t, td_dtype dtype, int ndim, const int64_t *shape)
{
    int64_t n = td_checked_numel(ndim, shape);
    if (n < 0 || ndim > TD_MAX_DIMS)
        return td_fail(be->ctx, TD_EINVAL, "cuda alloc: shape of %d dims overflows", ndim);
    *t = td_view(NULL, dtype, ndim, shape);
    t->data = arena_take(be, (size_t)n * td_dtype_size(dtype), "a tensor");
    return t->data ? 0 : TD_ENOMEM;
}

static size_t cuda_mark(td_backend *be)
{
    return td_cuda_of(be)->arena_used;
}

static void cuda_reset(td_backend *be, size_t mark)
{
    td_cuda_of(be)->arena_used = mark;
}

static int cuda_upload(td_backend *be, const td_tensor *host, td_tensor *dev)
{
    TD_TRY(td_cuda_enter(be));
    td_cuda *c = td_cuda_of(be);
    size_t bytes = td_nbytes(host);
    char s[96];
    void *p;

    if (!td_is_contiguous(host) || (!host->data && bytes))
        return td_fail(be->ctx, TD_EINVAL, "cuda upload: %s must be contiguous host memory",
                       td_shape_str(host, s, sizeof(s)));
    if (c->nweights == c->cap_weights) {
        size_t cap = c->cap_weights ? 2 * c->cap_weights : 64;
        void **w = realloc(c->weights, cap * sizeof(*w));
        if (!w)
            return td_fail(be->ctx, TD_ENOMEM, "cuda upload: cannot grow the weight list");
        c->weights = w;
        c->cap_weights = cap;
    }
    TD_TRY(td_cuda_malloc(be->ctx, &p, bytes, td_shape_str(host, s, sizeof(s))));
    c->weights[c->nweights++] = p;
    *dev = *host;
    dev->data = p;
    dev->owns = 0;
    TD_TRY(td_cuda_check(be, cudaMemcpyAsync(p, host->data, bytes, cudaMemcpyHostToDevice, c->stream),
                         "upload"));
    return td_cuda_check(be, cudaStreamSynchronize(c->stream), "upload");
}

/* Synchronises the stream, so errors of earlier kernels surface here too. */
static int cuda_download(td_backend *be, const td_tensor *dev, td_tensor *host)
{
    TD_TRY(td_cuda_enter(be));
    td_cuda *c = td_cuda_of(be);
    size_t bytes = td_nbytes(dev);
    char a[96], b[96];
    void *stage;
    int rc;

    if (host->dtype != TD_F32 || !td_is_contiguous(host) || !td_is_contiguous(dev))
        return td_fail(be->ctx, TD_EINVAL, "download: host %s must be contiguous f32, device %s contiguous",
                       td_shape_str(host, a, sizeof(a)), td_shape_str(dev, b, sizeof(b)));
    if (dev->ndim != host->ndim || td_numel(dev) != td_numel(host))
        return td_fail(be->ctx, TD_ESHAPE, "download: %s does not fit into %s",
                       td_shape_str(dev, a, sizeof(a)), td_shape_str(host, b, sizeof(b)));
    for (int i = 0; i < dev->ndim; i++)
        if (dev->shape[i] != host->shape[i])
            return td_fail(be->ctx, TD_ESHAPE, "download: %s does not fit into %s",
                           td_shape_str(dev, a, sizeof(a)), td_shape_str(host, b, sizeof(b)));
    stage = dev->dtype == TD_F32 ? host->data : malloc(bytes ? bytes : 1);
    if (!stage)
        return td_fail(be->ctx, TD_ENOMEM, "download: cannot allocate %zu bytes of staging", bytes);
    rc = td_cuda_check(be, cudaMemcpyAsync(stage, dev->data, bytes, cudaMemcpyDeviceToHost, c->stream),
                       "download");
    if (rc == 0)
        rc = td_cuda_check(be, cudaStreamSynchronize(c->stream), "download");
    if (rc == 0 && stage != host->data)
        td_to_f32(dev->dtype, stage, host->data, (size_t)td_numel(dev));
    if (stage != host->data)
        free(stage);
    return rc;
}

static void cuda_destroy(td_backend *be)
{
    td_cuda *c = td_cuda_of(be);
    if (c) {
        cudaSetDevice(c->device);
        if (c->stream)
            cudaStreamSynchronize(c->stream);
        for (size_t i = 0; i < c->nweights; i++)
            cudaFree(c->weights[i]);
        free(c->weights);
        cudaFree(c->arena);
        cudaFree(c->lt_workspace);
        if (c->lt)
            cublasLtDestroy(c->lt);
        if (c->blas)
            cublasDestroy(c->blas);
        if (c->stream)
            cudaStreamDestroy(c->stream);
        free(c);
    }
    free(be);
}

static const td_backend_ops cuda_ops = {
    .name = "cuda",
    .destroy = cuda_destroy,
    .alloc = cuda_alloc,
    .mark = cuda_mark,
    .reset = cuda_reset,
    .upload = cuda_upload,
    .read = cuda_download,
    .linear = td_cuda_linear,
    .linear_w8a8 = td_cuda_linear_w8a8,
    .gemm = td_cuda_gemm,
    .layernorm = td_cuda_layernorm,
    .rmsnorm = td_cuda_rmsnorm,
    .channel_rmsnorm = td_cuda_channel_rmsnorm,
    .gelu_tanh = td_cuda_gelu_tanh,
    .silu = td_cuda_silu,
    .softmax = td_cuda_softmax,
    .add = td_cuda_add,
    .mul = td_cuda_mul,
    .modulate = td_cuda_modulate,
    .add_gated = td_cuda_add_gated,
    .rope = td_cuda_rope,
    .attention = td_cuda_attention,
    .conv3d = td_cuda_conv3d,
    .upsample_nearest = td_cuda_upsample_nearest,
    .sla_attention = td_cuda_sla_attention,
};

static int setup(td_backend *be, int device, size_t arena_bytes)
{
    td_cuda *c = td_cuda_of(be);
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);

    if (e != cudaSuccess || n == 0) {
        (void)cudaGetLastError();
        return td_fail(be->ctx, TD_EDEVICE, "no CUDA device (%s)",
                       e != cudaSuccess ? cudaGetErrorString(e) : "device count is 0");
    }
    if (device < 0 || device >= n)
        return td_fail(be->ctx, TD_EINVAL, "cuda:%d: there %s %d CUDA device%s (cuda:0..cuda:%d)",
                       device, n == 1 ? "is" : "are", n, n == 1 ? "" : "s", n - 1);
    c->device = device;
    TD_TRY(td_cuda_check(be, cudaSetDevice(device), "select the device"));
    TD_TRY(td_cuda_check(be, cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), "create a stream"));
    TD_TRY(td_cuda_blas_check(be, cublasCreate(&c->blas), "create a handle"));
    TD_TRY(td_cuda_blas_check(be, cublasSetStream(c->blas, c->stream), "set the stream"));
    /* The f32 gemm op promises f32 results: no TF32 shortcut. */
    TD_TRY(td_cuda_blas_check(be, cublasSetMathMode(c->blas, CUBLAS_PEDANTIC_MATH), "set the math mode"));
    TD_TRY(td_cuda_blas_check(be, cublasLtCreate(&c->lt), "create a cuBLASLt handle"));
    c->lt_workspace_bytes = LT_WORKSPACE;
    TD_TRY(td_cuda_malloc(be->ctx, &c->lt_workspace, c->lt_workspace_bytes, "the cuBLASLt workspace"));
    TD_TRY(td_cuda_malloc(be->ctx, (void **)&c->arena, arena_bytes, "the activation arena"));
    c->arena_size = arena_bytes;
    return 0;
}

int td_backend_cuda_create(td_ctx *ctx, int device, size_t arena_bytes, td_backend **out)
{
    td_backend *be;
    td_cuda *c;
    int rc;

    *out = NULL;
    be = calloc(1, sizeof(*be));
    c = calloc(1, sizeof(*c));
    if (!be || !c) {
        free(be);
        free(c);
        return td_fail(ctx, TD_ENOMEM, "cuda backend: cannot allocate its state");
    }
    be->ops = &cuda_ops;
    be->ctx = ctx;
    be->priv = c;
    rc = setup(be, device, arena_bytes);
    if (rc < 0) {
        cuda_destroy(be);
        return rc;
    }
    td_log(ctx, TD_LOG_INFO, "cuda backend: device %d, %zu MiB activation arena", device, arena_bytes >> 20);
    *out = be;
    return 0;
}

int td_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}
