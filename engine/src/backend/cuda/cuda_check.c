/*
 * Argument checks shared by the CUDA ops, so every op rejects a mismatch
 * with a message naming itself and the tensor before any kernel runs.
 */
#include <string.h>

#include "cuda_internal.h"

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
