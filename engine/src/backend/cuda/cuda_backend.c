/*
 * The CUDA backend's table, its device, stream and memory: an activation
 * arena carved from one cudaMalloc (alloc, mark, reset), and a stream-ordered
 * memory pool for everything freed out of stack order (tensor_new, uploads,
 * transfer staging) whose release threshold is raised so a steady run of
 * jobs keeps its memory instead of handing it back to the driver between
 * frees. Weights are uploaded once, floats narrowed to bf16 on the device
 * (the GEMMs take bf16), and released by tensor_free. Every CUDA, cuBLAS and
 * cuDNN status becomes a td_fail. The cuDNN handle (builds with
 * TD_HAVE_CUDNN) lives and dies with the backend, on its stream.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"

#define ARENA_ALIGN 256
#define LT_WORKSPACE (32u << 20)   /* cuBLASLt's recommended size for Hopper */

/* A success is checked again after the stream drains when sync_each is on. */
static cudaError_t after(td_backend *be, cudaError_t e)
{
    td_cuda *c = td_cuda_of(be);
    if (e == cudaSuccess && c && c->sync_each && c->stream)
        e = cudaStreamSynchronize(c->stream);
    return e;
}

int td_cuda_check(td_backend *be, cudaError_t e, const char *what)
{
    if ((e = after(be, e)) == cudaSuccess)
        return 0;
    return td_fail(be->ctx, e == cudaErrorMemoryAllocation ? TD_ENOMEM : TD_EDEVICE,
                   "cuda: %s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

int td_cuda_blas_check(td_backend *be, cublasStatus_t st, const char *what)
{
    cudaError_t e;
    if (st != CUBLAS_STATUS_SUCCESS)
        return td_fail(be->ctx, st == CUBLAS_STATUS_ALLOC_FAILED ? TD_ENOMEM : TD_EDEVICE,
                       "cublas: %s: %s", what, cublasGetStatusString(st));
    if ((e = after(be, cudaSuccess)) != cudaSuccess)
        return td_fail(be->ctx, TD_EDEVICE, "cublas: %s: %s (%s)", what, cudaGetErrorString(e),
                       cudaGetErrorName(e));
    return 0;
}

#ifdef TD_HAVE_CUDNN
int td_cuda_dnn_check(td_backend *be, cudnnStatus_t st, const char *what)
{
    char detail[256] = "";
    if (st == CUDNN_STATUS_SUCCESS)
        return td_cuda_check(be, cudaSuccess, what);
    cudnnGetLastErrorString(detail, sizeof(detail));
    return td_fail(be->ctx,
                   st == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED ||
                           st == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED ? TD_ENOMEM : TD_EDEVICE,
                   "cudnn: %s: %s%s%s", what, cudnnGetErrorString(st), detail[0] ? ": " : "", detail);
}
#endif

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

int td_cuda_pool_alloc(td_backend *be, void **p, size_t bytes, const char *what)
{
    td_cuda *c = td_cuda_of(be);
    cudaError_t e = cudaMallocFromPoolAsync(p, bytes ? bytes : 1, c->pool, c->stream);
    size_t free_b = 0, total_b = 0;
    if (e == cudaSuccess)
        return 0;
    *p = NULL;
    (void)cudaGetLastError();
    cudaMemGetInfo(&free_b, &total_b);
    return td_fail(be->ctx, e == cudaErrorMemoryAllocation ? TD_ENOMEM : TD_EDEVICE,
                   "cuda: cannot allocate %zu bytes for %s: %zu of %zu bytes free on the device (%s)",
                   bytes, what, free_b, total_b, cudaGetErrorString(e));
}

void td_cuda_pool_free(td_backend *be, void *p)
{
    if (p)
        cudaFreeAsync(p, td_cuda_of(be)->stream);
}

/* What the backend holds now (the peak op): its tensors and the arena's
 * used part. tensor_bytes is the owner tensors' own sizes, as tensor_new
 * made them (owners are never reshaped; views are). */
static void note_live(td_cuda *c)
{
    td_peak_note(&c->peak, __atomic_load_n(&c->tensor_bytes, __ATOMIC_RELAXED) + c->arena_used);
}

static size_t cuda_peak(td_backend *be)
{
    return __atomic_load_n(&td_cuda_of(be)->peak, __ATOMIC_RELAXED);
}

static void cuda_peak_reset(td_backend *be)
{
    td_cuda *c = td_cuda_of(be);
    __atomic_store_n(&c->peak, 0, __ATOMIC_RELAXED);
    note_live(c);
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
    note_live(c);
    return c->arena + start;
}

void *td_cuda_scratch(td_backend *be, size_t bytes, const char *op)
{
    return arena_take(be, bytes, op);
}

size_t td_cuda_scratch_room(td_backend *be)
{
    td_cuda *c = td_cuda_of(be);
    size_t start = (c->arena_used + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    return start < c->arena_size ? c->arena_size - start : 0;
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

static int cuda_tensor_new(td_backend *be, td_tensor *t, td_dtype dtype, int ndim, const int64_t *shape)
{
    TD_TRY(td_cuda_enter(be));
    int64_t n = td_checked_numel(ndim, shape);
    char s[96];
    if (n < 0 || ndim < 0 || ndim > TD_MAX_DIMS)
        return td_fail(be->ctx, TD_EINVAL, "cuda tensor_new: shape of %d dims overflows", ndim);
    *t = td_view(NULL, dtype, ndim, shape);
    TD_TRY(td_cuda_pool_alloc(be, &t->data, (size_t)n * td_dtype_size(dtype), td_shape_str(t, s, sizeof(s))));
    t->owns = TD_OWNS_BACKEND;
    td_cuda_of(be)->live++;
    __atomic_add_fetch(&td_cuda_of(be)->tensor_bytes, td_nbytes(t), __ATOMIC_RELAXED);
    note_live(td_cuda_of(be));
    return 0;
}

/* Views (owns 0) are only zeroed; host tensors (owns HEAP) are not ours. */
static void cuda_tensor_free(td_backend *be, td_tensor *t)
{
    if (t->owns == TD_OWNS_BACKEND) {
        cudaSetDevice(td_cuda_of(be)->device);
        td_cuda_pool_free(be, t->data);
        td_cuda_of(be)->live--;
        __atomic_sub_fetch(&td_cuda_of(be)->tensor_bytes, td_nbytes(t), __ATOMIC_RELAXED);
    }
    if (t->owns != TD_OWNS_HEAP)
        *t = (td_tensor){ 0 };
}

/* f32 and f16 weights become bf16 here, once: the raw bytes go to a staging
 * buffer and a kernel narrows them (round to nearest even) into the weight's
 * own memory. Integer weights (W8A8) and bf16 keep their dtype. */
static int cuda_upload(td_backend *be, const td_tensor *host, td_tensor *dev)
{
    TD_TRY(td_cuda_enter(be));
    td_cuda *c = td_cuda_of(be);
    int narrow = host->dtype == TD_F32 || host->dtype == TD_F16;
    size_t bytes = td_nbytes(host);
    void *stage = NULL;
    char s[96];
    int rc;

    if (!td_is_contiguous(host) || (!host->data && bytes))
        return td_fail(be->ctx, TD_EINVAL, "cuda upload: %s must be contiguous host memory",
                       td_shape_str(host, s, sizeof(s)));
    TD_TRY(cuda_tensor_new(be, dev, narrow ? TD_BF16 : host->dtype, host->ndim, host->shape));
    rc = narrow ? td_cuda_pool_alloc(be, &stage, bytes, "upload staging") : 0;
    if (rc == 0 && bytes)
        rc = td_cuda_check(be, cudaMemcpyAsync(narrow ? stage : dev->data, host->data, bytes,
                                               cudaMemcpyHostToDevice, c->stream), "upload");
    if (rc == 0 && narrow)
        rc = td_cuda_check(be, tdk_to_bf16(c->stream, (td_kvec){ stage, host->dtype == TD_F16 ? TD_K_F16 : TD_K_F32 },
                                           td_numel(host), dev->data), "upload: narrow to bf16");
    td_cuda_pool_free(be, stage);
    if (rc == 0)
        rc = td_cuda_check(be, cudaStreamSynchronize(c->stream), "upload");
    if (rc < 0)
        cuda_tensor_free(be, dev);
    else
        c->uploaded += td_nbytes(dev);
    return rc;
}

/* Free device memory, plus what the backend's pool holds but no tensor
 * uses (freed tensors stay reserved in the pool for the next ones). */
static int cuda_available(td_backend *be, size_t *bytes)
{
    td_cuda *c = td_cuda_of(be);
    size_t free_b = 0, total_b = 0;
    uint64_t reserved = 0, used = 0;
    TD_TRY(td_cuda_enter(be));
    TD_TRY(td_cuda_check(be, cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo"));
    if (c->pool && cudaMemPoolGetAttribute(c->pool, cudaMemPoolAttrReservedMemCurrent, &reserved) == cudaSuccess &&
        cudaMemPoolGetAttribute(c->pool, cudaMemPoolAttrUsedMemCurrent, &used) == cudaSuccess && reserved > used)
        free_b += (size_t)(reserved - used);
    *bytes = free_b;
    return 0;
}

static size_t cuda_uploaded(td_backend *be)
{
    return td_cuda_of(be)->uploaded;
}

static void cuda_destroy(td_backend *be)
{
    td_cuda *c = td_cuda_of(be);
    if (c) {
        cudaSetDevice(c->device);
        if (c->stream)
            cudaStreamSynchronize(c->stream);
        /* The pool goes once its last allocation is freed; one still held
         * is a caller's leak, said here rather than found later. */
        if (c->live)
            td_log(be->ctx, TD_LOG_WARNING, "cuda backend: %lld tensors from tensor_new/upload were not freed",
                   (long long)c->live);
        if (c->pool)
            cudaMemPoolDestroy(c->pool);
        cudaFree(c->arena);
        cudaFree(c->lt_workspace);
#ifdef TD_HAVE_CUDNN
        if (c->dnn)
            cudnnDestroy(c->dnn);
#endif
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
    .available = cuda_available,
    .uploaded = cuda_uploaded,
    .peak = cuda_peak,
    .peak_reset = cuda_peak_reset,
    .alloc = cuda_alloc,
    .mark = cuda_mark,
    .reset = cuda_reset,
    .tensor_new = cuda_tensor_new,
    .tensor_free = cuda_tensor_free,
    .upload = cuda_upload,
    .write = td_cuda_write,
    .read = td_cuda_read,
    .copy = td_cuda_copy,
    .fill = td_cuda_fill,
    .linear = td_cuda_linear,
    .linear_gelu_tanh = td_cuda_linear_gelu_tanh,
    .linear_w8a8 = td_cuda_linear_w8a8,
    .matmul = td_cuda_matmul,
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
    .clamp = td_cuda_clamp,
    .scale_shift = td_cuda_scale_shift,
    .embed = td_cuda_embed,
    .rel_pos_bias = td_cuda_rel_pos_bias,
    .rope = td_cuda_rope,
    .attention = td_cuda_attention,
    .conv3d = td_cuda_conv3d,
    .upsample_nearest = td_cuda_upsample_nearest,
    .sla_attention = td_cuda_sla_attention,
};

static int create_pool(td_backend *be)
{
    td_cuda *c = td_cuda_of(be);
    struct cudaMemPoolProps props;
    uint64_t keep = UINT64_MAX;

    memset(&props, 0, sizeof(props));
    props.allocType = cudaMemAllocationTypePinned;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = c->device;
    TD_TRY(td_cuda_check(be, cudaMemPoolCreate(&c->pool, &props), "create a memory pool"));
    return td_cuda_check(be, cudaMemPoolSetAttribute(c->pool, cudaMemPoolAttrReleaseThreshold, &keep),
                         "keep the memory pool's memory");
}

/* Debug builds check every step; a release build when TURBODIFF_CUDA_SYNC=1. */
static int sync_each_wanted(void)
{
    const char *env = getenv("TURBODIFF_CUDA_SYNC");
#ifdef NDEBUG
    return env && strcmp(env, "1") == 0;
#else
    return !env || strcmp(env, "0") != 0;
#endif
}

#ifdef TD_HAVE_CUDNN
/* cuDNN is optional at run time: a libcudnn whose sub-libraries are missing,
 * or that does not fit this driver or GPU, fails cudnnCreate, and conv3d
 * then runs im2col (said once, here). A libcudnn.so.9 missing altogether
 * stops the dynamic loader before any of this, naming the file. */
static void setup_dnn(td_backend *be)
{
    td_cuda *c = td_cuda_of(be);
    size_t v = cudnnGetVersion();
    cudnnStatus_t st = cudnnCreate(&c->dnn);

    if (st == CUDNN_STATUS_SUCCESS) {
        st = cudnnSetStream(c->dnn, c->stream);
        if (st != CUDNN_STATUS_SUCCESS)
            cudnnDestroy(c->dnn);
    }
    if (st != CUDNN_STATUS_SUCCESS) {
        c->dnn = NULL;
        td_log(be->ctx, TD_LOG_WARNING, "cuda backend: cuDNN %zu.%zu.%zu (built against %d.%d.%d) cannot start (%s): "
               "conv3d runs as im2col + cuBLASLt", v / 10000, v / 100 % 100, v % 100, CUDNN_MAJOR, CUDNN_MINOR,
               CUDNN_PATCHLEVEL, cudnnGetErrorString(st));
        return;
    }
    c->conv_path = TD_CUDA_CONV_CUDNN;
}
#endif

/* The conv3d path in words, for the backend's info line. */
static void conv_path_str(td_cuda *c, char *s, size_t n)
{
#ifdef TD_HAVE_CUDNN
    size_t v = cudnnGetVersion();
    if (c->conv_path == TD_CUDA_CONV_CUDNN) {
        snprintf(s, n, "conv3d by cuDNN %zu.%zu.%zu (built against %d.%d.%d)", v / 10000, v / 100 % 100, v % 100,
                 CUDNN_MAJOR, CUDNN_MINOR, CUDNN_PATCHLEVEL);
        return;
    }
#endif
    (void)c;
    snprintf(s, n, "conv3d by im2col + cuBLASLt");
}

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
    /* Every GEMM on this handle is bf16 with CUBLAS_COMPUTE_32F, which the
     * default math mode keeps: f32 accumulation on tensor cores. */
    TD_TRY(td_cuda_blas_check(be, cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH), "set the math mode"));
    TD_TRY(td_cuda_blas_check(be, cublasLtCreate(&c->lt), "create a cuBLASLt handle"));
    c->conv_path = TD_CUDA_CONV_IM2COL;
#ifdef TD_HAVE_CUDNN
    setup_dnn(be);
#endif
    c->lt_workspace_bytes = LT_WORKSPACE;
    TD_TRY(td_cuda_malloc(be->ctx, &c->lt_workspace, c->lt_workspace_bytes, "the cuBLASLt workspace"));
    TD_TRY(td_cuda_malloc(be->ctx, (void **)&c->arena, arena_bytes, "the activation arena"));
    c->arena_size = arena_bytes;
    return create_pool(be);
}

int td_backend_cuda_create(td_ctx *ctx, int device, size_t arena_bytes, td_backend **out)
{
    td_backend *be;
    td_cuda *c;
    char conv[96];
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
    be->act = TD_BF16;
    be->priv = c;
    rc = setup(be, device, arena_bytes);
    if (rc < 0) {
        cuda_destroy(be);
        return rc;
    }
    c->sync_each = sync_each_wanted();
    conv_path_str(c, conv, sizeof(conv));
    td_log(ctx, TD_LOG_INFO, "cuda backend: device %d, %zu MiB activation arena, %s%s", device, arena_bytes >> 20,
           conv, c->sync_each ? ", synchronising after every step (TURBODIFF_CUDA_SYNC)" : "");
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
