/*
 * The CUDA backend's table and memory: device selection, one stream, an
 * activation arena carved from one allocation, weights uploaded once and
 * owned by the backend, and every CUDA / cuBLAS status turned into an
 * engine error that says what failed (out of memory names the bytes asked
 * and the bytes free).
 */
#include <stdlib.h>
#include <string.h>

#include "cuda.h"
#include "td_kernels.h"

#define ALIGN 256
#define LT_WORKSPACE (32u << 20)

int td_cuda_check(td_backend *be, cudaError_t err, const char *what)
{
    size_t free_b = 0, total_b = 0;
    if (err == cudaSuccess)
        return 0;
    if (err == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        cudaMemGetInfo(&free_b, &total_b);
        return td_fail(be->ctx, TD_ENOMEM, "cuda: out of device memory for %s (%zu MiB free of %zu MiB)",
                       what, free_b >> 20, total_b >> 20);
    }
    return td_fail(be->ctx, TD_EDEVICE, "cuda: %s failed: %s", what, cudaGetErrorString(err));
}

int td_cuda_check_blas(td_backend *be, cublasStatus_t st, const char *what)
{
    if (st == CUBLAS_STATUS_SUCCESS)
        return 0;
    return td_fail(be->ctx, st == CUBLAS_STATUS_ALLOC_FAILED ? TD_ENOMEM : TD_EDEVICE,
                   "cublas: %s failed: %s", what, cublasGetStatusString(st));
}

int td_cuda_wtype(td_dtype t)
{
    return t == TD_F32 ? TDK_F32 : t == TD_BF16 ? TDK_BF16 : t == TD_F16 ? TDK_F16 : -1;
}

static int device_alloc(td_backend *be, void **p, size_t bytes, const char *what)
{
    char msg[96];
    snprintf(msg, sizeof(msg), "%zu bytes of %s", bytes, what);
    return td_cuda_check(be, cudaMalloc(p, bytes ? bytes : 1), msg);
}

void *td_cuda_scratch(td_backend *be, int i, size_t bytes)
{
    td_cuda *c = td_cuda_of(be);
    td_cuda_buf *b = &c->scratch[i];
    if (bytes > b->bytes) {
        /* the stream may still read the old buffer */
        if (b->ptr && (td_cuda_check(be, cudaStreamSynchronize(c->stream), "scratch sync") < 0 ||
                       td_cuda_check(be, cudaFree(b->ptr), "scratch free") < 0))
            return NULL;
        b->ptr = NULL;
        b->bytes = 0;
        if (device_alloc(be, &b->ptr, bytes, "op scratch") < 0)
            return NULL;
        b->bytes = bytes;
    }
    return b->ptr;
}

static int cuda_alloc(td_backend *be, td_tensor *t, td_dtype dtype, int ndim, const int64_t *shape)
{
    td_cuda *c = td_cuda_of(be);
    int64_t n = td_checked_numel(ndim, shape);
    size_t bytes, at = (c->used + ALIGN - 1) & ~(size_t)(ALIGN - 1);

    if (n < 0)
        return td_fail(be->ctx, TD_EINVAL, "cuda alloc: bad shape");
    bytes = (size_t)n * td_dtype_size(dtype);
    if (at + bytes > c->arena.bytes)
        return td_fail(be->ctx, TD_ENOMEM, "cuda: the activation arena (%zu MiB) cannot hold "
                       "%zu more bytes (%zu in use)", c->arena.bytes >> 20, bytes, c->used);
    *t = td_view((char *)c->arena.ptr + at, dtype, ndim, shape);
    c->used = at + bytes;
    if (c->used > c->peak)
        c->peak = c->used;
    return 0;
}

static size_t cuda_mark(td_backend *be)
{
    return td_cuda_of(be)->used;
}

static void cuda_reset(td_backend *be, size_t mark)
{
    td_cuda_of(be)->used = mark;
}

/* Weights go up once, in their stored dtype; the backend owns the copy. */
static int cuda_upload(td_backend *be, const td_tensor *host, td_tensor *dev)
{
    td_cuda *c = td_cuda_of(be);
    size_t bytes = td_nbytes(host);
    void *p = NULL;

    if (!td_is_contiguous(host))
        return td_fail(be->ctx, TD_EINVAL, "cuda upload: the host tensor must be contiguous");
    if (c->n_weights == c->cap_weights) {
        int cap = c->cap_weights ? 2 * c->cap_weights : 64;
        void **w = realloc(c->weights, sizeof(*w) * (size_t)cap);
        if (!w)
            return td_fail(be->ctx, TD_ENOMEM, "cuda upload: out of host memory");
        c->weights = w;
        c->cap_weights = cap;
    }
    TD_TRY(device_alloc(be, &p, bytes, "weights"));
    c->weights[c->n_weights++] = p;
    TD_TRY(td_cuda_check(be, cudaMemcpyAsync(p, host->data, bytes, cudaMemcpyHostToDevice, c->stream),
                         "weight upload"));
    *dev = td_view(p, host->dtype, host->ndim, host->shape);
    return 0;
}

/* Device tensor (f32, bf16 or f16) into host f32 of the same shape. */
static int cuda_download(td_backend *be, const td_tensor *dev, td_tensor *host)
{
    td_cuda *c = td_cuda_of(be);
    int64_t n = td_numel(dev);
    const void *src = dev->data;
    int wt = td_cuda_wtype(dev->dtype);

    if (host->dtype != TD_F32 || td_numel(host) != n || !td_is_contiguous(host) || wt < 0)
        return td_fail(be->ctx, TD_EINVAL, "download: host tensor must be f32 with the device "
                       "tensor's %lld elements, and the device tensor a float type", (long long)n);
    if (wt != TDK_F32) {
        float *tmp = td_cuda_scratch(be, 0, (size_t)n * sizeof(float));
        if (!tmp)
            return be->ctx->err;
        TD_TRY(td_cuda_check(be, tdk_to_f32(src, wt, tmp, n, c->stream), "download widen"));
        src = tmp;
    }
    TD_TRY(td_cuda_check(be, cudaMemcpyAsync(host->data, src, (size_t)n * sizeof(float),
                                             cudaMemcpyDeviceToHost, c->stream), "download"));
    return td_cuda_check(be, cudaStreamSynchronize(c->stream), "download sync");
}

static void cuda_destroy(td_backend *be)
{
    td_cuda *c = td_cuda_of(be);
    if (c) {
        cudaSetDevice(c->device);
        if (c->stream)
            cudaStreamSynchronize(c->stream);
        for (int i = 0; i < c->n_weights; i++)
            cudaFree(c->weights[i]);
        free(c->weights);
        for (int i = 0; i < 3; i++)
            cudaFree(c->scratch[i].ptr);
        cudaFree(c->lt_workspace.ptr);
        cudaFree(c->arena.ptr);
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
    .download = cuda_download,
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

int td_backend_cuda_create(td_ctx *ctx, int device, size_t arena_bytes, td_backend **out)
{
    td_backend *be = calloc(1, sizeof(*be));
    td_cuda *c = calloc(1, sizeof(*c));
    int count = 0, rc = 0;
    cudaError_t err;

    *out = NULL;
    if (!be || !c) {
        free(be);
        free(c);
        return td_fail(ctx, TD_ENOMEM, "cuda backend: cannot allocate its state");
    }
    be->ops = &cuda_ops;
    be->ctx = ctx;
    be->priv = c;
    c->device = device;
    if ((err = cudaGetDeviceCount(&count)) != cudaSuccess || count == 0)
        rc = td_fail(ctx, TD_EDEVICE, "cuda: no CUDA device (%s)",
                     err != cudaSuccess ? cudaGetErrorString(err) : "none found");
    else if (device < 0 || device >= count)
        rc = td_fail(ctx, TD_EDEVICE, "cuda: no device cuda:%d (this machine has %d)", device, count);
    if (rc == 0)
        rc = td_cuda_check(be, cudaSetDevice(device), "selecting the device");
    if (rc == 0)
        rc = td_cuda_check(be, cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), "stream");
    if (rc == 0)
        rc = td_cuda_check_blas(be, cublasCreate(&c->blas), "cublasCreate");
    if (rc == 0)
        rc = td_cuda_check_blas(be, cublasSetStream(c->blas, c->stream), "cublasSetStream");
    if (rc == 0)
        rc = td_cuda_check_blas(be, cublasLtCreate(&c->lt), "cublasLtCreate");
    if (rc == 0)
        rc = device_alloc(be, &c->lt_workspace.ptr, LT_WORKSPACE, "cuBLASLt workspace");
    if (rc == 0)
        c->lt_workspace.bytes = LT_WORKSPACE;
    if (rc == 0 && arena_bytes)
        rc = device_alloc(be, &c->arena.ptr, arena_bytes, "activation arena");
    if (rc == 0)
        c->arena.bytes = arena_bytes;
    if (rc < 0) {
        cuda_destroy(be);
        return rc;
    }
    *out = be;
    return 0;
}
