/*
 * Data movement on the CPU backend: host <-> backend (write, read), strided
 * copies between backend tensors (copy, with accumulate) and fill. Backend
 * memory is host memory here, so these are loops; on another backend they
 * are transfers and kernels, which is why models must go through them.
 *
 * A strided walk visits the tensor as rows of its last dim: the offsets of
 * a row start are updated like an odometer, the row itself runs with one
 * stride per side, converting through f32 where the dtypes differ.
 */
#include <string.h>

#include "cpu.h"

static int is_float(td_dtype t)
{
    return t == TD_F32 || t == TD_BF16 || t == TD_F16;
}

/* Contiguous host f32 / bf16 / f16 element i as f32 and back. */
static inline float load(td_dtype t, const char *p, int64_t i)
{
    switch (t) {
    case TD_F32: return ((const float *)p)[i];
    case TD_BF16: return td_bf16_to_f32(((const uint16_t *)p)[i]);
    default: return td_f16_to_f32(((const uint16_t *)p)[i]);
    }
}

static inline void store(td_dtype t, char *p, int64_t i, float v)
{
    switch (t) {
    case TD_F32: ((float *)p)[i] = v; break;
    case TD_BF16: ((uint16_t *)p)[i] = td_f32_to_bf16(v); break;
    default: ((uint16_t *)p)[i] = td_f32_to_f16(v); break;
    }
}

/* One row of n elements, source stride ss and destination stride ds (in
 * elements). Same-dtype contiguous rows are a memcpy. */
static void copy_row(const td_tensor *dst, char *d, int64_t ds, const td_tensor *src, const char *s,
                     int64_t ss, int64_t n, int accumulate)
{
    if (!accumulate && dst->dtype == src->dtype && ds == 1 && ss == 1) {
        memcpy(d, s, (size_t)n * td_dtype_size(src->dtype));
        return;
    }
    if (dst->dtype == TD_F32 && src->dtype == TD_F32) {
        float *y = (float *)d;
        const float *x = (const float *)s;
        if (accumulate)
            for (int64_t i = 0; i < n; i++)
                y[i * ds] += x[i * ss];
        else
            for (int64_t i = 0; i < n; i++)
                y[i * ds] = x[i * ss];
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        float v = load(src->dtype, s, i * ss);
        if (accumulate)
            v += load(dst->dtype, d, i * ds);
        store(dst->dtype, d, i * ds, v);
    }
}

/* dst (op)= src over every element, both any strides, same shape (checked). */
static void strided_copy(td_tensor *dst, const td_tensor *src, int accumulate)
{
    int nd = src->ndim, last = nd - 1;
    int64_t idx[TD_MAX_DIMS] = { 0 }, rows = 1, n;
    size_t des = td_dtype_size(dst->dtype), ses = td_dtype_size(src->dtype);

    if (td_numel(src) == 0)
        return;
    if (nd == 0) {
        copy_row(dst, dst->data, 1, src, src->data, 1, 1, accumulate);
        return;
    }
    n = src->shape[last];
    for (int i = 0; i < last; i++)
        rows *= src->shape[i];
    for (int64_t r = 0; r < rows; r++) {
        int64_t so = 0, dof = 0;
        for (int i = 0; i < last; i++) {
            so += idx[i] * src->stride[i];
            dof += idx[i] * dst->stride[i];
        }
        copy_row(dst, (char *)dst->data + dof * (int64_t)des, dst->stride[last], src,
                 (const char *)src->data + so * (int64_t)ses, src->stride[last], n, accumulate);
        for (int i = last - 1; i >= 0; i--) {
            if (++idx[i] < src->shape[i])
                break;
            idx[i] = 0;
        }
    }
}

int td_cpu_write(td_backend *be, td_tensor *dst, const td_tensor *host)
{
    char s[96];
    TD_TRY(td_check_transfer(be->ctx, "write", host, dst));
    if (!td_is_contiguous(host))
        return td_fail(be->ctx, TD_EINVAL, "write: host tensor %s must be contiguous",
                       td_shape_str(host, s, sizeof(s)));
    if (is_float(host->dtype) && is_float(dst->dtype))
        strided_copy(dst, host, 0);
    else if (host->dtype == dst->dtype && td_is_contiguous(dst))
        memcpy(dst->data, host->data, td_nbytes(host));
    else
        return td_tensor_copy(be->ctx, dst, host);   /* integer tables, converted */
    return 0;
}

int td_cpu_read(td_backend *be, const td_tensor *src, td_tensor *host)
{
    char s[96];
    TD_TRY(td_check_transfer(be->ctx, "read", src, host));
    if (!is_float(host->dtype) || !td_is_contiguous(host))
        return td_fail(be->ctx, TD_EINVAL, "read: host tensor %s must be contiguous f32, bf16 or f16",
                       td_shape_str(host, s, sizeof(s)));
    strided_copy(host, src, 0);
    return 0;
}

int td_cpu_copy(td_backend *be, td_tensor *dst, const td_tensor *src, int accumulate)
{
    char a[96], b[96];
    TD_TRY(td_check_transfer(be->ctx, "copy", src, dst));
    if (!is_float(src->dtype) || !is_float(dst->dtype))
        return td_fail(be->ctx, TD_EINVAL, "copy: %s -> %s: float tensors only",
                       td_shape_str(src, a, sizeof(a)), td_shape_str(dst, b, sizeof(b)));
    strided_copy(dst, src, accumulate);
    return 0;
}

int td_cpu_fill(td_backend *be, td_tensor *t, float value)
{
    char s[96];
    td_tensor one;
    if (!t || !is_float(t->dtype) || (!t->data && td_numel(t) > 0))
        return td_fail(be->ctx, TD_EINVAL, "fill: tensor %s must be a float tensor",
                       t ? td_shape_str(t, s, sizeof(s)) : "(missing)");
    /* One value broadcast with zero strides over t's shape. */
    one = *t;
    one.dtype = TD_F32;
    one.data = &value;
    for (int i = 0; i < one.ndim; i++)
        one.stride[i] = 0;
    strided_copy(t, &one, 0);
    return 0;
}
