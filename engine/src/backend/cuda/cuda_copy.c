/*
 * Data movement on the CUDA backend: host -> device (write), device -> host
 * (read), strided copies between device tensors (copy, with accumulate) and
 * fill. Conversions between float dtypes happen on the device in one strided
 * kernel (kernels/copy.cu); a transfer moves one contiguous block through
 * cudaMemcpyAsync, staged in pool memory when the device side is strided or
 * of another dtype. write and read return with the stream drained: the host
 * memory is the caller's again, and earlier kernels' errors surface there.
 */
#include <string.h>

#include "cuda_internal.h"

static int is_float(td_dtype t)
{
    return t == TD_F32 || t == TD_BF16 || t == TD_F16;
}

static int check_float(td_backend *be, const char *op, const char *name, const td_tensor *t)
{
    char s[96];
    if (!is_float(t->dtype))
        return td_fail(be->ctx, TD_EINVAL, "%s: %s %s must be f32, bf16 or f16", op, name,
                       td_shape_str(t, s, sizeof(s)));
    return 0;
}

/* A contiguous tensor of t's shape in dtype dt over p. */
static td_tensor packed(void *p, td_dtype dt, const td_tensor *t)
{
    return td_view(p, dt, t->ndim, t->shape);
}

/* Bytes already in dst's dtype on the host into dst (any strides). */
static int put(td_backend *be, td_tensor *dst, const void *src)
{
    td_cuda *c = td_cuda_of(be);
    size_t bytes = td_nbytes(dst);
    void *stage = NULL;
    int rc;

    if (td_is_contiguous(dst))
        return td_cuda_check(be, cudaMemcpyAsync(dst->data, src, bytes, cudaMemcpyHostToDevice, c->stream),
                             "write");
    TD_TRY(check_float(be, "write", "strided destination", dst));
    TD_TRY(td_cuda_pool_alloc(be, &stage, bytes, "write staging"));
    rc = td_cuda_check(be, cudaMemcpyAsync(stage, src, bytes, cudaMemcpyHostToDevice, c->stream), "write");
    if (rc == 0) {
        td_tensor st = packed(stage, dst->dtype, dst);
        rc = td_cuda_check(be, tdk_copy(c->stream, td_cuda_strided(dst), td_cuda_strided(&st), 0),
                           "write: scatter");
    }
    td_cuda_pool_free(be, stage);
    return rc;
}

/* The host data converts on the host (td_tensor_copy reads every dtype,
 * integers too) into dst's float dtype, so one copy crosses the bus; an
 * integer destination takes bytes of its own dtype as they are. */
int td_cuda_write(td_backend *be, td_tensor *dst, const td_tensor *host)
{
    TD_TRY(td_cuda_enter(be));
    td_tensor conv = { 0 };
    char s[96], s2[96];
    int rc;

    TD_TRY(td_check_transfer(be->ctx, "write", host, dst));
    if (!td_is_contiguous(host))
        return td_fail(be->ctx, TD_EINVAL, "write: host tensor %s must be contiguous",
                       td_shape_str(host, s, sizeof(s)));
    if (host->dtype != dst->dtype && !is_float(dst->dtype))
        return td_fail(be->ctx, TD_EINVAL, "write: host %s into %s: an integer destination takes its own dtype only",
                       td_shape_str(host, s, sizeof(s)), td_shape_str(dst, s2, sizeof(s2)));
    if (td_numel(host) == 0)
        return 0;
    if (host->dtype != dst->dtype) {
        TD_TRY(td_tensor_new(be->ctx, &conv, dst->dtype, dst->ndim, dst->shape));
        if ((rc = td_tensor_copy(be->ctx, &conv, host)) < 0) {
            td_tensor_free(&conv);
            return rc;
        }
    }
    rc = put(be, dst, conv.data ? conv.data : host->data);
    if (rc == 0)
        rc = td_cuda_check(be, cudaStreamSynchronize(td_cuda_of(be)->stream), "write");
    td_tensor_free(&conv);
    return rc;
}

int td_cuda_read(td_backend *be, const td_tensor *src, td_tensor *host)
{
    TD_TRY(td_cuda_enter(be));
    td_cuda *c = td_cuda_of(be);
    size_t bytes;
    void *stage = NULL;
    char s[96];
    int rc = 0;

    TD_TRY(td_check_transfer(be->ctx, "read", src, host));
    if (!is_float(host->dtype) || !td_is_contiguous(host))
        return td_fail(be->ctx, TD_EINVAL, "read: host tensor %s must be contiguous f32, bf16 or f16",
                       td_shape_str(host, s, sizeof(s)));
    TD_TRY(check_float(be, "read", "source", src));
    bytes = td_nbytes(host);
    if (bytes == 0)
        return 0;
    if (src->dtype != host->dtype || !td_is_contiguous(src)) {
        td_tensor st;
        TD_TRY(td_cuda_pool_alloc(be, &stage, bytes, "read staging"));
        st = packed(stage, host->dtype, host);
        rc = td_cuda_check(be, tdk_copy(c->stream, td_cuda_strided(&st), td_cuda_strided(src), 0), "read: gather");
    }
    if (rc == 0)
        rc = td_cuda_check(be, cudaMemcpyAsync(host->data, stage ? stage : src->data, bytes,
                                               cudaMemcpyDeviceToHost, c->stream), "read");
    td_cuda_pool_free(be, stage);
    if (rc == 0)
        rc = td_cuda_check(be, cudaStreamSynchronize(c->stream), "read");
    return rc;
}

int td_cuda_copy(td_backend *be, td_tensor *dst, const td_tensor *src, int accumulate)
{
    TD_TRY(td_cuda_enter(be));
    TD_TRY(td_check_transfer(be->ctx, "copy", src, dst));
    TD_TRY(check_float(be, "copy", "source", src));
    TD_TRY(check_float(be, "copy", "destination", dst));
    if (td_numel(src) == 0)
        return 0;
    return td_cuda_check(be, tdk_copy(td_cuda_of(be)->stream, td_cuda_strided(dst), td_cuda_strided(src),
                                      accumulate), "copy");
}

int td_cuda_fill(td_backend *be, td_tensor *t, float value)
{
    TD_TRY(td_cuda_enter(be));
    char s[96];
    if (!t || !is_float(t->dtype) || (!t->data && td_numel(t) > 0))
        return td_fail(be->ctx, TD_EINVAL, "fill: tensor %s must be a float tensor",
                       t ? td_shape_str(t, s, sizeof(s)) : "(missing)");
    if (td_numel(t) == 0)
        return 0;
    return td_cuda_check(be, tdk_fill(td_cuda_of(be)->stream, td_cuda_strided(t), value), "fill");
}
