#include "tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t td_checked_numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return -1;
    for (int i = 0; i < ndim; i++)
        if (shape[i] == 0)   /* empty whatever the other dims are */
            return 0;
    for (int i = 0; i < ndim; i++) {
        if (n > INT64_MAX / shape[i])
            return -1;
        n *= shape[i];
    }
    return n;
}

int64_t td_numel(const td_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] == 0)   /* before any product of the others can overflow */
            return 0;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

size_t td_nbytes(const td_tensor *t)
{
    return (size_t)td_numel(t) * td_dtype_size(t->dtype);
}

int td_is_contiguous(const td_tensor *t)
{
    int64_t expect = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != expect)
            return 0;
        expect *= t->shape[i];
    }
    return 1;
}

/* An empty tensor may have other dims whose product overflows (a file can
 * declare [0, 2^62, 64]); its strides address nothing, so they are computed
 * in wrapping unsigned arithmetic instead of overflowing. */
static void set_contiguous_strides(td_tensor *t)
{
    uint64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        t->stride[i] = (int64_t)s;
        s *= (uint64_t)t->shape[i];
    }
}

td_tensor td_view(void *data, td_dtype dtype, int ndim, const int64_t *shape)
{
    td_tensor t;
    memset(&t, 0, sizeof(t));
    t.dtype = dtype;
    t.ndim = ndim;
    if (ndim > 0)
        memcpy(t.shape, shape, (size_t)ndim * sizeof(int64_t));
    set_contiguous_strides(&t);
    t.data = data;
    return t;
}

td_tensor td_view1(void *data, td_dtype dtype, int64_t d0)
{
    return td_view(data, dtype, 1, (int64_t[]){ d0 });
}

td_tensor td_view2(void *data, td_dtype dtype, int64_t d0, int64_t d1)
{
    return td_view(data, dtype, 2, (int64_t[]){ d0, d1 });
}

td_tensor td_view3(void *data, td_dtype dtype, int64_t d0, int64_t d1, int64_t d2)
{
    return td_view(data, dtype, 3, (int64_t[]){ d0, d1, d2 });
}

td_tensor td_view4(void *data, td_dtype dtype, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    return td_view(data, dtype, 4, (int64_t[]){ d0, d1, d2, d3 });
}

int td_tensor_new(td_ctx *ctx, td_tensor *t, td_dtype dtype, int ndim, const int64_t *shape)
{
    int64_t n;
    size_t bytes;

    memset(t, 0, sizeof(*t));
    if (ndim < 0 || ndim > TD_MAX_DIMS)
        return td_fail(ctx, TD_EINVAL, "tensor rank %d outside 0..%d", ndim, TD_MAX_DIMS);
    n = td_checked_numel(ndim, shape);
    if (n < 0 || (uint64_t)n > SIZE_MAX / 8)
        return td_fail(ctx, TD_EINVAL, "tensor dims are negative or overflow");
    bytes = (size_t)n * td_dtype_size(dtype);
    *t = td_view(NULL, dtype, ndim, shape);
    t->data = calloc(bytes ? bytes : 1, 1);
    if (!t->data)
        return td_fail(ctx, TD_ENOMEM, "cannot allocate %zu bytes for a tensor", bytes);
    t->owns = 1;
    return 0;
}

void td_tensor_free(td_tensor *t)
{
    /* Backend memory is its backend's to free: left as it is, so a leak
     * check finds the mistake instead of free() corrupting the heap. */
    if (t->owns == TD_OWNS_BACKEND)
        return;
    if (t->owns)
        free(t->data);
    t->data = NULL;
    t->owns = 0;
}

int td_tensor_reshape(td_ctx *ctx, const td_tensor *t, int ndim, const int64_t *shape, td_tensor *out)
{
    if (!td_is_contiguous(t))
        return td_fail(ctx, TD_ESHAPE, "reshape of a non-contiguous tensor");
    if (ndim < 0 || ndim > TD_MAX_DIMS || td_checked_numel(ndim, shape) != td_numel(t))
        return td_fail(ctx, TD_ESHAPE, "reshape changes the element count");
    *out = td_view(t->data, t->dtype, ndim, shape);
    return 0;
}

int td_tensor_slice(td_ctx *ctx, const td_tensor *t, int dim, int64_t start, int64_t len, td_tensor *out)
{
    if (dim < 0 || dim >= t->ndim || start < 0 || len < 0 || start + len > t->shape[dim])
        return td_fail(ctx, TD_ESHAPE, "slice [%lld, %lld) of dim %d out of range",
                       (long long)start, (long long)(start + len), dim);
    *out = *t;
    out->owns = 0;
    out->shape[dim] = len;
    out->data = (char *)t->data + (size_t)(start * t->stride[dim]) * td_dtype_size(t->dtype);
    return 0;
}

int td_tensor_permute(td_ctx *ctx, const td_tensor *t, const int *perm, td_tensor *out)
{
    int seen[TD_MAX_DIMS] = { 0 };
    td_tensor r = *t;

    for (int i = 0; i < t->ndim; i++) {
        if (perm[i] < 0 || perm[i] >= t->ndim || seen[perm[i]]++)
            return td_fail(ctx, TD_EINVAL, "permute: not a permutation of %d dims", t->ndim);
        r.shape[i] = t->shape[perm[i]];
        r.stride[i] = t->stride[perm[i]];
    }
    r.owns = 0;
    *out = r;
    return 0;
}

/* Walk every element of a strided tensor in C order, calling back with the
 * element offsets in src and dst. Iterative so rank is not a recursion depth. */
int td_tensor_copy(td_ctx *ctx, td_tensor *dst, const td_tensor *src)
{
    int64_t idx[TD_MAX_DIMS] = { 0 };
    int64_t n = td_numel(src);
    size_t ss = td_dtype_size(src->dtype), ds = td_dtype_size(dst->dtype);
    int nd = src->ndim;

    if (dst->ndim != nd)
        return td_fail(ctx, TD_ESHAPE, "copy between ranks %d and %d", src->ndim, dst->ndim);
    for (int i = 0; i < nd; i++)
        if (dst->shape[i] != src->shape[i])
            return td_fail(ctx, TD_ESHAPE, "copy: dim %d is %lld vs %lld", i,
                           (long long)src->shape[i], (long long)dst->shape[i]);
    for (int64_t e = 0; e < n; e++) {
        int64_t so = 0, dof = 0;
        for (int i = 0; i < nd; i++) {
            so += idx[i] * src->stride[i];
            dof += idx[i] * dst->stride[i];
        }
        const char *s = (const char *)src->data + so * (int64_t)ss;
        char *d = (char *)dst->data + dof * (int64_t)ds;
        if (src->dtype == dst->dtype) {
            memcpy(d, s, ss);
        } else {
            float f;
            td_to_f32(src->dtype, s, &f, 1);
            td_from_f32(dst->dtype, &f, d, 1);
        }
        for (int i = nd - 1; i >= 0; i--) {
            if (++idx[i] < src->shape[i])
                break;
            idx[i] = 0;
        }
    }
    return 0;
}

const char *td_shape_str(const td_tensor *t, char *buf, size_t size)
{
    size_t off = 0;
    off += (size_t)snprintf(buf + off, size - off, "[");
    for (int i = 0; i < t->ndim && off < size; i++)
        off += (size_t)snprintf(buf + off, size - off, "%s%lld", i ? "," : "", (long long)t->shape[i]);
    if (off < size)
        snprintf(buf + off, size - off, "] %s", td_dtype_name(t->dtype));
    return buf;
}
