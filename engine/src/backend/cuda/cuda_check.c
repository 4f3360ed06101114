/*
 * Argument checks shared by the CUDA ops, so every op rejects a mismatch
 * with a message naming itself and the tensor before any kernel runs.
 */
#include <string.h>

#include "cuda_internal.h"

int td_cuda_check_act(td_backend *be, const char *op, const char *name, const td_tensor *t)
{
    char s[96];
    if (!t || (!t->data && td_numel(t) > 0))
        return td_fail(be->ctx, TD_EINVAL, "%s: %s is missing", op, name);
    if (t->dtype != TD_BF16)
        return td_fail(be->ctx, TD_EINVAL, "%s: %s %s must be bf16 on the cuda backend",
                       op, name, td_shape_str(t, s, sizeof(s)));
    if (!td_is_contiguous(t))
        return td_fail(be->ctx, TD_EINVAL, "%s: %s %s must be contiguous",
                       op, name, td_shape_str(t, s, sizeof(s)));
    return 0;
}

int td_cuda_check_vec(td_backend *be, const char *op, const char *name, const td_tensor *t, int64_t n)
{
    char s[96];
    if (!t || (!t->data && td_numel(t) > 0))
        return td_fail(be->ctx, TD_EINVAL, "%s: %s is missing", op, name);
    if (t->dtype != TD_F32 && t->dtype != TD_BF16 && t->dtype != TD_F16)
        return td_fail(be->ctx, TD_EINVAL, "%s: %s %s must be f32, bf16 or f16",
                       op, name, td_shape_str(t, s, sizeof(s)));
    if (!td_is_contiguous(t) || td_numel(t) != n)
        return td_fail(be->ctx, TD_ESHAPE, "%s: %s %s must be contiguous with %lld elements",
                       op, name, td_shape_str(t, s, sizeof(s)), (long long)n);
    return 0;
}

int td_cuda_check_same(td_backend *be, const char *op, const td_tensor *x, const td_tensor *y)
{
    char a[96], b[96];
    if (td_numel(x) != td_numel(y) || td_cuda_lastdim(x) != td_cuda_lastdim(y))
        return td_fail(be->ctx, TD_ESHAPE, "%s: output %s does not match input %s",
                       op, td_shape_str(y, b, sizeof(b)), td_shape_str(x, a, sizeof(a)));
    return 0;
}

td_kvec td_cuda_vec(const td_tensor *t)
{
    td_kvec v = { NULL, TD_K_F32 };
    if (t) {
        v.p = t->data;
        v.dt = t->dtype == TD_BF16 ? TD_K_BF16 : t->dtype == TD_F16 ? TD_K_F16 : TD_K_F32;
    }
    return v;
}

int td_cuda_unsupported(td_backend *be, const char *op, const char *what)
{
    return td_fail(be->ctx, TD_EUNSUPPORTED, "%s: not implemented on the cuda backend yet (%s)", op, what);
}

int td_cuda_check_weight(td_backend *be, const char *op, const char *name, const td_tensor *w)
{
    char s[96];
    if (!w || (!w->data && td_numel(w) > 0))
        return td_fail(be->ctx, TD_EINVAL, "%s: %s is missing", op, name);
    if (w->dtype != TD_BF16 || !td_is_contiguous(w))
        return td_fail(be->ctx, TD_EINVAL, "%s: %s %s must be contiguous bf16 (upload narrows float weights)",
                       op, name, td_shape_str(w, s, sizeof(s)));
    return 0;
}

td_kstrided td_cuda_strided(const td_tensor *t)
{
    td_kstrided k;
    memset(&k, 0, sizeof(k));
    k.p = t->data;
    k.dt = t->dtype == TD_BF16 ? TD_K_BF16 : t->dtype == TD_F16 ? TD_K_F16 : TD_K_F32;
    k.ndim = t->ndim;
    for (int i = 0; i < t->ndim; i++) {
        k.shape[i] = t->shape[i];
        k.stride[i] = t->stride[i];
    }
    return k;
}
